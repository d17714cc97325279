// Talking to the control plane: the key lives in sessionStorage (gone when the tab closes, never in a
// URL) and goes in the Authorization header; errors come back in OpenAI's shape, with `details` naming
// each field a spec got wrong, which forms show next to that field.
"use strict";

const KEY_ITEM = "inferstack.apiKey";

class ApiFailure extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.param = error.param || null;
    this.details = error.details || [];
  }
}

const session = {
  key: () => sessionStorage.getItem(KEY_ITEM),
  signIn: key => sessionStorage.setItem(KEY_ITEM, key),
  signOut: () => sessionStorage.removeItem(KEY_ITEM),
};

async function call(method, path, body, key) {
  const headers = {Authorization: `Bearer ${key || session.key()}`};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    if (response.status === 401 && !key) { session.signOut(); window.dispatchEvent(new Event("hashchange")); }
    throw new ApiFailure(response.status, (data && data.error) || {message: text || response.statusText});
  }
  return data;
}

async function download(path, filename) {
  const response = await fetch(path, {headers: {Authorization: `Bearer ${session.key()}`}});
  if (!response.ok) throw new ApiFailure(response.status, {message: await response.text()});
  const link = Object.assign(document.createElement("a"),
                             {href: URL.createObjectURL(await response.blob()), download: filename});
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// Put each message under its field (`data-field` on the form's inputs); the rest above the form.
function showErrors(form, failure) {
  clearErrors(form);
  const fields = failure.details.length ? failure.details
    : [{field: failure.param || "", message: failure.message}];
  const unplaced = [];
  for (const {field, message} of fields) {
    const slot = form.querySelector(`.field-error[data-for="${CSS.escape(field)}"]`);
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
      if (input) input.classList.add("invalid");
    } else {
      unplaced.push(field ? `${field}: ${message}` : message);
    }
  }
  form.querySelector(".form-error").textContent = unplaced.join("; ");
}

function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-error, .form-note").forEach(el => { el.textContent = ""; });
  form.querySelectorAll(".invalid").forEach(el => el.classList.remove("invalid"));
}

// A labelled input with its error slot: [name, label, attrs].
function fieldHtml(name, label, attrs) {
  const extra = Object.entries(attrs || {}).map(([k, v]) => `${k}="${escapeHtml(String(v))}"`).join(" ");
  return `<label>${escapeHtml(label)}<input name="${name}" ${extra}>` +
         `<span class="field-error" data-for="${name}"></span></label>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}

function money(v) { return v === null || v === undefined ? "–" : `$${v < 1 ? v.toFixed(4) : v.toFixed(2)}`; }

function when(seconds) { return seconds ? new Date(seconds * 1000).toLocaleString() : "–"; }

window.api = {call, download, session, showErrors, clearErrors, fieldHtml, escapeHtml, money, when, ApiFailure};
