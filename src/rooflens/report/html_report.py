"""The HTML report: one self-contained page (every style and script inline, nothing fetched) of a Report.

- :func:`html_page`: the whole page (``Report.to_html``); :func:`html_fragment`: the same content as a
  ``<div>`` (Jupyter's ``_repr_html_``, and each Report inside a command's HTML output);
  :func:`page`: the page around any HTML body (``--format html`` of every command).
- What the page shows: a header (model, inputs, conventions, precision, device), key figures, the
  interactive roofline (:mod:`rooflens.report.html_charts`), the module tree as a collapsible table with
  sortable columns, the memory timeline (``memory=``), the device comparison (``devices=``), the footer
  (totals, what was not counted) and any number of extra sections (``sections=``: advice, energy, ...).
- Interactivity: ~250 lines of plain JavaScript (``assets/report.js``) and its stylesheet, inlined. The
  numbers are in the markup (``data-v``: the base-unit value a column sorts by) and in a JSON block
  (``<script type="application/json" class="rl-data">``: the Report's JSON without the operators, the
  charts' points, the sampled memory timeline) from which the hover texts are read.
- Scoping: every style is under ``.rooflens`` (class names ``rl-*``); the markup has no element ids and
  the script defines no global name (it initialises each ``.rooflens`` root once, marking it
  ``data-rl-ready``), so several reports in one notebook or one page never clash.

Extra sections are plain data, so analyses the report layer knows nothing about can be shown: a
:class:`Section` (title, rows, note), or ``(title, rows)``, where each row is a mapping, a dataclass or
an object with ``as_dict()``; columns are the rows' keys, values in base units (formatted by the key's
suffix: ``*_seconds``, ``*_bytes``, ``*_joules``, ``*_share``, ``flops``/``macs``).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

from rooflens.errors import InputError
from rooflens.report.html_charts import Chart, memory_chart, roofline_chart
from rooflens.report.markup import html_labels, visible_text
from rooflens.report.summary import footer_lines, header_lines
from rooflens.report.table import NUMERIC_COLUMNS, ModuleRow, columns, module_rows, row_cells, table_note
from rooflens.report.units import ByteUnit, bytes3, count, joules_text, nbytes, seconds_text, si3

if TYPE_CHECKING:
    from rooflens.analysis.memory import MemoryReport
    from rooflens.report.report import Report

OPEN_ALL = 60  # trees with at most this many modules open fully; larger ones open to depth 2


# ---- extra sections (advice, energy, ...) ------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """An extra part of the page: a heading, a sortable table of ``rows`` and a ``note`` under it.

    ``rows``: mappings of column -> value (base units); ``columns``: which keys, in order (default: every
    key, in the order first seen). Build one from analysis results with :meth:`of`.
    """

    title: str
    rows: Sequence[Mapping[str, Any]] = ()
    note: str = ""
    columns: Sequence[str] | None = None

    @classmethod
    def of(cls, title: str, items: Iterable[Any], *, note: str = "", columns: Sequence[str] | None = None) -> Section:
        """A section of ``items``: mappings, dataclasses or objects with ``as_dict()``."""
        return cls(title, tuple(_as_mapping(item) for item in items), note, columns)


SectionLike: TypeAlias = "Section | tuple[str, Iterable[Any]]"


def _as_mapping(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    as_dict = getattr(item, "as_dict", None)
    if callable(as_dict):
        value = as_dict()
        if isinstance(value, Mapping):
            return value
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    raise InputError(f"a section row must be a mapping, a dataclass or have as_dict(), got {type(item).__name__}")


ADVICE_ROWS = 20  # findings shown on the page, most saving first


def report_sections(report: Report) -> list[Section]:
    """The sections every page of ``report`` shows after its own, before those the caller passes: the
    advice (the first :data:`ADVICE_ROWS` findings on the report's device, or by bytes without one) and the
    energy estimate of the top-level modules."""
    return [_advice_section(report), _energy_section(report)]


def _advice_section(report: Report) -> Section:
    findings = report.advice()
    rows = [{"severity": f.severity.value, "rule": f.rule.value,
             "modules": (f.modules[0] or "<root>") + (f" +{len(f.modules) - 1} more" if len(f.modules) > 1 else ""),
             "saved_bytes": f.estimate.get("bytes_saved", 0.0),
             **({"saved_seconds": f.estimate["seconds_saved"]} if "seconds_saved" in f.estimate else {}),
             "share": f.share, "finding": f.message} for f in findings[:ADVICE_ROWS]]
    of = "the model's time on the device" if report.hardware is not None else "the model's bytes (no device)"
    shown = f"the first {len(rows)} of {len(findings)} findings" if len(findings) > len(rows) else f"{len(rows)} findings"
    return Section("Advice", rows, note=f"{shown}; share: what the change would save, of {of}; savings of different "
                   "rules overlap; derivations and sources: docs/advice.md")


def _energy_section(report: Report) -> Section:
    estimate = report.energy()
    modules = estimate.by_module()
    paths = [""] + [p for p in report.modules if p and "." not in p]
    rows = [{"module": p or report.model, "joules": modules[p].joules, "compute_joules": modules[p].compute_joules,
             "memory_joules": modules[p].memory_joules, "memory_share": modules[p].memory_share,
             "dominant": modules[p].dominant} for p in paths if p in modules]
    return Section("Energy", rows, note=(
        f"estimated at {estimate.used_precision.value} with {estimate.table.name}; every operator's bytes from DRAM "
        f"(an upper bound); {joules_text(estimate.joules_per_inference)} per inference; docs/energy.md"))


def as_section(value: SectionLike) -> Section:
    """A :class:`Section` from a section or a ``(title, rows)`` pair."""
    if isinstance(value, Section):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return Section.of(value[0], value[1])
    raise InputError(f"a section is a Section or a (title, rows) pair, got {type(value).__name__}")


# ---- assets and escaping -----------------------------------------------------------------------------------


@cache
def asset(name: str) -> str:
    """``report.css`` or ``report.js`` from ``rooflens/report/assets``."""
    return (resources.files("rooflens.report") / "assets" / name).read_text(encoding="utf-8")


def style_tag() -> str:
    return f"<style>{asset('report.css')}</style>"


def script_tag() -> str:
    return f"<script>{asset('report.js')}</script>"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_script(data: Any) -> str:
    """``data`` in a ``<script type="application/json">``: nothing in it can close the element or start
    markup (``<``, ``>``, ``&`` and the JavaScript line separators written as \\u escapes)."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return f'<script type="application/json" class="rl-data">{text}</script>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _v(value: float) -> str:
    """A number for a ``data-v`` attribute (what a column sorts by)."""
    return repr(value) if isinstance(value, float) else str(value)


# ---- the page ---------------------------------------------------------------------------------------------


def page(title: str, body: str) -> str:
    """A self-contained HTML page: ``body`` under ``title`` inside the page's root, with the stylesheet and
    the script."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n{style_tag()}\n</head>\n<body>\n"
        f'<main class="rooflens rl-page">\n<h1>{_e(title)}</h1>\n{body}\n</main>\n{script_tag()}\n</body>\n</html>\n'
    )


def html_page(
    report: Report,
    *,
    memory: MemoryReport | None = None,
    devices: Sequence[Report] = (),
    sections: Sequence[SectionLike] = (),
    depth: int | None = None,
    byte_unit: ByteUnit = ByteUnit.SI,
    title: str | None = None,
) -> str:
    """The self-contained page of ``report``; see :func:`html_fragment` for the options."""
    body = report_body(report, memory=memory, devices=devices, sections=sections, depth=depth, byte_unit=byte_unit)
    return page(title if title is not None else f"rooflens: {visible_text(report.model)}", body)


def html_fragment(
    report: Report,
    *,
    memory: MemoryReport | None = None,
    devices: Sequence[Report] = (),
    sections: Sequence[SectionLike] = (),
    depth: int | None = None,
    byte_unit: ByteUnit = ByteUnit.SI,
) -> str:
    """The page's content as one ``<div class="rooflens">`` with its style and script inside (for Jupyter).

    ``memory``: a :class:`~rooflens.analysis.memory.MemoryReport` of the same model (its timeline);
    ``devices``: Reports of the same model on other devices (the comparison table, a roofline for each);
    ``sections``: extra parts (:class:`Section` or ``(title, rows)``), shown after the report's own;
    ``depth``: the module tree opens down to this depth (None: all of it for small models, else 2).
    """
    body = report_body(report, memory=memory, devices=devices, sections=sections, depth=depth, byte_unit=byte_unit)
    return (
        f'<div class="rooflens rl-inline"><h1>rooflens: {_e(visible_text(report.model))}</h1>'
        f"{style_tag()}{body}{script_tag()}</div>"
    )


def report_body(
    report: Report,
    *,
    memory: MemoryReport | None = None,
    devices: Sequence[Report] = (),
    sections: Sequence[SectionLike] = (),
    depth: int | None = None,
    byte_unit: ByteUnit = ByteUnit.SI,
) -> str:
    """The report's sections and its data, without the page's style and script (:func:`page` adds them)."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise InputError(f"depth must be a whole number >= 0, got {depth!r}")
    others = [d for d in devices if d is not report]
    for other in others:
        if other.hardware is None:
            raise InputError(f"a device comparison needs reports with hardware; the one of {other.model} has none")
        if other.model != report.model:
            raise InputError(f"a device comparison is of one model: got {report.model!r} and {other.model!r}")
    extra = report_sections(report) + [as_section(s) for s in sections]
    on_devices = ([report] if report.hardware is not None else []) + others
    charts = [roofline_chart(r, i, byte_unit) for i, r in enumerate(on_devices)]
    mem = memory_chart(memory, byte_unit) if memory is not None else None
    data: dict[str, Any] = {
        "report": report.to_dict(operators=False),
        "charts": [c.data for c in charts],
        **({"memory": mem.data} if mem is not None else {}),
    }
    parts = [
        f'<div class="rl-report">{json_script(data)}',
        _header(report, byte_unit),
        _figures(report, memory, byte_unit),
        _roofline_section(report, charts, on_devices),
        _modules_section(report, depth, byte_unit),
        _memory_section(memory, mem, byte_unit) if memory is not None and mem is not None else "",
        _devices_section(on_devices, byte_unit) if len(on_devices) > 1 else "",
        *(section_html(s, byte_unit) for s in extra),
        _footer(report, byte_unit),
        "</div>",
    ]
    return "\n".join(p for p in parts if p)


def _header(report: Report, byte_unit: ByteUnit) -> str:
    return f'<section class="rl-header">{html_labels(header_lines(report, byte_unit))}</section>'


def _figure(label: str, value: str, sub: str = "") -> str:
    return (f'<div class="rl-fig"><div class="rl-figl">{_e(label)}</div><div class="rl-figv">{_e(value)}</div>'
            + (f'<div class="rl-figsub">{_e(sub)}</div>' if sub else "") + "</div>")


def _figures(report: Report, memory: MemoryReport | None, byte_unit: ByteUnit) -> str:
    """The key numbers as cards: parameters, MACs, FLOPs, bytes, intensity, time, peak memory."""
    t = report.total()
    cards = [
        _figure("Parameters", si3(report.params.total), nbytes(report.weight_bytes, byte_unit)),
        _figure("MACs", si3(t.macs), "conv + matmul"),
        _figure("FLOPs", si3(t.flops), report.convention.value),
        _figure("Memory traffic", bytes3(t.bytes, byte_unit),
                f"read {bytes3(t.bytes_read, byte_unit)} · written {bytes3(t.bytes_written, byte_unit)}"),
        _figure("Intensity", f"{t.intensity:.3g} FLOP/B"),
    ]
    if report.hardware is not None:
        roof = report.roofline
        cards.append(_figure("Roofline time", seconds_text(roof.total_seconds),
                             f"on {roof.hardware.id}, {100 * roof.total.memory_bound_share:.0f}% memory-bound"))
    if report.calibrated is not None:
        cards.append(_figure("Calibrated", seconds_text(report.calibrated.total_seconds), "estimate, eager"))
    if report.measurement is not None:
        cards.append(_figure("Measured", seconds_text(report.measurement.median_seconds), "median latency"))
    if memory is not None:
        cards.append(_figure("Peak memory", bytes3(memory.total_peak_bytes, byte_unit),
                             f"activations {bytes3(memory.peak_bytes, byte_unit)}"))
    return f'<section class="rl-figs">{"".join(cards)}</section>'


def _roofline_section(report: Report, charts: Sequence[Chart], on_devices: Sequence[Report]) -> str:
    if not charts:
        return ('<section class="rl-sec"><h2>Roofline</h2><p class="rl-note">This report has no hardware: '
                "analyze(..., hardware='a4000') or report.with_hardware('a4000') for its roofline.</p></section>")
    tabs = ""
    if len(charts) > 1:
        tabs = '<div class="rl-tabs" role="tablist">' + "".join(
            f'<button type="button" data-chart="{i}" aria-selected="{str(i == 0).lower()}">'
            f"{_e(r.roofline.hardware.id)}</button>"
            for i, r in enumerate(on_devices)
        ) + "</div>"
    body = "".join(c.html if i == 0 else c.html.replace("<figure ", "<figure hidden ", 1) for i, c in enumerate(charts))
    return ('<section class="rl-sec"><h2>Roofline</h2>'
            '<p class="rl-note">Hover a point for its numbers; click it to find its module in the table.</p>'
            f"{tabs}{body}</section>")


# ---- the module tree ------------------------------------------------------------------------------------------


def sort_value(row: ModuleRow, column: str) -> float | int | None:
    """The base-unit value a numeric column of the module table sorts by (None: nothing to sort by)."""
    if not row.ran and column != "Params":
        return None
    c, t = row.cost, row.timing
    values: dict[str, float | int | None] = {
        "Params": row.params,
        "MACs": c.macs,
        "FLOPs": c.flops,
        "Bwd FLOPs": row.backward.flops if row.backward is not None else None,
        "Read": c.bytes_read,
        "Written": c.bytes_written,
        "%MACs": row.share_of_macs,
        "FLOP/B": c.intensity,
        "I/Ridge": c.intensity / row.ridge_point if row.ridge_point else None,
        "Mem%": t.memory_bound_share if t is not None and t.seconds else None,
        "Time": t.seconds if t is not None else None,
        "%Time": row.share_of_time,
        "Calibrated": row.calibrated_seconds,
    }
    return values.get(column)


def _parents(report: Report) -> dict[str, str]:
    return {child: path for path, node in report.modules.items() for child in node.children}


def _open_depth(report: Report, depth: int | None) -> int:
    if depth is not None:
        return depth
    return max((n.depth for n in report.modules.values()), default=0) if len(report.modules) <= OPEN_ALL else 2


def module_table(report: Report, depth: int | None = None, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    """The module tree as a table: every module, those deeper than ``depth`` folded (hidden until their
    parent opens); numeric cells carry their base-unit value in ``data-v``."""
    cols = columns(report)
    shown = _open_depth(report, depth)
    parents = _parents(report)
    head = "".join(
        f'<th data-type="{"num" if c in NUMERIC_COLUMNS else "text"}" scope="col">{_e(c)}</th>' for c in cols
    )
    rows = []
    for i, row in enumerate(module_rows(report)):
        node = report.modules[row.path]
        kids = bool(node.children)
        cells = row_cells(row, byte_unit, cols)
        tds = []
        for col, text in zip(cols, cells, strict=True):
            if col == "Module":
                toggle = (f'<button type="button" class="rl-tog" aria-expanded="{str(row.depth < shown).lower()}" '
                          'aria-label="expand or collapse"></button>' if kids else '<span class="rl-leaf"></span>')
                title = visible_text(row.path) if row.path else visible_text(report.model)
                tds.append(f'<td class="rl-name" style="--d:{row.depth}" title="{_e(title)}" '
                           f'data-v="{_e(visible_text(row.name))}">{toggle}<span>{_e(text)}</span></td>')
            elif col in NUMERIC_COLUMNS:
                v = sort_value(row, col)
                attr = f' data-v="{_v(v)}"' if v is not None else ""
                tds.append(f'<td class="rl-num"{attr}>{_e(text)}</td>')
            else:
                tds.append(f"<td>{_e(text)}</td>")
        attrs = (f' data-path="{_e(row.path)}" data-parent="{_e(parents.get(row.path, ""))}" data-order="{i}"'
                 + ("" if row.path else ' class="rl-root"'))
        if not row.ran:
            attrs += ' data-uncalled=""'
        if row.depth > shown:
            attrs += " hidden"
        rows.append(f"<tr{attrs}>{''.join(tds)}</tr>")
    return (f'<table class="rl-table rl-tree"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _modules_section(report: Report, depth: int | None, byte_unit: ByteUnit) -> str:
    note = table_note(None, report.hardware is not None)
    return (
        '<section class="rl-sec"><h2>Modules</h2>'
        '<div class="rl-bar"><button type="button" data-act="expand">Expand all</button>'
        '<button type="button" data-act="collapse">Collapse all</button>'
        '<span class="rl-note">Click a column\'s header to sort (siblings stay under their parent); '
        "▸ opens a module.</span></div>"
        f'<div class="rl-scroll">{module_table(report, depth, byte_unit)}</div>'
        f'<p class="rl-note">{_e(note)}.</p></section>'
    )


# ---- memory, devices, footer -------------------------------------------------------------------------------------


def _memory_section(memory: MemoryReport, chart: Chart, byte_unit: ByteUnit) -> str:
    from rooflens.report.memory_render import MEMORY_NOTE, memory_lines  # memory_render imports document

    return (f'<section class="rl-sec"><h2>Memory timeline</h2>{chart.html}'
            f"{html_labels(memory_lines(memory, byte_unit)[1:])}"
            f'<p class="rl-note">{_e(MEMORY_NOTE)}</p></section>')


def memory_fragment(memory: MemoryReport, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    """The memory timeline on its own (``rooflens memory --format html``): chart and data, no report."""
    chart = memory_chart(memory, byte_unit)
    return (f'<div class="rl-report">{json_script({"charts": [], "memory": chart.data})}'
            f'<section class="rl-sec"><h2>Memory timeline</h2>{chart.html}</section></div>')


def _devices_section(reports: Sequence[Report], byte_unit: ByteUnit) -> str:
    """One row per device: what :mod:`rooflens.report.roofline_render` shows in the table format."""
    from rooflens.report.roofline_render import (  # roofline_render imports document, which imports this
        COMPARE_NUMERIC,
        comparison_columns,
        comparison_records,
        comparison_rows,
    )

    cols = comparison_columns(reports)
    keys = {"Peak": "peak_flops_per_s", "Bandwidth": "bandwidth_bytes_per_s", "Ridge": "ridge_point",
            "Roofline time": "roofline_seconds", "Calibrated": "calibrated_seconds",
            "Memory-bound": "memory_bound_share", "FLOP/B": "intensity", "% of peak": "share_of_peak"}
    values = [[rec.get(keys.get(c, ""), None) for c in cols] for rec in comparison_records(reports)]
    table = grid_html(cols, comparison_rows(reports, byte_unit), COMPARE_NUMERIC, values)
    notes = "".join(f"<li>{_e(r.roofline.hardware.id)}: {_e(n)}</li>" for r in reports for n in r.roofline.notes)
    return ('<section class="rl-sec"><h2>Devices</h2>'
            f'<p class="rl-note">{_e(reports[0].model)} on each device (roofline time: a lower bound for an eager '
            "run). The tabs above the roofline switch between the devices' charts.</p>"
            f'<div class="rl-scroll">{table}</div>' + (f'<ul class="rl-foot">{notes}</ul>' if notes else "")
            + "</section>")


def _footer(report: Report, byte_unit: ByteUnit) -> str:
    return f'<section class="rl-sec rl-footer"><h2>Totals and notes</h2>{html_labels(footer_lines(report, byte_unit))}</section>'


# ---- generic tables ----------------------------------------------------------------------------------------------


def grid_html(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: frozenset[str] = frozenset(),
    values: Sequence[Sequence[Any]] | None = None,
) -> str:
    """A sortable table of strings; ``values``: per cell, the base-unit value to sort by (else the script
    reads numbers and units from the text of numeric columns)."""
    head = "".join(
        f'<th data-type="{"num" if h in numeric else "text"}" scope="col">{_e(h)}</th>' for h in headers
    )
    body = []
    for r, row in enumerate(rows):
        tds = []
        for c, (h, text) in enumerate(zip(headers, row, strict=True)):
            v = values[r][c] if values is not None else None
            attr = f' data-v="{_v(v)}"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cls = ' class="rl-num"' if h in numeric else ""
            tds.append(f"<td{cls}{attr}>{_e(text)}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f'<table class="rl-table rl-sort"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_SMALL = [(1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]


def _small_si(value: float, unit: str) -> str:
    """Three significant digits with an SI prefix from p to P: ``0.0123 J -> '12.3 mJ'``."""
    if value == 0 or abs(value) >= 1:
        return si3(value, unit)
    for scale, prefix in _SMALL:
        if abs(value) >= scale or prefix == "p":
            scaled = value / scale
            return f"{scaled:.3g} {prefix}{unit}"
    raise AssertionError("unreachable")


def value_text(key: str, value: Any, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    """A section's cell: a base-unit value shown by what the words of its key say it is (``seconds``,
    ``bytes``, ``bytes_per_s``, ``joules``, ``share``/``fraction``, ``flops``/``macs``/``params``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        words = set(key.lower().split("_"))
        rate = "per" in words and "s" in words
        if not math.isfinite(value):
            return str(value)
        if value == 0 and words & _UNITS:
            return "0"
        if "seconds" in words:
            return seconds_text(value)
        if "bytes" in words:
            return bytes3(value, byte_unit, "B/s" if rate else "B")
        if words & {"joules", "j"}:
            return _small_si(value, "J")
        if words & {"share", "fraction"}:
            return f"{100 * value:.1f}%"
        if words & {"flops", "macs", "params"}:
            return si3(value, "FLOP/s" if rate else "")
        if isinstance(value, int):
            return count(value)
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{sub}: {value_text(str(sub), v, byte_unit)}" for sub, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(key, v, byte_unit) for v in value)
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum
        return str(value.value)
    return str(value)


_UNITS = frozenset({"seconds", "bytes", "joules", "j", "share", "fraction", "flops", "macs", "params"})
_WORDS = {"macs": "MACs", "mac": "MAC", "flops": "FLOPs", "dram": "DRAM", "sram": "SRAM", "onchip": "on-chip",
          "per": "/", "s": "s"}


def _heading(key: str) -> str:
    """A key as a column heading: ``dram_joules`` -> ``DRAM joules``, ``peak_flops_per_s`` -> ``Peak FLOP/s``."""
    text = " ".join(_WORDS.get(w, w) for w in key.split("_")).replace("FLOPs / s", "FLOP/s").replace(" / s", "/s")
    return text[:1].upper() + text[1:]


def section_html(section: Section, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    """An extra section: its title, its rows as a sortable table (numbers sort by value), its note."""
    rows = [dict(r) for r in section.rows]
    keys: list[str] = list(section.columns) if section.columns is not None else []
    if section.columns is None:
        for r in rows:
            keys += [k for k in r if k not in keys]
    if rows:
        numeric = frozenset(
            _heading(k) for k in keys
            if all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) or r.get(k) is None
                   for r in rows)
            and any(r.get(k) is not None for r in rows)
        )
        headers = [_heading(k) for k in keys]
        texts = [[value_text(k, r.get(k), byte_unit) for k in keys] for r in rows]
        values = [[r.get(k) for k in keys] for r in rows]
        table = f'<div class="rl-scroll">{grid_html(headers, texts, numeric, values)}</div>'
    else:
        table = '<p class="rl-note">Nothing to show.</p>'
    note = f'<p class="rl-note">{_e(section.note)}</p>' if section.note else ""
    return f'<section class="rl-sec rl-extra"><h2>{_e(section.title)}</h2>{table}{note}</section>'
