/* Atrium Prompt Studio: the release gate on the Release card. When the department has it on, promoting a version to
 * production needs a passing test run (backend/evals/gate.py); the card says where the version stands, links the
 * run, and lets a tenant admin promote anyway with a reason (audited). The server decides; this only explains. */
window.StudioGate = (function () {
  "use strict";
  var D = window.StudioDOM, $ = D.$, h = D.h, clear = D.clear;
  var WORDS = {
    passed: "Tests passed", missing: "Not tested yet", stale: "Tested on older documents", regressed: "Breaks cases production passes",
    below_min: "Too few cases pass", running: "Tests running", off: "No release gate",
  };
  var shown = {version: null, data: null, seq: 0};

  function app() { return window.StudioApp; }
  function url(version) {
    return "/api/t/" + encodeURIComponent(app().boot.tenant) + "/evals/" + encodeURIComponent(app().name()) +
      "/gate?version=" + encodeURIComponent(version);
  }
  function closed(data) { return data && data.enabled && data.state !== "passed" && data.state !== "off"; }
  function isAdmin() { var d = app().detail(); return !!(d && d.you && d.you.is_admin); }

  // version: the version about to go to production (null: the card is not promoting to production).
  function refresh(version) {
    var d = app() && app().detail(), box = $("gate");
    var seq = ++shown.seq;
    if (!d || !d.release_gate || !d.release_gate.enabled || !version) {
      box.hidden = true; shown.version = null; shown.data = null; return;
    }
    if (shown.version !== version) { $("gate-reason").value = ""; shown.data = null; }
    shown.version = version;
    box.hidden = false;
    // Asked again each time (a run may have finished, the documents changed): until the answer, Promote waits.
    shown.base = $("btn-promote").disabled;  // the card's own rules (approval, nothing to move), before the gate's
    clear($("gate-failing")); clear($("gate-links"));
    $("gate-state").textContent = "Checking the tests of version " + version + "…";
    $("btn-promote").disabled = true;
    return app().request(url(version), "GET").then(function (r) {
      if (seq !== shown.seq) return;  // the choice changed meanwhile
      if (!r.ok) { render({enabled: true, state: "missing", message: r.data.detail || "Could not check the tests.", failing: []}); return; }
      render(r.data);
    });
  }
  function render(data) {
    shown.data = data;
    var box = $("gate"), state = $("gate-state"), list = clear($("gate-failing")), links = clear($("gate-links"));
    box.className = "gate " + (closed(data) ? "closed" : "open");
    clear(state);
    state.appendChild(h("strong", {text: (WORDS[data.state] || data.state) + ". "}));
    state.appendChild(h("span", {text: data.message || ""}));
    (data.failing || []).slice(0, 10).forEach(function (c) {
      list.appendChild(h("li", null, h("span", {text: "“" + c.question + "”"}), h("span", {class: "small", text: " — " + (c.why || "fails")})));
    });
    if (data.run && data.run.id) {
      links.appendChild(h("button", {type: "button", class: "link-run", text: "See the test run",
        onclick: function () { app().showTab("tests"); window.StudioTests.openRun(data.run.id); }}));
    }
    if (closed(data) && data.state !== "running") {
      links.appendChild(h("button", {type: "button", text: "Run the tests of version " + shown.version,
        onclick: function () { app().showTab("tests"); window.StudioTests.runVersion(shown.version); }}));
    }
    $("gate-override").hidden = !(closed(data) && isAdmin());
    apply();
  }
  // A closed gate keeps Promote off, unless a tenant admin has written why it should go anyway.
  function apply() {
    if (!shown.data) return;
    var btn = $("btn-promote");
    if (!closed(shown.data)) { btn.disabled = shown.base; return; }
    // Closed: Promote stays off; a tenant admin's "Promote anyway" comes once the reason is written.
    btn.disabled = true;
    $("btn-override").disabled = shown.base || !(isAdmin() && $("gate-reason").value.trim());
  }
  function overrideReason() {
    return shown.data && closed(shown.data) && isAdmin() ? $("gate-reason").value.trim() : "";
  }
  // The server refused (the state changed since the card was drawn, e.g. the documents changed): show why.
  function refused(body) {
    D.toast(body.detail || "The release gate refused the promotion.", true);
    render({enabled: true, state: body.state || "missing", message: body.detail, failing: body.failing || [],
      run: body.run ? {id: body.run} : null});
  }
  $("gate-reason").addEventListener("input", apply);
  $("btn-override").addEventListener("click", function () { app().promote(this); });
  return {refresh: refresh, overrideReason: overrideReason, refused: refused,
    state: function () { return shown.data; }};
})();
