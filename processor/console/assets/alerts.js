// Alerts: episodes firing now and the history (GET /api/v1/alerts), each
// linking to its key's chart. A tail of the alerts step reloads the lists
// when a transition is written.
import { api, setHash, rollupOf, fillRollups } from "./app.js";

export function showAlerts(pipeline, params) {
  const status = document.getElementById("alerts-status");
  const rollupSel = document.getElementById("alerts-rollup");
  // Several rollups: each has its own alert rules and alerts topic; the
  // selector picks one (default the first rollup that has rules).
  const withRules = (pipeline.rollups || []).find((r) => r.alerts);
  let ro = rollupOf(pipeline, fillRollups(rollupSel, pipeline, params.get("rollup") || (withRules ? withRules.name : "")));
  let es = null, timer = null;

  async function load() {
    let res;
    try {
      res = await api("/api/v1/alerts" + (ro.name ? "?" + new URLSearchParams({ rollup: ro.name }) : ""));
    } catch (e) {
      status.textContent = "Cannot read alerts: " + e.message;
      status.classList.add("error");
      return;
    }
    status.classList.remove("error");
    status.textContent = res.topic ? `${res.firing.length} firing, ${res.history.length} in the last 24 hours, from ${res.topic}` +
      (res.truncated ? " (truncated)" : "") : ro.name ? `Rollup ${ro.name} has no alert rules.` : "This pipeline has no alert rules.";
    fill("#alerts-firing", res.firing, false);
    fill("#alerts-history", res.history, true);
  }

  function fill(sel, eps, history) {
    document.querySelector(sel + " tbody").replaceChildren(...eps.map((a) => {
      const tr = document.createElement("tr");
      tr.className = "alert" + (a.firing ? " firing" : "");
      const cells = [a.rule, a.severity, a.key.join(" "), a.summary, fmt(a.started_at)];
      if (history) cells.push(a.firing ? "still firing" : fmt(a.resolved_at));
      // A firing alert has lasted until now (wall clock), not only until its last transition.
      cells.push(dur(a.firing && a.started_at ? Math.max(a.duration_ms, Date.now() - Date.parse(a.started_at)) : a.duration_ms));
      for (const [i, c] of cells.entries()) {
        const td = document.createElement("td");
        td.textContent = c;
        if (i === 1) td.className = "sev-" + a.severity;
        tr.append(td);
      }
      const link = document.createElement("a");
      link.textContent = "chart";
      const h = new URLSearchParams();
      if (ro.name) h.set("rollup", ro.name);
      h.set("agg", a.aggregate); h.set("key", JSON.stringify(a.key)); h.set("range", "86400000");
      link.href = "#results?" + h;
      const td = document.createElement("td");
      td.append(link);
      tr.append(td);
      return tr;
    }));
  }

  function start() {
    if (es) { es.close(); es = null; }
    if (ro.name) setHash("alerts", new URLSearchParams({ rollup: ro.name }));
    load();
    if (ro.alerts) {
      es = new EventSource("/api/v1/tail?" + new URLSearchParams({ step: ro.alerts, last: "0" }));
      es.addEventListener("record", () => { clearTimeout(timer); timer = setTimeout(load, 500); });
    }
  }
  rollupSel.onchange = () => { ro = rollupOf(pipeline, rollupSel.value); start(); };
  document.getElementById("alerts-form").onsubmit = (e) => e.preventDefault();
  start();
  return () => { if (es) es.close(); clearTimeout(timer); };
}

function fmt(s) {
  return s ? s.replace("T", " ").replace(/(\.\d+)?Z$/, "") : "—";
}

function dur(ms) {
  const s = ms / 1000;
  return s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}
