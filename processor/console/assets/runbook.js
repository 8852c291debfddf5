// Runbooks: a Markdown document (prose rendered by the server) with its
// pipeline blocks, each run as a live preview (GET .../live, server-sent
// snapshots) and drawn as a chart (uPlot), a table or a list of events.
// A block can be edited and run again, described, saved into the file,
// and promoted to a pipeline file.
const status = document.getElementById("rb-status");
const docEl = document.getElementById("rb-doc");
const nav = document.getElementById("rb-nav");
const colors = ["#1f6feb", "#b42318", "#067647", "#7a5af8", "#d97706", "#0e7490", "#be185d", "#4d7c0f"];

function say(text, bad) { status.textContent = text; status.classList.toggle("error", !!bad); }

async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  const out = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok && !(r.status === 422 && out.problems)) throw Object.assign(new Error(out.error || r.statusText), { body: out });
  return out;
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function fmtTime(ms) { return new Date(ms).toISOString().replace("T", " ").slice(0, 19); }
function fmtNum(v) { return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v == null ? "" : String(v); }

async function main() {
  const list = await call("GET", "/api/v1/runbooks");
  const name = new URLSearchParams(location.search).get("doc") || list.runbooks[0];
  for (const n of list.runbooks) nav.append(el("a", { href: "?doc=" + encodeURIComponent(n), class: n === name ? "active" : "" }, n.replace(/\.md$/, "")));
  if (!name) { say(`No runbooks in ${list.dir}: add a .md file with \`\`\`eddy blocks (docs/runbooks.md).`); return; }
  const doc = await call("GET", "/api/v1/runbooks/" + encodeURIComponent(name));
  document.title = "eddy runbook: " + name;
  say("");
  for (const part of doc.parts) {
    if (part.block < 0) { const d = el("div", { class: "prose" }); d.innerHTML = part.html; docEl.append(d); continue; }
    docEl.append(new BlockView(doc.name, doc.blocks[part.block]).el);
  }
}

class BlockView {
  constructor(docName, b) {
    this.doc = docName; this.b = b; this.saved = b.text; this.text = b.text; this.es = null; this.plot = null;
    this.base = `/api/v1/runbooks/${encodeURIComponent(docName)}/blocks/${b.index}`;
    this.el = el("section", { class: "rb-block", "data-block": String(b.index) });
    this.head = el("div", { class: "rb-head" },
      el("span", { class: "rb-title" }, `Block ${b.index + 1} · ${b.display.kind || "chart"} · line ${b.line}`),
      el("button", { type: "button", class: "rb-edit", onclick: () => this.toggleEdit() }, "Edit"),
      el("button", { type: "button", class: "rb-describe-btn", onclick: () => this.toggleDescribe() }, "Describe"),
      el("button", { type: "button", class: "rb-promote-btn", onclick: () => this.togglePromote() }, "Promote"));
    this.editor = el("div", { class: "rb-editor", hidden: "" });
    this.area = el("textarea", { class: "rb-text", spellcheck: "false", rows: "12" });
    this.area.value = b.text;
    this.editor.append(this.area, el("div", { class: "rb-actions" },
      el("button", { type: "button", class: "rb-run", onclick: () => this.run() }, "Run"),
      el("button", { type: "button", class: "rb-save", onclick: () => this.save() }, "Save to file"),
      el("span", { class: "rb-saved hint" })));
    this.problems = el("ul", { class: "rb-problems" });
    this.describe = el("div", { class: "rb-describe-wrap", hidden: "" },
      el("p", { class: "hint" }, "What `eddy describe -f` prints for this block (a preview fills in app and output when the block has none, and writes to none of these topics):"),
      this.describeText = el("pre", { class: "rb-describe" }));
    this.promote = el("form", { class: "rb-promote controls", hidden: "" },
      el("label", {}, "App id", el("input", { name: "app", placeholder: "default: from the block" })),
      el("label", {}, "Output topic", el("input", { name: "output", placeholder: "default: <app>-results" })),
      el("label", {}, "Processing", el("select", { name: "processing" }, el("option", { value: "at_least_once" }, "at_least_once"), el("option", { value: "exactly_once" }, "exactly_once"))),
      el("button", { type: "submit" }, "Write pipeline file"),
      el("pre", { class: "rb-promoted" }));
    this.promote.addEventListener("submit", (e) => { e.preventDefault(); this.doPromote(); });
    this.info = el("p", { class: "rb-info hint" });
    this.bounds = el("p", { class: "rb-bounds" });
    this.display = el("div", { class: "rb-display" });
    this.el.append(this.head, this.editor, this.problems, this.describe, this.promote, this.display, this.info, this.bounds);
    this.show(b);
    if (b.ok) this.live();
  }

