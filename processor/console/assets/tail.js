// Tail: the latest records of one step, live over server-sent events
// (GET /api/v1/tail). The server filters, samples above its rate limit and
// says so ("sample" events); this page keeps at most MAX_ROWS rows.
import { api, setHash } from "./app.js";

const MAX_ROWS = 200;

export function showTail(pipeline, params) {
  const form = document.getElementById("tail-form");
  const stepSel = document.getElementById("tail-step");
  const filterIn = document.getElementById("tail-filter");
  const status = document.getElementById("tail-status");
  const table = document.getElementById("tail-table");
  const tbody = table.querySelector("tbody");
  stepSel.replaceChildren(...pipeline.steps.map((s) => new Option(`${s.step} (${s.topic})`, s.step)));
  stepSel.value = params.get("step") || "input";
  filterIn.value = params.get("filter") || "";
  const last = params.get("last"); // records per partition to start with (the server's default when unset)
  let es = null;

  function say(text, error) {
    status.textContent = text;
    status.classList.toggle("error", !!error);
  }

  async function start() {
    if (es) es.close();
    tbody.replaceChildren();
    const step = stepSel.value;
    const filter = filterIn.value.trim();
    const info = pipeline.steps.find((s) => s.step === step);
    document.getElementById("tail-step-purpose").textContent = info ? `${info.topic}: ${info.purpose}` : "";
    table.classList.toggle("no-reason", step !== "dead-letter" && step !== "late");
    const h = new URLSearchParams({ step });
    if (filter) h.set("filter", filter);
    if (last) h.set("last", last);
    setHash("tail", h);
    if (filter) {
      const chk = await api("/api/v1/expr?filter=" + encodeURIComponent(filter));
      if (!chk.ok) {
        say("Filter does not compile: " + chk.error + (chk.hint ? " — " + chk.hint : ""), true);
        return;
      }
    }
    const q = new URLSearchParams({ step });
    if (filter) q.set("filter", filter);
    if (last) q.set("last", last);
    es = new EventSource("/api/v1/tail?" + q);
    let every = 1, rate = 0, skipped = 0, shown = 0;
    const describe = () => say(
      (filter ? `Matching ${filter}: ` : "") + `${shown} record(s) shown, newest first. ` +
      (skipped > 0 ? `Busy topic: skipped ${skipped} record(s) to keep up with the newest. ` : "") +
      (every > 1 ? `Showing 1 in ${every} (${rate} matching records/s).` : skipped > 0 ? "" : "Showing every record."));
    es.addEventListener("open", describe);
    es.addEventListener("sample", (e) => {
      const s = JSON.parse(e.data);
      every = s.every; rate = s.rate; skipped = s.skipped || 0;
      describe();
    });
    es.addEventListener("record", (e) => {
      tbody.prepend(row(JSON.parse(e.data)));
      while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
      shown++;
      describe();
    });
    es.addEventListener("end", (e) => say("The server ended this view: " + JSON.parse(e.data).reason + ". Reconnecting…", true));
    es.onerror = () => { if (es.readyState === EventSource.CONNECTING) say("Disconnected; reconnecting…", true); };
  }

  form.onsubmit = (e) => { e.preventDefault(); start(); };
  stepSel.onchange = () => start();
  start();
  return () => { if (es) es.close(); };
}

function td(text, cls) {
  const c = document.createElement("td");
  if (cls) c.className = cls;
  c.textContent = text;
  return c;
}

function row(r) {
  const tr = document.createElement("tr");
  tr.className = "rec";
  tr.append(td(r.timestamp.replace("T", " ").replace("Z", "")), td(`${r.partition} / ${r.offset}`, "num"), td(r.key));
  const v = document.createElement("td");
  const code = document.createElement("code");
  code.textContent = r.value ? JSON.stringify(r.value) : r.text;
  v.append(code);
  const why = td(r.reason || "", "reason");
  if (r.detail) {
    const d = document.createElement("div");
    d.className = "detail";
    d.textContent = r.detail;
    why.append(d);
  }
  tr.append(v, why);
  return tr;
}
