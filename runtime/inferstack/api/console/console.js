// The console's frame: sign-in, and a page per URL fragment (#/, #/deployments/<id>[?window=7d],
// #/batches). The API key is checked once against the API, then kept in sessionStorage for this tab only.
"use strict";

const main = document.getElementById("main");
let leavePage = () => {};

function renderSignIn() {
  main.innerHTML = `<form class="signin" id="signin-form">
      <h1>Sign in</h1>
      <label for="api-key">API key</label>
      <input id="api-key" name="key" type="password" autocomplete="off" placeholder="isk-…" required>
      <button class="primary" type="submit">Sign in</button>
      <p class="form-error" id="signin-error"></p>
    </form>`;
  main.querySelector("#signin-form").addEventListener("submit", async event => {
    event.preventDefault();
    const key = event.target.elements.key.value.trim();
    try {
      await api.call("GET", "/v1/deployments", undefined, key);
      api.session.signIn(key);
      route();
    } catch (failure) {
      main.querySelector("#signin-error").textContent = failure.message;
    }
  });
  return () => {};
}

function route() {
  leavePage();
  delete document.body.dataset.rendered;  // set again by the next page once its data is drawn
  const signedIn = Boolean(api.session.key());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  const hash = location.hash || "#/";
  const detail = hash.match(/^#\/deployments\/([^?]+)(?:\?window=(\w+))?$/);
  if (!signedIn) leavePage = renderSignIn();
  else if (detail) leavePage = pages.deployment(main, decodeURIComponent(detail[1]), detail[2]);
  else if (hash === "#/batches") leavePage = pages.batches(main);
  else leavePage = pages.deployments(main);
}

document.getElementById("sign-out").addEventListener("click", () => {
  api.session.signOut();
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
