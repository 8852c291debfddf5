// Pipeline: the picture of the pipeline (source topics → repartition →
// windows → output, late, dead-letter, alerts; with several rollups, one
// row per rollup, chained ones from the rollup they read) with each
// edge's rate, and
// the partitions with their owner, lag, stream time against the wall clock
// and restore progress; pushed every 2 s by GET /api/v1/status/live.

export function showPipeline(pipeline) {
  const status = document.getElementById("pipeline-status");
  const flow = document.getElementById("pipeline-flow");
  const es = new EventSource("/api/v1/status/live");
  status.textContent = "Connecting…";
  es.addEventListener("status", (e) => render(pipeline, JSON.parse(e.data), flow, status));
  es.onerror = () => { if (es.readyState === EventSource.CONNECTING) status.textContent = "Disconnected; reconnecting…"; };
  return () => es.close();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function node(kind, name, sub, cls) {
  const n = el("div", "node" + (cls ? " " + cls : ""));
  n.dataset.name = name;
  n.append(el("div", "kind", kind), el("div", "name", name));
  if (sub) n.append(el("div", "sub", sub));
  return n;
}

function rateText(e) {
  const total = `${fmtCount(e.total)} total`;
  if (e.per_second === null || e.per_second === undefined) return ["…/s", total];
  return [`${e.per_second < 10 ? e.per_second.toFixed(1) : Math.round(e.per_second)}/s`, total];
}

function arrow(e) {
  const a = el("div", "arrow");
  a.dataset.from = e.from;
  a.dataset.to = e.to;
  const [rate, total] = rateText(e);
  a.append(el("div", "rate", rate), el("div", "line"), el("div", "total", total));
  return a;
}

function fmtCount(n) {
  return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n));
}

function fmtAgo(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}

function render(pipeline, st, flow, status) {
  const parts = [
    `${st.group.members.length} worker(s) in group ${st.group.id} (${st.group.state || "unknown"})`,
    st.local.ready ? "this worker: ready" : "this worker: not ready (restoring or joining)",
    `${fmtCount(st.local.commits)} commits, last ${st.local.last_commit_ago_ms != null ? fmtAgo(st.local.last_commit_ago_ms) + " ago" : "not since this page opened"}`,
    "rates are this worker's",
  ];
  if (st.error) parts.push("Kafka: " + st.error);
  status.textContent = parts.join(" · ");
  status.classList.toggle("error", !!st.error);

  flow.replaceChildren();
  if (pipeline.rollups && pipeline.rollups.length) {
    renderRollups(pipeline, st, flow);
  } else {
    renderOne(pipeline, st, flow);
  }
  renderTables(st);
}

// renderOne draws a pipeline of one rollup. Columns: sources →
// [repartition] → windows → outputs.
function renderOne(pipeline, st, flow) {
  const edges = st.edges;
  const w = pipeline.window;
  const open = st.partitions.reduce((n, p) => n + (p.open_windows || 0), 0);
  const srcEdges = edges.filter((e) => pipeline.steps.some((s) => s.step.startsWith("input") && s.topic === e.from));
  const repart = edges.find((e) => e.to === "windows" && !srcEdges.includes(e));
  const sources = el("div", "col");
  for (const e of srcEdges) sources.append(node("source topic", e.from, `${fmtCount(e.total)} read`));
  const arrows1 = el("div", "col");
  for (const e of srcEdges) arrows1.append(arrow(e));
  flow.append(sources, arrows1);
  if (repart) {
    flow.append(node("repartition topic", repart.from, "re-keyed by " + pipeline.key.join(", ")), arrow(repart));
  }
  const sub = `${w.type} ${w.size_ms / 1000}s, grace ${w.grace_ms / 1000}s, emit on ${w.emit || "close"}` + ` · ${open} open here`;
  const win = node("windows", "per " + pipeline.key.join(", "), sub, "windows");
  win.append(el("div", "sub", pipeline.aggregates.map((a) => a.name).join(", ")));
  flow.append(win);
  const outs = el("div", "col outs");
  const kinds = {}; for (const s of pipeline.steps) kinds[s.topic] = s.step;
  for (const e of edges.filter((x) => x.from === "windows")) {
    const row = el("div", "row");
    const step = kinds[e.to] || "";
    row.append(arrow(e), node(step + " topic", e.to, "", step === "dead-letter" || step === "late" ? "bad" : ""));
    outs.append(row);
  }
  flow.append(outs);
}

function windowText(w) {
  return `${w.type} ${w.size_ms / 1000}s` + (w.type === "hopping" ? ` every ${w.advance_ms / 1000}s` : "") +
    `, grace ${w.grace_ms / 1000}s, emit on ${w.emit || "close"}`;
}

