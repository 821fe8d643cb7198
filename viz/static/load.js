// Talking to the server: the status line, loading a graph (saved or generated), measuring, the model list.
import { byId, formParams } from "./dom.js";
import { show } from "./show.js";
import { state } from "./state.js";

export function status(text, isError, suggestions) {
  const el = byId("status");
  el.className = isError ? "error" : "";
  el.replaceChildren(document.createTextNode(text));
  for (const s of suggestions || []) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = s;
    b.addEventListener("click", () => { byId("model").value = s; load(); });
    el.appendChild(b);
  }
}

// The JSON answer; an error answer throws with the server's message and its body (matches, valid sizes).
async function fetchJson(url) {
  const resp = await fetch(url);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { error: `HTTP ${resp.status}` }; }
  if (!resp.ok) {
    const err = new Error(body.error || `HTTP ${resp.status}`);
    err.body = body;
    throw err;
  }
  return body;
}

// While a request runs, say so and for how long; also say what else the server is generating or measuring.
let busyTimer = null;
function busy(text) {
  const t0 = performance.now();
  clearInterval(busyTimer);
  const tick = async () => {
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    let others = "";
    try {
      const s = await fetchJson("/api/status");
      if (s.running.length) others = " — running on the server: " + s.running.map((r) => `${r.kind} ${r.name} (${r.seconds.toFixed(0)} s)`).join(", ");
    } catch (e) { /* the status line is a courtesy */ }
    if (busyTimer !== null) status(`${text} ${secs} s${others}`);
  };
  status(text);
  byId("status").classList.add("busy");
  busyTimer = setInterval(tick, 1000);
}
function idle() { clearInterval(busyTimer); busyTimer = null; byId("status").classList.remove("busy"); }

export async function measure() {
  const params = formParams();
  const body = { model: params.get("model"), batch_size: Number(params.get("batch_size")), dtype: params.get("dtype") };
  if (params.get("img_size")) body.img_size = Number(params.get("img_size"));
  busy("Measuring time per layer of " + body.model + " on the CPU …");
  byId("measure").disabled = true;
  try {
    const resp = await fetch("/api/measure", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const doc = await resp.json();
    idle();
    if (!resp.ok) throw new Error(doc.error || `HTTP ${resp.status}`);
    show(doc, doc.name);
    status(`Measured ${doc.name} on the CPU`);
  } catch (err) {
    idle();
    status(err.message, true);
  } finally {
    byId("measure").disabled = false;
  }
}

let loadSeq = 0; // only the latest request may change what is shown (the default model may still be loading)
export async function load() {
  const params = formParams();
  const seq = ++loadSeq;
  busy("Loading " + params.get("model") + " (a graph not saved yet is generated first) …");
  const t0 = performance.now();
  try {
    const doc = await fetchJson("/api/graph?" + params.toString());
    if (seq !== loadSeq) return;
    idle();
    history.replaceState(null, "", "?" + params.toString());
    show(doc, doc.name);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    status(`${doc.generated ? "Generated and saved" : "Loaded saved graph"} ${doc.name} in ${secs} s`);
    if (doc.generated) refreshModels();
  } catch (err) {
    if (seq !== loadSeq) return;
    idle();
    const extra = err.body && err.body.matches ? err.body.matches : [];
    const valid = err.body && err.body.valid ? " Valid sizes: " + err.body.valid.join(", ") : "";
    status(err.message + (valid && !err.message.includes("Valid sizes") ? valid : ""), true, extra);
  }
}

export async function loadSaved(name) {
  try {
    const doc = await fetchJson("/api/graph/" + encodeURIComponent(name));
    byId("model").value = doc.alias || doc.model;
    byId("img").value = doc.img_size;
    byId("batch").value = doc.batch_size;
    byId("dtype").value = doc.dtype;
    show(doc, name);
    status("Loaded saved graph " + name);
  } catch (err) {
    status(err.message, true);
  }
}

function fillSaved(data) {
  const saved = byId("saved");
  saved.replaceChildren(new Option("—", ""));
  for (const g of data.graphs) saved.appendChild(new Option(g.name, g.name));
  for (const u of data.unreadable || []) {
    const o = new Option(`${u.name} (unreadable: ${u.error})`, "");
    o.disabled = true;
    saved.appendChild(o);
  }
}

export async function refreshModels() {
  const data = await fetchJson("/api/models");
  const list = byId("model-list");
  list.replaceChildren();
  for (const a of data.aliases) {
    const o = document.createElement("option");
    o.value = a.alias;
    o.label = `${a.timm_name} (${a.img_size}px)`;
    list.appendChild(o);
  }
  fillSaved(data);
  byId("img").min = data.limits.img_size[0];
  byId("img").max = data.limits.img_size[1];
  byId("batch").max = data.limits.batch_size[1];
  state.canMeasure = !!data.measure;
  byId("measure").hidden = !data.measure;
  return data;
}
