// lvmharness architecture page, the entry module: wires the controls and opens with a model shown.
// Every value from the server is written with textContent, never as HTML.
import { byId } from "./dom.js";
import { load, loadSaved, measure, refreshModels, status } from "./load.js";
import { initMemory } from "./memory.js";
import { useMeasurement } from "./show.js";
import { state } from "./state.js";
import { collapseAll, expandAll, expandToDepth, render, setSort } from "./tree.js";

function wireControls() {
  byId("pick").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  byId("saved").addEventListener("change", (e) => { if (e.target.value) loadSaved(e.target.value); });
  byId("expand-all").addEventListener("click", expandAll);
  byId("collapse-all").addEventListener("click", collapseAll);
  byId("expand-depth").addEventListener("click", () => expandToDepth(parseInt(byId("depth").value || "1", 10)));
  byId("search").addEventListener("input", (e) => { state.query = e.target.value; if (state.doc) render(); });
  byId("measure").addEventListener("click", measure);
  byId("measured").addEventListener("change", (e) => useMeasurement(parseInt(e.target.value, 10)));
  for (const th of document.querySelectorAll("#tree th[data-sort]")) {
    th.addEventListener("click", () => setSort(th.dataset.sort));
  }
  initMemory();
}

// The address may name a model, size, batch and dtype (the page writes them there when it loads a graph).
function fillFromAddress(q) {
  if (q.get("model")) byId("model").value = q.get("model");
  if (q.get("img_size")) byId("img").value = q.get("img_size");
  if (q.get("batch_size")) byId("batch").value = q.get("batch_size");
  if (q.get("dtype")) byId("dtype").value = q.get("dtype");
}

// A module script runs once the document is parsed (modules are deferred): the elements exist now.
wireControls();
const query = new URLSearchParams(location.search);
fillFromAddress(query);
refreshModels()
  .then((data) => {
    // Open with a model shown: the one in the address, else the default one, else the first saved graph.
    if (query.get("model") || data.generate) load();
    else if (data.graphs.length) loadSaved(data.graphs[0].name);
    else status("No saved graphs in this folder and generation is off (lvm graph MODEL -o FILE writes one).");
  })
  .catch((err) => status("Could not list models: " + err.message, true));