// renderRollups draws a pipeline of several rollups: the source topics →
// each repartition topic (one per grouping key) → one row per rollup (its
// window, key and store; a chained rollup drawn from the rollup it
// reads) → its output and alerts topics; then the late and dead-letter
// topics the rollups share. Edge ids: "rollup:NAME" is a rollup.
function renderRollups(pipeline, st, flow) {
  const edges = st.edges;
  const kinds = {}; for (const s of pipeline.steps) kinds[s.topic] = s.step.split(":")[0];
  const sourceTopics = pipeline.steps.filter((s) => s.step.startsWith("input")).map((s) => s.topic);
  const stages = [...new Set(pipeline.rollups.filter((r) => r.repartition && !r.from).map((r) => r.repartition))];

  const sources = el("div", "col");
  for (const t of sourceTopics) {
    const e = edges.find((x) => x.from === t);
    sources.append(node("source topic", t, e ? `${fmtCount(e.total)} read` : ""));
  }
  flow.append(sources);
  if (stages.length) {
    // Source → each repartition topic (one arrow per source and stage).
    const arrows1 = el("div", "col");
    for (const e of edges.filter((x) => sourceTopics.includes(x.from) && stages.includes(x.to))) arrows1.append(arrow(e));
    const parts = el("div", "col");
    for (const t of stages) {
      const keyOf = pipeline.rollups.find((r) => r.repartition === t && !r.from).key;
      parts.append(node("repartition topic", t, "re-keyed by " + keyOf.join(", "), "stage"));
    }
    flow.append(arrows1, parts);
  }

  const rows = el("div", "col rollups");
  for (const r of pipeline.rollups) {
    const id = "rollup:" + r.name;
    const row = el("div", "row" + (r.from ? " chained" : ""));
    row.dataset.rollup = r.name;
    const inEdges = edges.filter((x) => x.to === id);
    const ins = el("div", "col");
    for (const e of inEdges) {
      const a = arrow(e);
      a.prepend(el("div", "via", e.from.startsWith("rollup:") ? "final results of " + e.from.slice(7) : e.from));
      ins.append(a);
    }
    const open = (st.rollup_open_windows || {})[r.name];
    const n = node(r.from ? "chained rollup" : "rollup", r.name, windowText(r.window) + (open != null ? ` · ${open} open here` : ""), "windows");
    n.append(el("div", "sub", (r.from ? `merges ${r.from} · ` : "") + "per " + r.key.join(", ") + " · store " + r.store));
    n.append(el("div", "sub", r.aggregates.map((a) => a.name).join(", ")));
    const outs = el("div", "col outs");
    for (const e of edges.filter((x) => x.from === id && !x.to.startsWith("rollup:"))) {
      const o = el("div", "row");
      const step = kinds[e.to] || "";
      o.append(arrow(e), node(step + " topic", e.to, ""));
      outs.append(o);
    }
    row.append(ins, n, outs);
    rows.append(row);
  }
  flow.append(rows);

  // The late and dead-letter topics, shared by the rollups.
  let shared = flow.parentElement.querySelector(".shared");
  if (!shared) {
    shared = el("div", "flow shared");
    flow.after(shared);
  }
  shared.replaceChildren(el("span", "note", "Shared by every rollup:"));
  for (const e of edges.filter((x) => x.from === "rollups")) {
    const o = el("div", "row");
    const step = kinds[e.to] || "";
    o.append(arrow(e), node(step + " topic", e.to, "", "bad"));
    shared.append(o);
  }
}

function renderTables(st) {
  const tb = document.querySelector("#pipeline-table tbody");
  tb.replaceChildren(...st.partitions.map((p) => {
    const tr = el("tr", "part");
    const behind = p.behind_ms;
    // Negative: event times ahead of this machine's clock (producers' clocks, or test data).
    const behindCell = el("td", "num" + (behind > 60000 ? " warn" : ""),
      behind == null ? "—" : behind >= 0 ? fmtAgo(behind) : "ahead by " + fmtAgo(-behind));
    const restore = p.restore_total ? `${p.restore_done} / ${p.restore_total}` : "—";
    tr.append(el("td", "", p.topic), el("td", "num", String(p.partition)), el("td", "", p.owner || "unassigned"),
      el("td", "num", p.committed >= 0 ? String(p.committed) : "—"), el("td", "num", String(p.end)),
      el("td", "num" + (p.lag > 1000 ? " warn" : ""), String(p.lag)),
      el("td", "", p.stream_time_ms != null ? new Date(p.stream_time_ms).toISOString().replace("T", " ").replace(/\.\d+Z/, "") : "—"),
      behindCell, el("td", "num", p.open_windows != null ? String(p.open_windows) : "—"), el("td", "", restore));
    return tr;
  }));
  const mb = document.querySelector("#pipeline-members tbody");
  mb.replaceChildren(...st.group.members.map((m) => {
    const tr = el("tr");
    tr.append(el("td", "", m.client_id), el("td", "", m.host), el("td", "", m.instance_id || "—"), el("td", "", m.member_id), el("td", "num", String(m.partitions)));
    return tr;
  }));
}
