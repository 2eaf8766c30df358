// The console's only script: pages work without it; it adds live logs and refreshing.
// Every value from the server is set as text (textContent), never parsed as HTML.
"use strict";

function liveLog(table) {
  const body = table.tBodies[0];
  const status = document.getElementById("live-status");
  const source = new EventSource(table.dataset.live);
  status.textContent = "following the log…";
  source.addEventListener("log", (message) => {
    const row = JSON.parse(message.data);
    const tr = document.createElement("tr");
    tr.className = "live level-" + row.level;
    for (const name of ["time", "attempt", "level", "step", "event", "fields"]) {
      const td = document.createElement("td");
      td.textContent = row[name];
      if (name === "attempt") td.className = "num";
      if (name === "fields") {
        td.className = "fields-text";
        if (row.exception) {
          const details = document.createElement("details");
          const summary = document.createElement("summary");
          const pre = document.createElement("pre");
          summary.textContent = "traceback";
          pre.textContent = row.exception;
          details.append(summary, pre);
          td.appendChild(details);
        }
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  });
  let seen = null;  // the state and attempt the page's run sections were rendered for
  source.addEventListener("run", (message) => {
    const summary = JSON.parse(message.data);
    showRun(summary);
    const now = summary.state + "/" + summary.attempt;
    if (seen !== null && now !== seen) refreshRun();
    seen = now;
  });
  source.addEventListener("end", () => {
    source.close();
    status.textContent = "the run has finished";
    refreshRun();
  });
}

// The run's sections (state, buttons, error, details with the finish time, attempts, steps)
// as the server renders them now: its own escaped page, parsed inertly (no script runs).
async function refreshRun() {
  let answer;
  try {
    answer = await fetch(location.href, {headers: {accept: "text/html"}, credentials: "same-origin"});
  } catch (error) {
    return;  // the live figures stay; a reload shows the rest
  }
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const id of ["run", "run-details"]) {
    const now = document.getElementById(id);
    const next = fresh.getElementById(id);
    if (now && next) now.replaceWith(document.adoptNode(next));
  }
}

function showRun(summary) {
  const badge = document.querySelector("#run .run-state .state");
  if (badge) {
    badge.className = "state state-" + summary.state;
    badge.textContent = summary.state;
  }
  const counters = document.getElementById("counters");
  if (counters) {
    const parts = Object.entries(summary.counters || {}).map(([k, v]) => k + "=" + v);
    if (summary.total) parts.push("of " + summary.total);
    counters.textContent = parts.join(" ");
  }
  const bar = document.getElementById("progress-bar");
  if (bar) {
    bar.max = summary.total || 1;
    bar.value = summary.total ? Math.min(summary.done, summary.total) : (summary.state === "succeeded" ? 1 : 0);
  }
  const attempt = document.getElementById("attempt-now");
  if (attempt) attempt.textContent = attempt.textContent.replace(/^attempt \d+/, "attempt " + summary.attempt);
  const errorBox = document.getElementById("error-box");
  if (errorBox && summary.state !== "failed") errorBox.replaceChildren();
  const actions = document.querySelector("#run .actions");
  if (actions && ["queued", "running", "retrying"].includes(summary.state)) {
    for (const form of actions.querySelectorAll("form[action='/actions/rerun']")) form.remove();
  }
}

function autoSubmit(form) {
  for (const select of form.querySelectorAll("select")) {
    select.addEventListener("change", () => form.submit());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (log && log.dataset.live) liveLog(log);
  for (const id of ["log-filter", "filters"]) {
    const form = document.getElementById(id);
    if (form) autoSubmit(form);
  }
  const every = Number(document.body.dataset.refresh || 0);
  if (every > 0) {
    setInterval(() => { if (!document.hidden) location.reload(); }, every * 1000);
  }
});
