// One pair at a time; every answer goes to the server before the next pair is shown, so a
// reload resumes at the first unanswered pair. The token stays in the URL fragment (never
// sent to the server in a URL or logged) and in the X-Study-Token header.
"use strict";
const $ = (id) => document.getElementById(id);
let token = null;
let state = null;
let current = null;
let shownAt = 0;
let ready = false;
let busy = false;
let exposureTimer = null;

function tokenFromHash() {
  const m = location.hash.match(/[#&]t=([^&]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({cache: "no-store"}, options || {}, {
    headers: {"X-Study-Token": token, "Content-Type": "application/json"},
  }));
  let body = {};
  try { body = await r.json(); } catch (e) { body = {}; }
  return {ok: r.ok, status: r.status, body: body};
}

function showError(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

async function start(t) {
  token = t;
  const r = await api("/api/state");
  if (!r.ok) {
    $("study").hidden = true;
    $("done").hidden = true;
    $("login").hidden = false;
    showError("login-error", r.status === 403 ? "This code is not valid." : "The study server did not answer.");
    return;
  }
  state = r.body;
  history.replaceState(null, "", "#t=" + encodeURIComponent(token));
  $("login").hidden = true;
  $("study").hidden = false;
  $("question").textContent = state.question;
  next();
}

function loaded(img, name) {
  return new Promise((resolve) => {
    img.onload = () => resolve();
    img.onerror = () => resolve();
    img.classList.remove("hidden-after-exposure");
    img.src = "/images/" + name;
  });
}

async function next() {
  const done = new Set(state.answered);
  current = state.trials.find((t) => !done.has(t.trial)) || null;
  ready = false;
  $("choose-left").disabled = true;
  $("choose-right").disabled = true;
  if (exposureTimer) { clearTimeout(exposureTimer); exposureTimer = null; }
  if (!current) {
    $("study").hidden = true;
    $("done").hidden = false;
    return;
  }
  const numbered = state.trials.filter((t) => !t.practice);
  const label = current.practice ? "Practice pair" : "Pair " + (numbered.indexOf(current) + 1) + " of " + numbered.length;
  $("progress").textContent = label + " (sheet number " + current.trial + ")";
  $("progress").dataset.trial = String(current.trial);
  const waits = [loaded($("left"), current.left), loaded($("right"), current.right)];
  $("reference-box").hidden = !current.reference;
  if (current.reference) waits.push(loaded($("reference"), current.reference));
  await Promise.all(waits);
  shownAt = performance.now();
  ready = true;
  $("choose-left").disabled = false;
  $("choose-right").disabled = false;
  if (state.exposure_ms) {
    exposureTimer = setTimeout(() => {
      for (const id of ["left", "right", "reference"]) $(id).classList.add("hidden-after-exposure");
    }, state.exposure_ms);
  }
}

async function choose(side) {
  if (busy || !ready || !current) return;
  busy = true;
  const rt = Math.round(performance.now() - shownAt);
  try {
    const r = await api("/api/answer", {method: "POST", body: JSON.stringify({trial: current.trial, side: side, rt_ms: rt})});
    if (r.ok) {
      state.answered.push(current.trial);
      showError("error", "");
    } else if (r.status === 409) {  // answered elsewhere (another tab): take the server's word
      const s = await api("/api/state");
      if (s.ok) state = s.body;
    } else {
      showError("error", r.body.error || "The answer was not stored; try again.");
      return;
    }
    await next();
  } finally {
    busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("choose-left").addEventListener("click", () => choose("left"));
  $("choose-right").addEventListener("click", () => choose("right"));
  document.addEventListener("keydown", (e) => {
    if ($("study").hidden) return;
    if (e.key === "a" || e.key === "A" || e.key === "ArrowLeft") choose("left");
    if (e.key === "b" || e.key === "B" || e.key === "ArrowRight") choose("right");
  });
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    start($("token").value.trim());
  });
  // another token typed into the address bar: start over as that participant
  window.addEventListener("hashchange", () => location.reload());
  const t = tokenFromHash();
  if (t) start(t);
});
