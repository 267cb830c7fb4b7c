"""The roofline as a picture: the device's roofs and the model's modules (or operators) under them.

matplotlib is used through its object API only (``Figure`` on an Agg canvas, never ``pyplot``) and rc
settings only inside ``rc_context``: a call leaves no open figure, no backend switch and no changed
rcParams behind. SVG and PDF output is reproducible (fixed hash salt, no date in the metadata).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rooflens.errors import InputError

if TYPE_CHECKING:
    from rooflens.analysis.roofline import Roofline, Timing
    from rooflens.report.report import Report
    from rooflens.types import ModuleNode

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
LEVELS = ("module", "operator")

FIGSIZE = (9.0, 6.0)  # inches
MEMORY_COLOR = "#0072B2"  # Okabe-Ito blue
COMPUTE_COLOR = "#D55E00"  # Okabe-Ito vermillion
MODEL_COLOR = "#F0E442"  # Okabe-Ito yellow, black edge
ROOF_COLOR = "0.15"
MIN_AREA, MAX_AREA = 10.0, 900.0  # marker area in pt^2: the largest time gets MAX_AREA
LABEL_CHARS = 26  # annotation labels longer than this keep their last path components
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}
_RC = {
    "svg.hashsalt": "rooflens",  # fixed ids in SVG output
    "svg.fonttype": "path",  # glyphs as paths: the file looks the same without the fonts
    "pdf.fonttype": 42,
    "axes.unicode_minus": True,
}


@dataclass(frozen=True)
class _Point:
    label: str  # short text for an annotation
    timing: Timing

    @property
    def drawable(self) -> bool:
        """A log-log axis needs FLOPs, bytes and time."""
        t = self.timing
        return t.flops > 0 and t.bytes > 0 and t.seconds > 0


def plot_roofline(
    report: Report,
    path: str | Path,
    *,
    level: str = "module",
    depth: int | None = None,
    annotate: int = 5,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Draw ``report``'s roofline into ``path`` (PNG, SVG or PDF by its suffix) and return the path.

    Log-log axes: arithmetic intensity (FLOP/byte) against FLOP/s. The device's memory roof
    (bandwidth x intensity) rises to the ridge point, the compute roof (peak at the report's precision)
    runs flat after it. One point per leaf module that ran (``level="module"``; with ``depth``, the
    modules at that depth and the shallower leaves, and the operators that non-leaf modules run
    themselves, as "path (own)") or per operator (``level="operator"``), at its intensity and its
    FLOPs / roofline time; the marker's area follows its roofline time, its colour its bound. A star
    marks the whole model. The ``annotate`` points with the most time are labelled. Points without
    FLOPs cannot sit on a log axis: a footnote says how many were left out and what share of the time
    they hold.
    """
    target = Path(path)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        allowed = ", ".join(FORMATS)
        got = f"suffix {target.suffix!r}" if target.suffix else "no suffix"
        raise InputError(f"cannot plot to {str(target)!r}: {got}; the file name must end in one of {allowed}")
    if level not in LEVELS:
        raise InputError(f"unknown plot level {level!r}; choose one of {', '.join(LEVELS)}")
    if depth is not None:
        if level != "module":
            raise InputError("depth applies to level='module' only")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise InputError(f"depth must be a whole number >= 0, got {depth!r}")
    if isinstance(annotate, bool) or not isinstance(annotate, int) or annotate < 0:
        raise InputError(f"annotate must be a whole number >= 0, got {annotate!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or dpi <= 0:
        raise InputError(f"dpi must be a positive number, got {dpi!r}")
    if report.hardware is None:
        raise InputError(
            "this report has no hardware, so there is no roofline to plot: "
            "analyze(..., hardware='a4000') or report.with_hardware('a4000')"
        )
    if not target.parent.is_dir():
        raise InputError(f"cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist")

    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise InputError(
            "plotting needs matplotlib: pip install 'rooflens[plot]' (or pip install matplotlib)"
        ) from e

    roof = report.roofline
    points = _operator_points(report, roof) if level == "operator" else _module_points(report, roof, depth)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=FIGSIZE, dpi=dpi)
        FigureCanvasAgg(fig)
        _draw(fig, report, roof, points, level=level, depth=depth, annotate=annotate, title=title)
        fig.savefig(target, format=fmt, dpi=dpi, metadata=_METADATA[fmt], facecolor="white")
    return target


