"""The HTML report: a self-contained page (nothing fetched), escaped names, the numbers in its JSON and its
cells, one roofline point per leaf module, a golden page; and the page in a real headless browser
(Playwright driving the system's Chromium): no console errors or requests, the tree opens, columns sort
by value, points show their numbers on hover.

The browser tests skip, saying what to install, where Playwright or Chromium is missing
(``apt-get install chromium`` and ``pip install playwright``; never ``playwright install``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rooflens
from rooflens.errors import InputError
from rooflens.report.document import (
    RENDERERS,
    Interactive,
    MemoryTimeline,
    render_html,
    render_markdown,
    render_table,
    report_document,
)
from rooflens.report.hardware_render import catalogue_document
from rooflens.report.html_report import Section, html_fragment, html_page
from rooflens.report.memory_render import memory_document
from rooflens.report.roofline_render import comparison_document

from _helpers import tiny_net

A4000_PEAK, A4000_BANDWIDTH = 19.2e12, 448e9  # fp32 FLOP/s and B/s (hardware/data; docs/hardware.md)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture(scope="module")
def small() -> rooflens.Report:
    """The hand-checked model: Linear(8,16) - ReLU - Linear(16,4) on a batch of 2, on the A4000."""
    return rooflens.analyze(mlp(), input_size=(2, 8), hardware="a4000", name="mlp")


@pytest.fixture(scope="module")
def tiny() -> rooflens.Report:
    return rooflens.analyze(tiny_net(), input_size=(1, 3, 32, 32), hardware="a4000", name="TinyNet")


@pytest.fixture(scope="module")
def tiny_memory() -> rooflens.MemoryReport:
    return rooflens.memory(tiny_net(), input_size=(1, 3, 32, 32), name="TinyNet")


@pytest.fixture(scope="module")
def full_page(tiny, tiny_memory) -> str:
    """Every part: roofline on two devices, tree, memory timeline, device table, an extra section."""
    rows = [{"module": "block.conv", "energy_joules": 2.5e-6, "dram_bytes": 123456, "share": 0.42}]
    return html_page(tiny, memory=tiny_memory, devices=[tiny.with_hardware("t4")], sections=[("Extra", rows)])


def data_of(page: str) -> dict[str, Any]:
    """The page's JSON block (one per report)."""
    blocks = re.findall(r'<script type="application/json" class="rl-data">(.*?)</script>', page, re.DOTALL)
    assert len(blocks) == 1
    return json.loads(blocks[0])


class Tags(HTMLParser):
    """Every start tag with its attributes; the text inside <script> and <style> is not markup."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


# ---- the page in Python ------------------------------------------------------------------------------------

EXTERNAL = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:|//|ftp:)|@import|url\s*\(""", re.IGNORECASE)


def test_page_is_self_contained(full_page):
    assert full_page.startswith("<!DOCTYPE html>") and full_page.endswith("</html>\n")
    assert not EXTERNAL.search(full_page), EXTERNAL.search(full_page)
    for tag, attrs in Tags(full_page).tags:
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)
    script = full_page[full_page.rindex("<script>"):]
    for fetch in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "EventSource", "sendBeacon"):
        assert fetch not in script, fetch
    assert full_page.count("<style>") == 1 and full_page.count("<script>") == 1  # the assets, inline, once


