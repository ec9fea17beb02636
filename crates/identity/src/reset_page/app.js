// The reset page: reads the token from the URL fragment (never sent to any server by the
// browser), shows the account's password requirements, checks the password as it is typed,
// and submits it. The token only ever travels in POST bodies to this same origin.
"use strict";

(function () {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token") || "";
  // Drop the token from the address bar and history.
  history.replaceState(null, "", window.location.pathname);

  const status = document.getElementById("status");
  const form = document.getElementById("form");
  const rulesList = document.getElementById("rules");
  const password = document.getElementById("password");
  const confirm = document.getElementById("confirm");
  const mismatch = document.getElementById("mismatch");
  const submit = document.getElementById("submit");
  const done = document.getElementById("done");
  // One id for every submission from this page: a submission sent again after its answer was
  // lost (the connection dropped) is answered as the first was, not as a used link.
  const requestId = Array.from(crypto.getRandomValues(new Uint8Array(16)),
    (byte) => byte.toString(16).padStart(2, "0")).join("");
  let rules = [];
  let unmet = new Set();
  let checking = 0;
  let timer = null;

  async function call(path, body) {
    const response = await fetch("/reset/api/" + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let answer = {};
    try { answer = await response.json(); } catch (_) { answer = {}; }
    return { status: response.status, answer };
  }

  function showError(message) {
    form.hidden = true;
    status.hidden = false;
    status.className = "error";
    status.textContent = message;
  }

  // A failure the same submission may get past later: the message, and the form kept (the
  // token left the address bar, so a reload would lose it).
  function showRetry(message) {
    status.hidden = false;
    status.className = "error";
    status.textContent = message;
    render();
  }

  function render() {
    rulesList.replaceChildren(...rules.map((rule) => {
      const item = document.createElement("li");
      item.dataset.code = rule.code;
      item.textContent = rule.description;
      item.className = password.value === "" ? "pending" : unmet.has(rule.code) ? "unmet" : "met";
      return item;
    }));
    const same = password.value === confirm.value;
    mismatch.hidden = same || confirm.value === "";
    submit.disabled = password.value === "" || unmet.size > 0 || !same || checking > 0;
  }

  async function check() {
    checking += 1;
    render();
    let reply;
    try {
      reply = await call("check", { token, password: password.value });
    } catch (_) {
      // No answer: the rules stay as they were, and submitting checks them anyway.
      checking -= 1;
      render();
      return;
    }
    checking -= 1;
    const { status: code, answer } = reply;
    if (code === 410) { showError(answer.error); return; }
    unmet = new Set((answer.violations || []).map((rule) => rule.code));
    render();
  }

  function onInput() {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
    render();
  }

  async function start() {
    if (!token) { showError("This link is incomplete. Open the link from your email again."); return; }
    const { status: code, answer } = await call("requirements", { token });
    if (code !== 200) { showError(answer.error || "This link cannot be used."); return; }
    rules = answer.rules || [];
    status.hidden = true;
    form.hidden = false;
    render();
  }

  password.addEventListener("input", onInput);
  confirm.addEventListener("input", render);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    let reply;
    try {
      reply = await call("complete", { token, password: password.value, request_id: requestId });
    } catch (_) {
      showRetry("No answer came back. Submit again: a password already set is not set twice.");
      return;
    }
    const { status: code, answer } = reply;
    status.hidden = true;
    if (code === 200) {
      form.hidden = true;
      done.hidden = false;
    } else if (code === 422) {
      unmet = new Set((answer.violations || []).map((rule) => rule.code));
      render();
    } else if (code === 503) {
      showRetry(answer.error || "The service is busy. Submit again in a moment.");
    } else {
      showError(answer.error || "The password could not be set.");
    }
  });

  // A link pasted into this same tab only changes the fragment: load it afresh.
  window.addEventListener("hashchange", () => window.location.reload());

  start();
})();
