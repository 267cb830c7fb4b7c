"""The roofline as a picture: the device's roofs and the model's modules (or operators) under them.

matplotlib is used through its object API only (``Figure`` on an Agg canvas, never ``pyplot``) and rc
settings only inside ``rc_context``: a call leaves no open figure, no backend switch and no changed
rcParams behind. SVG and PDF output is reproducible (fixed hash salt, no date in the metadata).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rooflens.errors import InputError
from rooflens.report.units import seconds_text

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
MODEL_AREA = 320.0  # the whole model's star
LABEL_CHARS = 26  # annotation labels longer than this keep their last path components
OP_CHARS = 24  # operator names longer than this are cut
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}
_RC = {
    "svg.hashsalt": "rooflens",  # fixed ids in SVG output
    "svg.fonttype": "path",  # glyphs as paths: the file looks the same without the fonts
    "pdf.fonttype": 42,
    "axes.unicode_minus": True,
    # the colours below are chosen for a white page: keep it white whatever style is active
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "black",
    "axes.labelcolor": "black",
    "text.color": "black",
    "xtick.color": "black",
    "ytick.color": "black",
    "legend.edgecolor": "0.8",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "savefig.bbox": "standard",  # the fixed layout, not a crop
}


@dataclass(frozen=True)
class _Point:
    label: str  # short text for an annotation
    timing: Timing
    note: str = ""  # said after the label in parentheses: "own" for a module's own operators
    counted: bool = True  # False: an operator without a FLOP formula (its FLOPs are missing, not zero)

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
    target, fmt = plot_target(path)
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
    roof = report.roofline
    points = _operator_points(report, roof) if level == "operator" else _module_points(report, roof, depth)
    with new_figure(dpi) as fig:
        _draw(fig, report, roof, points, level=level, depth=depth, annotate=annotate, title=title)
        save(fig, target, fmt, dpi)
    return target


def plot_target(path: str | Path) -> tuple[Path, str]:
    """The file to plot to and its format (by its suffix), or an error that names what is wrong."""
    target = Path(path)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        allowed = ", ".join(FORMATS)
        got = f"suffix {target.suffix!r}" if target.suffix else "no suffix"
        raise InputError(f"cannot plot to {str(target)!r}: {got}; the file name must end in one of {allowed}")
    if not target.parent.is_dir():
        raise InputError(f"cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist")
    return target, fmt


@contextlib.contextmanager
def new_figure(dpi: float, figsize: tuple[float, float] = FIGSIZE) -> Iterator[Any]:
    """A matplotlib Figure on the Agg canvas, under the plots' style (no pyplot, no global state)."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise InputError(
            "plotting needs matplotlib: pip install 'rooflens[plot]' (or pip install matplotlib)"
        ) from e
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(fig)
        yield fig


def save(fig: Any, target: Path, fmt: str, dpi: float) -> None:
    fig.savefig(target, format=fmt, dpi=dpi, metadata=_METADATA[fmt])


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
        out.append(_Point(name, t, "own" if own else ""))
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
        op = rec.op.removeprefix("aten.").lstrip("_")
        op = op if len(op) <= OP_CHARS else op[: OP_CHARS - 1] + "…"
        where = _short(rec.module, 20, keep=1) if rec.module else ""
        out.append(_Point(f"{op} · {where}" if where else op, t, counted=rec.supported))
    return out


