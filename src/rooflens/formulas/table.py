"""The supported-operator table, generated from the formula registry.

``python -m rooflens.formulas.table > docs/operators.md`` rewrites the documentation page; a test
checks that the page matches what this module generates.

One section per formula family (the entry's ``family``), introduced by the docstring of the module of
that name, one row per formula and bytes rule: the operators sharing them, the FLOPs rule (the entry's
``doc``) and the bytes rule (the first line of the rule's docstring). Within a section the rows of the
family's forward operators come first, then its backward operators (from the backward module), each in
registration order.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from rooflens.formulas import REGISTRY
from rooflens.formulas.registry import Entry, Registry, default_bytes

REGENERATE = "python -m rooflens.formulas.table > docs/operators.md"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped, no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _bytes_doc(entry: Entry) -> str:
    if entry.bytes is default_bytes:
        return "default"
    return _first_line(entry.bytes.__doc__).rstrip(".") or entry.bytes.__name__


def _module(entry: Entry) -> str:
    return str(getattr(entry.formula, "__module__", ""))


def _family_doc(family: str, entries: Iterable[Entry]) -> str:
    """The first paragraph of the docstring of the family's module (or of the first module that has one)."""
    modules = [f"{__package__}.{family}", *(_module(e) for e in entries)]
    for name in modules:
        module = sys.modules.get(name)
        if module is not None and module.__doc__:
            return _first_paragraph(module.__doc__)
    return ""


def markdown_table(registry: Registry = REGISTRY) -> str:
    """Every registry entry, grouped by family: operator(s), FLOPs rule, bytes rule (Markdown)."""
    families: dict[str, list[Entry]] = {}
    for entry in registry.entries.values():  # registration order: each family reads as its source does
        families.setdefault(entry.family, []).append(entry)

    lines = [
        "# Supported operators",
        "",
        f"<!-- generated: {REGENERATE} -- do not edit by hand -->",
        "",
        f"{len(registry)} operators in {len(families)} families. Counts are per call; FLOPs follow the",
        "`fma` convention (2 FLOPs per MAC, see the README). Only convolutions and matrix products have",
        "MACs. Operators not listed here are decomposed into listed ones when torch can; otherwise they",
        "are reported as unsupported, with their bytes counted and no FLOPs. The backward operators that",
        "torch does not decompose are listed in the family of their forward (`convolution_backward` under",
        "conv); the others are decomposed into listed operators.",
        "",
        "Bytes rule \"default\": the operator reads each distinct input tensor once and writes each output",
        "once, at the tensor's dtype width. Views and metadata operators cost nothing and are not recorded.",
        "",
    ]
    for family in sorted(families):
        # the forward operators first, then the backward ones (stable: registration order otherwise)
        entries = sorted(families[family], key=lambda e: _module(e).endswith(".backward"))
        rows: dict[tuple[object, object, str], list[str]] = {}
        for entry in entries:
            rows.setdefault((entry.formula, entry.bytes, entry.doc), []).append(entry.op)
        lines += [f"## {family}", ""]
        doc = _family_doc(family, entries)
        if doc:
            lines += [_cell(doc), ""]
        lines += ["| Operator(s) | FLOPs rule | Bytes rule |", "|---|---|---|"]
        for (_, _, flops_doc), ops in rows.items():
            entry = registry.entries[ops[0]]
            names = ", ".join(f"`{op}`" for op in ops)
            lines.append(f"| {names} | {_cell(flops_doc)} | {_cell(_bytes_doc(entry))} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(markdown_table())


if __name__ == "__main__":
    main()
