// Small enhancements only: the UI works without this file.
// * "Invert selection" buttons flip every checkbox of their form.
// * Live counts: a form with data-refresh-seconds re-reads its own page now and then and
//   updates the agent counts in place (ticked boxes stay ticked); rows that are no longer
//   pending are struck through, new ones announced. Everything is set with textContent.
"use strict";

function initInvert() {
  for (const button of document.querySelectorAll("[data-invert]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const form = button.closest("form");
      for (const box of form.querySelectorAll('input[type="checkbox"][name="key"], input[type="checkbox"][name="agent"]')) {
        box.checked = !box.checked;
      }
    });
  }
}

// Counts of a pending page: row key -> agents, package name -> "N agent(s)".
function countsOf(doc) {
  const rows = new Map();
  for (const box of doc.querySelectorAll('table.pending input[name="key"]')) {
    rows.set(box.value, box.closest("tr").querySelector("td.count").textContent);
  }
  const packages = new Map();
  for (const tr of doc.querySelectorAll("table.pending tr.package")) {
    packages.set(tr.querySelector("th").textContent, tr.querySelector("td.count").textContent);
  }
  return { rows, packages };
}

async function refreshCounts() {
  const status = document.getElementById("live-status");
  const response = await fetch(location.href, { credentials: "same-origin" });
  const url = new URL(response.url);
  if (!response.ok || url.pathname !== location.pathname) {
    // Logged out or failing: stop quietly, the page still works.
    return false;
  }
  const fresh = countsOf(new DOMParser().parseFromString(await response.text(), "text/html"));
  let gone = 0;
  for (const box of document.querySelectorAll('table.pending input[name="key"]')) {
    const tr = box.closest("tr");
    const n = fresh.rows.get(box.value);
    if (n === undefined) {
      tr.classList.add("gone");
      gone += 1;
    } else {
      tr.classList.remove("gone");
      tr.querySelector("td.count").textContent = n;
    }
  }
  for (const tr of document.querySelectorAll("table.pending tr.package")) {
    const n = fresh.packages.get(tr.querySelector("th").textContent);
    if (n !== undefined) {
      tr.querySelector("td.count").textContent = n;
    }
  }
  const known = new Set([...document.querySelectorAll('table.pending input[name="key"]')].map((b) => b.value));
  const added = [...fresh.rows.keys()].filter((k) => !known.has(k)).length;
  const parts = [`Counts updated ${new Date().toLocaleTimeString()}.`];
  if (gone) parts.push(`${gone} row(s) no longer pending.`);
  if (added) parts.push(`${added} new row(s) on this page: reload to see them.`);
  status.textContent = parts.join(" ");
  return true;
}

function initRefresh() {
  const form = document.querySelector("form[data-refresh-seconds]");
  if (!form) return;
  const seconds = Math.max(5, Number(form.dataset.refreshSeconds) || 30);
  window.masifRefreshCounts = refreshCounts;
  const timer = setInterval(async () => {
    if (document.hidden) return;
    try {
      if (!(await refreshCounts())) clearInterval(timer);
    } catch (e) {
      clearInterval(timer);
    }
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  initInvert();
  initRefresh();
});
