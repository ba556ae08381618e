/* Back-office heatmaps drawn with Apache ECharts (served by the portal itself).
 * Every chart is a <div data-heatmap="KIND" data-url="JSON endpoint">; the endpoint sends the
 * data and the labels in the page's language, so this file holds no words of its own.
 * No-data cells are a separate grey, hatched series: never coloured like "nobody" (0). */
(function () {
  "use strict";

  var NO_DATA = "#d0d7de";
  var HATCH = { symbol: "rect", dashArrayX: [1, 0], dashArrayY: [2, 5], rotation: Math.PI / 4,
                color: "#8c959f" };
  var loaded = {};

  function load(url) {
    if (!loaded[url]) {
      loaded[url] = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(url + ": HTTP " + response.status); }
          return response.json();
        });
    }
    return loaded[url];
  }

  // A title wider than the chart (a phone) breaks onto a second line instead of running under
  // the save button and off the edge; the plot then starts one line lower.
  var TOOLBOX_WIDTH = 48;
  function heading(element, text) {
    return { text: text, left: 12, top: 8,
             textStyle: { fontSize: 14, width: Math.max(120, element.clientWidth - 12 - TOOLBOX_WIDTH),
                          overflow: "break" } };
  }
  function plotTop(element, top) { return element.clientWidth < 600 ? top + 20 : top; }

  function toolbox(name, labels) {
    return { right: 12, feature: { saveAsImage: { name: name, title: labels.save, pixelRatio: 2,
                                                  backgroundColor: "#fff" } } };
  }

  function building(element, data) {
    var L = data.labels, cells = [], missing = [];
    data.cells.forEach(function (c) {
      var label = (c.flag ? "\u2691" : "") + c.code;
      if (c.state === "data") {
        cells.push({ value: [c.x, c.y, c.excess], cell: c,
                     label: { formatter: label + "\n" + c.estimated + "/" + c.registered },
                     itemStyle: c.flag ? { borderColor: "#cf222e", borderWidth: 3 } : {} });
      } else {
        missing.push({ value: [c.x, c.y, 0], cell: c,
                       label: { formatter: label + "\n" + L.no_data_short } });
      }
    });
    var chart = echarts.init(element);
    chart.setOption({
      title: heading(element, data.building.community + "/" + data.building.code + " \u00b7 " + L.title),
      toolbox: toolbox("heatmap_" + data.building.community + "_" + data.building.code, L),
      tooltip: { formatter: function (p) {
        var c = p.data.cell;
        var lines = ["<b>" + c.ref + "</b>", L.registered + ": " + c.registered];
        if (c.state === "data") {
          lines.push(L.estimated + ": " + c.estimated + " (" + L.interval + " " + c.low + "\u2013" + c.high + ")");
        } else { lines.push(L.no_data); }
        lines.push(L.nights + ": " + c.nights_observed);
        if (c.flag) { lines.push("\u2691 " + L.flagged); }
        return lines.join("<br>");
      } },
      grid: { left: 70, right: 24, top: plotTop(element, 56), bottom: 90 },
      xAxis: { type: "category", data: data.columns, name: L.position, nameLocation: "middle",
               nameGap: 28, splitArea: { show: true } },
      yAxis: { type: "category", data: data.floors, name: L.floor, splitArea: { show: true } },
      visualMap: { type: "piecewise", seriesIndex: 0, orient: "horizontal", left: "center",
                   bottom: 8, pieces: [
                     { lt: -0.5, label: "< 0", color: "#8ec5ff" },
                     { gte: -0.5, lt: 0.5, label: "0", color: "#aceebb" },
                     { gte: 0.5, lt: 1.5, label: "+1", color: "#ffe58f" },
                     { gte: 1.5, lt: 3.5, label: "+2\u2026+3", color: "#ffa657" },
                     { gte: 3.5, label: "\u2265 +4", color: "#ff7b72" }] },
      series: [
        { name: L.estimated, type: "heatmap", data: cells, label: { show: true, fontSize: 10 },
          emphasis: { itemStyle: { shadowBlur: 6 } } },
        { name: L.no_data, type: "heatmap", data: missing,
          itemStyle: { color: NO_DATA, decal: HATCH },
          label: { show: true, fontSize: 10, color: "#57606a" } }
      ]
    });
    chart.on("click", function (p) { if (p.data && p.data.cell) { window.location.href = p.data.cell.url; } });
    return chart;
  }

  function trend(element, nights, present, registered, title, L, name) {
    var chart = echarts.init(element);
    chart.setOption({
      title: heading(element, title),
      toolbox: toolbox(name, L),
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v === null || v === undefined ? L.no_data : v; } },
      legend: { bottom: 4 },
      grid: { left: 50, right: 24, top: plotTop(element, 50), bottom: 60 },
      xAxis: { type: "category", data: nights, axisLabel: { formatter: function (d) { return d.slice(5); } } },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: L.present, type: "line", data: present, connectNulls: false, symbolSize: 6,
          showAllSymbol: true, itemStyle: { color: "#0969da" } },
        { name: L.registered, type: "line", data: nights.map(function () { return registered; }),
          symbol: "none", itemStyle: { color: "#57606a" }, lineStyle: { type: "dashed", color: "#57606a" } }
      ]
    });
    return chart;
  }

  function unit(element, data) {
    var L = data.labels, cells = [], missing = [], max = 1;
    data.cells.forEach(function (c) {
      if (c[2] === null) { missing.push([c[0], c[1], 0]); }
      else { cells.push(c); if (c[2] > max) { max = c[2]; } }
    });
    var chart = echarts.init(element);
    chart.setOption({
      title: heading(element, data.unit + " \u00b7 " + L.unit_title),
      toolbox: toolbox("presence_" + data.unit.replace(/\//g, "_"), L),
      tooltip: { formatter: function (p) {
        var v = p.seriesIndex === 1 ? L.no_data : p.value[2];
        return data.nights[p.value[1]] + " " + data.hours[p.value[0]] + ":00<br>" + v;
      } },
      grid: { left: 80, right: 24, top: plotTop(element, 50), bottom: 96 },
      xAxis: { type: "category", data: data.hours, name: L.hour, nameLocation: "middle", nameGap: 26 },
      yAxis: { type: "category", data: data.nights, inverse: true },
      visualMap: { type: "continuous", seriesIndex: 0, min: 0, max: max, calculable: true,
                   orient: "horizontal", left: "center", bottom: 4, itemHeight: 160,
                   inRange: { color: ["#f6f8fa", "#54aeff", "#0550ae", "#0a3069"] } },
      series: [
        { name: L.present, type: "heatmap", data: cells },
        { name: L.no_data, type: "heatmap", data: missing, itemStyle: { color: NO_DATA, decal: HATCH } }
      ]
    });
    return chart;
  }

  var draw = {
    "building": function (el, d) { return building(el, d); },
    "building-trend": function (el, d) {
      return trend(el, d.trend.nights, d.trend.present, d.trend.registered, d.labels.trend,
                   d.labels, "trend_" + d.building.community + "_" + d.building.code);
    },
    "unit": function (el, d) { return unit(el, d); },
    "unit-trend": function (el, d) {
      return trend(el, d.nights, d.trend, d.registered, d.labels.unit_trend, d.labels,
                   "trend_" + d.unit.replace(/\//g, "_"));
    }
  };

  function start() {
    var charts = [];
    Array.prototype.forEach.call(document.querySelectorAll("[data-heatmap]"), function (el) {
      var kind = el.getAttribute("data-heatmap");
      load(el.getAttribute("data-url")).then(function (data) {
        charts.push(draw[kind](el, data));
        el.setAttribute("data-ready", "1");
      }).catch(function (error) {
        el.textContent = String(error);
        el.setAttribute("data-ready", "error");
      });
    });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
}());
