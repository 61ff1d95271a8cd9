// kvopt web app: four views over the JSON API of kvopt.ops.ui.app (no framework, no CDN).
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
const fmt = (v, d = 3) => v === null || v === undefined || v === "" ? "-" :
  typeof v === "number" ? (Math.abs(v) >= 1000 ? v.toLocaleString(undefined, {maximumFractionDigits: 0}) : Number(v.toPrecision(d)).toString()) : esc(v);
const state = {choices: null, plan: null, pareto: null, point: null, form: null};

async function call(path, body) {
  const res = await fetch(path, body === undefined ? {} : {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function formData(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === "checkbox" ? el.checked : el.value;
  }
  return out;
}
function showError(id, err) {
  const box = $(id);
  box.hidden = !err;
  box.textContent = err ? err.message || String(err) : "";
}
function cards(id, items) {
  $(id).innerHTML = items.map(([label, value, cls]) =>
    `<div class="c ${cls || ""}"><b>${value}</b><span>${esc(label)}</span></div>`).join("");
}
function table(cols, rows, opts = {}) {
  const head = cols.map((c) => `<th>${esc(c.label || c)}</th>`).join("");
  const body = rows.map((r, i) => `<tr data-i="${i}" class="${opts.clickable ? "clickable" : ""}">` +
    cols.map((c) => { const k = c.key || c; const v = c.get ? c.get(r) : r[k];
      return `<td class="${typeof v === "number" ? "num" : ""}">${typeof v === "number" ? fmt(v, 4) : esc(v)}</td>`; }).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
function plot(id, fig) {
  if (!fig) { $(id).innerHTML = ""; return; }
  return Plotly.react($(id), fig.data, fig.layout, {responsive: true, displaylogo: false});
}
function download(name, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: "text/plain"}));
  a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
async function downloadFrom(path, body) {
  const res = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body)});
  const text = await res.text();
  if (!res.ok) throw new Error(JSON.parse(text).error);
  const m = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
  download(m ? m[1] : "kvopt.txt", text);
}

// ---------------------------------------------------------------- views and choices
function show(view) {
  for (const s of $$(".view")) s.hidden = s.id !== `view-${view}`;
  for (const a of $$("nav a")) a.classList.toggle("active", a.dataset.view === view);
  if (view === "studies") loadStudies();
}
async function fillChoices() {
  const c = state.choices = await call("/api/choices");
  $("#models").innerHTML = c.models.map((m) => `<option value="${esc(m)}">`).join("");
  for (const sel of $$("select[data-fill]")) {
    const items = c[sel.dataset.fill];
    const opts = items.map((x) => typeof x === "string" ? [x, x] :
      [x.id, `${x.id} (${x.memory_gib} GiB)`]);
    sel.innerHTML = (sel.dataset.blank !== undefined ? `<option value="">${esc(sel.dataset.blank)}</option>` : "") +
      opts.map(([v, l]) => `<option value="${esc(v)}">${esc(l)}</option>`).join("");
    if (sel.dataset.default) sel.value = sel.dataset.default;
  }
  for (const el of $$("input[data-default-list]")) el.value = c.defaults[el.dataset.defaultList].join(",");
  for (const el of $$("input[data-default-text]")) el.value = c.defaults[el.dataset.defaultText];
}

