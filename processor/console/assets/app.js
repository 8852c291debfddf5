// The console's entry: loads the pipeline (GET /api/v1/pipeline) and shows
// the view named by the URL's hash (#tail, #results?agg=..&key=..).
import { showTail } from "./tail.js";
import { showResults } from "./results.js";
import { showPipeline } from "./pipeline.js";
import { showAlerts } from "./alerts.js";

const views = { pipeline: showPipeline, tail: showTail, results: showResults, alerts: showAlerts };
let pipeline = null;
let active = null; // the open view's stop function

export async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// hashParams reads "#view?a=1&b=2".
export function hashParams() {
  const [view, query] = location.hash.slice(1).split("?");
  return { view: view || "pipeline", params: new URLSearchParams(query || "") };
}

export function setHash(view, params) {
  const q = params.toString();
  history.replaceState(null, "", "#" + view + (q ? "?" + q : ""));
}

// rollupOf is what a view needs of one rollup: its name ("" in a pipeline
// of one rollup), key, aggregates, window and the steps of its output
// and alerts. name "" (or an unknown one) is the first rollup.
export function rollupOf(pipeline, name) {
  const rs = pipeline.rollups || [];
  const r = rs.find((x) => x.name === name) || rs[0];
  if (!r) {
    return { name: "", key: pipeline.key, aggregates: pipeline.aggregates || [], window: pipeline.window,
      output: "output", alerts: pipeline.steps.some((s) => s.step === "alerts") ? "alerts" : "" };
  }
  return { name: r.name, from: r.from || "", key: r.key, aggregates: r.aggregates || [], window: r.window,
    output: "output:" + r.name, alerts: r.alerts ? "alerts:" + r.name : "" };
}

// fillRollups fills a rollup selector with the pipeline's rollups and
// shows it only when there are several; returns the selected name.
export function fillRollups(sel, pipeline, want) {
  const rs = pipeline.rollups || [];
  const label = sel.closest("label") || sel;
  label.hidden = rs.length === 0;
  sel.replaceChildren(...rs.map((r) => new Option(r.name + (r.from ? ` (from ${r.from})` : ""), r.name)));
  if (rs.length) sel.value = rs.some((r) => r.name === want) ? want : rs[0].name;
  return rs.length ? sel.value : "";
}

// topText shows a top_k list as "a=3, b=2".
export function topText(list) {
  if (!Array.isArray(list)) return "—";
  return list.length ? list.map((e) => `${e.value}=${e.count}`).join(", ") : "(none)";
}

async function route() {
  if (!pipeline) {
    pipeline = await api("/api/v1/pipeline");
    document.getElementById("app-name").textContent = pipeline.app;
  }
  const { view, params } = hashParams();
  const show = views[view] || showPipeline;
  if (active) active();
  for (const name of Object.keys(views)) {
    document.getElementById("view-" + name).hidden = name !== view;
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === view);
  }
  active = show(pipeline, params);
}

window.addEventListener("hashchange", route);
route().catch((e) => {
  document.querySelector("main").textContent = "Cannot load the pipeline: " + e.message;
});