  show(b) {
    this.b = b;
    this.problems.replaceChildren(...b.problems.map((p) => el("li", { class: "rb-problem", "data-line": String(p.line || "") }, p.message)));
    this.describeText.textContent = b.describe || "(the block has errors: fix them to see its description)";
  }

  toggleEdit() { this.editor.hidden = !this.editor.hidden; if (!this.editor.hidden) this.area.focus(); }
  toggleDescribe() { this.describe.hidden = !this.describe.hidden; }
  togglePromote() { this.promote.hidden = !this.promote.hidden; }

  // run checks the edited text and, without errors, runs it as the preview.
  async run() {
    this.text = this.area.value;
    try {
      const b = await call("POST", this.base + "/check", { text: this.text });
      this.show(b);
      this.stop();
      if (b.ok) this.live(); else { this.display.replaceChildren(); this.info.textContent = "Not running: the block has errors."; }
    } catch (e) { say(e.message, true); }
  }

  async save() {
    try {
      const r = await call("PUT", this.base, { old: this.saved, text: this.area.value });
      this.saved = this.area.value;
      this.el.querySelector(".rb-saved").textContent = "Saved to " + r.saved;
      this.show(r.block);
    } catch (e) { say(e.message, true); }
  }

  async doPromote() {
    const f = new FormData(this.promote);
    try {
      const r = await call("POST", this.base + "/promote", { text: this.area.value, app: f.get("app"), output: f.get("output"), processing: f.get("processing") });
      this.promote.querySelector(".rb-promoted").textContent = `Wrote ${r.path}. Run it with:\n\n  ${r.command}\n\n${r.yaml}`;
      this.promote.dataset.path = r.path; this.promote.dataset.command = r.command;
    } catch (e) { say(e.message, true); }
  }

  stop() { if (this.es) { this.es.close(); this.es = null; } }

  live() {
    const q = this.text === this.saved ? "" : "?" + new URLSearchParams({ text: this.text });
    this.info.textContent = "Starting the preview…";
    this.es = new EventSource(this.base + "/live" + q);
    this.es.addEventListener("snapshot", (ev) => this.draw(JSON.parse(ev.data)));
    this.es.onerror = () => { if (this.es && this.es.readyState === EventSource.CLOSED) this.info.textContent += " (stream closed)"; };
  }

  draw(s) {
    const src = s.source;
    this.info.textContent = (src.reading ? "" : "Finding where to start reading… ") + `Preview since ${fmtTime(s.started)} UTC: ${s.fed} record(s) read from ${this.b.topic}` + (s.rollup ? `, rollup ${s.rollup} shown` : "") +
      (src.readers > 1 ? `, one read shared by ${src.readers} blocks` : "") +
      (s.late ? `; ${s.late} late (after their window closed)` : "") + (s.dead_letters ? `; ${s.dead_letters} dead letters (step dead-letter lists them)` : "") + (src.err ? ` — source: ${src.err}` : "") +
      (s.stopped ? ` — stopped: ${s.stopped}; reload to start again` : "");
    this.bounds.replaceChildren(...(s.bounds || []).map((t) => el("span", { class: "rb-bound" }, t)));
    this.el.dataset.fed = String(s.fed);
    this.el.dataset.reading = src.reading ? "1" : "0";
    if (s.error) this.bounds.append(el("span", { class: "rb-bound" }, "engine: " + s.error));
    if (s.kind === "chart") this.drawChart(s);
    else if (s.kind === "table") this.drawTable(s.table || []);
    else this.drawEvents(s.events || []);
  }