def test_numbers_in_the_json_match_the_report_by_hand(small):
    # MACs (batch 2): Linear(8,16) 2*8*16 = 256; Linear(16,4) 2*16*4 = 128; total 384.
    # FLOPs (fma): 2*256 + 2*16 bias adds = 544; ReLU 2*16 = 32; 2*128 + 2*4 = 264; total 840.
    # Bytes (fp32): Linear(8,16) reads x 2*8*4 = 64, W 128*4 = 512, b 16*4 = 64 and writes 2*16*4 = 128;
    # ReLU reads and writes 128; Linear(16,4) reads 128 + 64*4 + 4*4 = 400 and writes 2*4*4 = 32.
    data = data_of(small.to_html())
    total = data["report"]["total"]
    assert (total["macs"], total["flops"], total["bytes_read"], total["bytes_written"]) == (384, 840, 1168, 288)
    assert data["report"] == json.loads(small.to_json(operators=False))  # the report's JSON, as it is
    (chart,) = data["charts"]
    assert chart["device"] == "a4000" and chart["peak_flops_per_s"] == A4000_PEAK
    assert chart["ridge_point"] == pytest.approx(A4000_PEAK / A4000_BANDWIDTH)
    points = {p["path"]: p for p in chart["points"]}
    assert list(points) == ["0", "2", "1"]  # one per leaf module, the most time first (drawn first: below)
    for path, flops, nbytes in (("0", 544, 768), ("1", 32, 256), ("2", 264, 432)):
        p = points[path]
        assert (p["flops"], p["bytes"], p["own"]) == (flops, nbytes, False)
        assert p["seconds"] == pytest.approx(nbytes / A4000_BANDWIDTH)  # memory-bound: below the ridge
        assert p["intensity"] == pytest.approx(flops / nbytes) and p["bound"] == "memory"
        assert p["flops_per_s"] == pytest.approx(flops / (nbytes / A4000_BANDWIDTH))
    assert chart["whole_model"]["flops"] == 840
    tip = dict(points["0"]["tip"])
    assert tip["Module"] == "0" and tip["Type"] == "Linear" and tip["FLOPs"] == "544" and tip["Bytes"] == "768 B"


def test_one_roofline_point_per_leaf_module(small, tiny):
    page = small.to_html()
    assert len(re.findall(r'<circle class="rl-pt rl-(?:mem|cmp)"', page)) == 3
    assert page.count('class="rl-pt rl-star"') == 1  # and the whole model
    # TinyNet: every leaf that ran and has FLOPs and bytes (flatten is a view: nothing to draw); the block
    # runs its residual add itself: "block (own)"
    data = data_of(tiny.to_html())
    leaves = [p for p, n in tiny.modules.items() if not n.children and n.calls and n.cumulative.flops]
    drawn = [p["path"] for p in data["charts"][0]["points"] if not p["own"]]
    assert sorted(drawn) == sorted(leaves)
    assert [p["label"] for p in data["charts"][0]["points"] if p["own"]] == ["block (own)"]
    assert data["charts"][0]["not_drawn"] == []


def test_cells_sort_by_base_units(small):
    page = small.to_html()
    rows = re.findall(r'<tr data-path="([^"]*)".*?</tr>', page)
    assert rows == ["", "0", "1", "2"]
    row0 = re.search(r'<tr data-path="0".*?</tr>', page).group(0)
    values = re.findall(r'<td class="rl-num"(?: data-v="([^"]*)")?>([^<]*)</td>', row0)
    tree = re.search(r'<table class="rl-table rl-tree".*?</table>', page, re.DOTALL).group(0)
    heads = re.findall(r'<th data-type="(?:num|text)" scope="col">([^<]*)</th>', tree)[1:]
    numeric = dict(zip([h for h in heads if h not in ("Type", "Bound", "Output shape")], values, strict=True))
    assert numeric["Params"] == ("144", "144") and numeric["FLOPs"] == ("544", "544")
    assert numeric["Read"] == ("640", "640 B") and numeric["Written"] == ("128", "128 B")
    assert float(numeric["Time"][0]) == pytest.approx(768 / A4000_BANDWIDTH) and numeric["Time"][1] == "1.71 ns"