// ---------------------------------------------------------------- estimate
let estimateTimer = null, estimateSeq = 0;
function scheduleEstimate() { clearTimeout(estimateTimer); estimateTimer = setTimeout(runEstimate, 300); }
async function runEstimate() {
  const seq = ++estimateSeq;
  try {
    const out = await call("/api/estimate", formData($("#estimate-form")));
    if (seq !== estimateSeq) return;
    showError("#estimate-error", null);
    const r = out.result, l = r.latency, m = r.memory;
    cards("#estimate-cards", [
      ["TTFT p99 (ms)", fmt(l.ttft_p99_ms ?? l.ttft_ms)], ["TPOT p99 (ms)", fmt(l.tpot_p99_ms ?? l.tpot_ms)],
      ["E2E p99 (ms)", fmt(l.e2e_p99_ms ?? l.e2e_ms)], ["output tokens/s", fmt(r.throughput.output_tok_s)],
      ["$/h", fmt(r.cost.usd_per_hour)], ["$/M output tokens", fmt(r.cost.usd_per_million_output_tokens)],
      ["GiB per GPU", `${fmt(m.total_gib)} / ${fmt(m.gpu_gib)}`, m.fits ? "ok" : "bad"]]);
    plot("#estimate-chart", out.chart);
    $("#estimate-cli").textContent = out.cli;
    $("#estimate-json").textContent = JSON.stringify(r, null, 2);
    $("#estimate-json").dataset.seq = String(seq);
  } catch (err) {
    if (seq !== estimateSeq) return;
    showError("#estimate-error", err);
    $("#estimate-json").textContent = "";
  }
}

// ---------------------------------------------------------------- plan and compare
async function busy(id, fn) { $(id).hidden = false; try { await fn(); } finally { $(id).hidden = true; } }
async function runPlan(ev) {
  ev.preventDefault();
  await busy("#plan-busy", async () => {
    try {
      const form = formData($("#plan-form"));
      const out = await call("/api/plan", form);
      showError("#plan-error", null);
      state.plan = out.result; $("#compare-out").hidden = true; $("#plan-out").hidden = false;
      const p = out.result, t = p.totals, s = p.solver;
      cards("#plan-cards", [["fleet $/h", "$" + fmt(t.usd_per_hour, 4)], ["GPUs", t.gpus],
        ["power kW", fmt(t.power_kw)], ["solver", `${esc(s.status)}`, s.status === "optimal" ? "ok" : ""],
        ["gap", fmt(s.gap)]]);
      $("#plan-fleet").innerHTML = table([
        "workload", "gpu", "tp", {label: "precision", get: (e) => `${e.weights}/${e.kv_dtype}`},
        {label: "max batch", key: "max_batch"}, "replicas", {label: "$/h", key: "usd_per_hour"},
        {label: "req/s per replica", key: "rate_per_replica_rps"},
        {label: "goodput per replica", key: "goodput_per_replica_rps"},
        {label: "TTFT p99 ms", get: (e) => e.predicted.ttft_p99_ms},
        {label: "TPOT p99 ms", get: (e) => e.predicted.tpot_p99_ms},
        {label: "$/M out tok", key: "usd_per_million_output_tokens"},
        {label: "GiB/GPU", key: "memory_per_gpu_gib"}], p.fleet);
      $("#plan-binding").innerHTML = p.binding.map((b) => `<li>${esc(b)}</li>`).join("");
      $("#plan-marginal").innerHTML = p.slo_marginal_cost && p.slo_marginal_cost.length ?
        "<h2>Cost of 10% tighter SLOs</h2>" + table(["workload", "slo", "from", "to",
          {label: "extra $/h", key: "delta_usd_per_hour"}], p.slo_marginal_cost) : "";
      const offload = (p.fleet || []).some((e) => e.kv_offload_gib);
      const fmts = [["json", "Plan JSON"], ["markdown", "Markdown"], ["csv", "CSV"], ["vllm", "vLLM"],
        ["sglang", "SGLang"], ["trtllm", "TensorRT-LLM"], ["k8s", "Kubernetes"]].concat(offload ? [["lmcache", "LMCache"]] : []);
      $("#plan-downloads").innerHTML = fmts.map(([f, l]) =>
        `<button class="link" data-format="${f}">${l}</button>`).join("") +
        (out.fleet_yaml ? '<button class="link" data-fleet="1">fleet.yaml</button>' : "");
      state.fleetYaml = out.fleet_yaml || null;
      $("#plan-cli").textContent = out.cli;
      $("#plan-json").textContent = JSON.stringify(p, null, 2);
    } catch (err) { showError("#plan-error", err); }
  });
}
async function runCompare() {
  await busy("#plan-busy", async () => {
    try {
      const out = await call("/api/compare", formData($("#plan-form")));
      showError("#plan-error", null);
      $("#plan-out").hidden = true; $("#compare-out").hidden = false;
      plot("#compare-chart", out.chart);
      $("#compare-table").innerHTML = table(["gpu", "replicas", "tp", "precision",
        {label: "max batch", key: "max_batch"}, "gpus", {label: "$/h", key: "usd_per_hour"},
        {label: "TTFT p99 ms", key: "ttft_p99_ms"}, {label: "TPOT p99 ms", key: "tpot_p99_ms"},
        {label: "$/M out tok", key: "usd_per_million_output_tokens"}, "note"], out.result);
      $("#compare-cli").textContent = out.cli;
      $("#compare-json").textContent = JSON.stringify(out.result, null, 2);
    } catch (err) { showError("#plan-error", err); }
  });
}

