// A deployment's page: charts over a chosen window with the scaling events on the same time axis, the
// events with their reasons and numbers, the replica table, the scaling fields to edit, and a playground
// that streams a chat through the gateway.
"use strict";

const WINDOWS = ["15m", "1h", "6h", "24h", "7d"];
const SCALING_FIELDS = [["min_replicas", "Min replicas"], ["max_replicas", "Max replicas"],
                        ["target_rps", "Target req/s per replica"], ["target_latency_p95_ms", "Target p95 (ms)"],
                        ["idle_timeout_s", "Idle timeout (s)"], ["max_price_per_hour", "Max price (USD/h)"]];
const MARKED_EVENTS = new Set(["scaled", "resumed"]);

function eventNumbers(data) {
  const keys = ["before", "after", "rps", "p95_latency_ms", "queued_requests", "ready_replicas"];
  return keys.filter(k => data[k] !== undefined && data[k] !== null)
    .map(k => `${k}=${charts.formatNumber(data[k])}`).join(" ");
}

function drawHistory(box, history) {
  const times = history.series.at, series = name => history.series[name];
  const x1 = history.now, x0 = x1 - history.window_s;
  const events = history.events.filter(e => MARKED_EVENTS.has(e.kind))
    .map(e => ({at: e.at, label: `${new Date(e.at * 1000).toLocaleTimeString()} ${e.message}`}));
  const common = {times, x0, x1, events};
  box.replaceChildren(
    charts.drawChart({...common, id: "chart-traffic", title: "Requests per second", series: [
      {name: "arrivals", color: "#2557d6", values: series("arrivals_rps")},
      {name: "completions", color: "#16a34a", values: series("completions_rps")}]}),
    charts.drawChart({...common, id: "chart-latency", title: "Latency (ms)", unit: " ms", series: [
      {name: "p50", color: "#16a34a", values: series("p50_latency_ms")},
      {name: "p95", color: "#2557d6", values: series("p95_latency_ms")},
      {name: "p95 TTFT", color: "#9333ea", values: series("p95_ttft_ms")}],
      refs: [{name: "target p95", color: "#b42318", values: series("target_latency_ms")}]}),
    charts.drawChart({...common, id: "chart-replicas", title: "Replicas", series: [
      {name: "ready", color: "#16a34a", values: series("ready")},
      {name: "starting", color: "#2557d6", values: series("starting")},
      {name: "draining", color: "#c2410c", values: series("draining")}],
      refs: [{name: "min", color: "#66707c", values: series("min_replicas")},
             {name: "max", color: "#1d232b", values: series("max_replicas")}]}),
    charts.drawChart({...common, id: "chart-cost", series: [
      {name: "per hour", color: "#2557d6", values: series("usd_per_hour")}],
      // The cost so far grows without bound: it is a number in the title, not a line on the hourly axis.
      title: `Cost (USD per hour) · ${api.money(series("cost_usd").filter(v => v !== null).pop())} so far`}));
}

function replicaRows(replicas) {
  const e = api.escapeHtml;
  if (!replicas.length) return `<tr><td colspan="7" class="muted">No replicas.</td></tr>`;
  return replicas.map(r => `<tr><td>${e(r.id)}</td><td><span class="status">${e(r.status)}</span></td>
    <td>${e(r.provider || "–")}${r.burst ? " (burst)" : ""}</td><td class="num">${r.in_flight}</td>
    <td class="num">${r.engine_running ?? "–"} / ${r.engine_waiting ?? "–"}</td>
    <td>${api.when(r.started_at)}</td><td>${api.when(r.ready_at)}</td></tr>`).join("");
}

async function streamChat(deploymentId, prompt, maxTokens, out) {
  // The gateway's SSE stream, read chunk by chunk: each `data:` line carries a delta of the answer.
  out.textContent = "";
  const response = await fetch("/v1/chat/completions", {method: "POST", headers: {
    Authorization: `Bearer ${api.session.key()}`, "Content-Type": "application/json"},
    body: JSON.stringify({model: deploymentId, stream: true, max_tokens: maxTokens,
                          messages: [{role: "user", content: prompt}]})});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new api.ApiFailure(response.status, body.error || {message: response.statusText});
  }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) {
      if (!line.startsWith("data:") || line.includes("[DONE]")) continue;
      const chunk = JSON.parse(line.slice(5));
      if (chunk.error) throw new api.ApiFailure(502, chunk.error);
      out.textContent += (chunk.choices[0] && chunk.choices[0].delta.content) || "";
    }
  }
}

