// CovariateShift report: draws everything from the JSON embedded in the page. Our own code, no library, no network.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
    [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37]];
  var RUN_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var $ = function (id) { return document.getElementById(id); };
  var state = { stat: null, log: false, clip: true, filter: "all", regex: "", layer: null, histStep: 0 };

  // ---------- data decoding ----------
  function f32(b64) {
    var bin = atob(b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }
  function u8(b64) {
    var bin = atob(b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }
  D.runs.forEach(function (r) {
    var vals = {};
    Object.keys(r.values).forEach(function (k) { vals[k] = f32(r.values[k]); });
    r.vals = vals;
    if (r.hist) r.hist.layers.forEach(function (h) { if (h) h.q = u8(h.data); });
  });

  // ---------- helpers ----------
  function color(t) {
    if (!(t >= 0)) t = 0; if (t > 1) t = 1;
    var x = t * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    var a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return "n/a";
    if (!isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
    return (Math.round(v * 10000) / 10000).toString();
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function category(type) {
    if (/norm/i.test(type)) return "norms";
    if (/^(ReLU|ReLU6|Sigmoid|Tanh|GELU|SiLU|Softplus|LeakyReLU|ELU|Hardsigmoid|Hardtanh|Softmax|Mish)$/i.test(type)) return "activations";
    if (/linear|conv/i.test(type)) return "linear";
    return "other";
  }
  function layerVisible(layer) {
    var f = state.filter;
    if (f !== "all") {
      if (f.indexOf("type:") === 0) { if (layer.type !== f.substring(5)) return false; }
      else if (category(layer.type) !== f) return false;
    }
    if (state.regex) {
      try { if (!new RegExp(state.regex).test(layer.name)) return false; } catch (e) { return true; }
    }
    return true;
  }
  function percentile(sorted, p) {
    if (sorted.length === 0) return NaN;
    var x = p * (sorted.length - 1), i = Math.floor(x), f = x - i;
    return i + 1 < sorted.length ? sorted[i] + (sorted[i + 1] - sorted[i]) * f : sorted[i];
  }
  function statInfo(key) { for (var i = 0; i < D.stats.length; i++) if (D.stats[i].key === key) return D.stats[i]; return null; }

  // ---------- heatmaps ----------
  var heat = { scale: null, panels: [] };
  function computeScale() {
    var key = state.stat, info = statInfo(key), all = [];
    D.runs.forEach(function (r) {
      var v = r.vals[key]; if (!v) return;
      var cols = r.steps.length;
      r.layers.forEach(function (l, li) {
        if (!layerVisible(l)) return;
        for (var c = 0; c < cols; c++) { var x = v[li * cols + c]; if (isFinite(x)) all.push(x); }
      });
    });
    all.sort(function (a, b) { return a - b; });
    if (all.length === 0) return null;
    var lo = state.clip ? percentile(all, 0.01) : all[0], hi = state.clip ? percentile(all, 0.99) : all[all.length - 1];
    var minPos = NaN;
    for (var i = 0; i < all.length; i++) if (all[i] > 0) { minPos = all[i]; break; }
    var canLog = info.positive && isFinite(minPos);
    var log = state.log && canLog;
    if (log) {
      if (!(lo > 0)) lo = minPos;
      if (!(hi > lo)) hi = lo * 10;
    }
    if (!(hi > lo)) { hi = lo + (Math.abs(lo) || 1) * 1e-6; }
    return { lo: lo, hi: hi, log: log, canLog: canLog, count: all.length, ratio: all[all.length - 1] / minPos };
  }
  function toUnit(s, x) {
    if (s.log) { if (!(x > 0)) return 0; return (Math.log(x) - Math.log(s.lo)) / (Math.log(s.hi) - Math.log(s.lo)); }
    return (x - s.lo) / (s.hi - s.lo);
  }
  var LEFT = 130, TOP = 8, BOTTOM = 28;
  function drawHeatmaps() {
    var box = $("heatmaps"); box.innerHTML = "";
    heat.panels = [];
    var s = heat.scale = computeScale();
    drawLegend(s);
    D.runs.forEach(function (r, ri) {
      var panel = el("div", { "class": "panel" });
      panel.appendChild(el("h3", null, r.name));
      box.appendChild(panel);
      var v = r.vals[state.stat];
      if (!r.layers.length) { panel.appendChild(el("p", { "class": "note" }, "no metrics in this run")); return; }
      if (!v) { panel.appendChild(el("p", { "class": "note" }, "this run has no '" + state.stat + "' values")); return; }
      var rows = []; r.layers.forEach(function (l, li) { if (layerVisible(l)) rows.push(li); });
      if (!rows.length) { panel.appendChild(el("p", { "class": "note" }, "no layer matches the filter")); return; }
      var cols = r.steps.length, rowH = Math.max(4, Math.min(18, Math.floor(320 / rows.length)));
      var plotW = Math.max(240, Math.min(520, cols * 3)), W = LEFT + plotW + 6, H = TOP + rows.length * rowH + BOTTOM;
      var cv = el("canvas", { width: W, height: H, "class": "heatmap", "data-run": r.name });
      panel.appendChild(cv);
      var ctx = cv.getContext("2d");
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
      var off = document.createElement("canvas"); off.width = cols; off.height = rows.length;
      var octx = off.getContext("2d"), img = octx.createImageData(cols, rows.length), px = img.data;
      for (var y = 0; y < rows.length; y++) {
        for (var c = 0; c < cols; c++) {
          var x = v[rows[y] * cols + c], o = (y * cols + c) * 4;
          if (!isFinite(x) || !s) { px[o] = 225; px[o + 1] = 225; px[o + 2] = 225; px[o + 3] = 255; continue; }
          var col = color(toUnit(s, x));
          px[o] = col[0]; px[o + 1] = col[1]; px[o + 2] = col[2]; px[o + 3] = 255;
        }
      }
      octx.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(off, LEFT, TOP, plotW, rows.length * rowH);
      ctx.fillStyle = "#222"; ctx.font = Math.min(11, rowH) + "px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
      var every = Math.max(1, Math.ceil(11 / rowH));
      for (var k = 0; k < rows.length; k += every) {
        var nm = r.layers[rows[k]].name; if (nm.length > 20) nm = "…" + nm.substring(nm.length - 19);
        ctx.fillText(nm, LEFT - 4, TOP + (k + 0.5) * rowH);
      }
      ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.font = "10px sans-serif";
      [0, 0.5, 1].forEach(function (f) {
        var ci = Math.round(f * (cols - 1)); ctx.textAlign = f === 0 ? "left" : f === 1 ? "right" : "center";
        ctx.fillText("step " + r.steps[ci], LEFT + f * plotW, TOP + rows.length * rowH + 4);
      });
      heat.panels.push({ canvas: cv, run: r, rows: rows, cols: cols, rowH: rowH, plotW: plotW });
      cv.addEventListener("mousemove", function (ev) { hover(ev, heat.panels[idxOf(cv)]); });
      cv.addEventListener("mouseleave", function () { $("tooltip").style.display = "none"; });
    });
    var sig = 0, painted = 0;
    heat.panels.forEach(function (p) {
      var d = p.canvas.getContext("2d").getImageData(0, 0, p.canvas.width, p.canvas.height).data;
      for (var i = 0; i < d.length; i += 4) {
        if (!(d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255) && !(d[i] === 225 && d[i + 1] === 225 && d[i + 2] === 225)) painted++;
        sig = (sig * 31 + d[i] * 7 + d[i + 1] * 3 + d[i + 2]) % 2147483647;
      }
    });
    document.body.setAttribute("data-heatmap-stat", state.stat);
    document.body.setAttribute("data-heatmap-signature", String(sig));
    document.body.setAttribute("data-heatmap-painted", String(painted));
    document.body.setAttribute("data-heatmap-panels", String(heat.panels.length));
  }
  function idxOf(cv) { for (var i = 0; i < heat.panels.length; i++) if (heat.panels[i].canvas === cv) return i; return 0; }
  function hover(ev, p) {
    var rect = p.canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left - LEFT, y = ev.clientY - rect.top - TOP, tip = $("tooltip");
    var c = Math.floor(x / (p.plotW / p.cols)), k = Math.floor(y / p.rowH);
    if (c < 0 || c >= p.cols || k < 0 || k >= p.rows.length) { tip.style.display = "none"; return; }
    var li = p.rows[k], v = p.run.vals[state.stat][li * p.cols + c];
    tip.textContent = "run " + p.run.name + " | layer " + p.run.layers[li].name + " (" + p.run.layers[li].type + ") | step " + p.run.steps[c] + " | " + state.stat + " = " + fmt(v);
    tip.style.display = "block"; tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px";
  }
  function drawLegend(s) {
    var cv = $("legend"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
    ctx.clearRect(0, 0, W, H);
    var txt = $("legend-text");
    if (!s) { txt.textContent = "no finite values of this statistic in the shown layers"; return; }
    for (var x = 0; x < W; x++) { var c = color(x / (W - 1)); ctx.fillStyle = "rgb(" + c.map(Math.round).join(",") + ")"; ctx.fillRect(x, 0, 1, H); }
    txt.textContent = fmt(s.lo) + " … " + fmt(s.hi) + (s.log ? " (log scale)" : " (linear scale)") +
      (state.clip ? ", clipped to the 1st–99th percentile of the shown values" : ", full range") + "; grey: no value";
    $("log").disabled = !s.canLog;
  }

  // ---------- seed picture: distribution by depth at a step ----------
  function histSteps() {
    var set = {};
    D.runs.forEach(function (r) { if (r.hist) r.hist.steps.forEach(function (s) { set[s] = true; }); });
    return Object.keys(set).map(Number).sort(function (a, b) { return a - b; });
  }
  var allHistSteps = [];
  function nearestIndex(steps, step) {
    var best = -1; for (var i = 0; i < steps.length; i++) if (steps[i] <= step) best = i;
    return best < 0 ? 0 : best;
  }
  function drawDepth() {
    var box = $("depth"); box.innerHTML = "";
    if (!allHistSteps.length) { box.appendChild(el("p", { "class": "note" }, "no histograms in these runs")); return; }
    var step = allHistSteps[Math.min(state.histStep, allHistSteps.length - 1)];
    $("depth-step").textContent = "step " + step;
    // One value axis for every run and layer: the union of the layers' histogram ranges (shown layers only).
    var lo = Infinity, hi = -Infinity;
    D.runs.forEach(function (r) {
      if (!r.hist) return;
      r.hist.layers.forEach(function (h, li) { if (h && layerVisible(r.layers[li])) { lo = Math.min(lo, h.low); hi = Math.max(hi, h.high); } });
    });
    if (!(hi > lo)) { lo = -1; hi = 1; }
    var NB = 80;
    D.runs.forEach(function (r) {
      var panel = el("div", { "class": "panel" }); panel.appendChild(el("h3", null, r.name)); box.appendChild(panel);
      if (!r.hist) { panel.appendChild(el("p", { "class": "note" }, "no histograms")); return; }
      var si = nearestIndex(r.hist.steps, step);
      panel.appendChild(el("div", { "class": "note" }, "recorded step " + r.hist.steps[si]));
      var rows = []; r.layers.forEach(function (l, li) { if (r.hist.layers[li] && layerVisible(l)) rows.push(li); });
      var rowH = Math.max(4, Math.min(18, Math.floor(320 / Math.max(1, rows.length))));
      var plotW = 400, W = LEFT + plotW + 6, H = TOP + rows.length * rowH + BOTTOM;
      var cv = el("canvas", { width: W, height: H, "class": "depthmap" }); panel.appendChild(cv);
      var ctx = cv.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
      rows.forEach(function (li, k) {
        var h = r.hist.layers[li], K = h.bins, q = h.q, base = si * K, acc = new Float64Array(NB), tot = 0;
        for (var b = 0; b < K; b++) {
          var m = q[base + b] / 255; m = m * m; if (!m) continue;   // stored as sqrt(fraction) in 0..255
          var center = b === 0 ? h.low : b === K - 1 ? h.high : h.low + (b - 0.5) * (h.high - h.low) / (K - 2);
          var nb = Math.min(NB - 1, Math.max(0, Math.floor((center - lo) / (hi - lo) * NB)));
          acc[nb] += m; tot += m;
        }
        var mx = 0; for (var i = 0; i < NB; i++) mx = Math.max(mx, acc[i]);
        for (var j = 0; j < NB; j++) {
          var c = color(mx > 0 ? Math.sqrt(acc[j] / mx) : 0);
          ctx.fillStyle = "rgb(" + c.map(Math.round).join(",") + ")";
          ctx.fillRect(LEFT + j * plotW / NB, TOP + k * rowH, Math.ceil(plotW / NB), rowH);
        }
        ctx.fillStyle = "#222"; ctx.font = Math.min(11, rowH) + "px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
        if (rowH >= 8 || k % Math.ceil(11 / rowH) === 0) { var nm = r.layers[li].name; if (nm.length > 20) nm = "…" + nm.substring(nm.length - 19); ctx.fillText(nm, LEFT - 4, TOP + (k + 0.5) * rowH); }
      });
      ctx.fillStyle = "#222"; ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.font = "10px sans-serif";
      [0, 0.5, 1].forEach(function (f) { ctx.textAlign = f === 0 ? "left" : f === 1 ? "right" : "center"; ctx.fillText(fmt(lo + f * (hi - lo)), LEFT + f * plotW, TOP + rows.length * rowH + 4); });
    });
  }

  // ---------- line charts ----------
  function niceTicks(lo, hi, n) {
    var span = hi - lo; if (!(span > 0)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10(span / n))), err = span / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3) step *= 5; else if (err >= 1.5) step *= 2;
    var t = [], s = Math.ceil(lo / step) * step;
    for (var x = s; x <= hi + step * 1e-9; x += step) t.push(x);
    return t;
  }
  function lineChart(container, title, series, opts) {
    opts = opts || {};
    var wrap = el("div", { "class": "chart" }); wrap.appendChild(el("h3", null, title)); container.appendChild(wrap);
    var W = opts.width || 560, H = opts.height || 260, L = 64, R = 10, T = 10, B = 34;
    var cv = el("canvas", { width: W, height: H }); wrap.appendChild(cv);
    var ctx = cv.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    var xs = [], ys = [];
    series.forEach(function (s) {
      s.points.forEach(function (p) { if (isFinite(p[0]) && isFinite(p[1]) && (!opts.logY || p[1] > 0)) { xs.push(p[0]); ys.push(p[1]); } });
      (s.band || []).forEach(function (p) { if (isFinite(p[1]) && isFinite(p[2])) { ys.push(p[1]); ys.push(p[2]); } });
    });
    if (!xs.length) { wrap.appendChild(el("p", { "class": "note" }, "no data")); return; }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (opts.logY) { y0 = Math.log10(y0); y1 = Math.log10(y1); }
    if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y1 = y0 + 1; y0 = y0 - 1; }
    var pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    var X = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var Y = function (y) { if (opts.logY) y = Math.log10(y); return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
    ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#333"; ctx.font = "10px sans-serif"; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    niceTicks(y0, y1, 5).forEach(function (t) {
      var yy = T + (1 - (t - y0) / (y1 - y0)) * (H - T - B);
      ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(W - R, yy); ctx.stroke();
      ctx.fillText(opts.logY ? fmt(Math.pow(10, t)) : fmt(t), L - 4, yy);
    });
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    niceTicks(x0, x1, 6).forEach(function (t) { ctx.fillText(fmt(t), X(t), H - B + 4); });
    ctx.fillText(opts.xLabel || "step", (L + W) / 2, H - 14);
    series.forEach(function (s, i) {
      var c = s.color || RUN_COLORS[i % RUN_COLORS.length];
      if (s.band && s.band.length) {
        ctx.fillStyle = c; ctx.globalAlpha = 0.18; ctx.beginPath();
        s.band.forEach(function (p, j) { if (j === 0) ctx.moveTo(X(p[0]), Y(p[2])); else ctx.lineTo(X(p[0]), Y(p[2])); });
        for (var j = s.band.length - 1; j >= 0; j--) ctx.lineTo(X(s.band[j][0]), Y(s.band[j][1]));
        ctx.closePath(); ctx.fill(); ctx.globalAlpha = 1;
        [1, 2].forEach(function (k) {
          ctx.strokeStyle = c; ctx.setLineDash([4, 3]); ctx.beginPath(); var on = false;
          s.band.forEach(function (p) { if (!isFinite(p[k])) { on = false; return; } if (!on) { ctx.moveTo(X(p[0]), Y(p[k])); on = true; } else ctx.lineTo(X(p[0]), Y(p[k])); });
          ctx.stroke(); ctx.setLineDash([]);
        });
      }
      ctx.strokeStyle = c; ctx.lineWidth = 1.5; ctx.beginPath(); var on = false;
      s.points.forEach(function (p) {
        if (!isFinite(p[1]) || (opts.logY && !(p[1] > 0))) { on = false; return; }
        if (!on) { ctx.moveTo(X(p[0]), Y(p[1])); on = true; } else ctx.lineTo(X(p[0]), Y(p[1]));
      });
      ctx.stroke(); ctx.lineWidth = 1;
      if (s.points.length < 40) { ctx.fillStyle = c; s.points.forEach(function (p) { if (isFinite(p[1])) { ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 2.5, 0, 7); ctx.fill(); } }); }
    });
    // Vertical markers (forecast warnings): a dashed line at the step and a label at the top.
    var drawn = 0;
    (opts.markers || []).forEach(function (mk) {
      if (!isFinite(mk.x) || mk.x < x0 || mk.x > x1) return;
      var xx = X(mk.x); drawn++;
      ctx.strokeStyle = mk.color; ctx.lineWidth = 1.5; ctx.setLineDash([5, 3]);
      ctx.beginPath(); ctx.moveTo(xx, T); ctx.lineTo(xx, H - B); ctx.stroke(); ctx.setLineDash([]); ctx.lineWidth = 1;
      ctx.fillStyle = mk.color; ctx.beginPath(); ctx.moveTo(xx - 5, T); ctx.lineTo(xx + 5, T); ctx.lineTo(xx, T + 8); ctx.closePath(); ctx.fill();
      if (mk.label) { ctx.font = "10px sans-serif"; ctx.textAlign = xx > W - 120 ? "right" : "left"; ctx.textBaseline = "top"; ctx.fillText(mk.label, xx + (xx > W - 120 ? -7 : 7), T); }
    });
    if (opts.markers) cv.setAttribute("data-markers", String(drawn));
    var lg = el("div", { "class": "chart-legend" });
    series.forEach(function (s, i) {
      var item = el("span", null, s.name); item.style.borderLeft = "14px solid " + (s.color || RUN_COLORS[i % RUN_COLORS.length]); lg.appendChild(item);
    });
    wrap.appendChild(lg);
  }

  function layerSeries(key, layerName, withBand) {
    var out = [];
    D.runs.forEach(function (r, ri) {
      var li = -1; r.layers.forEach(function (l, i) { if (l.name === layerName) li = i; });
      if (li < 0 || !r.vals[key]) return;
      var cols = r.steps.length, v = r.vals[key], pts = [], band = [];
      for (var c = 0; c < cols; c++) {
        pts.push([r.steps[c], v[li * cols + c]]);
        if (withBand) band.push([r.steps[c], r.vals.p15[li * cols + c], r.vals.p85[li * cols + c]]);
      }
      out.push({ name: r.name, color: RUN_COLORS[ri % RUN_COLORS.length], points: pts, band: withBand ? band : null });
    });
    return out;
  }
  function drawLayerCharts() {
    var box = $("percentiles"); box.innerHTML = "";
    lineChart(box, "15th / 50th / 85th percentiles of " + state.layer + " (line: median; band and dashes: 15th–85th)", layerSeries("p50", state.layer, true), { width: 760, height: 320 });
    var g = $("gradients"); g.innerHTML = "";
    // Per-layer gradient norms: median over the recorded steps of every layer with parameters, in network order.
    var byLayer = D.runs.map(function (r, ri) {
      var v = r.vals.grad_norm, cols = r.steps.length, pts = [], k = 0;
      if (v) r.layers.forEach(function (l, li) {
        var xs = []; for (var c = 0; c < cols; c++) { var x = v[li * cols + c]; if (isFinite(x)) xs.push(x); }
        if (!xs.length) return; xs.sort(function (a, b) { return a - b; }); pts.push([k++, percentile(xs, 0.5)]);
      });
      return { name: r.name, color: RUN_COLORS[ri % RUN_COLORS.length], points: pts };
    });
    lineChart(g, "gradient norm per layer with parameters (median over recorded steps; x = layer index in network order; log scale)", byLayer, { logY: true, xLabel: "layer with parameters (network order)" });
    var gl = gradLayer(state.layer);
    var note = gl === state.layer ? "" : " (the nearest layer with parameters at or before " + state.layer + ")";
    lineChart(g, "gradient norm of " + gl + note + " (log scale)", layerSeries("grad_norm", gl, false), { logY: true });
    lineChart(g, "update / weight norm of " + gl + " (log scale)", layerSeries("update_to_weight_ratio", gl, false), { logY: true });
    drawEvolution();
  }
  function gradLayer(name) {
    var best = name;
    D.runs.some(function (r) {
      var li = -1; r.layers.forEach(function (l, i) { if (l.name === name) li = i; });
      var v = r.vals.grad_norm; if (li < 0 || !v) return false;
      var cols = r.steps.length;
      for (var k = li; k >= 0; k--) { for (var c = 0; c < cols; c++) if (isFinite(v[k * cols + c])) { best = r.layers[k].name; return true; } }
      return false;
    });
    return best;
  }
  function drawEvolution() {
    var box = $("evolution"); box.innerHTML = "";
    D.runs.forEach(function (r) {
      var panel = el("div", { "class": "panel" }); panel.appendChild(el("h3", null, r.name)); box.appendChild(panel);
      var li = -1; r.layers.forEach(function (l, i) { if (l.name === state.layer) li = i; });
      var h = li >= 0 && r.hist ? r.hist.layers[li] : null;
      if (!h) { panel.appendChild(el("p", { "class": "note" }, "no histograms of this layer")); return; }
      var n = r.hist.steps.length, K = h.bins, W = 420, Hh = 200, L = 50, B = 24;
      var cv = el("canvas", { width: L + W + 4, height: Hh + B + 6 }); panel.appendChild(cv);
      var ctx = cv.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cv.width, cv.height);
      var off = document.createElement("canvas"); off.width = n; off.height = K;
      var octx = off.getContext("2d"), img = octx.createImageData(n, K), px = img.data;
      // fastai's "colorful dimension": log(1 + count) per bin, one column per recorded step, low values at the bottom.
      var mx = 0, vals = new Float64Array(n * K);
      for (var s = 0; s < n; s++) for (var b = 0; b < K; b++) { var m = h.q[s * K + b] / 255; var x = Math.log1p(m * m * 2048); vals[s * K + b] = x; if (x > mx) mx = x; }
      for (var s2 = 0; s2 < n; s2++) for (var b2 = 0; b2 < K; b2++) {
        var c = color(mx > 0 ? vals[s2 * K + b2] / mx : 0), o = ((K - 1 - b2) * n + s2) * 4;
        px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
      }
      octx.putImageData(img, 0, 0); ctx.imageSmoothingEnabled = false; ctx.drawImage(off, L, 4, W, Hh);
      ctx.fillStyle = "#222"; ctx.font = "10px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(fmt(h.high), L - 3, 8); ctx.fillText(fmt(h.low), L - 3, Hh);
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      [0, 0.5, 1].forEach(function (f) { var i = Math.round(f * (n - 1)); ctx.textAlign = f === 0 ? "left" : f === 1 ? "right" : "center"; ctx.fillText("step " + r.hist.steps[i], L + f * W, Hh + 8); });
    });
  }
  function num(x) { return x === null || x === undefined ? NaN : x; }
  function drawCurves() {
    var box = $("curves"); box.innerHTML = "";
    var tr = D.runs.map(function (r, i) { return { name: r.name, color: RUN_COLORS[i % RUN_COLORS.length], points: r.train.map(function (p) { return [p[0], num(p[1])]; }) }; });
    var tl = D.runs.map(function (r, i) { return { name: r.name, color: RUN_COLORS[i % RUN_COLORS.length], points: r.test.map(function (p) { return [p[0], num(p[1])]; }) }; });
    var ta = D.runs.map(function (r, i) { return { name: r.name, color: RUN_COLORS[i % RUN_COLORS.length], points: r.test.map(function (p) { return [p[0], num(p[2])]; }) }; });
    var markers = [];
    D.runs.forEach(function (r, i) {
      (r.forecasts || []).forEach(function (f) {
        markers.push({ x: f.step, color: RUN_COLORS[i % RUN_COLORS.length], label: "divergence ahead (" + (D.runs.length > 1 ? r.name + ", " : "") + "step " + f.step + ", within " + f.horizon + ")" });
      });
    });
    lineChart(box, "training loss" + (markers.length ? " (dashed: the forecaster's divergence warnings)" : ""), tr, { logY: true, markers: markers });
    document.body.setAttribute("data-forecast-markers", String(markers.length));
    lineChart(box, "test loss", tl, { logY: true });
    lineChart(box, "test accuracy", ta, {});
  }
  function drawOverhead() {
    var box = $("overhead"); box.innerHTML = "";
    var any = false;
    var series = D.runs.map(function (r, i) {
      var o = r.overhead || { share: null, points: [] };
      if (o.points.length) any = true;
      return { name: r.name + (o.share === null ? " (not measured)" : ": " + fmt(100 * o.share) + "% of the step time"), color: RUN_COLORS[i % RUN_COLORS.length],
        points: o.points.map(function (p) { return [p[0], 100 * p[1]]; }) };
    });
    if (!any) { box.appendChild(el("p", { "class": "note" }, "no monitor timing in these runs (metrics.jsonl written before the monitor timed itself)")); return; }
    lineChart(box, "monitor time / step time (%) per recorded step", series, { width: 760 });
  }
  function drawTables() {
    var w = $("warnings"); w.innerHTML = "";
    var t = el("table"), hd = el("tr");
    ["run", "layer", "kind", "first step", "times warned", "hint"].forEach(function (h) { hd.appendChild(el("th", null, h)); });
    t.appendChild(hd);
    var any = false;
    D.runs.forEach(function (r) {
      r.warnings.forEach(function (x) {
        any = true; var tr = el("tr");
        [r.name, x.layer, x.kind, x.firstStep, x.count, x.hint].forEach(function (v) { tr.appendChild(el("td", null, String(v))); });
        t.appendChild(tr);
      });
    });
    if (any) w.appendChild(t); else w.appendChild(el("p", { "class": "note" }, "no monitor warnings in these runs (or no log.clef)"));
    var f = $("facts"); f.innerHTML = "";
    D.runs.forEach(function (r) {
      var d = el("details"); d.appendChild(el("summary", null, r.name + " — " + r.dir));
      var tb = el("table");
      r.facts.forEach(function (kv) { var tr = el("tr"); tr.appendChild(el("td", null, kv[0])); tr.appendChild(el("td", null, kv[1])); tb.appendChild(tr); });
      d.appendChild(tb); f.appendChild(d);
    });
  }

  // ---------- controls ----------
  function setup() {
    var notes = $("notes");
    D.notes.forEach(function (n) { notes.appendChild(el("li", null, n)); });
    D.runs.forEach(function (r) {
      if (r.stepNote) notes.appendChild(el("li", null, r.name + ": " + r.stepNote));
      r.notes.forEach(function (n) { notes.appendChild(el("li", null, r.name + ": " + n)); });
    });
    if (!notes.children.length) notes.appendChild(el("li", null, "every file of every run was read in full; nothing was downsampled or skipped"));
    var sel = $("stat"), present = {};
    D.runs.forEach(function (r) { Object.keys(r.vals).forEach(function (k) { present[k] = true; }); });
    D.stats.forEach(function (s) { if (present[s.key]) { var o = el("option", { value: s.key }, s.label); sel.appendChild(o); } });
    var m = /stat=([a-z0-9_]+)/.exec(location.hash);
    state.stat = m && present[m[1]] ? m[1] : (present.std ? "std" : (sel.options.length ? sel.options[0].value : "mean"));
    sel.value = state.stat;
    var types = {}; D.runs.forEach(function (r) { r.layers.forEach(function (l) { types[l.type] = true; }); });
    var fl = $("filter");
    [["all", "all layers"], ["activations", "only activations"], ["norms", "only norms"], ["linear", "only linear / conv"]].forEach(function (p) { fl.appendChild(el("option", { value: p[0] }, p[1])); });
    Object.keys(types).sort().forEach(function (t) { if (t) fl.appendChild(el("option", { value: "type:" + t }, "type " + t)); });
    var names = [], seen = {};
    D.runs.forEach(function (r) { r.layers.forEach(function (l) { if (!seen[l.name]) { seen[l.name] = true; names.push(l.name); } }); });
    var ls = $("layer");
    names.forEach(function (n) { ls.appendChild(el("option", { value: n }, n)); });
    state.layer = D.defaultLayer && seen[D.defaultLayer] ? D.defaultLayer : names[names.length - 1];
    ls.value = state.layer;
    function autoLog() { var info = statInfo(state.stat); state.log = false; var s = computeScale(); state.log = !!(info && info.positive && s && s.canLog && s.ratio > 100); $("log").checked = state.log; }
    autoLog();
    sel.addEventListener("change", function () { state.stat = sel.value; autoLog(); drawHeatmaps(); });
    $("log").addEventListener("change", function () { state.log = $("log").checked; drawHeatmaps(); });
    $("clip").addEventListener("change", function () { state.clip = $("clip").checked; drawHeatmaps(); });
    fl.addEventListener("change", function () { state.filter = fl.value; drawHeatmaps(); drawDepth(); });
    $("regex").addEventListener("input", function () { state.regex = $("regex").value; drawHeatmaps(); drawDepth(); });
    ls.addEventListener("change", function () { state.layer = ls.value; drawLayerCharts(); });
    allHistSteps = histSteps();
    var sl = $("depth-slider"); sl.max = Math.max(0, allHistSteps.length - 1); sl.value = 0;
    sl.addEventListener("input", function () { state.histStep = +sl.value; drawDepth(); });
  }

  setup();
  drawHeatmaps();
  drawDepth();
  drawLayerCharts();
  drawCurves();
  drawOverhead();
  drawTables();
  document.body.setAttribute("data-ready", "1");

  if (/selftest/.test(location.hash)) {
    // Used by the browser test: choose another statistic through the real control and record both drawings.
    var sel = $("stat"), before = document.body.getAttribute("data-heatmap-signature"), beforeStat = state.stat;
    for (var i = 0; i < sel.options.length; i++) if (sel.options[i].value !== beforeStat && sel.options[i].value !== "mean") { sel.value = sel.options[i].value; break; }
    sel.dispatchEvent(new Event("change"));
    var b = document.body;
    b.setAttribute("data-selftest-before-stat", beforeStat); b.setAttribute("data-selftest-before-signature", before);
    b.setAttribute("data-selftest-after-stat", state.stat); b.setAttribute("data-selftest-after-signature", b.getAttribute("data-heatmap-signature"));
    var sl2 = $("depth-slider"); sl2.value = sl2.max; sl2.dispatchEvent(new Event("input"));
    b.setAttribute("data-selftest", "done");
  }
})();
