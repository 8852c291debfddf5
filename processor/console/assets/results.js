// Results: one aggregate of one key over windows, as a chart (uPlot) and a
// table, from GET /api/v1/results. Live: a tail of the output step,
// filtered to the key, reloads the range when a new result arrives.
import { api, setHash, rollupOf, fillRollups, topText } from "./app.js";

const TOP = 5;
const TOP_KEY = "top";

export function showResults(pipeline, params) {
  const form = document.getElementById("results-form");
  const rollupSel = document.getElementById("results-rollup");
  const aggSel = document.getElementById("results-agg");
  const keySel = document.getElementById("results-key");
  const rangeSel = document.getElementById("results-range");
  const status = document.getElementById("results-status");
  const chartEl = document.getElementById("results-chart");
  // The rollup shown (several rollups: the selector, default the first);
  // every view below reads its key, window, aggregates and output.
  let ro = rollupOf(pipeline, fillRollups(rollupSel, pipeline, params.get("rollup") || ""));
  // A top_k aggregate is a list, not a number: in the table, not the chart.
  const fillAggs = (want) => {
    aggSel.replaceChildren(...ro.aggregates.filter((a) => a.op !== "top_k").map((a) => new Option(`${a.name} (${a.unit})`, a.name)));
    if (want && [...aggSel.options].some((o) => o.value === want)) aggSel.value = want;
  };
  fillAggs(params.get("agg"));
  if (params.get("range")) rangeSel.value = params.get("range");
  let wantKey = params.get("key") || "";
  let plot = null, es = null, reloadTimer = null, sort = { col: 0, dir: "desc" };

  function say(text, error) {
    status.textContent = text;
    status.classList.toggle("error", !!error);
  }

  function hashOf(agg, range) {
    const h = new URLSearchParams();
    if (ro.name) h.set("rollup", ro.name);
    h.set("agg", agg); h.set("key", wantKey); h.set("range", String(range));
    return h;
  }

  async function load() {
    const agg = aggSel.value;
    const range = Number(rangeSel.value);
    const to = Date.now(), from = to - range;
    const q = new URLSearchParams({ from: String(from), to: String(to) });
    if (ro.name) q.set("rollup", ro.name);
    if (wantKey && wantKey !== TOP_KEY) q.set("key", wantKey);
    let res;
    try {
      res = await api("/api/v1/results?" + q);
    } catch (e) {
      say("Cannot read results: " + e.message, true);
      return;
    }
    // The key list: the top keys, then every key with results in the range.
    keySel.replaceChildren(new Option(`top ${TOP} keys by ${agg}`, TOP_KEY),
      ...res.keys.map((k) => new Option(`${k.key.join(" ")} (${k.results} results)`, JSON.stringify(k.key))));
    if (wantKey === TOP_KEY && res.keys.length) {
      keySel.value = wantKey;
      setHash("results", hashOf(agg, range));
      return drawTop(res, agg);
    }
    if (!wantKey && res.keys.length) {
      wantKey = JSON.stringify(res.keys[0].key);
      return load();
    }
    clearTimeout(reloadTimer);
    if (!res.keys.length) {
      // Nothing written yet (a pipeline just started): look again soon.
      say("No results written in the range yet; looking again every 5 seconds.");
      reloadTimer = setTimeout(load, 5000);
      return;
    }
    keySel.value = wantKey;
    setHash("results", hashOf(agg, range));
    // Windows still open, from this worker's state (the owner of the key
    // has them; another worker returns none): drawn as open points.
    const wins = res.windows.slice();
    try {
      const wq = new URLSearchParams({ key: wantKey });
      if (ro.name) wq.set("rollup", ro.name);
      const open = await api("/api/v1/windows?" + wq);
      const have = new Set(wins.map((w) => w.window_start_ms));
      for (const o of open.windows) {
        const start = Date.parse(o.window_start);
        if (have.has(start)) continue;
        const values = {}, top = {};
        for (const a of ro.aggregates) {
          values[a.name] = typeof o[a.name] === "number" ? o[a.name] : null;
          if (a.op === "top_k") top[a.name] = Array.isArray(o[a.name]) ? o[a.name] : [];
        }
        wins.push({ key: open.key, window_start_ms: start, window_end_ms: Date.parse(o.window_end), final: false, values, top });
      }
      wins.sort((a, b) => a.window_start_ms - b.window_start_ms);
    } catch (e) {
      // No state here (a server without a pipeline): final results only.
    }
    const unit = (ro.aggregates.find((a) => a.name === agg) || { unit: "" }).unit;
    say(wins.length ? `${wins.length} window(s) of ${JSON.parse(wantKey || "[]").join(" ")} written in the range; ${res.scanned} result(s) read from ${res.topic}` +
      (res.truncated ? " (truncated: narrow the range)" : "") : "No results for this key in the range.");
    drawChart(wins, agg, unit);
    drawTable(wins);
    live();
  }

  // drawTop charts the TOP keys with the largest sum of agg over their
  // final windows in the range, one series each.
  function drawTop(res, agg) {
    const unit = (ro.aggregates.find((a) => a.name === agg) || { unit: "" }).unit;
    const byKey = new Map();
    for (const w of res.windows) {
      if (!w.final) continue;
      const k = JSON.stringify(w.key);
      if (!byKey.has(k)) byKey.set(k, { key: w.key, total: 0, wins: new Map() });
      const e = byKey.get(k);
      e.total += w.values[agg] || 0;
      e.wins.set(w.window_start_ms, w.values[agg]);
    }
    const top = [...byKey.values()].sort((a, b) => b.total - a.total || (JSON.stringify(a.key) < JSON.stringify(b.key) ? -1 : 1)).slice(0, TOP);
    const step = (ro.window.type === "hopping" ? ro.window.advance_ms : ro.window.size_ms) || 0;
    const starts = [...new Set(top.flatMap((e) => [...e.wins.keys()]))].sort((a, b) => a - b);
    const xs = [];
    if (starts.length && step > 0 && ro.window.type !== "session") {
      for (let t = starts[0]; t <= starts[starts.length - 1]; t += step) xs.push(t);
    } else xs.push(...starts);
    const colors = ["#1f6feb", "#b42318", "#067647", "#7a5af8", "#d97706"];
    const opts = {
      width: Math.max(400, chartEl.clientWidth - 20), height: 320,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: { time: true } },
      axes: [
        { label: "window start (UTC)", labelSize: 30, size: 60, space: 70,
          values: (u, ticks) => ticks.map((t, i) => { const iso = new Date(t * 1000).toISOString(); return i === 0 ? iso.slice(11, 19) + "\n" + iso.slice(0, 10) : iso.slice(11, 19); }) },
        { label: `${agg} (${unit})`, labelSize: 30, size: 70 },
      ],
      series: [{}, ...top.map((e, i) => ({ label: e.key.join(" "), stroke: colors[i], width: 1.5, points: { show: true, size: 7, fill: colors[i] }, spanGaps: false }))],
    };
    const data = [xs.map((t) => t / 1000), ...top.map((e) => xs.map((t) => (e.wins.has(t) ? e.wins.get(t) : null)))];
    if (plot) plot.destroy();
    chartEl.replaceChildren();
    plot = new uPlot(opts, data, chartEl);
    chartEl.dataset.series = JSON.stringify(top.map((e) => ({ key: e.key, total: e.total })));
    chartEl.dataset.axes = JSON.stringify(opts.axes.map((a) => a.label));
    say(`The ${top.length} keys with the most ${agg} in final windows written in the range (sum over their windows); ${res.scanned} result(s) read from ${res.topic}` +
      (res.truncated ? " (truncated: narrow the range)" : ""));
    drawTable(res.windows.filter((w) => top.some((e) => JSON.stringify(e.key) === JSON.stringify(w.key))), true);
    if (!es) {
      es = new EventSource("/api/v1/tail?" + new URLSearchParams({ step: ro.output, last: "0" }));
      es.addEventListener("record", () => { clearTimeout(reloadTimer); reloadTimer = setTimeout(load, 1000); });
    }
  }

  function drawChart(wins, agg, unit) {
    // One x per window slot from the first to the last, so windows with
    // no result are nulls: gaps, not lines across them.
    const step = (ro.window.type === "hopping" ? ro.window.advance_ms : ro.window.size_ms) || 0;
    const byStart = new Map(wins.map((w) => [w.window_start_ms, w]));
    const xs = [];
    if (wins.length && step > 0 && ro.window.type !== "session") {
      for (let t = wins[0].window_start_ms; t <= wins[wins.length - 1].window_start_ms; t += step) xs.push(t);
    } else {
      for (const w of wins) xs.push(w.window_start_ms);
    }
    const fin = [], open = [];
    for (const t of xs) {
      const w = byStart.get(t);
      const v = w ? w.values[agg] : null;
      fin.push(w && w.final ? v : null);
      open.push(w && !w.final ? v : null);
    }
    const data = [xs.map((t) => t / 1000), fin, open];
    const opts = {
      width: Math.max(400, chartEl.clientWidth - 20),
      height: 320,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      // One window alone still gets an axis of a few windows around it.
      scales: { x: xs.length === 1 ? { time: true, range: [xs[0] / 1000 - 2 * (step || 10000) / 1000, xs[0] / 1000 + 2 * (step || 10000) / 1000] } : { time: true } },
      axes: [
        // 24-hour UTC times; the first tick also names the day.
        { label: "window start (UTC)", labelSize: 30, size: 60, space: 70,
          values: (u, ticks) => ticks.map((t, i) => {
            const iso = new Date(t * 1000).toISOString();
            return i === 0 ? iso.slice(11, 19) + "\n" + iso.slice(0, 10) : iso.slice(11, 19);
          }) },
        { label: `${agg} (${unit})`, labelSize: 30, size: 70 },
      ],
      series: [
        {},
        { label: "final", stroke: "#1f6feb", width: 1.5, points: { show: true, size: 8, fill: "#1f6feb" }, spanGaps: false },
        { label: "still open", stroke: "#d97706", width: 0, points: { show: true, size: 9, fill: "#fff", stroke: "#d97706", width: 2 }, spanGaps: false },
      ],
    };
    if (plot) plot.destroy();
    chartEl.replaceChildren();
    plot = new uPlot(opts, data, chartEl);
    // For tests and scripts: the points drawn, as [window start ms, value, final].
    chartEl.dataset.points = JSON.stringify(xs.flatMap((t, i) =>
      fin[i] !== null ? [[t, fin[i], true]] : open[i] !== null ? [[t, open[i], false]] : []));
    chartEl.dataset.gaps = JSON.stringify(xs.filter((t, i) => fin[i] === null && open[i] === null));
    chartEl.dataset.axes = JSON.stringify(opts.axes.map((a) => a.label));
  }

  function drawTable(wins, withKey) {
    const table = document.getElementById("results-table");
    const cols = [
      ...(withKey ? [{ name: "key", get: (w) => w.key.join(" "), fmt: (x) => x }] : []),
      { name: "window start (UTC)", get: (w) => w.window_start_ms, fmt: fmtTime },
      { name: "window end (UTC)", get: (w) => w.window_end_ms, fmt: fmtTime },
      { name: "state", get: (w) => (w.final ? "final" : "open"), fmt: (x) => x },
      ...ro.aggregates.map((a) => a.op === "top_k"
        ? { name: `${a.name} (${a.unit}=count)`, get: (w) => topText(w.top && w.top[a.name]), fmt: (x) => x, top: true }
        : { name: `${a.name} (${a.unit})`, get: (w) => w.values[a.name], fmt: fmtNum, num: true }),
    ];
    const head = document.createElement("tr");
    cols.forEach((c, i) => {
      const th = document.createElement("th");
      th.textContent = c.name;
      if (sort.col === i) th.dataset.dir = sort.dir;
      th.onclick = () => {
        sort = { col: i, dir: sort.col === i && sort.dir === "desc" ? "asc" : "desc" };
        drawTable(wins, withKey);
      };
      head.append(th);
    });
    table.tHead.replaceChildren(head);
    const c = cols[sort.col];
    const rows = [...wins].sort((a, b) => {
      const x = c.get(a), y = c.get(b);
      const r = x === y ? 0 : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1;
      return sort.dir === "asc" ? r : -r;
    });
    table.tBodies[0].replaceChildren(...rows.map((w) => {
      const tr = document.createElement("tr");
      tr.className = "win" + (w.final ? "" : " open");
      for (const col of cols) {
        const cell = document.createElement("td");
        if (col.num) cell.className = "num";
        if (col.top) cell.className = "top";
        cell.textContent = col.fmt(col.get(w));
        tr.append(cell);
      }
      return tr;
    }));
  }

  // live reloads when a new result of the key is written.
  function live() {
    if (es) return;
    const key = JSON.parse(wantKey || "null");
    if (!key) return;
    const filter = ro.key.map((f, i) => `${f} == ${JSON.stringify(key[i])}`).join(" && ");
    es = new EventSource("/api/v1/tail?" + new URLSearchParams({ step: ro.output, last: "0", filter }));
    es.addEventListener("record", () => {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, 500);
    });
  }

  function restart() {
    if (es) { es.close(); es = null; }
    load();
  }
  form.onsubmit = (e) => { e.preventDefault(); restart(); };
  keySel.onchange = () => { wantKey = keySel.value; restart(); };
  aggSel.onchange = restart;
  rollupSel.onchange = () => {
    ro = rollupOf(pipeline, rollupSel.value);
    fillAggs(aggSel.value);
    wantKey = "";
    restart();
  };
  rangeSel.onchange = restart;
  load();
  return () => { if (es) es.close(); clearTimeout(reloadTimer); if (plot) plot.destroy(); plot = null; };
}

function fmtTime(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(".000Z", "");
}

function fmtNum(v) {
  if (v === null || v === undefined) return "—";
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}
