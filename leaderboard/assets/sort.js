// Sortable tables for the mdrbench leaderboard. Plain JavaScript, no dependencies.
// A header cell with data-sort="num" or "text" sorts its column; every <tbody> of the table
// is sorted on its own, so reproduced entries and the paper's reported numbers never mix.
// A cell's data-value, when present, is what sorts (the shown text may be "0.7957 ± 0.0012").
(function () {
  "use strict";

  function cellKey(cell, type) {
    if (!cell) return type === "num" ? NaN : "";
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    return type === "num" ? parseFloat(raw) : raw.trim().toLowerCase();
  }

  function compare(a, b, type, sign) {
    if (type === "num") {
      var an = isNaN(a), bn = isNaN(b);
      if (an || bn) return an === bn ? 0 : (an ? 1 : -1); // missing values always last
      return sign * (a - b);
    }
    return sign * a.localeCompare(b);
  }

  function sortTable(table, th, col) {
    var type = th.getAttribute("data-sort");
    var current = th.getAttribute("aria-sort");
    var first = th.getAttribute("data-first") || "ascending";
    var dir = current === "ascending" ? "descending"
      : current === "descending" ? "ascending" : first;
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    for (var b = 0; b < table.tBodies.length; b++) {
      var body = table.tBodies[b];
      var rows = Array.prototype.slice.call(body.rows);
      var keyed = rows.map(function (row, idx) {
        return { row: row, key: cellKey(row.cells[col], type), idx: idx };
      });
      keyed.sort(function (x, y) {
        return compare(x.key, y.key, type, sign) || x.idx - y.idx; // stable
      });
      keyed.forEach(function (k) { body.appendChild(k.row); });
    }
  }

  function init() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      if (!table.tHead) return;
      var heads = table.tHead.rows[0].cells;
      Array.prototype.forEach.call(heads, function (th, col) {
        if (!th.hasAttribute("data-sort")) return;
        var button = th.querySelector("button");
        (button || th).addEventListener("click", function () { sortTable(table, th, col); });
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