  drawChart(s) {
    const c = s.chart || { times: [], series: [] };
    const unit = (this.b.units || {})[s.value] || "";
    this.display.dataset.points = JSON.stringify(c.series.map((x) => ({ key: x.key, points: c.times.flatMap((t, i) => (x.values[i] == null ? [] : [[t, x.values[i]]])) })));
    if (!c.times.length) { this.display.replaceChildren(el("p", { class: "hint" }, "Waiting for the first window to close…")); this.plot = null; return; }
    // One x per window slot, so a window without a result is a gap.
    const xs = [];
    const step = c.window_ms || 0;
    if (step > 0) for (let t = c.times[0]; t <= c.times[c.times.length - 1]; t += step) xs.push(t); else xs.push(...c.times);
    const idx = new Map(c.times.map((t, i) => [t, i]));
    const data = [xs.map((t) => t / 1000), ...c.series.map((x) => xs.map((t) => (idx.has(t) ? x.values[idx.get(t)] : null)))];
    const opts = {
      width: Math.max(400, this.el.clientWidth - 30), height: 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: { x: xs.length === 1 ? { time: true, range: [xs[0] / 1000 - 2 * step / 1000, xs[0] / 1000 + 2 * step / 1000] } : { time: true } },
      axes: [
        { label: "window start (UTC)", labelSize: 30, size: 50, values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toISOString().slice(11, 19)) },
        { label: `${s.value} (${unit})`, labelSize: 30, size: 60 },
      ],
      series: [{}, ...c.series.map((x, i) => ({ label: x.key, stroke: colors[i % colors.length], width: 1.5, points: { show: true, size: 6, fill: colors[i % colors.length] }, spanGaps: false }))],
    };
    if (this.plot) this.plot.destroy();
    this.display.replaceChildren();
    this.plot = new uPlot(opts, data, this.display);
    this.display.dataset.axes = JSON.stringify(opts.axes.map((a) => a.label));
  }

  drawTable(rows) {
    if (!rows.length) { this.display.replaceChildren(el("p", { class: "hint" }, "Waiting for the first window to close…")); return; }
    const aggs = Object.keys(this.b.units || {});
    const head = el("tr", {}, el("th", {}, "Key"), el("th", {}, "Window (UTC)"), ...aggs.map((a) => el("th", {}, a)));
    const body = [...rows].reverse().map((w) => el("tr", { "data-key": w.key, "data-start": String(w.start) },
      el("td", {}, w.key), el("td", {}, `${fmtTime(w.start)} – ${fmtTime(w.end).slice(11)}`), ...aggs.map((a) => el("td", { class: "num", "data-agg": a }, Array.isArray(w.value[a]) ? w.value[a].map((e) => `${e.value}=${e.count}`).join(", ") : fmtNum(w.value[a])))));
    this.display.replaceChildren(el("table", { class: "records" }, el("thead", {}, head), el("tbody", {}, ...body)));
  }

  drawEvents(evs) {
    const d = this.b.display;
    if (!evs.length) { this.display.replaceChildren(el("p", { class: "hint" }, `Waiting for ${d.step} records` + (d.filter ? ` where ${d.filter}` : "") + "…")); return; }
    const head = el("tr", {}, el("th", {}, "Time (UTC)"), el("th", {}, "Partition / offset"), el("th", {}, "Key"), el("th", {}, "Value"));
    const body = [...evs].reverse().map((r) => el("tr", { class: "rb-event" },
      el("td", {}, r.timestamp.replace("T", " ").slice(0, 23)), el("td", {}, `${r.partition} / ${r.offset}`), el("td", {}, r.key),
      el("td", {}, el("code", {}, r.value ? JSON.stringify(r.value) : r.text), r.reason ? el("div", { class: "reason" }, r.reason) : null)));
    this.display.replaceChildren(el("table", { class: "records" }, el("thead", {}, head), el("tbody", {}, ...body)));
  }
}

main().catch((e) => say(/not found/i.test(e.message)
  ? "This server serves no runbooks: they are served by `eddy runbook serve DIR` and by `eddy demo` (docs/runbooks.md)."
  : "Could not load the runbooks: " + e.message, true));