# ---- the points ---------------------------------------------------------------------------------
def _module_points(report: Report, roof: Roofline, depth: int | None) -> list[_Point]:
    """Operator records grouped so that the groups split the whole model's time, in first-run order.

    A record goes to its module when that is a leaf (or sits at ``depth``), to the ancestor at ``depth``
    when it runs deeper, and to "path (own)" when a module with children runs it itself (a residual add,
    the attention of ``nn.MultiheadAttention``).
    """
    groups: dict[tuple[str, bool], Timing] = {}
    for rec, t in zip(report.records, roof.ops, strict=True):
        key = _group(rec.module, report.modules, depth)
        groups[key] = groups[key] + t if key in groups else t
    out = []
    for (module, own), t in groups.items():
        name = _short(module) if module else report.model
        out.append(_Point(f"{name} (own)" if own else name, t))
    return out


def _group(path: str, modules: Mapping[str, ModuleNode], depth: int | None) -> tuple[str, bool]:
    """(module path, whether it stands for that module's own operators only)."""
    d = path.count(".") + 1 if path else 0
    if depth is not None and d >= depth:
        return ".".join(path.split(".")[:depth]), False
    node = modules.get(path)
    return path, bool(node is not None and node.children)


def _operator_points(report: Report, roof: Roofline) -> list[_Point]:
    out = []
    for rec, t in zip(report.records, roof.ops, strict=True):
        op = rec.op.removeprefix("aten.")
        where = _short(rec.module, 20) if rec.module else ""
        out.append(_Point(f"{op} · {where}" if where else op, t))
    return out


def _short(path: str, limit: int = LABEL_CHARS) -> str:
    """``encoder.layers.encoder_layer_11.mlp.0`` -> ``…encoder_layer_11.mlp.0``: the last components that fit."""
    if len(path) <= limit:
        return path
    parts = path.split(".")
    kept = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(kept) + 1 > limit:
            break
        kept = f"{part}.{kept}"
    return "…" + kept


