/* cbm dashboards: draw each chart from the option built on the server.
 *
 * Each chart is a <div data-chart> followed by <script type="application/json"
 * data-chart-options="<div id>"> holding its Apache ECharts option (built in Python, see
 * dashboards/charts.py). No inline script (the Content-Security-Policy forbids it), no
 * other host. A data point that carries a "url" opens it on click: the records behind it.
 * Every chart also has a table and a CSV link, so nothing depends on this file.
 */
(function () {
  "use strict";

  function draw(block) {
    var el = document.getElementById(block.getAttribute("data-chart-options"));
    if (!el || typeof window.echarts === "undefined") {
      return null;
    }
    var option;
    try {
      option = JSON.parse(block.textContent);
    } catch (err) {
      return null;
    }
    var height = parseInt(el.getAttribute("data-height") || "320", 10);
    el.style.height = height + "px";
    var chart = window.echarts.init(el, null, { renderer: "svg" });
    chart.setOption(option);
    chart.on("click", function (params) {
      var data = params && params.data;
      if (data && typeof data === "object" && typeof data.url === "string" && data.url.charAt(0) === "/") {
        window.location.assign(data.url);
      }
    });
    el.setAttribute("data-drawn", "true");
    return chart;
  }

  function start() {
    var charts = [];
    var blocks = document.querySelectorAll("script[type='application/json'][data-chart-options]");
    for (var i = 0; i < blocks.length; i++) {
      var chart = draw(blocks[i]);
      if (chart) {
        charts.push(chart);
      }
    }
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) {
        window.clearTimeout(pending);
      }
      pending = window.setTimeout(function () {
        for (var j = 0; j < charts.length; j++) {
          charts[j].resize();
        }
      }, 150);
    });
    document.documentElement.setAttribute("data-charts-ready", String(charts.length));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
