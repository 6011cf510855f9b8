/* Draw the dashboard's charts with uPlot from the JSON the server embeds next to each chart.
 *
 * Each chart is a <div data-chart="ID"> followed by <script type="application/json" id="ID">
 * holding {x: [unix seconds], series: [{label, values}], unit: "usd"|"pct"|"count", kind:
 * "line"|"bars"|"stacked", markers: [{x, label}]}. The tables under each chart carry the same
 * figures, so the page works without this file.
 */
(function () {
  "use strict";

  var PALETTE = ["#2557a7", "#e07b00", "#138a63", "#b42318", "#7a5af8", "#0e9384", "#c11574", "#6b7280",
                 "#4e8c1d", "#a15c07"];

  function formatter(unit) {
    if (unit === "usd") {
      return function (v) {
        if (v == null) return "–";
        var a = Math.abs(v), sign = v < 0 ? "-$" : "$";
        if (a >= 100) return sign + a.toLocaleString("en-US", {maximumFractionDigits: 0});
        if (a >= 0.1 || a === 0) return sign + a.toFixed(2);
        return sign + String(Number(a.toPrecision(3)));
      };
    }
    if (unit === "pct") {
      return function (v) { return v == null ? "–" : (v * 100).toFixed(1) + "%"; };
    }
    return function (v) { return v == null ? "–" : v.toLocaleString("en-US", {maximumFractionDigits: 3}); };
  }

  /* Stacked areas: each series is drawn as the running total of itself and those before it. */
  function stack(series) {
    var totals = null;
    return series.map(function (s) {
      var values = s.values.map(function (v, i) { return (totals ? totals[i] : 0) + (v || 0); });
      totals = values;
      return values;
    });
  }

  function build(el, spec) {
    var fmt = formatter(spec.unit);
    var kind = spec.kind || "line";
    var raw = spec.series.map(function (s) { return s.values; });
    var drawn = kind === "stacked" ? stack(spec.series) : raw;
    var series = [{}];
    spec.series.forEach(function (s, i) {
      var color = s.color || PALETTE[i % PALETTE.length];
      var one = {
        label: s.label,
        stroke: color,
        width: s.dash ? 1.5 : 2,
        dash: s.dash ? [6, 4] : undefined,
        value: function (u, v, si, idx) { return idx == null ? "–" : fmt(raw[i][idx]); },
        points: {show: kind !== "bars" && !s.dash && spec.x.length <= 31},
        spanGaps: false
      };
      if (kind === "stacked") one.fill = color + "55";
      if (kind === "bars") {
        one.fill = color + "cc";
        one.paths = uPlot.paths.bars({size: [0.7, 40]});
      }
      series.push(one);
    });
    var bands = [];
    if (kind === "stacked") {
      for (var i = drawn.length; i > 1; i--) bands.push({series: [i, i - 1]});
    }
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: spec.height || 260,
      series: series,
      bands: bands,
      scales: {x: {time: spec.time !== false}, y: {range: withZero}},
      axes: [{}, {values: function (u, vals) { return vals.map(fmt); }, size: 76}],
      legend: {live: true},
      cursor: {points: {size: 6}}
    };
    if (spec.categories) categorical(opts, spec.categories);
    if (spec.markers && spec.markers.length) {
      opts.plugins = [markers(spec.markers)];
    }
    var plot = new uPlot(opts, [spec.x].concat(drawn), el);
    window.addEventListener("resize", function () {
      plot.setSize({width: Math.max(el.clientWidth, 280), height: opts.height});
    });
    return plot;
  }

  /* Costs and effects are read against zero: the y range always includes it. */
  function withZero(u, min, max) {
    var low = Math.min(0, min), high = Math.max(0, max);
    if (low === high) high = low + 1;
    var pad = (high - low) * 0.08;
    return [low < 0 ? low - pad : 0, high > 0 ? high + pad : 0];
  }

  /* Named categories on the x axis (x = 0, 1, 2, ...). */
  function categorical(opts, names) {
    var name = function (v) { return Number.isInteger(v) && names[v] !== undefined ? names[v] : ""; };
    opts.scales.x = {time: false, range: [-0.5, names.length - 0.5]};
    opts.axes[0] = {
      splits: function () { return names.map(function (_, i) { return i; }); },
      values: function (u, vals) { return vals.map(name); }
    };
    opts.series[0] = {value: function (u, v) { return v == null ? "–" : name(v); }};
  }

  /* Vertical lines at given x values (today, a budget period end) with a small label. */
  function markers(list) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#5b6675";
          ctx.fillStyle = "#5b6675";
          ctx.setLineDash([3, 3]);
          ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
          list.forEach(function (m) {
            var x = Math.round(u.valToPos(m.x, "x", true));
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText(m.label, x + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
          });
          ctx.restore();
        }]
      }
    };
  }

  function init() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart"));
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      if (!spec.x || !spec.x.length) return;
      el.textContent = "";
      build(el, spec);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