# ---- the figure ---------------------------------------------------------------------------------
def _draw(
    fig: Any,
    report: Report,
    roof: Roofline,
    points: list[_Point],
    *,
    level: str,
    depth: int | None,
    annotate: int,
    title: str | None,
) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    peak, bandwidth, ridge = roof.peak_flops_per_s, roof.bandwidth_bytes_per_s, roof.ridge_point
    drawn = sorted((p for p in points if p.drawable), key=lambda p: -p.timing.seconds)
    total = roof.total
    whole = total.flops > 0 and total.bytes > 0 and total.seconds > 0

    footnotes = _footnotes(points, roof, level)
    bottom = 0.095 + 0.022 * len(footnotes)
    fig.subplots_adjust(left=0.095, right=0.975, top=0.875, bottom=bottom)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")

    # ranges: every point, the whole model and the ridge, with margins; at least two decades each way
    xs = [p.timing.intensity for p in drawn] + ([total.intensity] if whole else []) + [ridge]
    ys = [p.timing.flops_per_s for p in drawn] + ([total.flops_per_s] if whole else [])
    xlo, xhi = _span(min(xs) / 2.5, max(xs) * 2.5)
    ylo = min(ys) / 3 if ys else peak / 1e3
    ylo, yhi = _span(min(ylo, bandwidth * xlo * 1.5), peak * 2.2, keep_high=True)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)

    # the roofs, the unattainable region above them, the ridge
    roof_x = [xlo, ridge, xhi]
    roof_y = [bandwidth * xlo, peak, peak]
    ax.fill_between(roof_x, roof_y, [yhi] * 3, color="0.94", lw=0, zorder=0)
    ax.plot(roof_x, roof_y, color=ROOF_COLOR, lw=1.8, solid_joinstyle="miter", zorder=2)
    ax.plot([ridge, ridge], [ylo, peak], color="0.35", lw=0.9, ls=(0, (4, 3)), zorder=1.5)

    fixed = []  # texts the annotations must not cover
    prec = roof.used_precision.value
    fixed.append(ax.annotate(
        f"{prec} peak {_num(peak)}FLOP/s", xy=(xhi, peak), xytext=(-6, 4), textcoords="offset points",
        ha="right", va="bottom", fontsize=9, color=ROOF_COLOR,
    ))
    # bandwidth label above the sloped roof, along it, a third of the way along its visible part
    x_start = max(xlo, ylo / bandwidth)
    x_bw = math.exp(math.log(x_start) + 0.4 * (math.log(ridge) - math.log(x_start)))
    (x0, y0), (x1, y1) = ax.transData.transform([(x_bw, bandwidth * x_bw), (x_bw * 10, bandwidth * x_bw * 10)])
    angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
    normal = math.radians(angle + 90)
    fixed.append(ax.annotate(
        f"{_num(bandwidth)}B/s", xy=(x_bw, bandwidth * x_bw),
        xytext=(4 * math.cos(normal), 4 * math.sin(normal)), textcoords="offset points",
        rotation=angle, rotation_mode="anchor", ha="center", va="bottom", fontsize=9, color=ROOF_COLOR,
    ))
    fixed.append(ax.annotate(
        f"ridge {ridge:.3g} FLOP/B", xy=(ridge, ylo), xytext=(3, 5), textcoords="offset points",
        rotation=90, ha="left", va="bottom", fontsize=8, color="0.3",
    ))

    # the points: largest first so that small ones stay visible on top
    seconds_max = max((p.timing.seconds for p in drawn), default=0.0)
    areas = [_area(p.timing.seconds, seconds_max) for p in drawn]
    colors = [MEMORY_COLOR if p.timing.bound.value == "memory" else COMPUTE_COLOR for p in drawn]
    if drawn:
        ax.scatter(
            [p.timing.intensity for p in drawn], [p.timing.flops_per_s for p in drawn], s=areas, c=colors,
            alpha=0.72, edgecolors="white", linewidths=0.6, zorder=3,
        )
    if whole:
        ax.scatter([total.intensity], [total.flops_per_s], s=320, marker="*", c=MODEL_COLOR,
                   edgecolors="black", linewidths=0.9, zorder=5)

    # axes, ticks, grid
    ax.set_xlabel("arithmetic intensity (FLOP/byte)", fontsize=10)
    ax.set_ylabel("performance (FLOP/s)", fontsize=10)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, numticks=30))
        axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=30))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: _num(v).strip()))
        axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=9)
    ax.grid(True, which="major", color="0.82", lw=0.7, zorder=0)
    ax.grid(True, which="minor", color="0.92", lw=0.5, zorder=0)
    ax.set_axisbelow(True)

    # legend: colours by bound (with their share of the time), the star, what the area means
    shares = roof.bound_share()
    handles = [
        Line2D([], [], ls="", marker="o", ms=8, mfc=MEMORY_COLOR, mec="white", alpha=0.8,
               label=f"memory-bound ({_pct(shares['memory'])} of the time)"),
        Line2D([], [], ls="", marker="o", ms=8, mfc=COMPUTE_COLOR, mec="white", alpha=0.8,
               label=f"compute-bound ({_pct(shares['compute'])} of the time)"),
    ]
    if whole:
        handles.append(Line2D([], [], ls="", marker="*", ms=14, mfc=MODEL_COLOR, mec="black", mew=0.9,
                              label="whole model"))
    what = {"operator": "operators", "module": "leaf modules" if depth is None else f"modules to depth {depth}"}
    legend = ax.legend(handles=handles, loc="lower right", fontsize=8, title_fontsize=8, framealpha=0.92,
                       title=f"{what[level]}; marker area ∝ roofline time", borderpad=0.7)
    legend.set_zorder(6)

    # titles and footnotes
    fig.text(0.095, 0.955, title if title is not None else _title(report, roof), fontsize=12,
             fontweight="bold", ha="left", va="baseline")
    fig.text(0.095, 0.915, _subtitle(report, roof), fontsize=8.5, color="0.3", ha="left", va="baseline")
    for i, line in enumerate(reversed(footnotes)):
        fig.text(0.012, 0.012 + 0.022 * i, line, fontsize=7, color="0.35", ha="left", va="bottom")

    # labels: the whole model first, then the points with the most time
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fixed] + [legend.get_window_extent(renderer)]
    markers = [_marker_box(ax, p.timing.intensity, p.timing.flops_per_s, a, fig.dpi) for p, a in zip(drawn, areas)]
    placer = _Placer(ax, renderer, boxes, markers)
    if whole:
        placer.place("whole model", total.intensity, total.flops_per_s, 320 * 0.55, fontsize=8.5, bold=True)
    for p, area in list(zip(drawn, areas))[:annotate]:
        placer.place(p.label, p.timing.intensity, p.timing.flops_per_s, area)


