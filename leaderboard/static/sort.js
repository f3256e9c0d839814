/* Sortable tables for the avade-bench leaderboard (vanilla JS, no network).
   A header button sorts its column: first click ascending, then it toggles. Cells sort by their
   data-sort attribute when it is a number, otherwise by text (numeric-aware); empty cells stay last.
   A "show the paper's published rows" checkbox hides or shows a table's reference rows. */
(function () {
  "use strict";

  function sortKey(cell) {
    var raw = cell ? cell.getAttribute("data-sort") : null;
    if (raw === null || raw === "") raw = cell ? cell.textContent.trim() : "";
    if (raw === "" || raw === "\u2014") return null;
    var num = Number(raw);
    return isNaN(num) ? raw : num;
  }

  function compareKeys(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true, sensitivity: "base"});
  }

  function sortTable(table, index, th) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var entries = Array.prototype.map.call(body.rows, function (row, i) {
      return {row: row, key: sortKey(row.cells[index]), pos: i};
    });
    entries.sort(function (x, y) {
      if (x.key === null || y.key === null) {
        return ((x.key === null) - (y.key === null)) || (x.pos - y.pos);
      }
      var c = compareKeys(x.key, y.key);
      return (ascending ? c : -c) || (x.pos - y.pos);
    });
    entries.forEach(function (e) { body.appendChild(e.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("figure.tbl"), function (fig) {
    var box = fig.querySelector("input.toggle-paper"), table = fig.querySelector("table");
    if (!box || !table) return;
    box.addEventListener("change", function () { table.classList.toggle("hide-paper", !box.checked); });
  });

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = th.querySelector("button.sort");
      if (button) button.addEventListener("click", function () { sortTable(table, index, th); });
    });
  });
})();
