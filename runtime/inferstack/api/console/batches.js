// Batches and files: each batch's progress, counts and errors, with its results (and error lines) to
// download; the tenant's files with theirs. Refreshed every 3 s.
"use strict";

function batchRow(b) {
  const e = api.escapeHtml, c = b.request_counts, done = c.completed + c.failed;
  const files = [["output_file_id", "results"], ["error_file_id", "errors"]]
    .filter(([k]) => b[k]).map(([k, label]) =>
      `<button data-download="${e(b[k])}" data-filename="${e(b.id)}-${label}.jsonl">${label}</button>`).join(" ");
  const errors = b.errors ? b.errors.data.map(x => `${x.line ? `line ${x.line}: ` : ""}${x.message}`).join("; ") : "";
  return `<tr data-id="${e(b.id)}"><td>${e(b.id)}</td><td><span class="status">${e(b.status)}</span></td>
    <td>${e(b.endpoint)}</td>
    <td><progress max="${c.total || 1}" value="${done}"></progress> ${done} / ${c.total}</td>
    <td class="num">${c.completed}</td><td class="num">${c.failed}</td>
    <td class="error">${e(errors)}</td><td>${api.when(b.created_at)}</td><td>${files}</td></tr>`;
}

function fileRow(f) {
  const e = api.escapeHtml;
  return `<tr><td>${e(f.id)}</td><td>${e(f.filename)}</td><td>${e(f.purpose)}</td><td class="num">${f.bytes}</td>
    <td>${api.when(f.created_at)}</td>
    <td><button data-download="${e(f.id)}" data-filename="${e(f.filename)}">download</button></td></tr>`;
}

function renderBatches(main) {
  main.innerHTML = `<h1>Batches</h1>
    <table id="batches"><thead><tr><th>Batch</th><th>Status</th><th>Endpoint</th><th>Progress</th>
      <th class="num">Completed</th><th class="num">Failed</th><th>Errors</th><th>Created</th><th>Download</th></tr>
      </thead><tbody></tbody></table>
    <h2>Files</h2>
    <table id="files"><thead><tr><th>File</th><th>Name</th><th>Purpose</th><th class="num">Bytes</th><th>Created</th>
      <th></th></tr></thead><tbody></tbody></table>
    <p class="error" id="batches-error"></p>`;
  let stopped = false;
  const refresh = async () => {
    try {
      const [batches, files] = await Promise.all([api.call("GET", "/v1/batches?limit=100"),
                                                  api.call("GET", "/v1/files?limit=200")]);
      if (stopped) return;
      main.querySelector("#batches tbody").innerHTML = batches.data.map(batchRow).join("") ||
        `<tr><td colspan="9" class="muted">No batches.</td></tr>`;
      main.querySelector("#files tbody").innerHTML = files.data.map(fileRow).join("") ||
        `<tr><td colspan="6" class="muted">No files.</td></tr>`;
      performance.mark("console-rendered");
      document.body.dataset.rendered = "batches";
    } catch (failure) {
      if (!stopped) main.querySelector("#batches-error").textContent = failure.message;
    }
  };
  main.addEventListener("click", async event => {
    const button = event.target.closest("button[data-download]");
    if (!button) return;
    try {
      await api.download(`/v1/files/${encodeURIComponent(button.dataset.download)}/content`, button.dataset.filename);
    } catch (failure) {
      main.querySelector("#batches-error").textContent = failure.message;
    }
  });
  refresh();
  const timer = setInterval(refresh, 3000);
  return () => { stopped = true; clearInterval(timer); };
}

window.pages = Object.assign(window.pages || {}, {batches: renderBatches});