class _Placer:
    """Greedy label placement: the first spot around the point that covers no other label, box or marker."""

    def __init__(self, ax: Any, renderer: Any, boxes: list[Any], markers: list[Any]) -> None:
        self.ax, self.renderer = ax, renderer
        self.boxes = list(boxes)
        self.markers = markers
        self.frame = ax.get_window_extent(renderer)

    def place(self, text: str, x: float, y: float, area: float, *, fontsize: float = 7.5, bold: bool = False) -> None:
        radius = math.sqrt(area) / 2  # points
        style = {"fontsize": fontsize, "fontweight": "bold" if bold else "normal", "color": "0.1"}
        best: tuple[float, Any] | None = None
        for dist in (radius * 0.75 + 3, radius + 14, radius + 30, radius + 50):
            for ux, uy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)):
                scale = 1 if ux == 0 or uy == 0 else 0.75
                offset = (ux * dist * scale, uy * dist * scale)
                ha = "left" if ux > 0 else "right" if ux < 0 else "center"
                va = "bottom" if uy > 0 else "top" if uy < 0 else "center"
                trial = self.ax.annotate(text, xy=(x, y), xytext=offset, textcoords="offset points",
                                         ha=ha, va=va, **style)
                box = trial.get_window_extent(self.renderer).expanded(1.06, 1.15)
                trial.remove()
                score = self._score(box)
                if best is None or score < best[0]:
                    best = (score, (offset, ha, va, dist, box))
                if score == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        offset, ha, va, dist, box = best[1]
        leader = dist > radius + 5
        self.ax.annotate(
            text, xy=(x, y), xytext=offset, textcoords="offset points", ha=ha, va=va, zorder=7,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.6, "shrinkA": 0, "shrinkB": radius * 0.9}
            if leader else None,
            **style,
        )
        self.boxes.append(box)

    def _score(self, box: Any) -> float:
        outside = box.width * box.height - _overlap(box, self.frame)
        covered = sum(_overlap(box, b) for b in self.boxes)
        hidden = sum(_overlap(box, m) for m in self.markers)
        return 4 * outside + 2 * covered + 0.3 * hidden


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _marker_box(ax: Any, x: float, y: float, area: float, dpi: float) -> Any:
    from matplotlib.transforms import Bbox

    cx, cy = ax.transData.transform((x, y))
    r = math.sqrt(area) / 2 * dpi / 72
    return Bbox([[cx - r, cy - r], [cx + r, cy + r]])


def _area(seconds: float, seconds_max: float) -> float:
    """Marker area proportional to time, the largest at MAX_AREA, none below MIN_AREA."""
    if seconds_max <= 0:
        return MIN_AREA
    return max(MIN_AREA, MAX_AREA * seconds / seconds_max)


def _span(lo: float, hi: float, *, keep_high: bool = False) -> tuple[float, float]:
    """Widen ``lo``..``hi`` to at least two decades (downwards only with ``keep_high``)."""
    decades = math.log10(hi / lo)
    if decades < 2:
        if keep_high:
            lo = hi / 100
        else:
            grow = 10 ** ((2 - decades) / 2)
            lo, hi = lo / grow, hi * grow
    return lo, hi


# ---- text -----------------------------------------------------------------------------------------
_PREFIXES = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def _num(value: float) -> str:
    """Three significant digits and an SI prefix with a trailing space: ``19.2e12 -> '19.2 T'``, ``5 -> '5 '``."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * 0.9995:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g} "


def _pct(share: float) -> str:
    if 0 < share < 0.001:
        return "<0.1%"
    if 0.999 < share < 1:
        return ">99.9%"
    return f"{share:.1%}".replace(".0%", "%")


def _title(report: Report, roof: Roofline) -> str:
    device = roof.hardware.name
    asked, used = roof.precision.value, roof.used_precision.value
    precision = asked if asked == used else f"{asked} (at the {used} peak)"
    return f"{report.model} on {device}, {precision}"


def _subtitle(report: Report, roof: Roofline) -> str:
    t = roof.total
    from rooflens.report.units import seconds_text

    parts = []
    if report.inputs:
        parts.append("input " + ", ".join("×".join(str(s) for s in i.shape) or "scalar" for i in report.inputs[:3])
                     + (" …" if len(report.inputs) > 3 else ""))
    parts += [
        f"{_num(t.flops)}FLOP",
        f"{_num(t.bytes)}B moved",
        f"roofline time {seconds_text(t.seconds)}",
        f"{_num(t.flops_per_s)}FLOP/s ({_pct(t.flops_per_s / roof.peak_flops_per_s)} of peak)",
    ]
    return "  ·  ".join(parts)


def _footnotes(points: list[_Point], roof: Roofline, level: str) -> list[str]:
    lines = []
    total = roof.total.seconds
    noun = ("memory-only operator", "memory-only operators") if level == "operator" else ("module", "modules")
    no_flops = [p for p in points if p.timing.flops == 0 and p.timing.seconds > 0]
    no_bytes = [p for p in points if p.timing.flops > 0 and p.timing.bytes == 0 and p.timing.seconds > 0]
    for skipped, why, nouns in (
        (no_flops, "no FLOPs", noun),
        (no_bytes, "no memory traffic", ("operator", "operators") if level == "operator" else noun),
    ):
        if skipped:
            share = sum(p.timing.seconds for p in skipped) / total if total else 0.0
            n = len(skipped)
            lines.append(f"{n} {nouns[n != 1]} ({_pct(share)} of the time) not drawn: {why}")
    for note in roof.notes:
        lines += textwrap.wrap(note[:1].upper() + note[1:], 170)
    return lines
