// Alerts: episodes firing now and the history (GET /api/v1/alerts), each
// linking to its key's chart. A tail of the alerts step reloads the lists
// when a transition is written.
import { api } from "./app.js";

export function showAlerts(pipeline) {
  const status = document.getElementById("alerts-status");
  let es = null, timer = null;

  async function load() {
    let res;
    try {
      res = await api("/api/v1/alerts");
    } catch (e) {
      status.textContent = "Cannot read alerts: " + e.message;
      status.classList.add("error");
      return;
    }
    status.classList.remove("error");
    status.textContent = res.topic ? `${res.firing.length} firing, ${res.history.length} in the last 24 hours, from ${res.topic}` +
      (res.truncated ? " (truncated)" : "") : "This pipeline has no alert rules.";
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
      link.href = "#results?" + new URLSearchParams({ agg: a.aggregate, key: JSON.stringify(a.key), range: "86400000" });
      const td = document.createElement("td");
      td.append(link);
      tr.append(td);
      return tr;
    }));
  }

  load();
  if (pipeline.steps.some((s) => s.step === "alerts")) {
    es = new EventSource("/api/v1/tail?" + new URLSearchParams({ step: "alerts", last: "0" }));
    es.addEventListener("record", () => { clearTimeout(timer); timer = setTimeout(load, 500); });
  }
  return () => { if (es) es.close(); clearTimeout(timer); };
}

function fmt(s) {
  return s ? s.replace("T", " ").replace(/(\.\d+)?Z$/, "") : "—";
}

function dur(ms) {
  const s = ms / 1000;
  return s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}