def _short(path: str, limit: int = LABEL_CHARS, keep: int = 2) -> str:
    """``encoder.layers.encoder_layer_11.mlp.0`` -> ``…encoder_layer_11.mlp.0``: the last components that
    fit in ``limit`` characters, at least the last ``keep`` (the name alone rarely says which one it is)."""
    if len(path) <= limit:
        return path
    parts = path.split(".")
    kept = ".".join(parts[-keep:])
    for part in reversed(parts[:-keep]):
        if len(part) + 1 + len(kept) + 1 > limit:
            break
        kept = f"{part}.{kept}"
    return "…" + kept if kept != path else path


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
    fig.subplots_adjust(left=0.095, right=0.975, top=0.875, bottom=0.095 + 0.022 * len(footnotes))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")

    # ranges: every point, the whole model and the ridge, with margins; at least two decades each way
    xs = [p.timing.intensity for p in drawn] + ([total.intensity] if whole else []) + [ridge]
    ys = [p.timing.flops_per_s for p in drawn] + ([total.flops_per_s] if whole else [])
    xlo, xhi = _span(min(xs) / 2.5, max(xs) * 2.5)
    ylo = min(ys) / 3 if ys else peak / 1e3
    ylo, yhi = _span(ylo, peak * 4, keep_high=True)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)

    # the roofs, the unattainable region above them, the ridge
    roof_x = [xlo, ridge, xhi]
    roof_y = [bandwidth * xlo, peak, peak]
    ax.fill_between(roof_x, roof_y, [yhi] * 3, color="0.95", lw=0, zorder=0.5)
    ax.plot(roof_x, roof_y, color=ROOF_COLOR, lw=1.8, solid_joinstyle="miter", zorder=2)
    ax.plot([ridge, ridge], [ylo, peak], color="0.35", lw=0.9, ls=(0, (4, 3)), zorder=1.5)

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
        ax.scatter([total.intensity], [total.flops_per_s], s=MODEL_AREA, marker="*", c=MODEL_COLOR,
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
    ax.grid(True, which="major", color="0.84", lw=0.7)
    ax.grid(True, which="minor", color="0.93", lw=0.5)
    ax.set_axisbelow(True)

    # titles and footnotes
    fig.text(0.095, 0.955, title if title is not None else _title(report, roof), fontsize=12,
             fontweight="bold", ha="left", va="baseline")
    fig.text(0.095, 0.915, _subtitle(report, roof), fontsize=8.5, color="0.3", ha="left", va="baseline")
    for i, line in enumerate(reversed(footnotes)):
        fig.text(0.012, 0.012 + 0.022 * i, line, fontsize=7, color="0.35", ha="left", va="bottom")

    # what labels must not cover: the markers, the roofs, and each label placed before
    renderer = fig.canvas.get_renderer()
    marker_boxes = [_marker_box(ax, p.timing.intensity, p.timing.flops_per_s, a, fig.dpi) for p, a in zip(drawn, areas)]
    if whole:
        marker_boxes.append(_marker_box(ax, total.intensity, total.flops_per_s, MODEL_AREA * 0.5, fig.dpi))
    placer = _Placer(ax, renderer, markers=marker_boxes, lines=_line_boxes(ax, roof_x, roof_y))

    # legend: colours by bound (with their share of the time), the star, what the area means;
    # in the corner where it hides the least
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
    best: tuple[float, str] | None = None
    for loc in ("upper left", "lower right", "lower left", "upper center", "center right", "lower center"):
        legend = ax.legend(handles=handles, loc=loc, fontsize=8, title_fontsize=8, framealpha=0.92,
                           title=f"{what[level]}; marker area ∝ roofline time", borderpad=0.7)
        score = placer.score(legend.get_window_extent(renderer))
        if best is None or score < best[0]:
            best = (score, loc)
        if score == 0:
            break
    assert best is not None
    legend = ax.legend(handles=handles, loc=best[1], fontsize=8, title_fontsize=8, framealpha=0.92,
                       title=f"{what[level]}; marker area ∝ roofline time", borderpad=0.7)
    legend.set_zorder(6)
    placer.boxes.append(legend.get_window_extent(renderer))

    # the roofs' labels: the peak above the flat roof, the bandwidth along the sloped one, the ridge
    roof_text = {"fontsize": 9, "color": ROOF_COLOR, "zorder": 4}
    peak_spots = []
    for dy in (4, 12, 22):
        peak_spots += [
            {"xy": (xhi, peak), "xytext": (-6, dy), "ha": "right", "va": "bottom"},
            {"xy": (ridge, peak), "xytext": (6, dy), "ha": "left", "va": "bottom"},
            {"xy": (math.sqrt(ridge * xhi), peak), "xytext": (0, dy), "ha": "center", "va": "bottom"},
        ]
    placer.best(peak_spots, f"{roof.used_precision.value} peak {_num(peak, 4)}FLOP/s", roof_text)
    x_start = max(xlo, ylo / bandwidth)
    steps = math.log(ridge / x_start)
    if steps > 0:
        candidates = []
        for f in (0.4, 0.3, 0.5, 0.2, 0.6, 0.7, 0.1, 0.8):
            x = x_start * math.exp(f * steps)
            (x0, y0), (x1, y1) = ax.transData.transform([(x, bandwidth * x), (x * 10, bandwidth * x * 10)])
            angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
            normal = math.radians(angle + 90)
            candidates.append({
                "xy": (x, bandwidth * x), "xytext": (5 * math.cos(normal), 5 * math.sin(normal)),
                "rotation": angle, "rotation_mode": "anchor", "ha": "center", "va": "bottom",
            })
        placer.best(candidates, f"{_num(bandwidth, 4)}B/s", roof_text)
    placer.best([
        {"xy": (ridge, ylo), "xytext": (3, 5), "rotation": 90, "ha": "left", "va": "bottom"},
        {"xy": (ridge, ylo), "xytext": (-3, 5), "rotation": 90, "ha": "right", "va": "bottom"},
        {"xy": (ridge, peak), "xytext": (3, -8), "rotation": 90, "ha": "left", "va": "top"},
        {"xy": (ridge, peak), "xytext": (-3, -8), "rotation": 90, "ha": "right", "va": "top"},
    ], f"ridge {ridge:.3g} FLOP/B", {"fontsize": 8, "color": "0.3", "zorder": 4})

    # point labels: the whole model first, then the points with the most time
    if whole:
        placer.label("whole model", total.intensity, total.flops_per_s, MODEL_AREA * 0.5, fontsize=8.5, bold=True)
    for label, p, area in _to_annotate(drawn, areas, annotate):
        placer.label(label, p.timing.intensity, p.timing.flops_per_s, area)


def _to_annotate(drawn: list[_Point], areas: list[float], n: int) -> list[tuple[str, _Point, float]]:
    """The ``n`` points with the most time (``drawn`` is sorted so), one label for points that coincide
    (the same block repeated: "…layer_0.mlp.0 (+11 more here)")."""
    spots: dict[tuple[float, float], list[int]] = {}
    for i, p in enumerate(drawn):
        key = (round(math.log10(p.timing.intensity), 3), round(math.log10(p.timing.flops_per_s), 3))
        spots.setdefault(key, []).append(i)
    out = []
    for members in sorted(spots.values(), key=lambda m: m[0])[:n]:
        first = drawn[members[0]]
        notes = [first.note] if first.note else []
        if len(members) > 1:
            notes.append(f"+{len(members) - 1} more here")
        label = f"{first.label} ({', '.join(notes)})" if notes else first.label
        out.append((label, first, areas[members[0]]))
    return out


class _Placer:
    """Greedy label placement: of the spots offered, the one that covers the least of what is there."""

    def __init__(self, ax: Any, renderer: Any, *, markers: list[Any], lines: list[Any]) -> None:
        self.ax, self.renderer = ax, renderer
        self.boxes: list[Any] = []  # labels and the legend
        self.markers = markers
        self.lines = lines
        self.frame = ax.get_window_extent(renderer)

    def score(self, box: Any) -> float:
        outside = float(box.width * box.height) - _overlap(box, self.frame)
        return (
            8 * outside
            + 3 * sum(_overlap(box, b) for b in self.boxes)
            + 1 * sum(_overlap(box, m) for m in self.lines)
            + 0.5 * sum(_overlap(box, m) for m in self.markers)
        )

    def best(self, candidates: list[dict[str, Any]], text: str, style: dict[str, Any],
             final: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
        """Draw ``text`` at the first candidate that covers nothing, else at the one that covers least."""
        best: tuple[float, dict[str, Any], Any] | None = None
        for c in candidates:
            trial = self.ax.annotate(text, textcoords="offset points", **c, **style)
            box = trial.get_window_extent(self.renderer).expanded(1.04, 1.12)
            trial.remove()
            score = self.score(box)
            if best is None or score < best[0]:
                best = (score, c, box)
            if score == 0:
                break
        assert best is not None
        _, chosen, box = best
        self.ax.annotate(text, textcoords="offset points", **chosen, **style, **(final or {}))
        self.boxes.append(box)
        return chosen, box

    def label(self, text: str, x: float, y: float, area: float, *, fontsize: float = 7.5, bold: bool = False) -> None:
        radius = math.sqrt(area) / 2  # points
        candidates = []
        for dist in (radius * 0.75 + 3, radius + 14, radius + 30, radius + 50):
            for ux, uy in ((-1, 1), (1, -1), (1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)):
                scale = 1 if ux == 0 or uy == 0 else 0.75
                candidates.append({
                    "xy": (x, y), "xytext": (ux * dist * scale, uy * dist * scale),
                    "ha": "left" if ux > 0 else "right" if ux < 0 else "center",
                    "va": "bottom" if uy > 0 else "top" if uy < 0 else "center",
                })
        style = {"fontsize": fontsize, "fontweight": "bold" if bold else "normal", "color": "0.1", "zorder": 7}
        chosen, _ = self.best(candidates, text, style, final={
            "bbox": {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        })
        dx, dy = chosen["xytext"]
        if math.hypot(dx, dy) > radius + 8:  # far from its marker: a leader line
            self.ax.annotate("", xy=chosen["xy"], xytext=chosen["xytext"], textcoords="offset points", zorder=6,
                             arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.6, "shrinkA": 0,
                                         "shrinkB": radius * 0.9})


def _line_boxes(ax: Any, xs: list[float], ys: list[float], step: float = 6.0) -> list[Any]:
    """Small boxes along a polyline (in display space), for labels to keep off it."""
    from matplotlib.transforms import Bbox

    pts = ax.transData.transform(list(zip(xs, ys)))
    boxes = []
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        for i in range(n + 1):
            x, y = x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n
            boxes.append(Bbox([[x - 1.5, y - 1.5], [x + 1.5, y + 1.5]]))
    return boxes


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


def _num(value: float, digits: int = 3) -> str:
    """``digits`` significant digits and an SI prefix with a trailing space: ``19.2e12 -> '19.2 T'``, ``5 -> '5 '``."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * (1 - 0.5 * 10 ** -digits):
            return f"{value / scale:.{digits}g} {prefix}"
    return f"{value:.{digits}g} "


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
    """What the plot leaves out (points a log axis cannot show, with their share of the time), then the
    roofline's notes (a precision the device lacks, operators whose FLOPs are not counted)."""
    total = roof.total.seconds
    timed = [p for p in points if p.timing.seconds > 0 and not p.drawable]
    groups: list[tuple[list[_Point], tuple[str, str], str]]
    if level == "operator":
        groups = [
            ([p for p in timed if p.counted and p.timing.flops == 0],
             ("memory-only operator", "memory-only operators"), "no FLOPs"),
            ([p for p in timed if not p.counted and p.timing.flops == 0],
             ("operator", "operators"), "FLOPs not counted (no formula)"),
            ([p for p in timed if p.timing.flops > 0], ("operator", "operators"), "no memory traffic"),
        ]
    else:
        groups = [
            ([p for p in timed if p.timing.flops == 0], ("module", "modules"), "no FLOPs"),
            ([p for p in timed if p.timing.flops > 0], ("module", "modules"), "no memory traffic"),
        ]
    lines = []
    for skipped, nouns, why in groups:
        if skipped:
            share = sum(p.timing.seconds for p in skipped) / total if total else 0.0
            n = len(skipped)
            lines.append(f"{n} {nouns[n != 1]} ({_pct(share)} of the time) not drawn: {why}")
    for note in roof.notes:
        lines += textwrap.wrap(note[:1].upper() + note[1:], 170, max_lines=2, placeholder=" …")
    return lines
