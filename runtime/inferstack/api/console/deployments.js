// The deployments list: status, model, profile, replicas, traffic and cost, refreshed every 2 s, with
// create, stop, resume and delete. The create form sends what was filled in; the API's validation
// messages come back next to their fields, and a refused spec creates nothing.
"use strict";

const PROFILES = ["cpu", "gpu.l4", "gpu.a10g", "gpu.l40s", "gpu.a100", "gpu.a100-80gb", "gpu.h100", "gpu.h200"];
const NUMBER_FIELDS = new Set(["min_replicas", "max_replicas", "target_rps", "target_latency_p95_ms",
                               "idle_timeout_s", "max_price_per_hour", "gpus_per_replica"]);

// The filled-in fields of a form as a spec (numbers as numbers, engine args split on spaces).
function formSpec(form) {
  const spec = {};
  for (const input of form.querySelectorAll("[name]")) {
    const raw = input.value.trim();
    if (raw === "") continue;
    if (input.name === "engine_args") spec.engine_args = raw.split(/\s+/);
    else spec[input.name] = NUMBER_FIELDS.has(input.name) && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  }
  return spec;
}

function deploymentRow(d) {
  const e = api.escapeHtml, t = d.metrics;
  const action = ["stopped", "failed"].includes(d.status)
    ? `<button data-act="resume" data-id="${e(d.id)}">Resume</button>`
    : `<button data-act="stop" data-id="${e(d.id)}">Stop</button>`;
  return `<tr data-id="${e(d.id)}" data-name="${e(d.name)}">
    <td><a href="#/deployments/${encodeURIComponent(d.id)}">${e(d.name)}</a></td>
    <td><span class="status ${e(d.status)}" title="${e(d.status_reason)}">${e(d.status)}</span></td>
    <td>${e(d.spec.hf_model_id)}</td><td>${e(d.spec.hardware_profile)}</td>
    <td class="num replicas">${d.ready_replicas} / ${d.desired_replicas}</td>
    <td class="num">${t ? charts.formatNumber(t.arrivals_per_s) : "–"}</td>
    <td class="num">${t && t.p95_latency_ms !== null ? charts.formatNumber(t.p95_latency_ms) + " ms" : "–"}</td>
    <td class="num">${api.money(d.cost.usd)}</td><td class="num">${api.money(d.cost.usd_per_hour)}/h</td>
    <td>${action} <button class="danger" data-act="delete" data-id="${e(d.id)}">Delete</button></td></tr>`;
}

function renderDeployments(main) {
  main.innerHTML = `<h1>Deployments</h1>
    <table id="deployments"><thead><tr><th>Name</th><th>Status</th><th>Model</th><th>Profile</th>
      <th class="num">Ready / desired</th><th class="num">Req/s</th><th class="num">p95</th>
      <th class="num">Cost so far</th><th class="num">Cost / hour</th><th></th></tr></thead>
      <tbody><tr><td colspan="10" class="muted">Loading…</td></tr></tbody></table>
    <p class="error" id="list-error"></p>
    <h2>New deployment</h2>
    <form id="create-form" class="grid" novalidate>
      ${api.fieldHtml("name", "Name", {placeholder: "my-model"})}
      ${api.fieldHtml("hf_model_id", "Model (Hugging Face id)", {placeholder: "meta-llama/Llama-3.1-8B-Instruct"})}
      <label>Engine<select name="engine"><option>vllm</option><option>sim</option></select>
        <span class="field-error" data-for="engine"></span></label>
      ${api.fieldHtml("hardware_profile", "Hardware profile", {list: "profiles", placeholder: "gpu.a100"})}
      <datalist id="profiles">${PROFILES.map(p => `<option value="${p}">`).join("")}</datalist>
      ${api.fieldHtml("min_replicas", "Min replicas", {type: "number", placeholder: "1"})}
      ${api.fieldHtml("max_replicas", "Max replicas", {type: "number", placeholder: "1"})}
      ${api.fieldHtml("target_rps", "Target req/s per replica", {type: "number", step: "any", placeholder: "10"})}
      ${api.fieldHtml("engine_args", "Engine arguments", {placeholder: "--max-num-seqs 64"})}
      <div><button class="primary" type="submit">Create</button><p class="form-error"></p></div>
    </form>`;
  const tbody = main.querySelector("#deployments tbody");
  const form = main.querySelector("#create-form");
  let stopped = false;
  const refresh = async () => {
    try {
      const list = await api.call("GET", "/v1/deployments");
      if (stopped) return;
      tbody.innerHTML = list.data.length ? list.data.map(deploymentRow).join("")
        : `<tr><td colspan="10" class="muted">No deployments yet.</td></tr>`;
      main.querySelector("#list-error").textContent = "";
      performance.mark("console-rendered");
      document.body.dataset.rendered = "deployments";
    } catch (failure) {
      if (!stopped) main.querySelector("#list-error").textContent = failure.message;
    }
  };
  tbody.addEventListener("click", async event => {
    const button = event.target.closest("button[data-act]");
    if (!button) return;
    const {act, id} = button.dataset;
    if (act === "delete" && !confirm(`Delete ${button.closest("tr").dataset.name}? Its replicas stop.`)) return;
    try {
      if (act === "delete") await api.call("DELETE", `/v1/deployments/${encodeURIComponent(id)}`);
      else await api.call("POST", `/v1/deployments/${encodeURIComponent(id)}/${act}`);
    } catch (failure) {
      main.querySelector("#list-error").textContent = failure.message;
    }
    refresh();
  });
  form.addEventListener("submit", async event => {
    event.preventDefault();
    api.clearErrors(form);
    try {
      const created = await api.call("POST", "/v1/deployments", formSpec(form));
      form.reset();
      location.hash = `#/deployments/${encodeURIComponent(created.id)}`;
    } catch (failure) {
      api.showErrors(form, failure);
    }
  });
  refresh();
  const timer = setInterval(refresh, 2000);
  return () => { stopped = true; clearInterval(timer); };
}

window.pages = Object.assign(window.pages || {}, {deployments: renderDeployments, formSpec});
