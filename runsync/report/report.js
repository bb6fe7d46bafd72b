/* runsync report: the page. Reads the JSON blob written by runsync/report/build.py and draws it
 * with uPlot (inlined beside this file). Everything is built with DOM calls and textContent, never
 * from HTML strings, so names, captions and text logged by a run cannot inject markup.
 *
 * The same page is served by `runsync ui` (runsync/report/serve.py): then the blob holds only `live`
 * (where to fetch), the runs table comes from the index (polled every live.poll s), and each chart
 * fetches its key's series of the runs it draws (runsync/report/live.py key_block) when it comes into
 * view; a run's data is fetched again only when its version (`rv`) changed, so finished runs once.
 *
 * window.runsyncReport exposes the state for tests: .ready turns true once the first charts are
 * drawn, .redraws counts redraw passes, .smooth is the EMA (smooth.js), .charts the live charts,
 * .fetches and .polls count requests of a served page.
 */
/* global uPlot, runsyncSmooth */
"use strict";

(function () {
  var BOOT = JSON.parse(document.getElementById("runsync-data").textContent);
  // Served by `runsync ui`: fetch data instead of reading it inline, through served.js (absent from a report).
  var LIVE = BOOT.live && window.runsyncGet ? BOOT.live : null;
  var DATA = LIVE ? { title: BOOT.title, source: "", runs: [], keys: [], xkeys: [], system_keys: [], media_keys: [],
    errors: [], v: null, pending: 0 } : BOOT;
  var RUNS = DATA.runs || [];
  var api = (window.runsyncReport = {
    ready: false, redraws: 0, data: DATA, smooth: runsyncSmooth, charts: [], state: null, live: !!LIVE,
    fetches: 0, polls: 0,
  });

  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === "text") e.textContent = String(v);
        else if (k === "cls") e.className = v;
        else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
        else if (k === "style") e.style.cssText = v;
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    (kids || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  function undelta(a) {
    var out = new Array(a.length);
    var acc = 0;
    for (var i = 0; i < a.length; i++) {
      acc += a[i];
      out[i] = acc;
    }
    return out;
  }

  // JSON numbers as written by build.encode_values: strings for non-finite, f32 series rounded back.
  function num(v, f32) {
    if (v === null || v === undefined) return null;
    if (typeof v === "string") return Number(v);
    return f32 ? Math.fround(v) : v;
  }

  function fmtVal(v, f32) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v) || Number.isInteger(v)) return String(v);
    if (f32) {
      for (var p = 1; p <= 9; p++) {
        var s = v.toPrecision(p);
        if (Math.fround(Number(s)) === v) return String(Number(s));
      }
    }
    return String(v);
  }

  function fmtShort(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (!isFinite(v) || Number.isInteger(v)) return String(v);
      return String(Number(v.toPrecision(4)));
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // A byte count in human units (KiB, MiB, GiB, ...; powers of 1024), for system keys named *bytes*.
  function fmtBytes(v) {
    if (v === null || v === undefined || !isFinite(v)) return "";
    var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    var a = Math.abs(v), u = 0;
    while (a >= 1024 && u < units.length - 1) { a /= 1024; u++; }
    var t = u === 0 ? String(Math.round(a)) : String(Number(a.toPrecision(3)));
    return (v < 0 ? "-" : "") + t + " " + units[u];
  }

  // The y-axis formatter of a key: bytes (and bytes per second) in human units, else short numbers.
  function yFormat(key) {
    if (/bytes_per_s$/.test(key)) return function (v) { var t = fmtBytes(v); return t && t + "/s"; };
    if (/bytes/.test(key)) return fmtBytes;
    return fmtShort;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "";
    var neg = s < 0 ? "-" : "";
    s = Math.abs(s);
    if (s < 60) return neg + (s < 10 ? s.toFixed(1) : s.toFixed(0)) + "s";
    if (s < 3600) return neg + Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    if (s < 86400) return neg + Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return neg + Math.floor(s / 86400) + "d" + String(Math.floor((s % 86400) / 3600)).padStart(2, "0") + "h";
  }

  function fmtDate(t) {
    if (!t) return "";
    var d = new Date(t * 1000);
    function p(n) { return String(n).padStart(2, "0"); }
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" +
      p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  var PALETTE = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

  function rgbOf(i) {
    if (i < PALETTE.length) return PALETTE[i];
    var h = ((i * 137.508) % 360) / 360, s = 0.65, l = 0.45;
    function f(n) {
      var k = (n + h * 12) % 12;
      var a = s * Math.min(l, 1 - l);
      return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    }
    return [f(0), f(8), f(4)];
  }
  function color(i, alpha) {
    var c = rgbOf(i);
    return alpha === undefined ? "rgb(" + c.join(",") + ")" : "rgba(" + c.join(",") + "," + alpha + ")";
  }

  function runLabel(i) {
    var r = RUNS[i];
    return r.name || r.id;
  }

  // ---------------------------------------------------------------- data
  function decodeBlock(b, t0) {
    var steps = undelta(b.steps);
    var ms = undelta(b.time);
    var rel = ms.map(function (m) { return m / 1000; });
    var wall = rel.map(function (r) { return t0 + r; });
    var x = {};
    Object.keys(b.x || {}).forEach(function (k) {
      var e = b.x[k];
      x[k] = e.v.map(function (v) { return num(v, e.f32); });
    });
    var series = {};
    Object.keys(b.series).forEach(function (k) {
      var s = b.series[k];
      series[k] = decodeSeries(s);
      // A key several streams (ranks) of the run logged: the series is their mean, each stream's follows.
      if (s.streams) {
        series[k].streams = s.streams.map(function (st) {
          var d = decodeSeries(st);
          d.stream = st.s;
          return d;
        });
      }
    });
    return { steps: steps, rel: rel, wall: wall, x: x, series: series };
  }

  function decodeSeries(s) {
    return { idx: undelta(s.i), y: s.y.map(function (v) { return num(v, s.f32); }), n: s.n, f32: !!s.f32,
      smW: null, smY: null };
  }

  // Run i's decoded block of `kind` (history/system) holding at least `key`; null if none (yet).
  function block(i, kind, key) {
    var r = RUNS[i];
    if (LIVE) {
      var got = (r._live || {})[kind + "\u0000" + key];
      return got ? got.dec : null;
    }
    r._dec = r._dec || {};
    if (!(kind in r._dec)) r._dec[kind] = r[kind] ? decodeBlock(r[kind], r.t0 || 0) : null;
    return r._dec[kind];
  }

  // ---------------------------------------------------------------- served page: fetching
  var queue = [], inFlight = 0;
  function getJSON(url) {
    return new Promise(function (resolve, reject) {
      queue.push({ url: url, resolve: resolve, reject: reject });
      pump();
    });
  }
  function pump() {
    while (inFlight < 4 && queue.length) {
      var job = queue.shift();
      inFlight++;
      api.fetches++;
      window.runsyncGet(job.url).then(job.resolve, job.reject).finally(function () {
        inFlight--;
        pump();
      });
    }
  }
  function idBatches(ids) {
    var out = [];
    for (var j = 0; j < ids.length; j += LIVE.max_ids) out.push(ids.slice(j, j + LIVE.max_ids));
    return out;
  }

  // A fetched copy needs fetching again: missing, or older than the run's version (at most once per index
  // version: the server may already serve a newer version than the index the page has).
  function stale(got, r) {
    return !got || (got.rv !== r.rv && got.at !== DATA.v);
  }

  // Fetch chart ch's key for the selected runs whose copy is missing or older than their version.
  function fetchChart(ch) {
    var slot = ch.kind + "\u0000" + ch.key;
    var want = [];
    state.selected.forEach(function (i) {
      var r = RUNS[i];
      if (stale((r._live || {})[slot], r) && !(r._want || {})[slot]) want.push(i);
    });
    if (!want.length) return false;
    idBatches(want).forEach(function (batch) {
      var ids = batch.map(function (i) { return RUNS[i].id; });
      batch.forEach(function (i) { (RUNS[i]._want = RUNS[i]._want || {})[slot] = true; });
      ch.loading = (ch.loading || 0) + 1;
      getJSON(LIVE.series + "?kind=" + encodeURIComponent(ch.kind) + "&key=" + encodeURIComponent(ch.key) +
        "&runs=" + ids.map(encodeURIComponent).join(",")).then(function (res) {
        Object.keys(res.runs || {}).forEach(function (id) {
          var i = indexOf(id);
          if (i < 0) return;
          var got = res.runs[id];
          (RUNS[i]._live = RUNS[i]._live || {})[slot] = { rv: got.rv, at: DATA.v,
            dec: got.block ? decodeBlock(got.block, RUNS[i].t0 || 0) : null };
        });
      }).catch(function (e) {
        problem("could not fetch " + ch.key + ": " + e.message);
      }).finally(function () {
        ids.forEach(function (id) {
          var i = indexOf(id);
          if (i < 0) return;
          var r = RUNS[i];
          if (r._want) delete r._want[slot];
          r._live = r._live || {};
          var got = r._live[slot];
          if (!got || got.at !== DATA.v) r._live[slot] = { rv: r.rv, at: DATA.v, dec: got ? got.dec : null };
        });
        ch.loading--;
        if (ch.loading === 0) {
          if (ch.visible || !observer) buildPlot(ch);
          else ch.stale = true;
        }
      });
    });
    return true;
  }

  function indexOf(id) {
    for (var i = 0; i < RUNS.length; i++) if (RUNS[i].id === id) return i;
    return -1;
  }

  // Media of the selected runs (fetched once per run version); renderMedia() again when they arrive.
  function runMedia(i) {
    var r = RUNS[i];
    if (!LIVE) return r.media || {};
    return (r._media && r._media.media) || {};
  }
  var mediaWanted = {};
  function fetchMedia(sel) {
    var want = sel.filter(function (i) {
      var r = RUNS[i];
      return stale(r._media, r) && !mediaWanted[r.id];
    });
    idBatches(want).forEach(function (batch) {
      var ids = batch.map(function (i) { return RUNS[i].id; });
      ids.forEach(function (id) { mediaWanted[id] = true; });
      getJSON(LIVE.media + "?runs=" + ids.map(encodeURIComponent).join(",")).then(function (res) {
        Object.keys(res.runs || {}).forEach(function (id) {
          var i = indexOf(id);
          if (i >= 0) RUNS[i]._media = { rv: res.runs[id].rv, at: DATA.v, media: res.runs[id].media };
        });
      }).catch(function (e) {
        problem("could not fetch media: " + e.message);
      }).finally(function () {
        ids.forEach(function (id) {
          delete mediaWanted[id];
          var i = indexOf(id);
          if (i >= 0 && (!RUNS[i]._media || RUNS[i]._media.at !== DATA.v)) {
            RUNS[i]._media = { rv: RUNS[i].rv, at: DATA.v, media: runMedia(i) };
          }
        });
        renderMedia();
      });
    });
  }

  var lastProblem = null;
  function problem(msg) {
    lastProblem = msg;
    updateMeta();
  }

  function smoothed(s, w) {
    if (s.smW !== w) {
      s.smY = runsyncSmooth(s.y, w);
      s.smW = w;
    }
    return s.smY;
  }

  // ---------------------------------------------------------------- state
  var state = (api.state = {
    selected: new Set(RUNS.map(function (_r, i) { return i; })), // a served page: see applyIndex
    smoothing: 0.6,
    xaxis: "step",
    logy: false,
    meanStreams: false, // a key several streams of a run logged: draw their mean, not one line per stream
    filter: "",
    sort: { col: null, desc: false },
  });

  // The x-axis of a chart: the chosen one; on the default (step), a key's define_metric step_metric.
  function axisFor(kind, key) {
    var a = state.xaxis;
    var sm = DATA.step_metrics || {};
    if (a === "step" && kind === "history" && key !== undefined && sm[key]) return "key:" + sm[key];
    if (a.indexOf("key:") === 0 && kind !== "history") return "rel";
    return a;
  }

  function axisLabel(a) {
    if (a === "step") return "step";
    if (a === "wall") return "wall time";
    if (a === "rel") return "time since start";
    return a.slice(4);
  }

  // One chart's lines: for each selected run that logged `key`, x and y of its drawn points; a run whose
  // streams (ranks) all logged `key` gives one line per stream, or their mean with the toggle.
  function chartSeries(kind, key) {
    var out = [];
    var axis = axisFor(kind, key);
    orderedRuns().forEach(function (i) {
      if (!state.selected.has(i)) return;
      var b = block(i, kind, key);
      if (!b || !b.series[key]) return;
      var s = b.series[key];
      var xa = axis === "step" ? b.steps : axis === "wall" ? b.wall : axis === "rel" ? b.rel : b.x[axis.slice(4)];
      if (!xa) return;
      if (s.streams && !state.meanStreams) {
        s.streams.forEach(function (st) {
          addLine(out, i, st, xa, runLabel(i) + " · " + st.stream, st.stream);
        });
      } else {
        addLine(out, i, s, xa, runLabel(i) + (s.streams ? " · mean of " + s.streams.length + " streams" : ""),
          s.streams ? "mean" : null);
      }
    });
    var multi = out.some(function (l) { return l.stream !== null && l.stream !== "mean"; });
    out.forEach(function (l, j) { l.color = multi ? j : l.run; });
    return out;
  }

  // One line of a chart: run i's series s (a run's, one stream's, or their mean) against the x values xa.
  function addLine(out, i, s, xa, label, stream) {
    var w = state.smoothing;
    var sm = w > 0 ? smoothed(s, w) : null;
    var xs = [], ys = [], draw = [], drawSm = sm ? [] : null, smv = sm ? [] : null;
    for (var j = 0; j < s.idx.length; j++) {
      var xv = xa[s.idx[j]];
      if (xv === null || xv === undefined) continue;
      var y = s.y[j];
      xs.push(xv);
      ys.push(y);
      draw.push(y !== null && isFinite(y) ? y : null);
      if (sm) {
        smv.push(sm[j]);
        drawSm.push(isFinite(sm[j]) ? sm[j] : null);
      }
    }
    if (!xs.length) return;
    var sorted = true;
    for (var q = 1; q < xs.length && sorted; q++) if (xs[q] < xs[q - 1]) sorted = false;
    out.push({ run: i, xs: xs, ys: ys, draw: draw, sm: smv, drawSm: drawSm, f32: s.f32, n: s.n, sorted: sorted,
      label: label, stream: stream });
  }


  function nearest(xs, v, sorted) {
    var n = xs.length;
    if (!n || v === null || v === undefined || isNaN(v)) return null;
    if (!sorted) {
      var best = 0;
      for (var i = 1; i < n; i++) if (Math.abs(xs[i] - v) < Math.abs(xs[best] - v)) best = i;
      return best;
    }
    var lo = 0, hi = n - 1;
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] <= v) lo = mid;
      else hi = mid;
    }
    return Math.abs(xs[hi] - v) < Math.abs(xs[lo] - v) ? hi : lo;
  }

  // ---------------------------------------------------------------- charts
  var tip = el("div", { cls: "tip" });
  var observer = null;

  function fmtX(axis, v) {
    if (axis === "wall") return fmtDate(v);
    if (axis === "rel") return fmtDuration(v);
    return fmtVal(v, false);
  }

  function showTip(u, ch) {
    var left = u.cursor.left, top = u.cursor.top;
    if (left === null || left === undefined || left < 0 || !ch.list || !ch.list.length) {
      tip.style.display = "none";
      return;
    }
    var xv = u.posToVal(left, "x");
    var yv = u.posToVal(top, "y");
    var rows = [];
    ch.list.forEach(function (s) {
      var j = nearest(s.xs, xv, s.sorted);
      if (j === null) return;
      rows.push({ s: s, j: j, d: Math.abs((s.sm ? s.sm[j] : s.ys[j]) - yv) });
    });
    if (!rows.length) {
      tip.style.display = "none";
      return;
    }
    rows.sort(function (a, b) { return (isNaN(a.d) ? 1e308 : a.d) - (isNaN(b.d) ? 1e308 : b.d); });
    var axis = ch.axis;
    tip.textContent = "";
    tip.appendChild(el("div", { cls: "x", text: ch.key + "  @ " + axisLabel(axis) + " " +
      fmtX(axis, rows[0].s.xs[rows[0].j]) }));
    rows.slice(0, 10).forEach(function (r) {
      var s = r.s, j = r.j;
      var label = s.label;
      if (axis !== "step") {
        label += "  (" + fmtX(axis, s.xs[j]) + ")";
      }
      tip.appendChild(el("div", { cls: "row" }, [
        el("span", { cls: "sw", style: "background:" + color(s.color) }),
        el("span", { text: label }),
        el("span", { cls: "v", text: fmtVal(s.ys[j], s.f32) }),
        s.sm ? el("span", { cls: "sm", text: "~" + fmtShort(s.sm[j]) }) : null,
      ]));
    });
    if (rows.length > 10) tip.appendChild(el("div", { cls: "x", text: "+" + (rows.length - 10) + " more lines" }));
    var box = u.over.getBoundingClientRect();
    tip.style.display = "block";
    var tx = box.left + left + 14, ty = box.top + top + 14;
    var tw = tip.offsetWidth, th = tip.offsetHeight;
    if (tx + tw > window.innerWidth - 4) tx = box.left + left - tw - 14;
    if (ty + th > window.innerHeight - 4) ty = Math.max(4, box.top + top - th - 14);
    tip.style.left = tx + "px";
    tip.style.top = ty + "px";
  }

  function buildPlot(ch) {
    if (ch.plot) {
      ch.plot.destroy();
      ch.plot = null;
    }
    ch.body.textContent = "";
    ch.legend.textContent = "";
    ch.stale = false;
    if (LIVE) fetchChart(ch);
    var list = chartSeries(ch.kind, ch.key);
    ch.list = list;
    ch.axis = axisFor(ch.kind, ch.key);
    var drawn = 0, logged = 0;
    var nruns = new Set(list.map(function (s) { return s.run; })).size;
    list.forEach(function (s) { drawn += s.xs.length; logged += s.n; });
    // Lines of several streams (ranks) are told apart by a legend (the runs table names whole runs).
    if (list.some(function (s) { return s.stream !== null; })) {
      list.forEach(function (s) {
        ch.legend.appendChild(el("span", { cls: "item", "data-stream": s.stream, "data-run": RUNS[s.run].id }, [
          el("span", { cls: "sw", style: "background:" + color(s.color) }), el("span", { text: s.label })]));
      });
    }
    ch.note.textContent = !list.length ? "" : (nruns + (nruns === 1 ? " run" : " runs") +
      (list.length > nruns ? " · " + list.length + " lines" : "") +
      (logged > drawn ? " · " + drawn.toLocaleString() + " of " + logged.toLocaleString() + " points" : "") +
      (ch.axis !== state.xaxis ? " · x: " + axisLabel(ch.axis) : ""));
    if (!list.length) {
      if (ch.loading) {
        ch.body.appendChild(el("div", { cls: "empty", text: "loading " + ch.key + "…" }));
        return;
      }
      ch.body.appendChild(el("div", { cls: "empty", text: "no selected run logged " + ch.key +
        (state.xaxis.indexOf("key:") === 0 && ch.kind === "history" ? " with " + state.xaxis.slice(4) : "") }));
      return;
    }
    var w = state.smoothing;
    var data = [null];
    var series = [{}];
    var logy = state.logy;
    function pos(a) { return logy ? a.map(function (v) { return v !== null && v > 0 ? v : null; }) : a; }
    list.forEach(function (s) {
      var facets = [{ scale: "x", auto: true, sorted: s.sorted ? 1 : 0 }, { scale: "y", auto: true }];
      var dots = { show: s.xs.length <= 40, size: 4 }; // a few points (evals, system samples) as dots too
      if (w > 0) {
        data.push([s.xs, pos(s.draw)]);
        series.push({ label: s.label, stroke: color(s.color, 0.28), width: 1, facets: facets,
          paths: uPlot.paths.linear(), points: { show: false } });
        data.push([s.xs, pos(s.drawSm)]);
        series.push({ label: s.label + " (smoothed)", stroke: color(s.color), width: 1.6, facets: facets,
          paths: uPlot.paths.linear(), points: dots });
      } else {
        data.push([s.xs, pos(s.draw)]);
        series.push({ label: s.label, stroke: color(s.color), width: 1.4, facets: facets,
          paths: uPlot.paths.linear(), points: dots });
      }
    });
    var axis = ch.axis;
    var width = Math.max(200, ch.body.clientWidth || 380);
    var opts = {
      mode: 2,
      width: width,
      height: 220,
      legend: { show: false },
      scales: { x: { time: axis === "wall", auto: true }, y: logy ? { auto: true, distr: 3, log: 10 } : { auto: true } },
      series: series,
      axes: [
        {
          scale: "x", size: 34, font: "11px system-ui, sans-serif",
          values: axis === "rel" ? function (u, splits) { return splits.map(fmtDuration); } : undefined,
        },
        { scale: "y", size: yFormat(ch.key) === fmtShort ? 58 : 76, font: "11px system-ui, sans-serif",
          values: function (u, splits) { return splits.map(yFormat(ch.key)); } },
      ],
      cursor: {
        drag: { x: true, y: false, setScale: true },
        points: { show: false },
        dataIdx: function (u, si) {
          if (si === 0 || !u.data[si]) return null;
          return nearest(u.data[si][0], u.posToVal(u.cursor.left, "x"), true);
        },
      },
      hooks: {
        setCursor: [function (u) { showTip(u, ch); }],
      },
    };
    if (axis === "wall") delete opts.axes[0].values;
    ch.plot = new uPlot(opts, data, ch.body);
    ch.plot.over.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  }

  function makeChart(kind, key, grid) {
    var note = el("span", { cls: "note" });
    var body = el("div", { cls: "body" });
    var legend = el("div", { cls: "legend" });
    var box = el("div", { cls: "chart", "data-key": key, "data-kind": kind }, [
      el("div", { cls: "title" }, [el("span", { text: key }), note]), body, legend]);
    grid.appendChild(box);
    var ch = { kind: kind, key: key, box: box, body: body, note: note, legend: legend, plot: null, visible: false,
      stale: true };
    box._chart = ch;
    api.charts.push(ch);
    if (observer) observer.observe(box);
    else buildPlot(ch);
    return ch;
  }

  function redrawCharts() {
    api.charts.forEach(function (ch) {
      if (ch.visible) buildPlot(ch);
      else ch.stale = true;
    });
    api.redraws++;
  }

  var pending = false;
  function scheduleRedraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      redrawCharts();
      renderConfigDiff();
      renderMedia();
      updateCount();
    });
  }

  function groupKeys(keys, sep) {
    var groups = {};
    keys.forEach(function (k) {
      var cut = k.indexOf(sep);
      var g = cut > 0 ? k.slice(0, cut) : "";
      (groups[g] = groups[g] || []).push(k);
    });
    return Object.keys(groups).sort().map(function (g) { return { name: g, keys: groups[g].sort() }; });
  }

  function chartSection(title, kind, keys, sep, hint) {
    var sec = el("section", { cls: "block", id: "sec-" + kind }, [el("h2", { text: title })]);
    if (hint) sec.appendChild(el("div", { cls: "hint", text: hint }));
    groupKeys(keys, sep).forEach(function (g) {
      var grid = el("div", { cls: "grid" });
      var det = el("details", { cls: "group", open: true, "data-group": g.name }, [
        el("summary", {}, [g.name || "(no prefix)", el("span", { cls: "n", text: String(g.keys.length) })]), grid]);
      sec.appendChild(det);
      g.keys.forEach(function (k) { makeChart(kind, k, grid); });
    });
    return sec;
  }

  // ---------------------------------------------------------------- runs table
  function distinct(values) {
    var seen = new Set();
    values.forEach(function (v) { seen.add(JSON.stringify(v === undefined ? null : v)); });
    return seen.size;
  }

  function tableColumns() {
    var cols = [
      { k: "name", label: "name", get: function (r) { return r.name; } },
      { k: "id", label: "id", get: function (r) { return r.id; } },
      { k: "status", label: "status", get: function (r) { return r.status; } },
    ];
    if (distinct(RUNS.map(function (r) { return r.project; })) > 1) {
      cols.push({ k: "project", label: "project", get: function (r) { return r.project; } });
    }
    if (RUNS.some(function (r) { return r.group; })) {
      cols.push({ k: "group", label: "group", get: function (r) { return r.group; } });
    }
    if (RUNS.some(function (r) { return r.tags && r.tags.length; })) {
      cols.push({ k: "tags", label: "tags", get: function (r) { return (r.tags || []).join(" "); } });
    }
    cols.push({ k: "created", label: "created", get: function (r) { return r.created; }, fmt: fmtDate });
    cols.push({ k: "duration", label: "duration", get: function (r) { return r.duration; }, fmt: fmtDuration,
      num: true });
    cols.push({ k: "steps", label: "steps", get: function (r) { return r.steps; }, num: true });
    if (RUNS.some(function (r) { return r.error; })) {  // why a failed run failed (status.json error, spec §7.2)
      cols.push({ k: "error", label: "cause", get: function (r) { return r.error || ""; },
        fmt: function (v) { return v.length > 60 ? v.slice(0, 59) + "\u2026" : v; } });
    }
    // Config keys that differ between runs (the interesting hyperparameters), then common summary values.
    var cfgKeys = {};
    RUNS.forEach(function (r) { Object.keys(r.config || {}).forEach(function (k) { cfgKeys[k] = 1; }); });
    Object.keys(cfgKeys).sort().filter(function (k) {
      return distinct(RUNS.map(function (r) { return (r.config || {})[k]; })) > 1;
    }).slice(0, 8).forEach(function (k) {
      cols.push({ k: "config." + k, label: k, get: function (r) { return (r.config || {})[k]; }, fmt: fmtShort,
        num: true, title: "config." + k, prefix: "config." });
    });
    var sumCount = {};
    RUNS.forEach(function (r) {
      Object.keys(r.summary || {}).forEach(function (k) {
        if (typeof r.summary[k] === "number") sumCount[k] = (sumCount[k] || 0) + 1;
      });
    });
    Object.keys(sumCount).sort(function (a, b) { return sumCount[b] - sumCount[a] || (a < b ? -1 : 1); })
      .slice(0, 8).forEach(function (k) {
        cols.push({ k: "summary." + k, label: k, get: function (r) { return (r.summary || {})[k]; }, fmt: fmtShort,
          num: true, title: "summary." + k, prefix: "summary.",
          // the run's streams (ranks) set different values: say whose is shown (spec §3.3)
          note: function (r) { var f = (r.summary_from || {})[k]; return f ? " (" + f + ")" : ""; } });
      });
    return cols;
  }

  var COLS, tbody, headRow, allBox, rowOf; // made by runsSection (again when a served page's runs change)

  function orderedRuns() {
    var idx = RUNS.map(function (_r, i) { return i; });
    var c = state.sort.col;
    if (c === null) return idx;
    var col = COLS[c];
    idx.sort(function (a, b) {
      var va = col.get(RUNS[a]), vb = col.get(RUNS[b]);
      var na = va === null || va === undefined || va === "", nb = vb === null || vb === undefined || vb === "";
      if (na || nb) return na === nb ? a - b : na ? 1 : -1; // missing values last, either way
      var cmp = typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb));
      return (state.sort.desc ? -cmp : cmp) || a - b;
    });
    return idx;
  }

  function rowText(i) {
    var r = RUNS[i];
    return COLS.map(function (c) {
      var v = c.get(r);
      return (c.fmt ? c.fmt(v) : v === null || v === undefined ? "" : String(v));
    }).join(" ").toLowerCase();
  }

  function matches(i) {
    var terms = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
    if (!terms.length) return true;
    var text = rowText(i);
    return terms.every(function (t) { return text.indexOf(t) >= 0; });
  }

  function renderTable() {
    tbody.textContent = "";
    var shown = 0, shownSel = 0;
    orderedRuns().forEach(function (i) {
      if (!matches(i)) return;
      shown++;
      if (state.selected.has(i)) shownSel++;
      tbody.appendChild(rowOf[i]);
      rowOf[i].className = state.selected.has(i) ? "" : "off";
      rowOf[i]._box.checked = state.selected.has(i);
    });
    allBox.checked = shown > 0 && shownSel === shown;
    allBox.indeterminate = shownSel > 0 && shownSel < shown;
    Array.prototype.forEach.call(headRow.children, function (th, j) {
      var c = j - 1;
      th.classList.toggle("sorted", c >= 0 && c === state.sort.col);
      th.classList.toggle("desc", c >= 0 && c === state.sort.col && state.sort.desc);
    });
  }

  // The runs table itself (made again when a served page's runs change; the filter above it stays).
  function tableBlock() {
    COLS = tableColumns();
    tbody = el("tbody");
    headRow = el("tr");
    allBox = el("input", { type: "checkbox", title: "select all shown runs", checked: true });
    rowOf = [];
    headRow.appendChild(el("th", {}, [allBox]));
    COLS.forEach(function (c, j) {
      headRow.appendChild(el("th", { title: "sort by " + (c.title || c.label), "data-col": c.k,
        onclick: function () {
          if (state.sort.col === j) state.sort.desc = !state.sort.desc;
          else state.sort = { col: j, desc: false };
          renderTable();
          scheduleRedraw();
        } }, [c.prefix ? el("span", { cls: "pfx", text: c.prefix }) : null, c.label]));
    });
    RUNS.forEach(function (r, i) {
      var box = el("input", { type: "checkbox", "data-run": r.id, checked: true, onchange: function (ev) {
        if (ev.target.checked) state.selected.add(i);
        else state.selected.delete(i);
        renderTable();
        scheduleRedraw();
      } });
      var tr = el("tr", { "data-run": r.id }, [el("td", {}, [box, " ", el("span", { cls: "sw",
        style: "background:" + color(i) })])]);
      COLS.forEach(function (c) {
        var v = c.get(r);
        var note = c.note ? c.note(r) : "";
        var td = el("td", { cls: c.num ? "num" : c.k === "status" ? "status-" + v : null,
          text: (c.fmt ? c.fmt(v) : v === null || v === undefined ? "" : String(v)) + note,
          title: note ? "the run's streams set different values; this is" + note.replace(/[()]/g, "") +
            "'s, the first in reader order" : null });
        tr.appendChild(td);
      });
      tr._box = box;
      rowOf[i] = tr;
    });
    allBox.addEventListener("change", function () {
      orderedRuns().forEach(function (i) {
        if (!matches(i)) return;
        if (allBox.checked) state.selected.add(i);
        else state.selected.delete(i);
      });
      renderTable();
      scheduleRedraw();
    });
    renderTable();
    return el("div", { cls: "tablewrap", id: "runs-table" }, [el("table", { cls: "runs" }, [
      el("thead", {}, [headRow]), tbody])]);
  }

  function runsSection() {
    var table = tableBlock();
    var filter = el("input", { type: "search", placeholder: "filter runs (name, id, status, values…)",
      "aria-label": "filter runs", value: state.filter, oninput: function (ev) {
        state.filter = ev.target.value;
        renderTable();
      } });
    var only = el("button", { text: "draw shown only", title: "select exactly the runs the filter shows",
      onclick: function () {
        state.selected = new Set(RUNS.map(function (_r, i) { return i; }).filter(matches));
        renderTable();
        scheduleRedraw();
      } });
    return el("section", { cls: "block", id: "sec-runs" }, [
      el("h2", { text: "Runs" }),
      el("div", { cls: "tablebar" }, [filter, only]),
      table,
    ]);
  }

  // ---------------------------------------------------------------- config diff
  var cfgBox = el("div");

  function cfgText(v) {
    if (v === undefined) return null;
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function renderConfigDiff() {
    cfgBox.textContent = "";
    var sel = orderedRuns().filter(function (i) { return state.selected.has(i); });
    if (!sel.length) {
      cfgBox.appendChild(el("div", { cls: "hint", text: "select runs in the table to compare their config" }));
      return;
    }
    var keys = {};
    sel.forEach(function (i) { Object.keys(RUNS[i].config || {}).forEach(function (k) { keys[k] = 1; }); });
    var diff = [], same = [];
    Object.keys(keys).sort().forEach(function (k) {
      var vals = sel.map(function (i) { return cfgText((RUNS[i].config || {})[k]); });
      var differs = vals.some(function (v) { return v !== vals[0]; });
      (differs ? diff : same).push({ k: k, vals: vals });
    });
    function table(rows, cls) {
      var head = el("tr", {}, [el("th", { text: "key" })].concat(sel.map(function (i) {
        return el("th", {}, [el("span", { cls: "sw", style: "background:" + color(i) }), " " + runLabel(i)]);
      })));
      var body = rows.map(function (row) {
        return el("tr", { cls: cls, "data-key": row.k }, [el("td", { cls: "k", text: row.k })].concat(
          row.vals.map(function (v) {
            return v === null ? el("td", { cls: "missing", text: "(absent)" }) : el("td", { text: v });
          })));
      });
      return el("div", { cls: "tablewrap" }, [el("table", { cls: "cfg" }, [el("thead", {}, [head]),
        el("tbody", {}, body)])]);
    }
    cfgBox.appendChild(el("div", { cls: "hint", text: !(diff.length + same.length) ? "the selected runs logged no config"
      : diff.length + " of " + (diff.length + same.length) + " config keys differ between the " + sel.length +
      " selected runs" }));
    if (diff.length) cfgBox.appendChild(table(diff, "diff"));
    if (same.length) {
      cfgBox.appendChild(el("details", { cls: "group same" }, [
        el("summary", {}, [same.length + " identical keys"]), table(same, "same")]));
    }
  }

  // ---------------------------------------------------------------- media
  var mediaBox = el("div");
  var mediaStep = {}; // key -> chosen step

  function drawHistogram(h) {
    var canvas = el("canvas", { width: 240, height: 110, "data-kind": "histogram" });
    var ctx = canvas.getContext("2d");
    var counts = h.counts.map(function (v) { return num(v, false); });
    var edges = h.edges.map(function (v) { return num(v, false); });
    var maxc = 0;
    counts.forEach(function (c) { if (isFinite(c) && c > maxc) maxc = c; });
    var lo = edges[0], hi = edges[edges.length - 1];
    var W = 240, H = 96;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, 110);
    ctx.fillStyle = "rgb(47,111,222)";
    if (maxc > 0 && hi > lo) {
      counts.forEach(function (c, j) {
        if (!isFinite(c) || c <= 0) return;
        var x0 = ((edges[j] - lo) / (hi - lo)) * W, x1 = ((edges[j + 1] - lo) / (hi - lo)) * W;
        var bh = (c / maxc) * (H - 4);
        ctx.fillRect(x0, H - bh, Math.max(1, x1 - x0 - 0.5), bh);
      });
    }
    ctx.fillStyle = "#667085";
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(fmtShort(lo), 0, 108);
    var t = fmtShort(hi);
    ctx.fillText(t, W - ctx.measureText(t).width, 108);
    return canvas;
  }

  function mediaItem(it) {
    var kids = [];
    if (it.kind === "image") {
      kids.push(el("img", { src: it.data, width: it.w, height: it.h, alt: it.caption || "image",
        cls: Math.max(it.w, it.h) < 64 ? "tiny" : null }));
    } else if (it.kind === "histogram") {
      kids.push(drawHistogram(it.data));
    } else if (it.kind === "table") {
      var head = el("tr", {}, it.data.columns.map(function (c) { return el("th", { text: c }); }));
      var rows = it.data.rows.map(function (r) {
        return el("tr", {}, r.map(function (v) { return el("td", { text: fmtShort(v) }); }));
      });
      kids.push(el("table", { cls: "mtable" }, [el("thead", {}, [head]), el("tbody", {}, rows)]));
      if (it.data.total > it.data.rows.length) {
        kids.push(el("div", { text: "first " + it.data.rows.length + " of " + it.data.total + " rows" }));
      }
    } else if (it.kind === "text") {
      kids.push(el("pre", { text: it.data }));
      if (it.truncated) kids.push(el("div", { text: "(first part of " + it.truncated + " characters)" }));
    }
    if (it.caption) kids.push(el("div", { text: it.caption }));
    return el("div", { cls: "item", "data-kind": it.kind }, kids);
  }

  function renderMedia() {
    mediaBox.textContent = "";
    var sel = orderedRuns().filter(function (i) { return state.selected.has(i); });
    if (LIVE && (DATA.media_keys || []).length) fetchMedia(sel);
    (DATA.media_keys || []).forEach(function (key) {
      var steps = new Set();
      sel.forEach(function (i) {
        (runMedia(i)[key] || []).forEach(function (it) { steps.add(it.step); });
      });
      var list = Array.from(steps).sort(function (a, b) { return a - b; });
      var wrap = el("div", { cls: "media-key", "data-key": key }, [el("h3", { text: key })]);
      mediaBox.appendChild(wrap);
      if (!list.length) {
        wrap.appendChild(el("div", { cls: "hint", text: "no selected run logged " + key }));
        return;
      }
      var chosen = mediaStep[key];
      if (chosen === undefined || list.indexOf(chosen) < 0) chosen = list[list.length - 1];
      var label = el("span", { text: "step " + chosen });
      var cards = el("div", { cls: "cards" });
      function fill(step) {
        cards.textContent = "";
        sel.forEach(function (i) {
          var items = runMedia(i)[key] || [];
          if (!items.length) return;
          // This run's latest kept step at or before the chosen one (else its first).
          var at = null;
          items.forEach(function (it) { if (it.step <= step && (at === null || it.step > at)) at = it.step; });
          if (at === null) at = items[0].step;
          var shown = items.filter(function (it) { return it.step === at; });
          cards.appendChild(el("div", { cls: "card", "data-run": RUNS[i].id }, [
            el("div", { cls: "who" }, [el("span", { cls: "sw", style: "background:" + color(i) }),
              el("span", { text: runLabel(i) }), el("span", { cls: "at", text: "step " + at })]),
            el("div", { cls: "items" }, shown.map(mediaItem)),
          ]));
        });
      }
      var slider = el("input", { type: "range", min: 0, max: list.length - 1, step: 1,
        value: list.indexOf(chosen), "aria-label": "step of " + key, oninput: function (ev) {
          var s = list[Number(ev.target.value)];
          mediaStep[key] = s;
          label.textContent = "step " + s;
          fill(s);
        } });
      wrap.appendChild(el("div", { cls: "bar" }, [slider, label,
        el("span", { cls: "hint", text: list.length + " steps kept" })]));
      wrap.appendChild(cards);
      fill(chosen);
    });
    if (DATA.media_omitted) {
      mediaBox.appendChild(el("div", { cls: "hint", text: DATA.media_omitted +
        " media items left out to keep the report small (see --media-bytes)" }));
    }
  }

  // ---------------------------------------------------------------- page
  var countEl = el("span", { cls: "count" });
  function updateCount() {
    countEl.textContent = state.selected.size + " of " + RUNS.length + " runs drawn";
  }

  function controls() {
    var sel = el("select", { "aria-label": "x axis", id: "xaxis", onchange: function (ev) {
      state.xaxis = ev.target.value;
      scheduleRedraw();
    } }, [
      el("option", { value: "step", text: "step" }),
      el("option", { value: "wall", text: "wall time" }),
      el("option", { value: "rel", text: "relative time" }),
    ].concat((DATA.xkeys || []).map(function (k) { return el("option", { value: "key:" + k, text: k }); })));
    var out = el("output", { text: state.smoothing.toFixed(3) });
    var slider = el("input", { type: "range", id: "smoothing", min: 0, max: 0.999, step: 0.001,
      value: state.smoothing, "aria-label": "smoothing", oninput: function (ev) {
        var w = Number(ev.target.value);
        state.smoothing = w >= 0 && w < 1 ? w : 0;
        out.textContent = state.smoothing.toFixed(3);
        scheduleRedraw();
      } });
    var logBox = el("input", { type: "checkbox", id: "logy", onchange: function (ev) {
      state.logy = ev.target.checked;
      scheduleRedraw();
    } });
    var meanBox = el("input", { type: "checkbox", id: "streammean", onchange: function (ev) {
      state.meanStreams = ev.target.checked;
      scheduleRedraw();
    } });
    var anyStreams = RUNS.some(function (r) {
      if (LIVE) return r.streams > 1;
      var ser = (r.history || {}).series || {};
      return Object.keys(ser).some(function (k) { return ser[k].streams; });
    });
    return el("div", { cls: "controls" }, [
      el("label", {}, ["x axis", sel]),
      el("label", { title: "logarithmic y axis (values ≤ 0 are not drawn)" }, [logBox, "log y"]),
      anyStreams ? el("label", { title: "a key several streams (ranks) of a run logged: draw the mean over the " +
        "streams per step instead of one line per stream" }, [meanBox, "mean over streams"]) : null,
      el("label", { title: "debiased exponential moving average, as runsync.smooth() and TensorBoard" },
        ["smoothing", slider, out]),
      countEl,
      el("span", { cls: "hint", text: "drag to zoom, double-click to reset; hover shows logged values" }),
    ]);
  }

  var metaEl = el("div", { cls: "meta" });
  function updateMeta() {
    metaEl.textContent = RUNS.length + " runs from " + DATA.source + (LIVE ? " · live, updated " +
      fmtDate(DATA.generated) + (DATA.pending ? " · reading " + DATA.pending + " runs…" : "") +
      (lastProblem ? " · " + lastProblem : "") : " · generated " + fmtDate(DATA.generated));
  }

  function header() {
    updateMeta();
    var h = el("header", { cls: "top" }, [el("h1", { text: DATA.title || "runsync report" }), metaEl]);
    if (DATA.errors && DATA.errors.length) {
      h.appendChild(el("details", { cls: "problems" }, [
        el("summary", { text: DATA.errors.length + " problem(s) while reading runs" }),
        el("ul", {}, DATA.errors.map(function (e) { return el("li", { text: e.path + ": " + e.error }); })),
      ]));
    }
    return h;
  }

  function main() {
    document.title = DATA.title || "runsync report";
    var app = document.getElementById("app");
    app.textContent = "";
    if ("IntersectionObserver" in window) {
      observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (en) {
          var ch = en.target._chart;
          ch.visible = en.isIntersecting;
          if (ch.visible && (ch.stale || !ch.plot)) buildPlot(ch);
        });
        if (!api.ready) {
          api.ready = true;
          api.redraws++;
        }
      }, { rootMargin: "300px 0px" });
    }
    var m = el("main");
    app.appendChild(header());
    app.appendChild(controls());
    app.appendChild(m);
    m.appendChild(runsSection());
    if (!RUNS.length) m.appendChild(el("p", { cls: "hint", text: "No runs matched." }));
    if ((DATA.keys || []).length) {
      m.appendChild(chartSection("Metrics", "history", DATA.keys, "/", null));
    } else if (RUNS.length) {
      m.appendChild(el("p", { cls: "hint", text: "No numeric metrics were logged by these runs." }));
    }
    if ((DATA.system_keys || []).length) {
      m.appendChild(chartSection("System", "system", DATA.system_keys, ".",
        "x axis: step, wall time or relative time (system samples have no logged keys to plot against)"));
    }
    if ((DATA.media_keys || []).length) {
      m.appendChild(el("section", { cls: "block", id: "sec-media" }, [el("h2", { text: "Media" }), mediaBox]));
      renderMedia();
    }
    m.appendChild(el("section", { cls: "block", id: "sec-config" }, [el("h2", { text: "Config" }), cfgBox]));
    renderConfigDiff();
    document.body.appendChild(tip);
    updateCount();
    if (!observer || !api.charts.length) {
      api.ready = true;
      api.redraws++;
    }
    if ("ResizeObserver" in window && !api.resizing) {
      api.resizing = true;
      var lastW = 0;
      new ResizeObserver(function () {
        var wdt = document.body.clientWidth;
        if (Math.abs(wdt - lastW) < 8) return;
        lastW = wdt;
        api.charts.forEach(function (ch) {
          if (ch.plot) ch.plot.setSize({ width: Math.max(200, ch.body.clientWidth), height: 220 });
        });
      }).observe(document.body);
    }
  }

  // ---------------------------------------------------------------- served page: the index
  // Build the page again (runs or chart keys changed): the choices made so far are kept.
  function rebuild() {
    var y = window.scrollY;
    var typing = document.activeElement && document.activeElement.type === "search";
    api.charts.forEach(function (ch) { if (ch.plot) ch.plot.destroy(); });
    api.charts = [];
    if (observer) observer.disconnect();
    main();
    window.scrollTo(0, y);
    var f = typing && document.querySelector("#sec-runs input[type=search]");
    if (f) {
      f.focus();
      f.setSelectionRange(f.value.length, f.value.length);
    }
  }

  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

  // A new index from the server: keep each run's fetched data (refetched when its version changed) and
  // the selection (by id); runs that appear are drawn while fewer than live.select are.
  function applyIndex(idx) {
    var first = DATA.v === null;
    var old = {};
    RUNS.forEach(function (r, i) { old[r.id] = { r: r, sel: state.selected.has(i) }; });
    var oldIds = RUNS.map(function (r) { return r.id; });
    var structural = first || !same(oldIds, idx.runs.map(function (r) { return r.id; })) ||
      !same(DATA.keys, idx.keys) || !same(DATA.system_keys, idx.system_keys) ||
      !same(DATA.media_keys, idx.media_keys) || !same(DATA.xkeys, idx.xkeys) ||
      (DATA.errors || []).length !== (idx.errors || []).length;
    var changed = false;
    var sel = new Set();
    idx.runs.forEach(function (r, i) {
      var o = old[r.id];
      if (o) {
        r._live = o.r._live;
        r._media = o.r._media;
        r._want = o.r._want;
        if (o.r.rv !== r.rv || !same(o.r.status, r.status) || o.r.steps !== r.steps) changed = true;
        if (o.sel) sel.add(i);
      } else if (first ? i < LIVE.select : sel.size < LIVE.select) {
        sel.add(i);
      }
    });
    DATA = api.data = idx;
    RUNS = idx.runs;
    state.selected = sel;
    lastProblem = null;
    if (structural) {
      rebuild();
      return;
    }
    updateMeta();
    if (!changed) return;
    var table = document.getElementById("runs-table");
    if (table) {
      var fresh = tableBlock();
      var top = table.scrollTop, left = table.scrollLeft;
      table.replaceWith(fresh);
      fresh.scrollTop = top;
      fresh.scrollLeft = left;
    }
    redrawCharts();
    renderConfigDiff();
    renderMedia();
    updateCount();
  }

  function poll() {
    api.polls++;
    getJSON(LIVE.index + (DATA.v === null ? "" : "?v=" + DATA.v)).then(function (idx) {
      if (!idx.same) applyIndex(idx);
    }).catch(function (e) {
      problem("server unreachable (" + e.message + "); retrying");
    }).finally(function () {
      setTimeout(poll, LIVE.poll * 1000);
    });
  }

  api.redraw = redrawCharts;
  if (LIVE) poll();
  else main();
})();
