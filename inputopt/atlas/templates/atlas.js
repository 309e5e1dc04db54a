// The layer page's cards: sort by a metric or the visualization checks passed, filter by unit number
// ("3", "8-12", "1, 4, 9-12") and by the checks (all, trusted, failing).
(function () {
  "use strict";
  var container = document.getElementById("cards");
  if (!container) { return; }
  var cards = Array.prototype.slice.call(container.querySelectorAll(".card"));
  var key = document.getElementById("sort-key");
  var order = document.getElementById("sort-order");
  var filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  var checks = document.getElementById("checks-filter");

  function value(card) {
    var raw = key.value === "unit" ? card.dataset.unit
      : key.value === "checks" ? card.getAttribute("data-checks") : card.getAttribute("data-metric-" + key.value);
    return raw === null || raw === "" ? NaN : parseFloat(raw);
  }

  function sort() {
    var sign = order.value === "desc" ? -1 : 1;
    var sorted = cards.slice().sort(function (a, b) {
      var x = value(a), y = value(b);
      if (isNaN(x) !== isNaN(y)) { return isNaN(x) ? 1 : -1; }  // units without the metric last
      if (x !== y && !isNaN(x)) { return sign * (x - y); }
      return parseInt(a.dataset.unit, 10) - parseInt(b.dataset.unit, 10);
    });
    sorted.forEach(function (card) { container.appendChild(card); });
  }

  function parse(text) {  // null: show every unit
    var ranges = [], parts = text.split(",");
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].trim();
      if (part === "") { continue; }
      var match = /^(\d+)\s*(?:-\s*(\d+))?$/.exec(part);
      if (!match) { return undefined; }
      ranges.push([parseInt(match[1], 10), parseInt(match[2] === undefined ? match[1] : match[2], 10)]);
    }
    return ranges.length ? ranges : null;
  }

  function apply() {
    var ranges = parse(filter.value);
    filter.classList.toggle("invalid", ranges === undefined);
    var count = 0;
    cards.forEach(function (card) {
      var unit = parseInt(card.dataset.unit, 10);
      var keep = !ranges || ranges.some(function (r) { return unit >= r[0] && unit <= r[1]; });
      if (checks && checks.value !== "all") {
        keep = keep && card.getAttribute("data-trusted") === (checks.value === "pass" ? "1" : "0");
      }
      card.hidden = !keep;
      count += keep ? 1 : 0;
    });
    shown.textContent = count + " of " + cards.length + " units";
  }

  key.addEventListener("change", sort);
  order.addEventListener("change", sort);
  filter.addEventListener("input", apply);
  if (checks) { checks.addEventListener("change", apply); }
  sort();
  apply();
}());
