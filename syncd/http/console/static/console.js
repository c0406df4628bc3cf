// syncd console: live updates by server-sent events, and ticking ages. Everything works
// without this script; it only saves a reload. Text goes in with textContent, never as HTML.
"use strict";

function age(seconds) {
  const ago = Math.max(0, Date.now() / 1000 - seconds);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (ago >= size) return Math.floor(ago / size) + " " + unit + " ago";
  }
  return Math.floor(ago) + " s ago";
}

function tick() {
  document.querySelectorAll("time[data-age]").forEach((el) => {
    // unix seconds, or an RFC 3339 time as the API gives it
    let t = Number(el.dataset.age);
    if (isNaN(t)) t = Date.parse(el.dataset.age) / 1000;
    if (!isNaN(t)) el.textContent = age(t);
  });
}

function pill(el, prefix, value) {
  el.textContent = value;
  el.className = "pill " + prefix + "-" + value;
}

function applied(el, row) {
  el.replaceChildren();
  const code = document.createElement("code");
  code.textContent = row.applied || "—";
  if (row.applied_url) {
    const a = document.createElement("a");
    a.href = row.applied_url;
    a.rel = "noreferrer";
    a.append(code);
    el.append(a);
  } else if (row.applied) {
    el.append(code);
  } else {
    el.textContent = "—";
  }
}

function lastRun(el, row) {
  el.replaceChildren();
  if (!row.last_run_result) { el.textContent = "never"; return; }
  const result = document.createElement("span");
  result.className = "result-" + row.last_run_result;
  result.textContent = row.last_run_result;
  const time = document.createElement("time");
  time.dataset.age = row.last_run_at;
  time.textContent = age(row.last_run_at);
  el.append(result, " ", time);
}

function update(scope, row) {
  scope.querySelectorAll("[data-field]").forEach((el) => {
    switch (el.dataset.field) {
      case "status": pill(el, "status", row.status); break;
      case "health": pill(el, "health", row.health); break;
      case "applied": applied(el, row); break;
      case "last_run": lastRun(el, row); break;
      case "changed_outside": el.textContent = String(row.changed_outside); break;
      case "mode": el.textContent = row.mode; break;
    }
  });
}

function listen(live) {
  if (!window.EventSource) return;
  const source = new EventSource(live.dataset.live);
  source.addEventListener("workspace", (event) => {
    const row = JSON.parse(event.data);
    if (live.dataset.ws !== undefined) {
      if (live.dataset.ws !== row.id) return;
      // A workspace's page: its header and facts, and a note when a run has finished.
      update(document, row);
      if (live.dataset.run !== row.last_run_id) {
        const stale = live.querySelector(".stale");
        if (stale && live.dataset.run !== undefined && row.last_run_id) stale.hidden = false;
      }
      return;
    }
    const tr = Array.from(live.querySelectorAll("tr[data-ws]")).find((r) => r.dataset.ws === row.id);
    if (tr) update(tr, row);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(listen);
  tick();
  setInterval(tick, 15000);
});