class Hostile(nn.Module):
    """Module and model names that are markup, script and JSON breakers."""

    NAMES = ("<script>alert(1)</script>", "a&amp;b", "q\"u'o`te", "x\ny", "</script><!--", "\u2028sep")

    def __init__(self) -> None:
        super().__init__()
        for name in self.NAMES:
            self.add_module(name, nn.Linear(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.NAMES:
            x = getattr(self, name)(x)
        return x


@pytest.fixture(scope="module")
def hostile_page() -> str:
    report = rooflens.analyze(Hostile(), input_size=(2, 4), hardware="a4000", name="<b>evil</b> & \"co\"")
    sections = [Section("<i>advice</i>", [{"module": "<script>alert(2)</script>", "note": "a & b"}], note="<u>x</u>")]
    return report.to_html(sections=sections)


def test_hostile_names_are_escaped(hostile_page):
    tags = [t for t, _ in Tags(hostile_page).tags]
    assert tags.count("script") == 2 and tags.count("style") == 1  # the data block and the script, no more
    assert "u" not in tags and "<b>evil" not in hostile_page and "<i>advice" not in hostile_page
    assert "&lt;b&gt;evil&lt;/b&gt; &amp; &quot;co&quot;" in hostile_page and "&lt;i&gt;advice&lt;/i&gt;" in hostile_page
    assert "<script>alert" not in hostile_page and "</script><!--" not in hostile_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_page and "a&amp;amp;b" in hostile_page
    data = data_of(hostile_page)  # the JSON block holds the names as they are
    assert [p["path"] for p in data["charts"][0]["points"]] == list(Hostile.NAMES)
    assert data["report"]["model"] == "<b>evil</b> & \"co\""
    block = hostile_page[hostile_page.index('class="rl-data">'):]
    assert "\u2028" not in block[:block.index("</script>")]  # breaks old JavaScript parsers: written as \\u2028


def test_golden_page(small, golden):
    page = small.to_html().replace(json.dumps(torch.__version__), '"TORCH"')
    golden("html_report_mlp.html", page)
    assert small.to_html() == small.to_html()  # nothing random, no dates


def test_to_html_writes_and_returns(small, tmp_path):
    target = small.to_html(tmp_path / "report.html")
    assert target == tmp_path / "report.html" and target.read_text(encoding="utf-8") == small.to_html()
    assert small.to_html(str(tmp_path / "b.html"), depth=0, byte_unit="binary").exists()
    with pytest.raises(InputError, match="does not exist"):
        small.to_html(tmp_path / "missing" / "report.html")
    with pytest.raises(InputError, match="depth"):
        small.to_html(depth=-1)


def test_jupyter_fragment(small):
    fragment = small._repr_html_()
    assert fragment.startswith('<div class="rooflens rl-inline">') and fragment.endswith("</div>")
    assert "<html" not in fragment and "<style>" in fragment and "<script>" in fragment
    assert ' id="' not in fragment  # nothing that two reports in one notebook could share
    assert html_fragment(small) == fragment


def test_without_hardware_and_errors(small):
    bare = rooflens.analyze(mlp(), input_size=(2, 8), name="mlp")
    page = bare.to_html()
    assert "has no hardware" in page and "<circle" not in page and data_of(page)["charts"] == []
    with pytest.raises(InputError, match="has none"):
        small.to_html(devices=[bare])
    with pytest.raises(InputError, match="one model"):
        small.to_html(devices=[rooflens.analyze(nn.Linear(8, 2), input_size=(2, 8), hardware="t4")])


@dataclass(frozen=True)
class Finding:
    rule: str
    module: str
    saved_bytes: int
    estimate_seconds: float


class Energy:
    def as_dict(self) -> dict[str, Any]:
        return {"module": "fc", "compute_joules": 3.2e-9, "dram_joules": 1.5e-6, "dram_share": 0.998}


def test_sections_hook(small):
    page = small.to_html(sections=[
        Section.of("Advice", [Finding("G4", "1", 4096, 1.5e-6)], note="See docs/advice.md."),
        ("Energy", [Energy()]),
    ])
    assert "<h2>Advice</h2>" in page and "<h2>Energy</h2>" in page and "See docs/advice.md." in page
    assert '<th data-type="num" scope="col">Saved bytes</th>' in page and '<td class="rl-num" data-v="4096">4.10 KB' in page
    assert "1.50 µs" in page and "3.2 nJ" in page and "1.5 µJ" in page and "99.8%" in page
    with pytest.raises(InputError, match="as_dict"):
        small.to_html(sections=[("Bad", [object()])])
    with pytest.raises(InputError, match="Section or a"):
        small.to_html(sections=["nope"])  # type: ignore[list-item]


def test_every_command_page_has_the_same_style(tiny, tiny_memory):
    docs = [
        report_document(tiny),
        comparison_document([tiny, tiny.with_hardware("t4")]),
        memory_document(tiny_memory),
        catalogue_document(rooflens.hardware.devices()[:3]),
    ]
    style = html_page(tiny)[html_page(tiny).index("<style>"):html_page(tiny).index("</style>")]
    for doc in docs:
        page = render_html(doc)
        assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n") and style in page
        assert '<main class="rooflens rl-page">' in page and not EXTERNAL.search(page)
        assert page.count("<h1>") == 1
    assert 'class="rl-table rl-sort"' in render_html(docs[3])  # a Grid: sortable
    # the HTML-only blocks: the interactive report and the timeline; nothing in the other formats
    extra = report_document(tiny)
    extra = type(extra)(extra.title, (Interactive(tiny, devices=[tiny.with_hardware("t4")]),
                                      MemoryTimeline(tiny_memory)), extra.data)
    assert render_table(extra, 80).strip() == "" and render_markdown(extra) == ""
    page = RENDERERS["html"](extra, 80)
    assert page.count('class="rl-data"') == 2 and 'figure class="rl-chart rl-memory"' in page


# ---- the page in a real browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser tests need Playwright: pip install playwright (and apt-get install chromium; "
                    "they use the system's Chromium, never `playwright install`)")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("the browser tests need Chromium: apt-get install chromium (and pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@dataclass
class Opened:
    page: Any
    problems: list[str]


def open_page(browser: Any, tmp_path: Path, html: str) -> Opened:
    """``html`` opened from a file; console errors and warnings, script errors, dialogs and every request
    but the page itself are collected."""
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != path.as_uri() else None)
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    return Opened(page, problems)


def visible_paths(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "table.rl-tree tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.path)"
    )


def test_browser_loads_without_errors_or_requests(browser, tmp_path, full_page, hostile_page):
    for html in (full_page, hostile_page):
        opened = open_page(browser, tmp_path, html)
        assert opened.page.eval_on_selector(".rooflens", "r => r.hasAttribute('data-rl-ready')")
        opened.page.close()
        assert opened.problems == []


def test_browser_expands_tree_nodes(browser, tmp_path, tiny):
    opened = open_page(browser, tmp_path, tiny.to_html(depth=0))
    page = opened.page
    assert visible_paths(page) == [""]
    page.click('tr[data-path=""] .rl-tog')
    shown = visible_paths(page)
    assert "block" in shown and "conv" in shown and "block.conv" not in shown
    page.click('tr[data-path="block"] .rl-tog')
    assert {"block.conv", "block.bn", "block.relu"} <= set(visible_paths(page))
    page.click('tr[data-path="block"] .rl-tog')
    assert "block.conv" not in visible_paths(page)
    page.click("button[data-act=expand]")
    assert visible_paths(page) == list(tiny.modules)
    page.click("button[data-act=collapse]")
    assert visible_paths(page) == ["", *tiny.root.children]
    assert opened.problems == []


def test_browser_sorts_by_value(browser, tmp_path, tiny):
    opened = open_page(browser, tmp_path, tiny.to_html())
    page = opened.page
    children = list(tiny.root.children)
    flops = {p: tiny.modules[p].cumulative.flops for p in children}

    def order() -> list[str]:
        return [p for p in visible_paths(page) if p in flops]

    page.click("table.rl-tree th:has-text('FLOPs')")
    assert order() == sorted(children, key=lambda p: (-flops[p], children.index(p)))  # largest first
    texts = page.eval_on_selector_all("table.rl-tree th", "ths => ths.map(t => t.textContent)")
    col = texts.index("FLOPs")
    shown = page.eval_on_selector_all(
        "table.rl-tree tbody tr", f"rows => rows.filter(r => !r.hidden).map(r => r.cells[{col}].textContent)")
    assert shown != sorted(shown, reverse=True)  # the text's order is not the value's ("980 K" < "1.2 M")
    page.click("table.rl-tree th:has-text('FLOPs')")
    uncalled = {p for p in children if not tiny.modules[p].calls}  # no value: last either way
    assert uncalled == {"aux"}
    assert order() == sorted(children, key=lambda p: (p in uncalled, flops[p], children.index(p)))
    assert visible_paths(page)[0] == ""  # the root stays on top; children stay under their parent
    paths = visible_paths(page)
    assert paths.index("block.conv") == paths.index("block") + 1 + sorted(
        ["block.conv", "block.bn", "block.relu"], key=lambda p: tiny.modules[p].cumulative.flops).index("block.conv")
    page.click("table.rl-tree th:has-text('Module')")  # text: ascending first
    names = [tiny.modules[p].name for p in order()]
    assert names == sorted(names)
    assert opened.problems == []


def test_browser_roofline_points_and_hover(browser, tmp_path, small, tiny):
    for report in (small, tiny):
        data = data_of(report.to_html())
        opened = open_page(browser, tmp_path, report.to_html())
        page = opened.page
        figure = page.locator("figure.rl-roofline")
        assert figure.locator("circle.rl-pt").count() == len(data["charts"][0]["points"])
        top = figure.locator("circle.rl-pt").last  # drawn last: the least time, on top of the others
        top.hover()
        tip = figure.locator(".rl-tip")
        assert tip.is_visible()
        point = data["charts"][0]["points"][int(top.get_attribute("data-i"))]
        text = tip.inner_text()
        for label in ("Module", "FLOPs", "Bytes", "Intensity", "Time"):
            assert label in text
        assert point["label"] in text and dict(point["tip"])["FLOPs"] in text
        page.mouse.move(1, 1)
        assert not tip.is_visible()
        top.click()  # finds its module in the table
        assert page.locator(f'tr[data-path="{point["path"]}"]').is_visible()
        assert opened.problems == []
    small_page = open_page(browser, tmp_path, small.to_html())
    assert small_page.page.locator("circle.rl-pt").count() == 3  # Linear, ReLU, Linear


def test_browser_memory_devices_and_sections(browser, tmp_path, full_page):
    opened = open_page(browser, tmp_path, full_page)
    page = opened.page
    svg = page.locator("figure.rl-memory svg")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    assert "Live" in page.locator("figure.rl-memory .rl-tip").inner_text()
    figures = page.locator("figure.rl-roofline")
    assert figures.nth(0).is_visible() and not figures.nth(1).is_visible()
    page.click(".rl-tabs button[data-chart='1']")
    assert figures.nth(1).is_visible() and not figures.nth(0).is_visible()
    figures.nth(1).locator("circle.rl-pt").last.hover()
    assert "Module" in figures.nth(1).locator(".rl-tip").inner_text()
    # the device table sorts by value: t4 is the slower
    table = page.locator("section:has(h2:text('Devices')) table")
    table.locator("th:has-text('Roofline time')").click()
    assert table.locator("tbody tr td:first-child").all_inner_texts() == ["t4", "a4000"]
    extra = page.locator("section:has(h2:text('Extra')) table")
    assert extra.locator("td").all_inner_texts()[:2] == ["block.conv", "2.5 µJ"]
    for title in ("Advice", "Energy"):  # every page's own sections
        assert page.locator(f"section:has(h2:text('{title}')) table tbody tr").count() > 0
    assert opened.problems == []


def test_browser_two_fragments_in_one_notebook(browser, tmp_path, small, tiny):
    """As Jupyter shows two reports: each fragment brings its script; each works on its own."""
    html = f"<!DOCTYPE html><html><body>{tiny._repr_html_()}{small._repr_html_()}</body></html>"
    opened = open_page(browser, tmp_path, html)
    page = opened.page
    roots = page.locator(".rooflens")
    assert roots.count() == 2
    assert page.eval_on_selector_all(".rooflens", "rs => rs.map(r => r.hasAttribute('data-rl-ready'))") == [True] * 2
    second = roots.nth(1)
    second.locator("button[data-act=collapse]").click()
    first_rows = roots.nth(0).locator("table.rl-tree tbody tr:not([hidden])").count()
    assert first_rows == len(tiny.modules)  # the first report's tree is untouched
    second.locator("circle.rl-pt").last.hover()
    assert second.locator(".rl-tip").is_visible() and not roots.nth(0).locator(".rl-tip").is_visible()
    page.click("table.rl-tree th:has-text('FLOPs') >> nth=1")
    assert opened.problems == []
