// dashboard.js - draws the dashboard from the JSON API v1/dashboard, fetched
// relative to the page so that every host serves these same files under any
// URL prefix (mabd at /, mab.flask at MAB_DASHBOARD_URL). Every number is
// computed by the host; this file only lays out tables and draws the charts
// as inline SVG. DOM nodes are built with textContent, never HTML.
"use strict";

(function () {
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
                  "#db2777", "#4b5563", "#65a30d", "#9333ea"];
  const SVG = "http://www.w3.org/2000/svg";
  const NOT_COLORS = ["inherit", "initial", "unset", "revert", "revert-layer",
                      "currentcolor", "transparent"];
  const NOT_AVAILABLE = {share_last_bucket: "share of traffic in the last bucket",
                         history: "history of time buckets",
                         holdout: "holdout comparison", srm_p_value: "sample-ratio check",
                         late_rewards: "late rewards"};

  // A plain CSS colour ("#00FF00", "green", "rgb(0, 255, 0)", "hsl(...)"),
  // as the browser understands it; never var(), keywords or anything else.
  function cssColor(v) {
    if (typeof v !== "string" || v.length > 64) return null;
    const t = v.trim();
    if (!/^(#[0-9a-f]{3,8}|[a-z]+|(rgba?|hsla?|hwb|lab|lch|oklab|oklch)\([0-9a-z.,%\s/+-]*\))$/i.test(t))
      return null;
    if (NOT_COLORS.includes(t.toLowerCase())) return null;
    return window.CSS && CSS.supports("color", t) ? t : null;
  }

  // FNV-1a (32 bits) of the arm's id: its palette colour does not depend on
  // where the arm is in the config.
  function paletteColor(id) {
    let h = 0x811c9dc5;
    for (const byte of new TextEncoder().encode(id)) {
      h ^= byte;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return COLORS[h % COLORS.length];
  }

  // An arm valued with a colour is drawn in it; else an arm named as one
  // ("green"); else a stable palette colour by id.
  function armColor(arm) {
    return cssColor(arm.value) || cssColor(arm.id) || paletteColor(arm.id);
  }

  // P(best) as the core words it: 10^4 draws cannot tell 1 from 0.9999.
  // Three decimals as the core and `mab report` print them (C's printf):
  // an exact tie rounds to even, where toFixed would round it up. A double
  // is exactly halfway between two thousandths only when it is an odd
  // multiple of 1/16 (0.0625 = 625 of 10,000 draws, 0.1875, ...); every
  // other value toFixed already rounds as printf does.
  function fixed3(p) {
    if (Number.isInteger(p * 16) && !Number.isInteger(p * 8)) {
      const n = Math.floor(p * 1000); // exact: an odd multiple of 62.5
      return ((n % 2 ? n + 1 : n) / 1000).toFixed(3);
    }
    return p.toFixed(3);
  }

  function prob(p) {
    if (p === null || p === undefined || !isFinite(p)) return "–";
    return p >= 0.9995 ? ">0.999" : p < 0.0005 ? "<0.001" : fixed3(p);
  }

  function loss(x) {
    return x === null || x === undefined || !isFinite(x) ? "–" : Number(x.toPrecision(2)).toString();
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(x, digits) {
    return x === null || x === undefined || !isFinite(x) ? "–" : x.toFixed(digits);
  }

  function pct(x) {
    return x === null || x === undefined || !isFinite(x) ? "–" : (100 * x).toFixed(1) + "%";
  }

  function time(t) {
    const d = new Date(t * 1000);
    return d.toTimeString().slice(0, 5);
  }

  // A line chart: series = [{name, color, points: [[t, y or null], ...]}].
  // marks: admin actions [{t, action, arm}] drawn as dashed vertical lines;
  // name: set for the charts of stored buckets (a point per bucket).
  function lineChart(title, series, yMax, yLabel, marks, name) {
    const box = el("div", {class: "chart", "data-chart": name || ""});
    box.appendChild(el("h3", {}, title));
    const all = series.flatMap(s => s.points.filter(p => p[1] !== null));
    if (all.length < 2) {
      box.appendChild(el("p", {class: "empty"}, name
        ? "Not enough stored buckets yet: one point per bucket with events."
        : "Not enough samples yet: one point per series interval."));
      return box;
    }
    const W = 560, H = 200, L = 44, R = 10, T = 10, B = 24;
    const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]));
    const span = Math.max(1, t1 - t0);
    const x = t => L + (W - L - R) * (t - t0) / span;
    const y = v => T + (H - T - B) * (1 - v / yMax);
    const chart = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title});
    for (let i = 0; i <= 4; i++) {
      const v = yMax * i / 4;
      chart.appendChild(svg("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eef0f3"}));
      chart.appendChild(svg("text", {x: L - 6, y: y(v) + 3, "text-anchor": "end"},
        yLabel(v)));
    }
    chart.appendChild(svg("text", {x: L, y: H - 6}, time(t0)));
    chart.appendChild(svg("text", {x: W - R, y: H - 6, "text-anchor": "end"}, time(t1)));
    for (const s of series) {
      let d = "", pen = "M";
      for (const [t, v] of s.points) {
        if (v === null) { pen = "M"; continue; }
        d += `${pen}${x(t).toFixed(1)},${y(Math.min(v, yMax)).toFixed(1)} `;
        pen = "L";
      }
      if (d) chart.appendChild(svg("path", {d, fill: "none", stroke: s.color,
                                            "stroke-width": 2, "data-arm": s.name}));
      if (name) {
        for (const [t, v] of s.points)
          if (v !== null) chart.appendChild(svg("circle", {cx: x(t).toFixed(1),
            cy: y(Math.min(v, yMax)).toFixed(1), r: 2.5, fill: s.color, "data-arm": s.name,
            "data-t": t}));
      }
    }
    for (const m of marks || []) {
      if (m.t < t0 || m.t > t1) continue;
      const mark = svg("line", {x1: x(m.t), x2: x(m.t), y1: T, y2: H - B, class: "admin-mark",
                                "data-action": m.action});
      mark.appendChild(svg("title", {}, actionText(m)));
      chart.appendChild(mark);
    }
    box.appendChild(chart);
    return box;
  }

  // An admin action in words: "14:02 pause (serves red)".
  function actionText(m) {
    return `${time(m.t)} ${m.action}` + (m.arm ? ` (serves ${m.arm})` : "");
  }

  // The admin actions of an experiment (pause, resume, conclude, clear), listed.
  function actionsList(events) {
    const box = el("div", {class: "admin-events"});
    if (!events.length) return box;
    box.appendChild(el("h3", {}, "Admin actions"));
    const list = el("ul", {});
    for (const m of events) list.appendChild(el("li", {"data-action": m.action}, actionText(m)));
    box.appendChild(list);
    return box;
  }

  // Per-interval share of pulls and cumulative reward rate, from the
  // samples plus the current totals as the last point.
  function chartsFor(exp, samples, now, marks) {
    // Only the samples that hold the experiment (a host may send the stored
    // past of each experiment at its own bucket ends).
    const points = samples.filter(s => s.e && s.e[exp.id])
                          .map(s => ({t: s.t, arms: s.e[exp.id]}));
    const current = {};
    for (const a of exp.arms) current[a.id] = [a.pulls, a.reward_sum];
    if (!points.length || points[points.length - 1].t < now) points.push({t: now, arms: current});
    const share = [], rate = [];
    exp.arms.forEach(a => {
      const color = armColor(a);
      const sp = [], rp = [];
      for (let k = 0; k < points.length; k++) {
        const cur = points[k].arms[a.id] || [0, 0];
        rp.push([points[k].t, cur[0] > 0 ? cur[1] / cur[0] : null]);
        if (k === 0) continue;
        let total = 0;
        for (const b of exp.arms) {
          const c = points[k].arms[b.id] || [0, 0], p = points[k - 1].arms[b.id] || [0, 0];
          total += Math.max(0, c[0] - p[0]);
        }
        const prev = points[k - 1].arms[a.id] || [0, 0];
        sp.push([points[k].t, total > 0 ? Math.max(0, cur[0] - prev[0]) / total : null]);
      }
      share.push({name: a.id, color, points: sp});
      rate.push({name: a.id, color, points: rp});
    });
    const span = exp.reward_max - exp.reward_min;
    const rateMax = exp.reward_min >= 0 ? Math.max(...exp.arms.map(a => a.hi || 0),
                                                   span > 0 ? 0.05 * span : 1) : exp.reward_max;
    const charts = el("div", {class: "charts"});
    charts.appendChild(lineChart("Traffic share per interval (this host's samples)", share, 1,
                                 v => Math.round(100 * v) + "%", marks));
    charts.appendChild(lineChart("Reward rate (cumulative)", rate, rateMax || 1,
                                 v => v.toFixed(rateMax < 1 ? 3 : 1), marks));
    return charts;
  }

  // Per-bucket charts from the report's "history": the store's time buckets,
  // so they hold what happened before the host (re)started. Each point is
  // also a circle carrying its bucket's start (data-t), for readers and tests.
  function bucketCharts(exp, report) {
    const history = report.history;
    const charts = el("div", {class: "charts buckets"});
    if (!Array.isArray(history)) {
      const why = (report.not_available_reasons || {}).history || "the report has no history";
      charts.appendChild(el("p", {class: "empty history-na"},
                            `Share and reward rate per bucket: not available (${why}).`));
      return charts;
    }
    const share = [], rate = [];
    exp.arms.forEach(a => {
      const color = armColor(a);
      const sp = [], rp = [];
      for (const b of history) {
        const cell = (b.arms || {})[a.id] || {};
        sp.push([b.start, cell.share === undefined ? null : cell.share]);
        rp.push([b.start, cell.rate === undefined ? null : cell.rate]);
      }
      share.push({name: a.id, color, points: sp});
      rate.push({name: a.id, color, points: rp});
    });
    const rates = history.flatMap(b => Object.values(b.arms || {}).map(c => c.rate))
                         .filter(v => v !== null && v !== undefined && isFinite(v));
    const rateMax = Math.max(exp.reward_min >= 0 ? 0 : exp.reward_max, ...rates) || 1;
    const width = report.bucket_seconds ? `${report.bucket_seconds} s buckets` : "buckets";
    charts.appendChild(lineChart(`Traffic share per bucket (${width}, stored)`, share, 1,
                                 v => Math.round(100 * v) + "%", null, "share-buckets"));
    charts.appendChild(lineChart(`Reward rate per bucket (${width}, stored)`, rate, rateMax,
                                 v => v.toFixed(rateMax < 1 ? 3 : 1), null, "rate-buckets"));
    return charts;
  }

  function notAvailable(report, key, fallback) {
    const why = (report.not_available_reasons || {})[key] || fallback;
    return `not available (${why})`;
  }

  // The operating rules in force (the core's mab_rules(), in the report),
  // the holdout comparison and the sample-ratio check, one line each.
  function rulesPanel(report) {
    const panel = el("dl", {class: "rules-panel", "data-rules": report.rules ? "yes" : "no"});
    const add = (key, label, text) => {
      panel.appendChild(el("dt", {}, label));
      panel.appendChild(el("dd", {"data-rule": key}, text));
    };
    const r = report.rules;
    if (r) {
      add("state", "state", r.state === "running" ? "running"
          : `${r.state}, serving ${r.serve || "the leader"}`);
      add("floor", "floor", r.floor > 0 ? `${r.floor} per arm` : "none");
      add("burn_in", "burn-in", r.burn_in > 0 ? `${r.burn_in} pulls per arm` : "none");
      add("holdout", "holdout", r.holdout ? `${pct(r.holdout.share)} of visitors, ` +
          (r.holdout.arm ? `arm ${r.holdout.arm}` : "uniform") : "none");
      add("attribution_window", "attribution window",
          r.attribution_window > 0 ? `${r.attribution_window} s` : "none");
    } else {
      add("state", "rules", "not available (this host's libmab reports no rules)");
    }
    if (report.winner_rule)
      add("winner", "winner rule", `P(best) ≥ ${report.winner_rule.p_best} and expected loss < ` +
          `${report.winner_rule.expected_loss}`);
    const h = report.holdout;
    add("holdout_comparison", "bandit − holdout",
        h ? `${fmt(h.diff, 4)} reward per visitor, 95% [${fmt(h.diff_low, 4)}, ${fmt(h.diff_high, 4)}]`
          : notAvailable(report, "holdout", "no holdout"));
    // The sample-ratio check: read when the core reports it, else said so.
    const srm = report.srm_p_value;
    add("srm", "sample-ratio check",
        srm !== null && srm !== undefined && isFinite(srm)
          ? `p = ${srm < 0.0001 ? srm.toExponential(1) : srm.toFixed(4)}` +
            (report.srm_status ? ` (${report.srm_status})` : srm < 0.001 ? " (mismatch)" : " (ok)")
          : notAvailable(report, "srm_p_value", "not computed by this host's libmab"));
    return panel;
  }

  // The policy's parameters: its config object without "plugin".
  function parameters(params) {
    const rest = Object.entries(params || {}).filter(([k]) => k !== "plugin");
    return rest.length ? rest.map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(", ")
                       : "no parameters";
  }

  function experimentSection(exp, data) {
    const report = exp.report || {arms: {}, not_available: []};
    const section = el("section", {class: "experiment", "data-experiment": exp.id});
    const title = el("h2", {}, exp.id);
    if (report.leader) {
      title.appendChild(el("span", {class: report.winner ? "badge leader winner" : "badge leader",
                                    "data-leader": report.leader},
                           report.winner ? `winner: ${report.leader}` : `leader: ${report.leader}`));
    }
    section.appendChild(title);
    section.appendChild(el("p", {class: report.winner ? "recommendation winner" : "recommendation",
                                 "data-winner": String(!!report.winner)},
                           report.recommendation || "no report"));
    section.appendChild(el("div", {class: "meta policy"},
      `policy ${exp.policy} (${parameters(report.policy_params)}) · ${exp.pulls} pulls · ` +
      `rewards in [${exp.reward_min}, ${exp.reward_max}]`));
    if (report.winner_rule) {
      section.appendChild(el("div", {class: "meta rule"},
        `${report.model === "beta" ? "Beta" : "Normal"} posteriors, ${report.draws} draws · ` +
        `winner when P(best) ≥ ${report.winner_rule.p_best} and expected loss < ` +
        `${report.winner_rule.expected_loss}`));
    }
    const table = el("table");
    const head = el("tr");
    for (const h of ["arm", "pulls", "rewards", "reward rate", "95% credible interval", "share",
                     "share, last bucket", "P(best)", "expected loss"])
      head.appendChild(el("th", {}, h));
    table.appendChild(head);
    const digits = exp.reward_max - exp.reward_min <= 1 ? 4 : 2;
    exp.arms.forEach(a => {
      const r = report.arms[a.id] || {};
      const leads = a.id === report.leader;
      const row = el("tr", {"data-arm": `${exp.id}/${a.id}`, class: leads ? "leader" : ""});
      const name = el("td", {class: "arm"});
      const color = armColor(a);
      const swatch = el("span", {class: "swatch", "data-color": color});
      swatch.style.background = color; // CSSOM: allowed by the page's CSP
      name.appendChild(swatch);
      name.appendChild(document.createTextNode(a.id));
      if (leads) name.appendChild(el("span", {class: "badge small"}, report.winner ? "winner" : "leader"));
      row.appendChild(name);
      row.appendChild(el("td", {class: "pulls"}, String(a.pulls)));
      row.appendChild(el("td", {class: "rewards"}, String(a.rewards)));
      row.appendChild(el("td", {class: "rate"}, fmt(a.rate, digits)));
      row.appendChild(el("td", {class: "interval"},
        r.ci_low !== null && r.ci_low !== undefined && isFinite(r.ci_low) ? `${fmt(r.ci_low, digits)} – ${fmt(r.ci_high, digits)}` : "–"));
      row.appendChild(el("td", {class: "share"}, pct(a.share)));
      row.appendChild(el("td", {class: "share_last_bucket"}, pct(r.share_last_bucket)));
      row.appendChild(el("td", {class: "p_best"}, prob(r.p_best)));
      row.appendChild(el("td", {class: "expected_loss"}, loss(r.expected_loss)));
      table.appendChild(row);
    });
    section.appendChild(table);
    const missing = (report.not_available || []).map(k => NOT_AVAILABLE[k] || k);
    if (missing.length)
      section.appendChild(el("p", {class: "not-available"}, `Not available yet: ${missing.join(", ")}.`));
    const actions = (data.events || []).filter(ev => ev.experiment === exp.id);
    section.appendChild(rulesPanel(report));
    section.appendChild(bucketCharts(exp, report));
    section.appendChild(chartsFor(exp, data.series || [], data.now, actions));
    section.appendChild(actionsList(actions));
    return section;
  }

  // The page's own query with offset set: the host pages the experiments
  // (v1/dashboard?offset=&limit=), the rest of the query (a token) is kept.
  function pageHref(offset) {
    const q = new URLSearchParams(window.location.search);
    q.set("offset", String(offset));
    return "?" + q.toString();
  }

  // Previous / next page links, when the host sends a page (total, offset,
  // limit) that is not the whole list.
  function pager(data) {
    const nav = document.getElementById("pages");
    if (!nav) return;
    nav.replaceChildren();
    const total = data.total, offset = data.offset, limit = data.limit;
    if (![total, offset, limit].every(Number.isInteger) || (offset === 0 && total <= limit))
      return;
    const shown = data.experiments.length;
    nav.appendChild(el("span", {class: "page-range"}, shown
      ? `experiments ${offset + 1}–${offset + shown} of ${total}`
      : `no experiments from ${offset + 1} (of ${total})`));
    if (offset > 0)
      nav.appendChild(el("a", {href: pageHref(Math.max(0, offset - limit)), rel: "prev",
                               class: "page-prev"}, "‹ previous"));
    if (offset + limit < total)
      nav.appendChild(el("a", {href: pageHref(offset + limit), rel: "next", class: "page-next"},
                         "next ›"));
  }

  function render(data) {
    const main = document.getElementById("experiments");
    main.replaceChildren(...data.experiments.map(exp => experimentSection(exp, data)));
    const samples = (data.series || []).length;
    const count = Number.isInteger(data.total) ? data.total : data.experiments.length;
    document.getElementById("summary").textContent =
      `${count} experiments · storage ${data.storage} · ` +
      `${samples} samples every ${data.interval_s} s · updated ${new Date(data.now * 1000).toLocaleTimeString()}`;
    pager(data);
  }

  function refresh() {
    fetch("v1/dashboard" + window.location.search, {credentials: "same-origin"})
      .then(r => r.ok ? r.json() : Promise.reject(new Error(r.status)))
      .then(render)
      .catch(e => {
        document.getElementById("summary").textContent =
          `Cannot load v1/dashboard (${e.message}); retrying every 10 s`;
      });
  }

  refresh();
  setInterval(refresh, 10000);
})();