// ---------------------------------------------------------------- pareto
async function runPareto(ev) {
  ev.preventDefault();
  await busy("#pareto-busy", async () => {
    try {
      const form = formData($("#pareto-form"));
      const out = await call("/api/pareto", form);
      showError("#pareto-error", null);
      state.pareto = out; state.form = form; state.point = null;
      $("#pareto-out").hidden = false;
      const objs = out.report.objectives;
      for (const [id, i] of [["#pareto-x", 0], ["#pareto-y", Math.min(1, objs.length - 1)]]) {
        $(id).innerHTML = objs.map((o) => `<option>${esc(o)}</option>`).join("");
        $(id).value = objs[i];
      }
      $("#pareto-summary").textContent = `${out.front.length} points; ${out.report.evaluations ?? ""} evaluations; method ${out.report.method ?? ""}`;
      await drawPareto(out.chart);
      $("#pareto-point").innerHTML = '<p class="muted">Click a point of the front.</p>';
      $("#pareto-table").innerHTML = table(["gpu", "tp", "weights", "kv_dtype", "max_batch",
        "replicas", ...objs], out.front, {clickable: true});
      $("#pareto-cli").textContent = out.cli;
    } catch (err) { showError("#pareto-error", err); }
  });
}
async function drawPareto(fig) {
  await plot("#pareto-chart", fig);
  const div = $("#pareto-chart");
  div.removeAllListeners && div.removeAllListeners("plotly_click");
  div.on("plotly_click", (ev) => { const p = ev.points[0]; if (p && p.customdata !== undefined) selectPoint(p.customdata); });
}
async function redrawPareto() {
  const out = state.pareto;
  if (!out) return;
  await drawPareto(await call("/api/pareto/chart", {front: out.front, x: $("#pareto-x").value,
                                                   y: $("#pareto-y").value, title: out.title}));
}
function selectPoint(i) {
  const r = state.pareto.front[i];
  state.point = i;
  const objs = state.pareto.report.objectives;
  const rows = [["GPU", r.gpu], ["replicas", r.replicas], ["TP", r.tp], ["weights / KV", `${r.weights} / ${r.kv_dtype}`],
    ["max batch", r.max_batch], ...objs.map((o) => [o, fmt(r[o], 4)]), ["knee", r.knee ? "yes" : "no"],
    ["engine flags", r.engine_flags]];
  $("#pareto-point").innerHTML = `<h2 id="pareto-point-title">Point ${i + 1}: ${esc(r.replicas)}x ${esc(r.gpu)} TP${esc(r.tp)}</h2>` +
    `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${typeof v === "number" ? v : esc(v)}</td></tr>`).join("")}</table>` +
    `<div class="downloads" style="margin-top:10px">${[["json", "JSON"], ["vllm", "vLLM"], ["sglang", "SGLang"], ["trtllm", "TensorRT-LLM"]]
      .map(([f, l]) => `<button class="link" data-point-format="${f}">${l}</button>`).join("")}</div>`;
  for (const tr of $$("#pareto-table tbody tr")) tr.classList.toggle("sel", Number(tr.dataset.i) === i);
}

// ---------------------------------------------------------------- studies
async function loadStudies() {
  try {
    const out = await call("/api/studies");
    $("#study-root").textContent = out.root;
    $("#study-list").innerHTML = out.studies.length ? out.studies.map((s) =>
      `<li data-path="${esc(s.path)}"><b>${esc(s.name)}</b><small>${esc(s.path)}` +
      (s.error ? ` - ${esc(s.error)}` : ` - ${s.finished}/${s.total} scenarios`) + "</small></li>").join("") :
      '<li class="muted">No study folder here.</li>';
  } catch (err) { showError("#study-error", err); }
}
async function openStudy(path) {
  for (const li of $$("#study-list li")) li.classList.toggle("sel", li.dataset.path === path);
  try {
    const s = await call(`/api/study?path=${encodeURIComponent(path)}`);
    showError("#study-error", null);
    $("#study-out").hidden = false;
    const st = s.status;
    cards("#study-summary", [["scenarios finished", `${st.finished} / ${st.total}`],
      ...Object.entries(st.by_status).map(([k, v]) => [k, v, k === "ok" ? "ok" : "bad"]),
      ["swept", esc(s.swept.join(", ") || "nothing")]]);
    plot("#study-chart", s.chart);
    $("#study-table").innerHTML = (s.report ? `<p><a href="/study-report/${encodeURI(s.path)}/report/report.html" target="_blank">Open the study report</a></p>` : "") +
      table(s.columns, s.rows) + (s.total_rows > s.rows.length ? `<p class="muted">first ${s.rows.length} of ${s.total_rows} rows</p>` : "");
  } catch (err) { showError("#study-error", err); }
}

// ---------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", async () => {
  for (const a of $$("nav a")) a.addEventListener("click", (ev) => {
    ev.preventDefault(); history.pushState({}, "", a.getAttribute("href")); show(a.dataset.view); });
  window.addEventListener("popstate", () => show(location.pathname.slice(1) || "estimate"));
  await fillChoices();
  $("#estimate-form").addEventListener("input", scheduleEstimate);
  $("#estimate-form").addEventListener("change", scheduleEstimate);
  $("#plan-form").addEventListener("submit", runPlan);
  $("#compare-run").addEventListener("click", runCompare);
  $("#pareto-form").addEventListener("submit", runPareto);
  $("#pareto-x").addEventListener("change", redrawPareto);
  $("#pareto-y").addEventListener("change", redrawPareto);
  $("#pareto-table").addEventListener("click", (ev) => { const tr = ev.target.closest("tr[data-i]"); if (tr) selectPoint(Number(tr.dataset.i)); });
  $("#plan-downloads").addEventListener("click", async (ev) => {
    if (ev.target.dataset.fleet && state.fleetYaml) { download("fleet.yaml", state.fleetYaml); return; }
    const f = ev.target.dataset.format; if (!f || !state.plan) return;
    try { await downloadFrom("/api/export", {plan: state.plan, format: f,
      kv_offload_gib: $("#plan-form [name=kv_offload_gib]").value}); } catch (err) { showError("#plan-error", err); }
  });
  $("#pareto-point").addEventListener("click", async (ev) => {
    const f = ev.target.dataset.pointFormat; if (!f || state.point === null) return;
    const form = state.form;
    try { await downloadFrom("/api/pareto/point", {row: state.pareto.front[state.point], format: f, model: form.model,
      rps: Number(form.rps), input_len: form.input_len, output_len: form.output_len}); } catch (err) { showError("#pareto-error", err); }
  });
  $("#study-list").addEventListener("click", (ev) => { const li = ev.target.closest("li[data-path]"); if (li) openStudy(li.dataset.path); });
  show(location.pathname.slice(1) || "estimate");
  runEstimate();
});
window.kvopt = {state, selectPoint, runEstimate};
