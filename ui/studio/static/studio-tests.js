/* Atrium Prompt Studio: the Tests tab. An assistant's test cases (write, edit, delete, import and export YAML), runs of
 * a version or of the editor's draft on a model tier (with progress), each case's result with its checks in plain
 * words, and two runs side by side. Everything goes through /api/t/{tenant}/evals/{assistant} (backend/evals). */
window.StudioTests = (function () {
  "use strict";
  var D = window.StudioDOM, $ = D.$, h = D.h, clear = D.clear, toast = D.toast, busy = D.busy, ago = D.ago;
  var st = {cases: [], runs: [], editing: null, polling: null, loadedFor: null, openRun: null};

  function app() { return window.StudioApp; }
  function base() {
    return "/api/t/" + encodeURIComponent(app().boot.tenant) + "/evals/" + encodeURIComponent(app().name());
  }
  function api(method, path, body) { return app().request(base() + path, method, body); }
  function lines(id) { return $(id).value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean); }
  function pct(x) { return x == null ? "—" : Math.round(x * 100) + "%"; }
  function money(x) { return "$" + (x || 0).toFixed(4); }
  // The model a run used, in the words the tier menus use; the technical name stays as a hint.
  function modelName(r) {
    if (r.model === "atrium/grounded") return "Quoted from the sources (no model)";
    var d = app().detail(), tier = runTier(r), models = ((d.tier_models || {})[tier] || {}).models;
    // A tier that was not available answered with another model: name the model that did.
    if (!tier || (models && r.model && models.indexOf(r.model) < 0)) return r.model || "As the prompt is set";
    return app().tierName(tier).split(":")[0];
  }
  // The tier asked for: the run's own, else the one its draft or version is set to.
  function runTier(r) {
    if (r.tier) return r.tier;
    if (r.draft && r.draft.config && r.draft.config.tier) return r.draft.config.tier;
    var v = (app().detail().versions || []).find(function (x) { return x.version === r.prompt_version; });
    return v && v.tier || app().detail().default_tier || null;
  }
  function runName(r) {
    var what = r.prompt_version ? "Version " + r.prompt_version : "Draft";
    return what + " · " + modelName(r) + " · " + ago(r.created_at);
  }

  // -- showing the tab -------------------------------------------------------------------------------------
  function show() {
    var name = app().name();
    if (st.loadedFor !== name) {
      st.loadedFor = name; st.openRun = null; st.picked = false; closeEditor(); clear($("run-view"));
      clearTimeout(st.polling); st.polling = null; st.following = null; $("run-progress").hidden = true;
      $("btn-export-cases").href = base() + "/cases/export";
      $("btn-export-cases").setAttribute("download", name + "-tests.yaml");
    }
    fillRunChoices();
    return Promise.all([loadCases(), loadRuns()]);
  }
  function fillRunChoices() {
    var d = app().detail(), what = $("run-what"), keep = what.value;
    clear(what);
    // Without unsaved changes the draft is only a copy of a saved version: say so, and start from production.
    var changed = app().changed();
    what.appendChild(h("option", {value: "draft", text: changed ? "Your unsaved changes (from the editor)"
      : "The editor's text (no unsaved changes)"}));
    d.versions.forEach(function (v) { what.appendChild(h("option", {value: v.version, text: app().versionName(v.version)})); });
    var first = changed || !d.labels.production ? "draft" : String(d.labels.production);
    what.value = st.picked && keep && what.querySelector('option[value="' + keep + '"]') ? keep : first;
    var tier = $("run-tier"), keepTier = tier.value;
    clear(tier);
    tier.appendChild(h("option", {value: "", text: "As the prompt is set"}));
    d.tiers.forEach(function (t) {
      // A tier that is not available would be answered by another one: a run on it would measure the wrong model.
      var live = d.live_tiers.indexOf(t) >= 0;
      tier.appendChild(h("option", {value: t, disabled: live ? null : true, text: app().tierName(t) + (live ? "" : " (not available now)")}));
    });
    var kept = keepTier && tier.querySelector('option[value="' + keepTier + '"]');
    tier.value = kept && !kept.disabled ? keepTier : "";
  }

  // -- cases -----------------------------------------------------------------------------------------------
  function loadCases() {
    return api("GET", "/cases").then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Could not load the test cases", true); return; }
      st.cases = r.data.cases || [];
      renderCases();
    });
  }
  function expectations(c) {
    var out = [];
    if (c.facts && c.facts.length) out.push("states " + c.facts.map(function (f) { return "“" + f + "”"; }).join(", "));
    if (c.cite && c.cite.length) out.push("cites " + c.cite.join(", "));
    if (c.must_refuse) out.push("says it does not know");
    if (c.must_not && c.must_not.length) out.push("never says " + c.must_not.map(function (f) { return "“" + f + "”"; }).join(", "));
    return out.length ? "A good answer " + out.join("; ") + "." : "No expectation yet: write what the right answer says.";
  }
  function renderCases() {
    $("cases-title").textContent = "Test cases (" + st.cases.length + ")";
    var ul = clear($("case-list"));
    if (!st.cases.length) ul.appendChild(h("li", {class: "muted", text: "No test cases yet: add one, import a YAML file, or make one from a rating in the Feedback tab."}));
    st.cases.forEach(function (c) {
      ul.appendChild(h("li", {class: "case-item", "data-case": c.id},
        h("div", {class: "case-q", text: c.question}),
        h("div", {class: "muted small", text: expectations(c)}),
        c.note ? h("div", {class: "small note-line", text: "Note: " + c.note}) : null,
        h("div", {class: "row"},
          h("button", {type: "button", text: "Edit", "aria-label": "Edit case: " + c.question.slice(0, 80), onclick: function () { openEditor(c); }}),
          h("button", {type: "button", class: "danger", text: "Delete", "aria-label": "Delete case: " + c.question.slice(0, 80),
            onclick: function () { removeCase(c, this); }}))));
    });
  }
  // A case from a rating (`c.source`, no id yet) is stored only when the editor saves it.
  function fromRating(c) { return !!(c && !c.id && c.source && c.source.kind === "feedback"); }
  function openEditor(c) {
    st.editing = c || null;
    var f = $("case-editor");
    $("case-editor-title").textContent = fromRating(c) ? "New case from a rating" : c && c.id ? "Edit case" : "New case";
    $("c-question").value = c ? c.question : "";
    $("c-facts").value = c ? (c.facts || []).join("\n") : "";
    $("c-cite").value = c ? (c.cite || []).join("\n") : "";
    $("c-refuse").checked = !!(c && c.must_refuse);
    $("c-must-not").value = c ? (c.must_not || []).join("\n") : "";
    $("c-note").value = c ? c.note || "" : "";
    var hist = clear($("case-history")), turns = (c && c.history) || [];
    hist.hidden = !turns.length;
    if (turns.length) {
      hist.appendChild(h("div", {class: "small muted", text: "Earlier in the conversation (kept with the question):"}));
      turns.forEach(function (t) { hist.appendChild(h("div", {class: "small turn " + t.role}, h("strong", {text: t.role === "user" ? "User: " : "Assistant: "}), h("span", {text: t.content}))); });
    }
    clear($("case-problems"));
    f.hidden = false;
    (c && (c.id || fromRating(c)) ? $("c-facts") : $("c-question")).focus();
  }
  function closeEditor() { $("case-editor").hidden = true; st.editing = null; }
  function cancelEditor() {
    var draft = fromRating(st.editing);
    closeEditor();
    if (draft) toast("The case from the rating was not kept.");
  }
  function saveCase(e) {
    e.preventDefault();
    var c = st.editing, body = {question: $("c-question").value.trim(), facts: lines("c-facts"), cite: lines("c-cite"),
      must_refuse: $("c-refuse").checked, must_not: lines("c-must-not"), note: $("c-note").value.trim(),
      history: (c && c.history) || []};
    var problems = clear($("case-problems"));
    if (!body.question) { problems.appendChild(h("li", {class: "problem", text: "Question: write the question an employee would ask."})); $("c-question").focus(); return; }
    var btn = $("btn-save-case"); busy(btn, true);
    var req = c && c.id ? api("PUT", "/cases/" + encodeURIComponent(c.id), body)
      : fromRating(c) ? api("POST", "/cases/from-feedback", {turn_id: c.source.turn_id, "case": body})
      : api("POST", "/cases", body);
    req.then(function (r) {
      busy(btn, false);
      if (!r.ok) {
        (r.data.problems || [{field: "", message: r.data.detail || "Could not save the case"}]).forEach(function (p) {
          problems.appendChild(h("li", {class: "problem", text: (p.field ? p.field + ": " : "") + p.message}));
        });
        return;
      }
      toast(c && c.id ? "Case saved." : "Case added.");
      closeEditor();
      return loadCases();
    });
  }
  function removeCase(c, btn) {
    D.confirmBox("Delete this case?", "“" + c.question + "” is removed from the test set (earlier runs keep their results).", "Delete case")
      .then(function (ok) {
        if (!ok) return;
        busy(btn, true);
        api("DELETE", "/cases/" + encodeURIComponent(c.id)).then(function (r) {
          if (!r.ok) { busy(btn, false); toast(r.data.detail || "Could not delete the case", true); return; }
          toast("Case deleted."); loadCases();
        });
      });
  }
  function importFile() {
    var file = $("import-cases").files[0]; if (!file) return;
    file.text().then(function (text) {
      return api("POST", "/cases/import", {yaml: text});
    }).then(function (r) {
      $("import-cases").value = "";
      if (!r.ok) { toast("Not imported: " + (r.data.detail || "the file is not a valid test set"), true); return; }
      toast("Imported: " + r.data.added + " added, " + r.data.updated + " updated, " + r.data.unchanged + " unchanged.");
      loadCases();
    });
  }
  // From the Feedback tab: the editor opens prefilled from the rated exchange (nothing is stored yet); the case is
  // added when they save it, with what the right answer says — leaving, or Cancel, leaves no empty case behind.
  function fromFeedback(turnId, btn) {
    busy(btn, true);
    return api("GET", "/cases/from-feedback?turn_id=" + encodeURIComponent(turnId)).then(function (r) {
      busy(btn, false);
      if (!r.ok) { toast(r.data.detail || "Could not make a test case", true); return; }
      app().showTab("tests");
      return loadCases().then(function () {
        openEditor(r.data);
        toast("Write what the right answer states, then save to add the case.");
      });
    });
  }

  // -- runs ------------------------------------------------------------------------------------------------
  function loadRuns() {
    return api("GET", "/runs").then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Could not load the runs", true); return; }
      st.runs = r.data.runs || [];
      renderRuns();
      var live = st.runs.find(function (x) { return x.status === "queued" || x.status === "running"; });
      if (live && !st.polling) poll(live.id);
    });
  }
  function statusText(r) {
    if (r.status === "finished") return r.passed + " of " + r.total + " passed (" + pct(r.score) + ")";
    if (r.status === "queued") return "waiting to start (" + r.total + " cases)";
    if (r.status === "running") return r.done + " of " + r.total + " cases answered";
    // The run's error says who cancelled it ("cancelled by bob", "cancelled with Ctrl-C in atrium eval run").
    if (r.status === "cancelled") return (r.error ? r.error.charAt(0).toUpperCase() + r.error.slice(1) : "Cancelled") +
      " (" + r.done + " of " + r.total + " done)";
    return r.status + (r.error ? ": " + r.error : "") + " (" + r.done + " of " + r.total + " done)";
  }
  function renderRuns() {
    var tb = clear(document.querySelector("#runs-table tbody"));
    if (!st.runs.length) tb.appendChild(h("tr", null, h("td", {colspan: 6, class: "muted", text: "No runs yet."})));
    st.runs.forEach(function (r) {
      tb.appendChild(h("tr", {"data-run": r.id},
        h("td", {title: D.fullDate(r.created_at), text: ago(r.created_at)}),
        h("td", {text: r.prompt_version ? app().versionName(r.prompt_version) : "Draft"}),
        h("td", {text: modelName(r), title: r.model || ""}),
        h("td", {class: "run-status " + r.status, text: statusText(r)}),
        h("td", {text: money(r.cost_usd)}),
        h("td", null,
          h("button", {type: "button", text: "Results", "aria-label": "Results of " + runName(r), onclick: function () { openRun(r.id); }}),
          r.status === "failed" || r.status === "cancelled" ? h("button", {type: "button", text: "Resume",
            "aria-label": "Resume " + runName(r), onclick: function () { resume(r.id, this); }}) : null)));
    });
    ["cmp-a", "cmp-b"].forEach(function (id, i) {
      var sel = $(id), keep = sel.value; clear(sel);
      st.runs.filter(function (r) { return r.status === "finished"; }).forEach(function (r) {
        sel.appendChild(h("option", {value: r.id, text: runName(r) + " · " + pct(r.score)}));
      });
      var finished = st.runs.filter(function (r) { return r.status === "finished"; });
      var prod = app().detail().labels.production;
      var fallback = i === 1 ? (finished[0] || {}).id
        : (finished.find(function (r) { return r.prompt_version === prod && r.id !== (finished[0] || {}).id; }) || finished[1] || {}).id;
      sel.value = keep && sel.querySelector('option[value="' + keep + '"]') ? keep : (fallback || "");
    });
  }
  function start(payload) {
    var btn = $("btn-run"); busy(btn, true);
    $("run-progress-text").textContent = "Starting the run…";
    return api("POST", "/runs", payload).then(function (r) {
      busy(btn, false);
      if (!r.ok) {
        var msg = r.data.detail || "Could not start the run";
        if (r.data.problems) msg = r.data.problems.map(function (p) { return p.message; }).join("; ");
        toast(msg, true); return;
      }
      toast("Tests started: " + r.data.total + " cases.");
      loadRuns();
      poll(r.data.id);
    });
  }
  function run() {
    var what = $("run-what").value, tier = $("run-tier").value, payload = {};
    if (what === "draft") { var d = app().draft(); payload.body = d.body; payload.config = d.config; } else payload.version = +what;
    if (tier) payload.tier = tier;
    return start(payload);
  }
  function runVersion(version) {
    fillRunChoices();
    $("run-what").value = String(version);
    return start({version: version});
  }
  function resume(id, btn) {
    busy(btn, true);
    api("POST", "/runs/" + encodeURIComponent(id) + "/resume").then(function (r) {
      busy(btn, false);
      if (!r.ok) { toast(r.data.detail || "Could not resume the run", true); return; }
      loadRuns(); poll(id);
    });
  }
  // A run on the built-in model can take minutes: say roughly how long is left, from the pace seen so far.
  function timeLeft(run) {
    if (run.status !== "running") return "";
    if (!seen || run.done < seen.done) { seen = {t: Date.now(), done: run.done}; return ""; }
    if (run.done === seen.done) return "";
    // The clock starts at the first answer seen: the first case also waits for the model to load.
    if (!seen.paced) { seen = {t: Date.now(), done: run.done, paced: true}; return ""; }
    var left = (Date.now() - seen.t) / (run.done - seen.done) * (run.total - run.done) / 1000;
    return left < 60 ? " · less than a minute left" : " · about " + Math.round(left / 60) + " min left";
  }
  var seen = null;  // when the page first saw the followed run, and how far it was
  // Cancel the followed run: it stops before its next case (the one being answered is kept), in whichever server
  // process runs it; Resume in the runs list answers the rest later.
  function cancelRun() {
    var id = st.following, btn = $("btn-cancel-run"); if (!id) return;
    busy(btn, true);
    api("POST", "/runs/" + encodeURIComponent(id) + "/cancel").then(function (r) {
      busy(btn, false);
      if (!r.ok) { toast(r.data.detail || "Could not cancel the run", true); return; }
      btn.hidden = true; $("btn-run").focus();  // the focused button is gone: keep the keyboard user in the card
      toast("Run cancelled: the case being answered finishes, no other starts. Resume it later from the list of runs.");
    });
  }
  function poll(id) {
    clearTimeout(st.polling);
    st.following = id;
    var box = $("run-progress"); box.hidden = false;
    $("run-bar").value = 0; $("run-progress-text").textContent = "Starting the run…";
    var assistant = app().name(), url = base() + "/runs/" + encodeURIComponent(id);
    seen = null;
    function tick() {
      // Another assistant was chosen meanwhile: its tab shows its own runs (this one goes on on the server).
      if (app().name() !== assistant) { st.polling = null; st.following = null; box.hidden = true; return; }
      app().request(url, "GET").then(function (r) {
        if (app().name() !== assistant) { st.polling = null; st.following = null; return; }
        if (!r.ok) { st.polling = null; st.following = null; box.hidden = true; return; }
        var run = r.data;
        $("run-bar").max = Math.max(1, run.total); $("run-bar").value = run.done;
        $("run-progress-text").textContent = (run.status === "finished" ? "Finished: " : run.status === "failed" ? "Stopped: " :
          run.status === "cancelled" ? "" : "Running: ") + statusText(run) + timeLeft(run);
        var live = run.status === "queued" || run.status === "running";
        $("btn-cancel-run").hidden = !live;
        if (live) { st.polling = setTimeout(tick, 1000); return; }
        st.polling = null;
        loadRuns();
        if (run.status === "finished") { renderRun(run); if (window.StudioGate) app().refreshDetail(); }
      });
    }
    tick();
  }

  // -- results ---------------------------------------------------------------------------------------------
  // Each check in plain words: what it looked for, and what it found.
  var CHECKS = {
    cited: ["Cited the expected documents", "Did not cite the expected documents"],
    facts: ["Stated the expected facts", "Missed an expected fact"],
    refused: ["Said it does not know, as it should", "Should have said it does not know"],
    must_not: ["Said nothing it must not", "Said something it must not"],
    grounded: ["Everything it said is in the passages it cited", "Said things its cited passages do not support"],
  };
  function detailText(v) {
    if (v == null || v === "") return "";
    if (typeof v === "string") return v;
    if (Array.isArray(v)) return v.map(detailText).join("; ");
    return Object.keys(v).map(function (k) { return k + ": " + detailText(v[k]); }).join("; ");
  }
  function checkList(result) {
    var ul = h("ul", {class: "checks-list"}), checks = result.checks || {};
    Object.keys(CHECKS).forEach(function (k) {
      var c = checks[k]; if (!c || c.ok === null || c.ok === undefined) return;
      var words = CHECKS[k];
      if (k === "refused" && !(result.case || {}).must_refuse) words = ["Answered (it is not a question to refuse)", "Said it does not know, but the answer is in the documents"];
      ul.appendChild(h("li", {class: c.ok ? "ok" : "bad"}, h("span", {class: "mark", "aria-hidden": "true", text: c.ok ? "✓ " : "✗ "}),
        h("span", {class: "visually-hidden", text: c.ok ? "Passed: " : "Failed: "}),
        h("span", {text: c.ok ? words[0] : words[1]}),
        detailText(c.detail) ? h("span", {class: "muted small", text: " — " + detailText(c.detail)}) : null));
    });
    return ul;
  }
  function answerBox(result) {
    var box = h("div", {class: "answer markdown"});
    window.StudioMarkdown.render(box, result.answer || "(no answer)");
    return box;
  }
  function openRun(id) {
    return api("GET", "/runs/" + encodeURIComponent(id)).then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Could not load the run", true); return; }
      renderRun(r.data);
    });
  }
  function renderRun(run) {
    st.openRun = run.id;
    var view = clear($("run-view")), results = run.results || [];
    var byCase = {}; st.cases.forEach(function (c) { byCase[c.id] = c; });
    view.appendChild(h("h3", {id: "run-title", text: "Results: " + runName(run)}));
    view.appendChild(h("p", {class: "run-summary"}, h("strong", {text: statusText(run)}),
      h("span", {class: "muted", text: " · cost " + money(run.cost_usd) + " · " + (run.tokens || 0) + " tokens · typical answer time " +
        (run.latency_ms != null ? (run.latency_ms / 1000).toFixed(1) + " s" : "—") + (run.model ? " · " + modelName(run) : "") +
        (run.judge ? " · graded by " + run.judge : "")})));
    results.slice().sort(function (a, b) { return (a.passed ? 1 : 0) - (b.passed ? 1 : 0); }).forEach(function (res) {
      var c = res.case && res.case.question ? res.case : byCase[res.case_id] || {question: res.case_id};
      res.case = c;
      view.appendChild(h("details", {class: "card result-case " + (res.passed ? "passed" : "failed"), "data-case": res.case_id, open: !res.passed || null},
        h("summary", null, h("span", {class: "badge " + (res.passed ? "pass" : "fail"), text: res.passed ? "Passed" : "Failed"}), " ",
          h("span", {text: c.question})),
        checkList(res), answerBox(res)));
    });
    view.focus();
  }
  function compare() {
    var a = $("cmp-a").value, b = $("cmp-b").value;
    if (!a || !b) { toast("Two finished runs are needed to compare.", true); return; }
    if (a === b) { toast("Choose two different runs.", true); return; }
    api("GET", "/compare?a=" + encodeURIComponent(a) + "&b=" + encodeURIComponent(b)).then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Could not compare the runs", true); return; }
      renderCompare(r.data);
    });
  }
  function renderCompare(data) {
    var view = clear($("run-view")), A = data.a, B = data.b;
    view.appendChild(h("h3", {id: "compare-title", text: "Before and after"}));
    var rows = [["Prompt", runName(A), runName(B)], ["Cases passed", statusText(A), statusText(B)],
      ["Cost", money(A.cost_usd), money(B.cost_usd)],
      ["Typical answer time", A.latency_ms != null ? (A.latency_ms / 1000).toFixed(1) + " s" : "—", B.latency_ms != null ? (B.latency_ms / 1000).toFixed(1) + " s" : "—"]];
    view.appendChild(h("div", {class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Runs compared"},
      h("table", {class: "table compare-table"}, h("thead", null, h("tr", null, h("th", {text: ""}), h("th", {scope: "col", text: "Before"}), h("th", {scope: "col", text: "After"}))),
        h("tbody", null, rows.map(function (row) { return h("tr", null, h("th", {scope: "row", text: row[0]}), h("td", {text: row[1]}), h("td", {text: row[2]})); })))));
    var changed = data.changed || [];
    view.appendChild(h("p", {class: "muted", text: changed.length ? changed.length + " case(s) changed between the runs:" : "No case changed between the runs."}));
    changed.forEach(function (ch) {
      var better = ch.direction ? ch.direction === "fixed" : !!(ch.b && ch.b.passed);
      var question = ch.question || ((ch.b || ch.a || {}).case || {}).question || "";
      view.appendChild(h("div", {class: "card changed-case " + (better ? "fixed" : "broken"), "data-case": ch.case},
        h("div", null, h("span", {class: "badge " + (better ? "pass" : "fail"), text: better ? "Now passes" : "Now fails"}), " ", h("strong", {text: question})),
        h("div", {class: "side-by-side"},
          side("Before", ch.a), side("After", ch.b))));
    });
  }
  function side(title, res) {
    if (!res) return h("div", {class: "side"}, h("h4", {text: title}), h("p", {class: "muted", text: "Not in this run."}));
    res.case = res.case || {};
    return h("div", {class: "side"}, h("h4", {text: title + ": " + (res.passed ? "passed" : "failed")}), checkList(res), answerBox(res));
  }

  $("case-editor").addEventListener("submit", saveCase);
  $("btn-cancel-case").addEventListener("click", cancelEditor);
  $("btn-add-case").addEventListener("click", function () { openEditor(null); });
  $("import-cases").addEventListener("change", importFile);
  $("btn-run").addEventListener("click", run);
  $("btn-cancel-run").addEventListener("click", cancelRun);
  $("run-what").addEventListener("change", function () { st.picked = true; });  // the editor's own choice stays
  $("btn-compare-runs").addEventListener("click", compare);
  return {show: show, fromFeedback: fromFeedback, openRun: openRun, runVersion: runVersion};
})();