function renderDeployment(main, id, chosenWindow) {
  const ref = encodeURIComponent(id);
  let windowName = WINDOWS.includes(chosenWindow) ? chosenWindow : "1h", stopped = false, formFilled = false;
  main.innerHTML = `<p><a href="#/">← Deployments</a></p>
    <h1><span id="dep-name"></span> <span id="dep-status" class="status"></span></h1>
    <p class="muted" id="dep-summary"></p><p class="error" id="dep-error"></p>
    <div class="toolbar" id="windows">Window: ${WINDOWS.map(w => `<button data-window="${w}">${w}</button>`).join("")}</div>
    <div class="charts" id="charts"></div>
    <h2>Scaling events</h2><ol class="events" id="events"></ol>
    <h2>Replicas</h2>
    <table id="replicas"><thead><tr><th>Replica</th><th>Status</th><th>Runs on</th><th class="num">In flight</th>
      <th class="num">Engine running / waiting</th><th>Started</th><th>Ready</th></tr></thead><tbody></tbody></table>
    <h2>Scaling</h2>
    <form id="scaling-form" class="grid" novalidate>
      ${SCALING_FIELDS.map(([name, label]) => api.fieldHtml(name, label, {type: "number", step: "any"})).join("")}
      <div><button class="primary" type="submit">Save</button><p class="form-error"></p><p class="form-note"></p></div>
    </form>
    <h2>Playground</h2>
    <form id="playground"><textarea name="prompt" rows="3" cols="80">Say hello in five words.</textarea>
      <div><label>Max tokens <input name="max_tokens" type="number" min="1" value="64"></label>
        <button class="primary" type="submit">Send</button> <span class="error" id="chat-error"></span></div></form>
    <pre id="answer"></pre>`;
  const form = main.querySelector("#scaling-form");
  const refresh = async () => {
    try {
      const [d, history] = await Promise.all([
        api.call("GET", `/v1/deployments/${ref}`),
        api.call("GET", `/v1/deployments/${ref}/history?window=${windowName}`)]);
      if (stopped) return;
      main.querySelector("#dep-name").textContent = d.name;
      const status = main.querySelector("#dep-status");
      status.textContent = d.status;
      status.className = `status ${d.status}`;
      main.querySelector("#dep-summary").textContent = `${d.spec.hf_model_id} on ${d.spec.hardware_profile} · ` +
        `${d.ready_replicas} ready of ${d.desired_replicas} desired (min ${d.spec.min_replicas}, max ` +
        `${d.spec.max_replicas}) · ${api.money(d.cost.usd)} so far, ${api.money(d.cost.usd_per_hour)}/h` +
        (d.status_reason ? ` · ${d.status_reason}` : "");
      drawHistory(main.querySelector("#charts"), history);
      main.querySelector("#events").innerHTML = history.events.slice().reverse().slice(0, 50).map(e =>
        `<li data-kind="${api.escapeHtml(e.kind)}"><time>${new Date(e.at * 1000).toLocaleString()}</time>` +
        `<b>${api.escapeHtml(e.kind)}</b> ${api.escapeHtml(e.message)} ` +
        `<span class="muted">${api.escapeHtml(eventNumbers(e.data))}</span></li>`).join("") ||
        `<li class="muted">No events in this window.</li>`;
      main.querySelector("#replicas tbody").innerHTML = replicaRows(d.replicas);
      if (!formFilled) {
        for (const [name] of SCALING_FIELDS) form.elements[name].value = d.spec[name] ?? "";
        formFilled = true;
      }
      main.querySelector("#dep-error").textContent = "";
      main.querySelectorAll("#windows button").forEach(b => b.classList.toggle("on", b.dataset.window === windowName));
      performance.mark("console-rendered");
      document.body.dataset.rendered = "deployment";
    } catch (failure) {
      if (!stopped) main.querySelector("#dep-error").textContent = failure.message;
    }
  };
  main.querySelector("#windows").addEventListener("click", event => {
    const button = event.target.closest("button[data-window]");
    if (!button) return;
    windowName = button.dataset.window;
    history.replaceState(null, "", `#/deployments/${ref}?window=${windowName}`);  // a link that keeps the window
    refresh();
  });
  form.addEventListener("submit", async event => {
    event.preventDefault();
    api.clearErrors(form);
    const change = pages.formSpec(form);
    if (change.max_price_per_hour === undefined) change.max_price_per_hour = null;
    try {
      await api.call("PATCH", `/v1/deployments/${ref}`, change);
      form.querySelector(".form-note").textContent = "Saved.";
      refresh();
    } catch (failure) {
      api.showErrors(form, failure);
    }
  });
  main.querySelector("#playground").addEventListener("submit", async event => {
    event.preventDefault();
    const error = main.querySelector("#chat-error");
    error.textContent = "";
    try {
      const {prompt, max_tokens: maxTokens} = event.target.elements;
      await streamChat(id, prompt.value, Number(maxTokens.value) || undefined, main.querySelector("#answer"));
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  refresh();
  const timer = setInterval(refresh, 2000);
  return () => { stopped = true; clearInterval(timer); };
}

window.pages = Object.assign(window.pages || {}, {deployment: renderDeployment});
