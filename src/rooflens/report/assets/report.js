/* rooflens HTML report: tree, sorting, chart hover, device tabs. No dependencies, no global names: each
   .rooflens root is set up once (data-rl-ready), so the script can run once per report in a notebook.
   Text from the data goes into the page through textContent only, never as markup. */
(function () {
  "use strict";
  var PREFIX = {"": 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, Ki: 1024, Mi: 1048576,
    Gi: 1073741824, Ti: 1099511627776, Pi: 1125899906842624, m: 1e-3, "\u00b5": 1e-6, "\u03bc": 1e-6, u: 1e-6,
    n: 1e-9, p: 1e-12};
  var QUANTITY = /^\s*([-+]?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|[kKMGTPEm\u00b5\u03bcunp])?/;

  /* a number written with an SI or binary prefix and a unit: "19.2 T", "448 GB/s", "1.23 ms", "12.5%" */
  function quantity(text) {
    var m = QUANTITY.exec(text);
    return m ? parseFloat(m[1].replace(/,/g, "")) * PREFIX[m[2] || ""] : NaN;
  }

  function cellKey(row, col, numeric) {
    var td = row.cells[col];
    if (!td) return null;
    var raw = td.getAttribute("data-v");
    if (numeric) {
      var v = raw !== null ? parseFloat(raw) : quantity(td.textContent);
      return isNaN(v) ? null : v;
    }
    return raw !== null ? raw : td.textContent;
  }

  function comparer(col, numeric, dir) {
    return function (a, b) {
      var x = cellKey(a.row, col, numeric), y = cellKey(b.row, col, numeric);
      if (x === null || y === null) return x === y ? a.i - b.i : x === null ? 1 : -1; /* blanks last */
      var c = numeric ? x - y : String(x).localeCompare(String(y));
      return c !== 0 ? dir * c : a.i - b.i;
    };
  }

  /* ---- the module tree ---- */
  function rowsOf(table) { return Array.prototype.slice.call(table.tBodies[0].rows); }

  function treeIndex(table) {
    var byPath = {};
    rowsOf(table).forEach(function (r) { byPath[r.getAttribute("data-path")] = r; });
    return byPath;
  }

  function isOpen(row) {
    var t = row.querySelector(".rl-tog");
    return !t || t.getAttribute("aria-expanded") === "true";
  }

  function parentOf(row, byPath) {
    var path = row.getAttribute("data-path");
    return path === "" ? null : byPath[row.getAttribute("data-parent")] || null;
  }

  /* a row is shown when every ancestor is open (rows are in tree order: parents first) */
  function refresh(table) {
    var byPath = treeIndex(table), shown = {};
    rowsOf(table).forEach(function (r) {
      var p = parentOf(r, byPath);
      var show = !p || (shown[p.getAttribute("data-path")] && isOpen(p));
      shown[r.getAttribute("data-path")] = show;
      r.hidden = !show;
    });
  }

  function setAll(table, open) {
    rowsOf(table).forEach(function (r) {
      var t = r.querySelector(".rl-tog");
      if (t) t.setAttribute("aria-expanded", String(open || r.getAttribute("data-path") === ""));
    });
    refresh(table);
  }

  function reveal(table, path) {
    var byPath = treeIndex(table), row = byPath[path];
    if (!row) return null;
    for (var p = parentOf(row, byPath); p; p = parentOf(p, byPath)) {
      var t = p.querySelector(".rl-tog");
      if (t) t.setAttribute("aria-expanded", "true");
    }
    refresh(table);
    return row;
  }

  /* sort siblings under their parent, keep the tree: rows re-appended depth first */
  function sortTree(table, col, numeric, dir) {
    var rows = rowsOf(table), byPath = treeIndex(table), kids = {}, tops = [];
    rows.forEach(function (r) {
      var item = {row: r, i: +r.getAttribute("data-order")}, p = parentOf(r, byPath);
      if (p) (kids[p.getAttribute("data-path")] = kids[p.getAttribute("data-path")] || []).push(item);
      else tops.push(item);
    });
    var cmp = comparer(col, numeric, dir), body = table.tBodies[0];
    (function place(items) {
      items.sort(cmp).forEach(function (it) {
        body.appendChild(it.row);
        place(kids[it.row.getAttribute("data-path")] || []);
      });
    })(tops);
    refresh(table);
  }

  function sortFlat(table, col, numeric, dir) {
    var body = table.tBodies[0];
    rowsOf(table).map(function (r, i) {
      if (!r.hasAttribute("data-o")) r.setAttribute("data-o", i); /* the order it came in */
      return {row: r, i: +r.getAttribute("data-o")};
    }).sort(comparer(col, numeric, dir)).forEach(function (it) { body.appendChild(it.row); });
  }

  function setupTable(table) {
    var tree = table.classList.contains("rl-tree");
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    heads.forEach(function (th, col) {
      th.setAttribute("tabindex", "0");
      function sort() {
        var numeric = th.getAttribute("data-type") === "num";
        var now = th.getAttribute("aria-sort");
        var dir = now ? (now === "descending" ? 1 : -1) : (numeric ? -1 : 1);
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir < 0 ? "descending" : "ascending");
        (tree ? sortTree : sortFlat)(table, col, numeric, dir);
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); } });
    });
    if (tree) {
      table.addEventListener("click", function (ev) {
        var t = ev.target.closest ? ev.target.closest(".rl-tog") : null;
        if (!t) return;
        t.setAttribute("aria-expanded", String(t.getAttribute("aria-expanded") !== "true"));
        refresh(table);
      });
      var section = table.closest("section");
      if (section) {
        section.querySelectorAll("[data-act]").forEach(function (b) {
          b.addEventListener("click", function () { setAll(table, b.getAttribute("data-act") === "expand"); });
        });
      }
    }
  }

  /* ---- tooltips ---- */
  function showTip(tip, plot, rows, x, y) {
    var table = document.createElement("table");
    rows.forEach(function (r) {
      var tr = table.insertRow(), th = document.createElement("th");
      th.textContent = r[0];
      tr.appendChild(th);
      tr.insertCell().textContent = r[1];
    });
    tip.textContent = "";
    tip.appendChild(table);
    tip.hidden = false;
    /* right of the point where the window has room (the tip may leave the chart), else left of it */
    var room = document.documentElement.clientWidth - plot.getBoundingClientRect().left - 8;
    var tw = tip.offsetWidth, th = tip.offsetHeight;
    var left = x + 14 + tw > room ? Math.max(0, x - 14 - tw) : x + 14;
    var top = Math.max(0, Math.min(y - th / 2, plot.clientHeight - th));
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }

  function setupRoofline(fig, data, report) {
    var chart = data && data.charts ? data.charts[+fig.getAttribute("data-chart")] : null;
    var plot = fig.querySelector(".rl-plot"), tip = fig.querySelector(".rl-tip");
    if (!chart || !plot || !tip) return;
    var on = null;
    function pointOf(el) {
      if (!el || !el.classList || !el.classList.contains("rl-pt")) return null;
      var i = +el.getAttribute("data-i");
      return i < 0 ? chart.whole_model : chart.points[i];
    }
    plot.addEventListener("mouseover", function (ev) {
      var p = pointOf(ev.target);
      if (!p) return;
      if (on) on.classList.remove("rl-on");
      on = ev.target;
      on.classList.add("rl-on");
      var box = on.getBoundingClientRect(), outer = plot.getBoundingClientRect();
      showTip(tip, plot, p.tip, box.left + box.width / 2 - outer.left, box.top + box.height / 2 - outer.top);
    });
    plot.addEventListener("mouseout", function (ev) {
      if (!pointOf(ev.target)) return;
      ev.target.classList.remove("rl-on");
      on = null;
      tip.hidden = true;
    });
    plot.addEventListener("click", function (ev) {
      var p = pointOf(ev.target), table = report.querySelector("table.rl-tree");
      if (!p || p.path === undefined || !table) return;
      var row = reveal(table, p.path);
      if (!row) return;
      row.scrollIntoView({block: "center", behavior: "smooth"});
      row.classList.add("rl-flash");
      setTimeout(function () { row.classList.remove("rl-flash"); }, 1600);
    });
  }

  function setupMemory(fig, data) {
    var mem = data && data.memory, plot = fig.querySelector(".rl-plot"), tip = fig.querySelector(".rl-tip");
    var svg = plot ? plot.querySelector("svg") : null;
    if (!mem || !mem.events || !mem.events.length || !svg || !tip) return;
    var x0 = +svg.getAttribute("data-x0"), x1 = +svg.getAttribute("data-x1"), n = +svg.getAttribute("data-n");
    var width = svg.viewBox.baseVal.width, cursor = svg.querySelector(".rl-cursor"), ev_ = mem.events;
    function at(x) { return x0 + (n > 1 ? x / (n - 1) : 0) * (x1 - x0); }
    svg.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect(), vx = (ev.clientX - box.left) * width / box.width;
      var idx = (vx - x0) / (x1 - x0) * (n - 1), lo = 0, hi = ev_.length - 1;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (ev_[mid][0] < idx) lo = mid + 1; else hi = mid; }
      if (lo > 0 && Math.abs(ev_[lo - 1][0] - idx) < Math.abs(ev_[lo][0] - idx)) lo -= 1;
      var e = ev_[lo], cx = at(e[0]);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      cursor.setAttribute("visibility", "visible");
      var outer = plot.getBoundingClientRect();
      showTip(tip, plot, [["Operator", "#" + e[0] + " " + e[2]], ["Module", e[3] || "<root>"], ["Phase", e[4]],
        ["Live", e[5]]], cx * box.width / width + box.left - outer.left, ev.clientY - outer.top);
    });
    svg.addEventListener("mouseleave", function () {
      tip.hidden = true;
      cursor.setAttribute("visibility", "hidden");
    });
  }

  function setupTabs(bar) {
    var buttons = bar.querySelectorAll("button[data-chart]"), section = bar.parentNode;
    buttons.forEach(function (b) {
      b.addEventListener("click", function () {
        buttons.forEach(function (o) { o.setAttribute("aria-selected", String(o === b)); });
        section.querySelectorAll("figure.rl-roofline").forEach(function (f) {
          f.hidden = f.getAttribute("data-chart") !== b.getAttribute("data-chart");
        });
      });
    });
  }

  function setup(root) {
    root.setAttribute("data-rl-ready", "");
    root.querySelectorAll("table.rl-tree, table.rl-sort").forEach(setupTable);
    root.querySelectorAll(".rl-tabs").forEach(setupTabs);
    root.querySelectorAll(".rl-report").forEach(function (report) {
      var script = report.querySelector("script.rl-data"), data = null;
      try { data = script ? JSON.parse(script.textContent) : null; } catch (e) { data = null; }
      report.querySelectorAll("figure.rl-roofline").forEach(function (f) { setupRoofline(f, data, report); });
      report.querySelectorAll("figure.rl-memory").forEach(function (f) { setupMemory(f, data); });
    });
  }

  document.querySelectorAll(".rooflens:not([data-rl-ready])").forEach(setup);
})();
