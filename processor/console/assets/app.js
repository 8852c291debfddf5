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
