// modelserve live dashboard: polls GET /stats and redraws. No dependencies, no build step.
(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var lastOk = 0;
  var windowLabel = "window";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function fmtNum(v, digits) {
    if (!isNum(v)) return "–";
    if (v === 0) return "0";
    var d = digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
    return v.toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: d });
  }

  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–"; }

  function fmtMs(v) { return isNum(v) ? fmtNum(v) + " ms" : "–"; }

  function fmtPct(v) {
    if (!isNum(v)) return "–";
    var p = v * 100;
    return (p === 0 ? "0" : p < 1 ? p.toFixed(2) : p.toFixed(1)) + "%";
  }

  function fmtDuration(s) {
    if (!isNum(s)) return "";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // ok / warn / bad for a rate, given the thresholds at which it turns amber and red.
  function level(v, warn, bad) {
    if (!isNum(v)) return "";
    return v >= bad ? "bad" : v >= warn ? "warn" : "";
  }

  function setKpi(name, value, sub, cls) {
    var tile = document.querySelector('[data-kpi="' + name + '"]');
    tile.querySelector(".value").textContent = value;
    tile.querySelector(".sub").textContent = sub || "";
    tile.className = "kpi" + (cls ? " " + cls : "");
  }

  function renderHeader(data) {
    var pill = document.getElementById("ready-pill");
    if (data.draining) { pill.textContent = "draining"; pill.className = "pill warn"; }
    else if (data.ready) { pill.textContent = "ready"; pill.className = "pill ok"; }
    else { pill.textContent = "not ready"; pill.className = "pill bad"; }
    pill.title = (data.reasons || []).join("; ");
    document.getElementById("meta").textContent =
      "up " + fmtDuration(data.uptime_s) + " · " + data.workers +
      (data.workers === 1 ? " worker" : " workers") + " · window " + fmtDuration(data.window_s) +
      " · updated " + new Date().toLocaleTimeString();
  }

  function renderKpis(t) {
    setKpi("requests_per_s", fmtNum(t.requests_per_s), fmtInt(t.requests_total) + " total");
    setKpi("rows_per_s", fmtNum(t.rows_per_s), "rows predicted");
    setKpi("p50", fmtMs(t.latency_ms.p50), "HTTP, all routes");
    setKpi("p95", fmtMs(t.latency_ms.p95), "");
    setKpi("p99", fmtMs(t.latency_ms.p99), "");
    setKpi("error_rate", fmtPct(t.error_rate), fmtInt(t.requests) + " requests in window",
      level(t.error_rate, 0.001, 0.01));
    setKpi("shed_rate", fmtPct(t.shed_rate), "refused: queue full", level(t.shed_rate, 0.001, 0.01));
    setKpi("client_error_rate", fmtPct(t.client_error_rate),
      t.rate_limited ? fmtInt(t.rate_limited) + " rate-limited" : "bad input, auth, limits",
      level(t.client_error_rate, 0.05, 0.2));
  }

  function stat(key, value, cls) {
    var box = el("div", "stat" + (cls ? " " + cls : ""));
    box.appendChild(el("div", "k", key));
    box.appendChild(el("div", "v", value));
    return box;
  }

  function panel(title) {
    var box = el("div", "panel");
    box.appendChild(el("h3", null, title));
    return box;
  }

  function bar(name, share, markerAt, fillCls, numText) {
    var frag = document.createDocumentFragment();
    var label = el("div", "name", name);
    label.title = name;
    frag.appendChild(label);
    var track = el("div", "track");
    var fill = el("div", "fill" + (fillCls ? " " + fillCls : ""));
    fill.style.width = Math.max(0, Math.min(1, share)) * 100 + "%";
    track.appendChild(fill);
    if (isNum(markerAt)) {
      var marker = el("div", "marker");
      marker.style.left = "calc(" + Math.max(0, Math.min(1, markerAt)) * 100 + "% - 1px)";
      track.appendChild(marker);
    }
    frag.appendChild(track);
    frag.appendChild(el("div", "num", numText));
    return frag;
  }

  function trafficPanel(m) {
    var box = panel("Traffic");
    var grid = el("div", "stats");
    grid.appendChild(stat("Predictions / s", fmtNum(m.predictions_per_s)));
    grid.appendChild(stat("Total", fmtInt(m.predictions_total)));
    grid.appendChild(stat("Rows / s", fmtNum(m.rows_per_s)));
    grid.appendChild(stat("p50", fmtMs(m.latency_ms.p50)));
    grid.appendChild(stat("p95", fmtMs(m.latency_ms.p95)));
    grid.appendChild(stat("p99", fmtMs(m.latency_ms.p99)));
    var errors = stat("Errors", fmtPct(m.error_rate), level(m.error_rate, 0.001, 0.01));
    errors.title = Object.keys(m.errors || {}).map(function (code) {
      return code + ": " + m.errors[code];
    }).join("\n") || "no errors";
    grid.appendChild(errors);
    grid.appendChild(stat("Bad input", fmtPct(m.client_error_rate), level(m.client_error_rate, 0.05, 0.2)));
    grid.appendChild(stat("Shed", fmtPct(m.shed_rate), level(m.shed_rate, 0.001, 0.01)));
    grid.appendChild(stat("Cache hits", fmtPct(m.cache_hit_rate)));
    grid.appendChild(stat("Queue rows", fmtInt(m.queue_rows)));
    grid.appendChild(stat("Batch rows", m.batch_rows.mean === null ? "–" :
      fmtNum(m.batch_rows.mean, 1) + " avg"));
    box.appendChild(grid);
    return box;
  }

  function classPanel(m) {
    var box = panel("Class mix");
    var live = m.class_mix || {};
    var ref = m.drift.reference_class_mix || {};
    var names = Object.keys(Object.assign({}, ref, live)).sort();
    if (!names.length) {
      box.appendChild(el("div", "empty", m.task === "regressor" ? "regression model" : "no predictions in the window"));
      return box;
    }
    var bars = el("div", "bars");
    names.forEach(function (name) {
      bars.appendChild(bar(name, live[name] || 0, ref[name], undefined, fmtPct(live[name] || 0)));
    });
    box.appendChild(bars);
    var legend = el("div", "legend");
    var swatch = el("span", "swatch");
    swatch.style.background = "var(--accent)";
    legend.appendChild(swatch);
    legend.appendChild(document.createTextNode(windowLabel));
    if (Object.keys(ref).length) {
      legend.appendChild(el("span", "tick"));
      legend.appendChild(document.createTextNode("reference"));
    }
    if (isNum(m.drift.class_mix_shift)) {
      legend.appendChild(document.createTextNode(" · shift " + fmtPct(m.drift.class_mix_shift)));
    }
    box.appendChild(legend);
    return box;
  }

  function confidencePanel(m) {
    var box = panel("Confidence");
    var buckets = (m.confidence.histogram || []).filter(function (b) { return b.le !== null; });
    var total = buckets.reduce(function (s, b) { return s + b.count; }, 0);
    if (!total) {
      box.appendChild(el("div", "empty", m.task === "regressor" ? "regression model" : "no predictions in the window"));
      return box;
    }
    var peak = Math.max.apply(null, buckets.map(function (b) { return b.count; }));
    var hist = el("div", "histogram");
    var lower = 0;
    buckets.forEach(function (b) {
      var col = el("div", "col");
      col.style.height = (b.count / peak) * 100 + "%";
      col.title = lower + "–" + b.le + ": " + b.count;
      lower = b.le;
      hist.appendChild(col);
    });
    box.appendChild(hist);
    var axis = el("div", "axis");
    axis.appendChild(el("span", null, "0"));
    axis.appendChild(el("span", null, "top-1 probability"));
    axis.appendChild(el("span", null, "1"));
    box.appendChild(axis);
    var ref = m.drift.reference_mean_confidence;
    box.appendChild(el("div", "legend", "mean " + fmtNum(m.confidence.mean, 3) +
      (isNum(ref) ? " · reference " + fmtNum(ref, 3) : "")));
    return box;
  }

  function driftPanel(m) {
    var d = m.drift;
    var box = panel("Drift (PSI per feature)");
    var features = Object.keys(d.psi || {});
    if (!d.has_profile) {
      box.appendChild(el("div", "empty", "no reference profile: make one with `modelserve profile`"));
      return box;
    }
    if (!features.length) {
      box.appendChild(el("div", "empty", "collecting rows: " + fmtInt(d.window_rows) + " so far"));
      return box;
    }
    var threshold = d.psi_threshold;
    var scale = Math.max(threshold * 2, Math.max.apply(null, features.map(function (f) { return d.psi[f]; })));
    var bars = el("div", "bars");
    features.forEach(function (f) {
      var v = d.psi[f];
      var cls = v > threshold ? "bad" : v > Math.min(0.1, threshold / 2) ? "warn" : "ok";
      var row = bar(f, v / scale, threshold / scale, cls, fmtNum(v, 3));
      row.querySelector(".marker").className = "marker threshold";
      bars.appendChild(row);
    });
    box.appendChild(bars);
    var drifting = features.filter(function (f) { return d.psi[f] > threshold; });
    var legend = el("div", "legend", (drifting.length ? "drifting: " + drifting.join(", ") : "none over the threshold") +
      " · threshold " + threshold + " · last " + fmtInt(d.window_rows) + " rows");
    box.appendChild(legend);
    return box;
  }

  // Typed versions: each feature's type and PSI; for a categorical one the window's share of
  // each reference category, "other" and "missing" (bar) against the reference share (tick).
  function featuresPanel(m) {
    var features = m.drift.features || [];
    var box = panel("Typed features");
    var threshold = m.drift.psi_threshold;
    features.forEach(function (f) {
      var item = el("div", "feature");
      item.setAttribute("data-feature", f.name);
      var psi = isNum(f.psi) ? " · PSI " + fmtNum(f.psi, 3) : "";
      var head = el("div", "feature-head" + (isNum(f.psi) && f.psi > threshold ? " bad" : ""),
        f.name + " · " + f.type + psi);
      item.appendChild(head);
      if (f.reference_shares) {
        var live = f.live_shares;
        if (!live) {
          item.appendChild(el("div", "empty", "collecting rows"));
        } else {
          var bars = el("div", "bars");
          Object.keys(f.reference_shares).forEach(function (name) {
            var share = live[name] || 0;
            bars.appendChild(bar(name, share, f.reference_shares[name], undefined, fmtPct(share)));
          });
          item.appendChild(bars);
        }
      }
      box.appendChild(item);
    });
    var legend = el("div", "legend");
    var swatch = el("span", "swatch");
    swatch.style.background = "var(--accent)";
    legend.appendChild(swatch);
    legend.appendChild(document.createTextNode(windowLabel + " (this worker)"));
    legend.appendChild(el("span", "tick"));
    legend.appendChild(document.createTextNode("reference"));
    box.appendChild(legend);
    return box;
  }

  function isTyped(m) {
    return (m.drift.features || []).some(function (f) { return f.type !== "float"; });
  }

  function badgeFor(m) {
    var drifting = m.drift && Object.keys(m.drift.psi || {}).some(function (f) {
      return m.drift.psi[f] > m.drift.psi_threshold;
    });
    if (m.status !== "ready") return ["badge bad", m.status];
    if (drifting) return ["badge warn", "drifting"];
    return ["badge ok", "ready"];
  }

  function modelCard(m) {
    var card = el("article", "card");
    card.setAttribute("data-model", m.model + ":" + m.model_version);
    var head = el("div", "card-head");
    head.appendChild(el("h2", null, m.model + " · v" + m.model_version));
    var b = badgeFor(m);
    head.appendChild(el("span", b[0], b[1]));
    head.appendChild(el("span", "badge", m.format));
    if (m.task) head.appendChild(el("span", "badge", m.task));
    card.appendChild(head);
    var body = el("div", "card-body");
    body.appendChild(trafficPanel(m));
    body.appendChild(classPanel(m));
    body.appendChild(confidencePanel(m));
    body.appendChild(driftPanel(m));
    if (isTyped(m)) body.appendChild(featuresPanel(m));
    card.appendChild(body);
    return card;
  }

  function idleChip(m) {
    var chip = el("div", "chip");
    chip.setAttribute("data-model", m.model + ":" + m.model_version);
    chip.appendChild(el("strong", null, m.model + " · v" + m.model_version));
    var b = badgeFor(m);
    chip.appendChild(document.createTextNode(" "));
    chip.appendChild(el("span", b[0], b[1]));
    chip.appendChild(el("span", "muted", " " + m.format + " · no traffic yet"));
    return chip;
  }

  function renderModels(models) {
    var active = document.getElementById("models");
    var idle = document.getElementById("idle");
    var cards = document.createDocumentFragment();
    var chips = document.createDocumentFragment();
    models.forEach(function (m) {
      if (m.predictions_total > 0 || Object.keys(m.errors || {}).length) cards.appendChild(modelCard(m));
      else chips.appendChild(idleChip(m));
    });
    active.replaceChildren(cards);
    idle.replaceChildren(chips);
  }

  function render(data) {
    windowLabel = "last " + fmtDuration(data.window_s);
    renderHeader(data);
    renderKpis(data.traffic);
    renderModels(data.models || []);
  }

  function showProblem(text) {
    var pill = document.getElementById("ready-pill");
    pill.textContent = text;
    pill.className = "pill bad";
    if (lastOk) {
      document.getElementById("meta").textContent = "last update " + new Date(lastOk).toLocaleTimeString();
    }
  }

  function refresh() {
    fetch("/stats", { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          throw new Error("GET /stats needs an API key");
        }
        if (!response.ok) throw new Error("GET /stats answered " + response.status);
        return response.json();
      })
      .then(function (data) {
        lastOk = Date.now();
        render(data);
        document.body.setAttribute("data-updated", String(lastOk));
      })
      .catch(function (err) { showProblem(err.message === "Failed to fetch" ? "unreachable" : err.message); })
      .then(function () { window.setTimeout(refresh, REFRESH_MS); });
  }

  refresh();
})();
