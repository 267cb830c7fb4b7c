"""Findings of the advice rules as a document (`rooflens advise MODEL --hw ID`): ranked, with their numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rooflens.report.document import Document, Gap, Grid, Heading, Labels, Note
from rooflens.report.markup import records_csv
from rooflens.report.units import ByteUnit, bytes3, seconds_text

if TYPE_CHECKING:
    from rooflens.analysis.advice import Finding
    from rooflens.report.report import Report

COLUMNS = ("#", "Severity", "Rule", "Modules", "Saves", "Share", "Finding")
NUMERIC = frozenset({"#", "Saves", "Share"})


def _modules(paths: Sequence[str]) -> str:
    first = paths[0] if paths else ""
    return (first or "<root>") + (f" +{len(paths) - 1} more" if len(paths) > 1 else "")


def _saves(finding: Finding, unit: ByteUnit) -> str:
    seconds = finding.estimate.get("seconds_saved")
    if seconds is not None:
        return seconds_text(seconds)
    return bytes3(finding.estimate.get("bytes_saved", 0), unit)


def advice_document(
    report: Report, findings: Sequence[Finding], byte_unit: ByteUnit | None = None, *, total: int | None = None
) -> Document:
    """One row per finding, most saving first; each rule's explanation linked once below the table.
    ``total``: how many findings there were before the caller kept the first ``len(findings)``."""
    unit = byte_unit or ByteUnit.SI
    hw = report.hardware
    title = f"{report.model}: advice" + (f" for {hw.id} at {report.precision.value}" if hw else " (no device: ranked by bytes)")
    share_of = "the model's time on the device" if hw else "the model's bytes"
    rows = [[str(i), f.severity.value, f.rule.value, _modules(f.modules), _saves(f, unit), f"{100 * f.share:.1f}%",
             f.message] for i, f in enumerate(findings, 1)]
    blocks: list[Any] = [
        Heading(title),
        Labels([("Findings", (f"{len(findings)}" if total in (None, len(findings)) else
                              f"the first {len(findings)} of {total}")),
                ("Share", (f"what the change would save, of {share_of}; savings of different rules overlap "
                          "(do not add them)"))]),
        Gap(),
        Grid(COLUMNS, rows, NUMERIC) if rows else Note("No finding: no rule applies at these thresholds."),
        Gap(),
    ]
    blocks += [Note(f"{rule}: {doc}") for rule, doc in dict.fromkeys((f.rule.value, f.doc) for f in findings)]
    records = [f.as_dict() for f in findings]
    return Document(
        title=title,
        blocks=tuple(blocks),
        data=lambda: {"model": report.model, "hardware": hw.id if hw else None, "precision": report.precision.value,
                      "findings": [f.as_dict() for f in findings]},
        csv=lambda: records_csv([{k: v for k, v in r.items() if not isinstance(v, dict)} for r in records]),
    )
