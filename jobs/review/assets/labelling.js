// Candid review page, labelling mode: one verdict per output, kept in this browser
// (localStorage, keyed by the page's label set and the output's result key) and in memory,
// exported as a JSON file for `candid labels import FILE`. No network, no framework: the page's
// Content-Security-Policy lets exactly this script run (by its hash) and nothing else.
(function () {
  "use strict";
  var panel = document.getElementById("labelling");
  if (!panel) { return; }
  var labelSet = panel.getAttribute("data-label-set");
  var prefix = "candid-label/" + labelSet + "/";
  var reviewerKey = "candid-reviewer";
  var store = openStore();
  var labels = new Map();
  var cells = new Map();
  var nameInput = document.getElementById("reviewer");
  var counter = document.getElementById("label-count");
  var status = document.getElementById("label-status");

  function openStore() {
    // A sandboxed frame or disabled storage throws: the verdicts then live in this page only.
    try {
      var s = window.localStorage;
      s.setItem("candid-probe", "1");
      s.removeItem("candid-probe");
      return s;
    } catch (err) {
      return null;
    }
  }

  function say(text) { status.textContent = text; }

  function show(key) {
    var cell = cells.get(key);
    var label = labels.get(key);
    var verdict = label ? label.verdict : "";
    cell.setAttribute("data-verdict", verdict);
    cell.querySelectorAll("button.verdict").forEach(function (button) {
      var on = button.getAttribute("data-verdict") === verdict;
      button.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  function count() {
    var done = 0;
    cells.forEach(function (cell, key) { if (labels.has(key)) { done += 1; } });
    counter.textContent = done + " of " + cells.size + " outputs labelled";
    panel.setAttribute("data-labelled", String(done));
  }

  function remember(key) {
    if (!store) { return; }
    try {
      if (labels.has(key)) {
        store.setItem(prefix + key, JSON.stringify(labels.get(key)));
      } else {
        store.removeItem(prefix + key);
      }
    } catch (err) {
      say("This browser did not keep the verdict (storage full or off): export before leaving.");
    }
  }

  function choose(button) {
    var cell = button.closest("td[data-label-key]");
    var key = cell.getAttribute("data-label-key");
    var verdict = button.getAttribute("data-verdict");
    var current = labels.get(key);
    if (current && current.verdict === verdict) {
      labels.delete(key); // a second click on the chosen verdict takes it back
    } else {
      labels.set(key, { verdict: verdict, labelled_at: new Date().toISOString() });
    }
    remember(key);
    show(key);
    count();
  }

  function slug(text) {
    return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "reviewer";
  }

  function exportLabels() {
    var reviewer = nameInput.value.trim();
    if (!reviewer) {
      say("Enter your name first: every label records its reviewer.");
      nameInput.focus();
      return;
    }
    var rows = [];
    cells.forEach(function (cell, key) {
      var label = labels.get(key);
      if (!label) { return; }
      var k = JSON.parse(key);
      rows.push({
        image_id: k[0], prompt_name: k[1], prompt_version: k[2], model: k[3],
        run_fingerprint: k[4], verdict: label.verdict, reviewer: reviewer,
        labelled_at: label.labelled_at
      });
    });
    if (!rows.length) { say("No verdicts to export yet."); return; }
    var exportedAt = new Date().toISOString();
    var doc = {
      format: "candid-labels", format_version: 1, label_set: labelSet,
      selection: panel.getAttribute("data-selection"),
      results_table: panel.getAttribute("data-results-table"),
      sample: panel.getAttribute("data-sample"),
      reviewer: reviewer, exported_at: exportedAt, labels: rows
    };
    var blob = new Blob([JSON.stringify(doc, null, 1)], { type: "application/json" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "candid-labels-" + labelSet + "-" + slug(reviewer) + "-"
      + exportedAt.replace(/[^0-9]/g, "").slice(0, 14) + ".json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
    say("Exported " + rows.length + " labels to " + link.download
      + ": load them with candid labels import FILE.");
  }

  document.querySelectorAll("td[data-label-key]").forEach(function (cell) {
    cells.set(cell.getAttribute("data-label-key"), cell);
  });
  if (store) {
    for (var i = 0; i < store.length; i += 1) {
      var name = store.key(i);
      if (name && name.indexOf(prefix) === 0) {
        try { labels.set(name.slice(prefix.length), JSON.parse(store.getItem(name))); }
        catch (err) { /* a damaged entry is dropped, not fatal */ }
      }
    }
    nameInput.value = store.getItem(reviewerKey) || "";
  } else {
    say("This browser keeps no verdicts for this file: export before closing the page.");
  }
  cells.forEach(function (cell, key) { show(key); });
  count();
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.verdict");
    if (button) { choose(button); }
  });
  document.getElementById("export-labels").addEventListener("click", exportLabels);
  nameInput.addEventListener("input", function () {
    if (store) { store.setItem(reviewerKey, nameInput.value.trim()); }
  });
  panel.setAttribute("data-ready", "true");
}());
