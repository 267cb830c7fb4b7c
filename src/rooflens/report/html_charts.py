"""The HTML report's charts as SVG written here (no chart library): the interactive roofline and the
memory timeline. Each chart is the markup and the data its hover reads (base units and display texts).

The roofline follows :mod:`rooflens.report.plot` (the matplotlib picture): the same points (one per leaf
module, "path (own)" for the operators a module with children runs itself), the same axis ranges,
titles, colours, footnotes and labels; the device's other precisions add their roofs. Coordinates are
rounded, nothing random: the same report gives the same markup.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from rooflens.report.markup import visible_text
from rooflens.report.plot import (
    COMPUTE_COLOR,
    MEMORY_COLOR,
    MODEL_AREA,
    MODEL_COLOR,
    _area,
    _footnotes,
    _group,
    _num,
    _pct,
    _Point,
    _short,
    _span,
    _subtitle,
    _title,
    _to_annotate,
)
from rooflens.report.table import intensity_text
from rooflens.report.units import ByteUnit, bytes3, nbytes, seconds_text, si3

if TYPE_CHECKING:
    from rooflens.analysis.memory import MemoryReport
    from rooflens.analysis.roofline import Roofline, Timing
    from rooflens.report.report import Report

ANNOTATE = 4  # points labelled on the chart (the most time first); hover shows every one
MAX_EVENTS = 600  # memory timeline: at most this many samples (each the largest of its stretch)


@dataclass(frozen=True)
class Chart:
    """One chart: its SVG (and what goes round it) and the JSON its script reads."""

    html: str
    data: dict[str, Any]


# ---- geometry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """The plot area inside an SVG of ``width`` x ``height`` and its axes' ranges (log or linear)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float
    log: bool = True

    def _f(self, v: float, lo: float, hi: float) -> float:
        if self.log:
            return (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return (v - lo) / (hi - lo) if hi > lo else 0.0

    def x(self, v: float) -> float:
        return self.left + self._f(v, self.x0, self.x1) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - self._f(v, self.y0, self.y1) * (self.bottom - self.top)


def _c(v: float) -> str:
    """A coordinate, rounded: small markup, the same text on every machine."""
    text = f"{v:.1f}"
    return text.removesuffix(".0")


def _points(frame: _Frame, pts: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{_c(frame.x(x))},{_c(frame.y(y))}" for x, y in pts)


def _decades(lo: float, hi: float) -> list[float]:
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    step = 1 if last - first <= 10 else 2
    return [10.0**k for k in range(first, last + 1, step)]


def _tick_text(v: float) -> str:
    return _num(v).strip()


def _log_axes(frame: _Frame, xlabel: str, ylabel: str) -> list[str]:
    """Grid lines, tick labels and axis titles of a log-log frame."""
    out = []
    xs, ys = _decades(frame.x0, frame.x1), _decades(frame.y0, frame.y1)
    minor = []
    for ticks, lo, hi in ((xs, frame.x0, frame.x1), (ys, frame.y0, frame.y1)):
        few = math.log10(hi / lo) <= 8
        minor.append([d * m for d in [ticks[0] / 10, *ticks] for m in range(2, 10) if few and lo < d * m < hi])
    for v in minor[0]:
        out.append(f'<line class="rl-grid2" x1="{_c(frame.x(v))}" x2="{_c(frame.x(v))}" '
                   f'y1="{frame.top}" y2="{frame.bottom}"/>')
    for v in minor[1]:
        out.append(f'<line class="rl-grid2" x1="{frame.left}" x2="{frame.right}" '
                   f'y1="{_c(frame.y(v))}" y2="{_c(frame.y(v))}"/>')
    for v in xs:
        x = _c(frame.x(v))
        out.append(f'<line class="rl-grid" x1="{x}" x2="{x}" y1="{frame.top}" y2="{frame.bottom}"/>')
        out.append(f'<text class="rl-tick" x="{x}" y="{frame.bottom + 15}" text-anchor="middle">'
                   f"{escape(_tick_text(v))}</text>")
    for v in ys:
        y = _c(frame.y(v))
        out.append(f'<line class="rl-grid" x1="{frame.left}" x2="{frame.right}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="rl-tick" x="{frame.left - 6}" y="{y}" text-anchor="end" dy="0.32em">'
                   f"{escape(_tick_text(v))}</text>")
    out.append(f'<rect class="rl-frame" x="{frame.left}" y="{frame.top}" width="{frame.right - frame.left}" '
               f'height="{frame.bottom - frame.top}"/>')
    mid_x, mid_y = (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2
    out.append(f'<text class="rl-axis" x="{_c(mid_x)}" y="{frame.height - 8}" text-anchor="middle">'
               f"{escape(xlabel)}</text>")
    out.append(f'<text class="rl-axis" transform="translate(14 {_c(mid_y)}) rotate(-90)" text-anchor="middle">'
               f"{escape(ylabel)}</text>")
    return out


# ---- label placement ----------------------------------------------------------------------------------

_Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in SVG units


def _overlap(a: _Box, b: _Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


class _Labels:
    """Greedy placement (as the matplotlib plot's): of the spots offered for a text, the one that covers
    the least of what is already there (labels, markers, the roofs) and stays inside the frame. Text
    boxes are estimated from the number of characters."""

    CHAR = 0.56  # average width of a character, in font sizes
    Spot = tuple[float, float, str]  # x, y (baseline), text-anchor

    def __init__(self, frame: _Frame, markers: list[_Box], lines: list[_Box]) -> None:
        self.frame = frame
        self.markers = markers
        self.lines = lines
        self.placed: list[_Box] = []

    def box(self, text: str, x: float, y: float, anchor: str, size: float = 11) -> _Box:
        width = self.CHAR * size * len(text) + 2
        x0 = x if anchor == "start" else x - width if anchor == "end" else x - width / 2
        return (x0, y - size * 0.8, x0 + width, y + size * 0.25)

    def score(self, box: _Box) -> float:
        f = self.frame
        inside = _overlap(box, (f.left, f.top, f.right, f.bottom))
        return (8 * ((box[2] - box[0]) * (box[3] - box[1]) - inside) + 3 * sum(_overlap(box, b) for b in self.placed)
                + 1 * sum(_overlap(box, b) for b in self.lines) + 0.5 * sum(_overlap(box, m) for m in self.markers))

    def best(self, spots: list[tuple[_Box, Any]]) -> Any:
        """The payload of the spot whose box covers least (the first that covers nothing)."""
        chosen: tuple[float, _Box, Any] | None = None
        for box, payload in spots:
            score = self.score(box)
            if chosen is None or score < chosen[0]:
                chosen = (score, box, payload)
            if score == 0:
                break
        assert chosen is not None
        self.placed.append(chosen[1])
        return chosen[2]

    def beside(self, text: str, cx: float, cy: float, r: float) -> tuple[float, float, str]:
        """(x, y, text-anchor) of ``text`` beside the marker at ``cx, cy`` of radius ``r``."""
        spots = []
        for dist in (r + 3, r + 12, r + 24):
            for ux, uy in ((1, -1), (-1, -1), (1, 1), (-1, 1), (0, -1), (0, 1), (1, 0), (-1, 0)):
                k = 0.75 if ux and uy else 1.0
                x, y = cx + ux * dist * k, cy + uy * dist * k
                anchor = "start" if ux > 0 else "end" if ux < 0 else "middle"
                base = y if uy < 0 else y + 9 if uy > 0 else y + 4
                spots.append((self.box(text, x, base, anchor), (x, base, anchor)))
        result: tuple[float, float, str] = self.best(spots)
        return result


def _line_boxes(frame: _Frame, pts: Sequence[tuple[float, float]], step: float = 6.0) -> list[_Box]:
    """Small boxes along a polyline (data coordinates), for labels to keep off it."""
    px = [(frame.x(x), frame.y(y)) for x, y in pts]
    out = []
    for (x0, y0), (x1, y1) in itertools.pairwise(px):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * i / n - 1.5, y0 + (y1 - y0) * i / n - 1.5,
                 x0 + (x1 - x0) * i / n + 1.5, y0 + (y1 - y0) * i / n + 1.5) for i in range(n + 1)]
    return out


# ---- the roofline -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """The operators of one point: a leaf module's (``own`` False) or a parent's own ones."""

    path: str
    own: bool
    timing: Timing


def module_groups(report: Report, roof: Roofline) -> list[_Group]:
    """The roofline's points, one per leaf module that ran (and "path (own)" for the operators a module
    with children runs itself), in the order they first ran: the grouping of the matplotlib plot."""
    groups: dict[tuple[str, bool], Timing] = {}
    for rec, t in zip(report.records, roof.ops, strict=True):
        key = _group(rec.module, report.modules, None)
        groups[key] = groups[key] + t if key in groups else t
    return [_Group(path, own, t) for (path, own), t in groups.items()]


def _precision_roofs(roof: Roofline) -> list[tuple[str, float]]:
    """``(names, peak)`` per distinct peak of the device (precisions with equal peaks share a roof), the
    precision the roofline uses first."""
    by_peak: dict[float, list[str]] = {}
    for p, v in roof.hardware.peak_flops_per_s.items():
        by_peak.setdefault(v, []).append(p.value)
    primary = roof.peak_flops_per_s
    by_peak.setdefault(primary, [roof.used_precision.value])
    ordered = [primary] + sorted((v for v in by_peak if v != primary), reverse=True)
    return [("/".join(by_peak[v]), v) for v in ordered]


def _rate_text(peak: float, names: str) -> str:
    unit = "OP/s" if all(n.startswith("int") for n in names.split("/")) else "FLOP/s"
    return f"{_num(peak, 4)}{unit}"


def point_tip(label: str, type_name: str, t: Timing, total_seconds: float, byte_unit: ByteUnit) -> list[list[str]]:
    """What hovering a point shows: ``[label, text]`` rows."""
    share = t.seconds / total_seconds if total_seconds else 0.0
    return [
        ["Module", label],
        ["Type", type_name],
        ["FLOPs", si3(t.flops)],
        ["Bytes", bytes3(t.bytes, byte_unit)],
        ["Intensity", f"{intensity_text(t.intensity)} FLOP/B"],
        ["Time", f"{seconds_text(t.seconds)} ({_pct(share)} of the model's)"],
        ["Attainable", si3(t.flops_per_s, "FLOP/s")],
        ["Bound", t.bound.value if t.memory_bound_share in (0.0, 1.0)
         else f"{t.bound.value} ({_pct(t.memory_bound_share)} of its time in memory-bound operators)"],
    ]


def roofline_chart(report: Report, index: int = 0, byte_unit: ByteUnit = ByteUnit.SI) -> Chart:
    """The interactive roofline of ``report`` on its device: an SVG and the data of its points.

    ``index``: the chart's number in the page (``data-chart``: which of the data's charts it is).
    """
    roof = report.roofline
    bw = roof.bandwidth_bytes_per_s
    peak, ridge = roof.peak_flops_per_s, roof.ridge_point
    roofs = _precision_roofs(roof)
    total = roof.total
    whole = total.flops > 0 and total.bytes > 0 and total.seconds > 0
    modules = report.modules
    groups = module_groups(report, roof)
    plot_points = [_Point(_short(g.path) if g.path else report.model, g.timing, "own" if g.own else "")
                   for g in groups]
    drawn = sorted(
        ((g, p) for g, p in zip(groups, plot_points, strict=True) if p.drawable),
        key=lambda gp: -gp[0].timing.seconds,
    )

    # ranges as the plot's: every point, the whole model and the ridges, at least two decades each way
    xs = [g.timing.intensity for g, _ in drawn] + ([total.intensity] if whole else []) + [v / bw for _, v in roofs]
    ys = [g.timing.flops_per_s for g, _ in drawn] + ([total.flops_per_s] if whole else [])
    xlo, xhi = _span(min(xs) / 2.5, max(xs) * 2.5)
    ylo = min(ys) / 3 if ys else peak / 1e3
    ylo, yhi = _span(ylo, max(v for _, v in roofs) * 4, keep_high=True)
    f = _Frame(760, 440, 70, 744, 14, 394, xlo, xhi, ylo, yhi)
    roofs = roofs[:1] + [(names, v) for names, v in roofs[1:] if v > ylo]  # a lower precision's, when on the chart
    svg: list[str] = _log_axes(f, "arithmetic intensity (FLOP/byte)", "performance (FLOP/s)")

    # the unattainable region, the other precisions' roofs, the roof of the report's precision, the ridge
    x_start = max(xlo, ylo / bw)
    main = [(x_start, max(ylo, bw * x_start)), (ridge, peak), (xhi, peak)]
    region = ([(xlo, ylo)] if x_start > xlo else []) + main + [(xhi, yhi), (xlo, yhi)]
    svg.insert(0, f'<polygon class="rl-above" points="{_points(f, region)}"/>')
    lines = _line_boxes(f, main)
    for _names, v in roofs[1:]:
        r = v / bw
        line = [(ridge, peak), (r, v), (xhi, v)] if v > peak else [(r, v), (xhi, v)]
        lines += _line_boxes(f, line)
        svg.append(f'<polyline class="rl-roof2" points="{_points(f, line)}"/>')
    svg.append(f'<polyline class="rl-roof" points="{_points(f, main)}"/>')
    rx = f.x(ridge)
    svg.append(f'<line class="rl-ridge" x1="{_c(rx)}" x2="{_c(rx)}" y1="{_c(f.y(ylo))}" y2="{_c(f.y(peak))}"/>')

    # the points, largest first (small ones stay on top), then the whole model's star
    seconds_max = max((g.timing.seconds for g, _ in drawn), default=0.0)
    points_data: list[dict[str, Any]] = []
    markers: list[_Box] = []
    circles = []
    for i, (g, _p) in enumerate(drawn):
        t = g.timing
        r = math.sqrt(_area(t.seconds, seconds_max)) / 2
        cx, cy = f.x(t.intensity), f.y(t.flops_per_s)
        markers.append((cx - r, cy - r, cx + r, cy + r))
        label = (visible_text(g.path) if g.path else visible_text(report.model)) + (" (own)" if g.own else "")
        node = modules.get(g.path)
        type_name = node.type_name if node is not None else ""
        points_data.append({
            "path": g.path, "own": g.own, "label": label, "type": type_name,
            "flops": t.flops, "bytes": t.bytes, "intensity": t.intensity, "flops_per_s": t.flops_per_s,
            "seconds": t.seconds, "bound": t.bound.value,
            "tip": point_tip(label, type_name, t, total.seconds, byte_unit),
        })
        color = "rl-mem" if t.bound.value == "memory" else "rl-cmp"
        circles.append(f'<circle class="rl-pt {color}" data-i="{i}" cx="{_c(cx)}" cy="{_c(cy)}" r="{r:.2f}"/>')
    marks = ['<g class="rl-pts">' + "".join(circles)]
    total_data: dict[str, Any] | None = None
    if whole:
        cx, cy = f.x(total.intensity), f.y(total.flops_per_s)
        rs = math.sqrt(MODEL_AREA) / 2 * 0.9
        star = " ".join(
            f"{_c(cx + (rs if k % 2 == 0 else rs * 0.42) * math.sin(k * math.pi / 5))},"
            f"{_c(cy - (rs if k % 2 == 0 else rs * 0.42) * math.cos(k * math.pi / 5))}"
            for k in range(10)
        )
        marks.append(f'<polygon class="rl-pt rl-star" data-i="-1" points="{star}"/>')
        markers.append((cx - rs, cy - rs, cx + rs, cy + rs))
        total_data = {
            "label": "whole model", "flops": total.flops, "bytes": total.bytes, "intensity": total.intensity,
            "flops_per_s": total.flops_per_s, "seconds": total.seconds, "bound": total.bound.value,
            "tip": point_tip(f"{visible_text(report.model)} (whole model)", modules[""].type_name if "" in modules
                             else "", total, total.seconds, byte_unit),
        }
    marks.append("</g>")

    # labels, placed one by one where they cover least: the ridge, the roofs, the bandwidth, the whole
    # model, then the points with the most time
    placer = _Labels(f, markers, lines)
    ridge_text = f"ridge {ridge:.3g} FLOP/B"
    ridge_len = _Labels.CHAR * 10.5 * len(ridge_text)
    placer.placed.append((rx + 3, f.bottom - 6 - ridge_len, rx + 14, f.bottom - 6))
    svg.append(f'<text class="rl-ridgelabel" transform="translate({_c(rx + 12)} {_c(f.bottom - 6)}) rotate(-90)">'
               f"{escape(ridge_text)}</text>")
    mid_x = math.sqrt(max(ridge, xlo) * xhi)
    for i, (names, v) in enumerate(roofs):
        text = f"{names} peak {_rate_text(v, names)}"
        y = f.y(v)
        spots = []
        for dy in (-5, -17, 14):
            for x, anchor in ((f.right - 6, "end"), (f.x(mid_x), "middle"), (max(rx, f.x(v / bw)) + 6, "start")):
                spots.append((placer.box(text, x, y + dy, anchor), (x, y + dy, anchor)))
        x, yy, anchor = placer.best(spots)
        cls = "rl-rooflabel" + (" rl-main" if i == 0 else "")
        svg.append(f'<text class="{cls}" x="{_c(x)}" y="{_c(yy)}" text-anchor="{anchor}">{escape(text)}</text>')
    if ridge > x_start:  # the bandwidth along the sloped roof
        text = bytes3(bw, byte_unit, "B/s")
        (ax_, ay), (bx, by) = (f.x(x_start), f.y(bw * x_start)), (f.x(ridge), f.y(peak))
        angle = math.atan2(by - ay, bx - ax_)
        width = _Labels.CHAR * 11 * len(text)
        nx, ny = math.sin(angle), -math.cos(angle)  # the normal that points above the roof
        half_w = (width * abs(math.cos(angle)) + 9 * abs(math.sin(angle))) / 2
        half_h = (width * abs(math.sin(angle)) + 9 * abs(math.cos(angle))) / 2
        slope: list[tuple[_Box, tuple[float, float]]] = []
        for frac in (0.4, 0.3, 0.5, 0.2, 0.6, 0.7, 0.1, 0.8):
            xm = x_start * (ridge / x_start) ** frac
            for dist in (5.0, -13.0):  # the baseline above the roof, else below it
                px, py = f.x(xm) + dist * nx, f.y(bw * xm) + dist * ny
                cx, cy = px + 4 * nx, py + 4 * ny  # the middle of the glyphs
                slope.append(((cx - half_w, cy - half_h, cx + half_w, cy + half_h), (px, py)))
        px, py = placer.best(slope)
        svg.append(f'<text class="rl-rooflabel" transform="translate({_c(px)} {_c(py)}) '
                   f'rotate({math.degrees(angle):.1f})" text-anchor="middle">{escape(text)}</text>')
    svg += marks
    if whole:
        x, y, anchor = placer.beside("whole model", f.x(total.intensity), f.y(total.flops_per_s), 11)
        svg.append(f'<text class="rl-label rl-bold" x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}">whole model</text>')
    drawn_points = [p for _, p in drawn]
    areas = [_area(p.timing.seconds, seconds_max) for p in drawn_points]
    for text, p, area in _to_annotate(drawn_points, areas, ANNOTATE):
        text = visible_text(text)
        x, y, anchor = placer.beside(text, f.x(p.timing.intensity), f.y(p.timing.flops_per_s), math.sqrt(area) / 2)
        svg.append(f'<text class="rl-label" x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}">{escape(text)}</text>')

    shares = roof.bound_share()
    legend = (
        '<div class="rl-legend">'
        f'<span><i class="rl-dot" style="background:{MEMORY_COLOR}"></i>memory-bound '
        f"({_pct(shares['memory'])} of the time)</span>"
        f'<span><i class="rl-dot" style="background:{COMPUTE_COLOR}"></i>compute-bound '
        f"({_pct(shares['compute'])} of the time)</span>"
        + (f'<span><i class="rl-staricon" style="color:{MODEL_COLOR}">★</i>whole model</span>' if whole else "")
        + "<span>leaf modules; marker area ∝ roofline time</span>"
        + '<span><i class="rl-line"></i>roof at ' + escape(roof.used_precision.value)
        + ("" if len(roofs) == 1 else ' <i class="rl-line rl-dash"></i>other precisions') + "</span>"
        "</div>"
    )
    notes = _footnotes(plot_points, roof, "module")
    foot = "".join(f"<li>{escape(n)}</li>" for n in notes)
    html = (
        f'<figure class="rl-chart rl-roofline" data-chart="{index}" data-device="{escape(roof.hardware.id)}">'
        f'<figcaption><b>{escape(_title(report, roof))}</b><br><span class="rl-sub">'
        f"{escape(_subtitle(report, roof))}</span></figcaption>"
        f'<div class="rl-plot"><svg viewBox="0 0 {f.width} {f.height}" role="img" '
        f'aria-label="{escape(_title(report, roof))}: roofline">{"".join(svg)}</svg>'
        '<div class="rl-tip" hidden></div></div>'
        f"{legend}" + (f'<ul class="rl-foot">{foot}</ul>' if foot else "") + "</figure>"
    )
    data = {
        "device": roof.hardware.id,
        "name": roof.hardware.name,
        "precision": roof.precision.value,
        "used_precision": roof.used_precision.value,
        "peak_flops_per_s": peak,
        "bandwidth_bytes_per_s": bw,
        "ridge_point": ridge,
        "roofs": [{"precisions": names.split("/"), "peak_flops_per_s": v, "ridge_point": v / bw} for names, v in roofs],
        "x_range": [xlo, xhi],
        "y_range": [ylo, yhi],
        "points": points_data,
        "whole_model": total_data,
        "not_drawn": [p.label + (f" ({p.note})" if p.note else "") for p in plot_points if not p.drawable],
    }
    return Chart(html, data)


# ---- the memory timeline --------------------------------------------------------------------------------

_PHASE_CLASS = {"backward": "rl-ph-bwd", "recompute": "rl-ph-rec", "optimizer": "rl-ph-opt"}


def _nice_step(top: float, ticks: int = 5) -> float:
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _bytes_tick(value: float, byte_unit: ByteUnit) -> str:
    """A tick's bytes without trailing zeros: ``'2.5 MB'``, ``'8 MB'``, ``'0'``."""
    if value == 0:
        return "0"
    number, _, unit = bytes3(value, byte_unit).partition(" ")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return f"{number} {unit}".strip()


def memory_chart(mem: MemoryReport, byte_unit: ByteUnit = ByteUnit.SI) -> Chart:
    """The live memory after each operator (inputs, activations, temporaries; weights not included), its
    peak and, for a training step, the phases. Long timelines are sampled: each sample is the largest
    value of its stretch of operators, so the peak is always shown."""
    events = mem.timeline
    n = len(events)
    if n == 0:
        return Chart('<p class="rl-note">No operator ran: there is no timeline.</p>', {"events": [], "n": 0})
    step = max(1, math.ceil(n / MAX_EVENTS))
    samples = [max(events[i:i + step], key=lambda e: e.live_bytes) for i in range(0, n, step)]
    top = max(e.live_bytes for e in events) or 1
    unit = _nice_step(top * 1.05)
    ymax = math.ceil(top * 1.05 / unit) * unit
    f = _Frame(760, 250, 70, 744, 12, 214, 0, max(n - 1, 1), 0, ymax, log=False)
    svg: list[str] = []
    # phase bands (training): a tinted background per stretch of backward / recompute / optimizer
    start = 0
    for i in range(1, n + 1):
        if i == n or events[i].phase != events[start].phase:
            cls = _PHASE_CLASS.get(events[start].phase)
            if cls:
                x0, x1 = f.x(start - 0.5 if start else 0), f.x(min(i - 0.5, n - 1))
                svg.append(f'<rect class="{cls}" x="{_c(x0)}" y="{f.top}" width="{_c(max(x1 - x0, 1))}" '
                           f'height="{f.bottom - f.top}"/>')
                svg.append(f'<text class="rl-tick" x="{_c(x0 + 3)}" y="{f.top + 11}">{events[start].phase}</text>')
            start = i
    k = 0.0
    while k <= ymax + unit / 2:
        y = _c(f.y(k))
        svg.append(f'<line class="rl-grid" x1="{f.left}" x2="{f.right}" y1="{y}" y2="{y}"/>')
        svg.append(f'<text class="rl-tick" x="{f.left - 6}" y="{y}" text-anchor="end" dy="0.32em">'
                   f"{escape(_bytes_tick(k, byte_unit))}</text>")
        k += unit
    xstep = _nice_step(max(n - 1, 1), 8)
    k = 0.0
    while k <= n - 1 + 1e-9:
        x = _c(f.x(k))
        svg.append(f'<line class="rl-grid2" x1="{x}" x2="{x}" y1="{f.top}" y2="{f.bottom}"/>')
        svg.append(f'<text class="rl-tick" x="{x}" y="{f.bottom + 15}" text-anchor="middle">{k:g}</text>')
        k += xstep
    line = [(float(e.index), float(e.live_bytes)) for e in samples]
    area = [(line[0][0], 0.0), *line, (line[-1][0], 0.0)]
    svg.append(f'<polygon class="rl-area" points="{_points(f, area)}"/>')
    svg.append(f'<polyline class="rl-live" points="{_points(f, line)}"/>')
    svg.append(f'<rect class="rl-frame" x="{f.left}" y="{f.top}" width="{f.right - f.left}" '
               f'height="{f.bottom - f.top}"/>')
    peak = mem.peak_event()
    if peak is not None:
        px, py = f.x(peak.index), f.y(peak.live_bytes)
        text = f"peak {bytes3(peak.live_bytes, byte_unit)} at {visible_text(peak.module) or '<root>'} ({peak.op})"
        anchor = "end" if px > (f.left + f.right) / 2 else "start"
        dx = -7 if anchor == "end" else 7
        svg.append(f'<circle class="rl-peak" cx="{_c(px)}" cy="{_c(py)}" r="4"/>')
        svg.append(f'<text class="rl-label rl-bold" x="{_c(px + dx)}" y="{_c(max(py + 4, f.top + 24))}" '
                   f'text-anchor="{anchor}">{escape(text)}</text>')
    svg.append(f'<line class="rl-cursor" x1="0" x2="0" y1="{f.top}" y2="{f.bottom}" visibility="hidden"/>')
    svg.append(f'<text class="rl-axis" x="{_c((f.left + f.right) / 2)}" y="{f.height - 6}" text-anchor="middle">'
               "operator (in the order they ran)</text>")
    svg.append(f'<text class="rl-axis" transform="translate(14 {_c((f.top + f.bottom) / 2)}) rotate(-90)" '
               'text-anchor="middle">live memory</text>')
    sampled = "" if step == 1 else f"; {n} operators shown as {len(samples)} samples, each the largest of {step}"
    html = (
        '<figure class="rl-chart rl-memory">'
        f'<figcaption><span class="rl-sub">Live inputs, activations and temporaries after each operator '
        f"(weights and buffers, {escape(nbytes(mem.weights_bytes + mem.buffers_bytes, byte_unit))}, not included)"
        f"{escape(sampled)}</span></figcaption>"
        f'<div class="rl-plot"><svg viewBox="0 0 {f.width} {f.height}" role="img" aria-label="memory timeline" '
        f'data-x0="{f.left}" data-x1="{f.right}" data-n="{n}">{"".join(svg)}</svg>'
        '<div class="rl-tip" hidden></div></div></figure>'
    )
    data = {
        "n": n,
        "peak_index": mem.peak_index,
        "peak_bytes": mem.peak_bytes,
        # [index, live bytes, operator, module, phase, live bytes as text]
        "events": [[e.index, e.live_bytes, e.op, e.module, e.phase, bytes3(e.live_bytes, byte_unit)]
                   for e in samples],
    }
    return Chart(html, data)
