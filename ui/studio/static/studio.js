/* Atrium Prompt Studio: plain JS, talks only to /api/t/{tenant}/prompts (same session cookie as the chat). */
(function () {
  "use strict";

  var BOOT = JSON.parse(document.getElementById("bootstrap").textContent);
  var API = "/api/t/" + encodeURIComponent(BOOT.tenant) + "/prompts";
  var FIELDS = ["description", "tier", "temperature", "max_tokens", "signoff", "answer_mode", "grounding_check"];

  var state = {
    assistants: [], name: null, detail: null,
    base: null,          // the saved version the draft started from {version, body, config}
    baseVersion: 0,      // what the next save is based on (may move forward after a conflict)
    conflictLatest: null,
    diffLayout: "split", lastDiff: null,
  };

  // -- small helpers -----------------------------------------------------------------------------------
  var D = window.StudioDOM, $ = D.$, h = D.h, clear = D.clear, toast = D.toast, busy = D.busy, ago = D.ago,
    fullDate = D.fullDate, confirmBox = D.confirmBox;
  function api(method, path, body) {
    return request(API + path, method, body);
  }
  function request(url, method, body) {
    var opts = {method: method, credentials: "same-origin", headers: {"X-Tenant-ID": BOOT.tenant, "Accept": "application/json"}};
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    return fetch(url, opts).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = {detail: t}; }
        // The session ended while the page was open (signed out in another tab, expired): the API's own
        // 401 text is for API callers (bearer tokens); a person here needs to sign in again.
        if (r.status === 401) data = {detail: sessionEnded()};
        return {ok: r.ok, status: r.status, data: data || {}};
      });
    }, function () { return {ok: false, status: 0, data: {detail: "Cannot reach the server — check your connection."}}; });
  }
  function sessionEnded() {
    if (state.name && !sameAsBase()) writeDraft();
    var kept = draftKept(), text = "Your session has ended — sign in again" +
      (kept ? " (your draft is kept in this browser)" : !state.base || sameAsBase() ? "" : " (copy your draft first: it could not be kept)");
    var box = $("session-ended");
    clear(box);
    box.appendChild(h("span", {text: text + "."}));
    box.appendChild(h("a", {class: "button primary", href: "/studio?tenant=" + encodeURIComponent(BOOT.tenant) + location.hash,
      id: "sign-in-again", onclick: function (e) {
        // A reload shows the sign-in form and then this page again, where this tab's stored draft comes back:
        // no "Leave site?" prompt for a draft that is kept.
        e.preventDefault(); state.leaving = kept; window.location.reload();
      }}, "Sign in again"));
    box.hidden = false;
    return text + ".";
  }
  function labelsOf(v) {
    var labels = state.detail ? state.detail.labels : {};
    return Object.keys(labels).filter(function (k) { return labels[k] === v; }).sort();
  }
  function versionName(v) {
    var l = labelsOf(v);
    return "v" + v + (l.length ? " (" + l.join(", ") + ")" : "");
  }
  // -- tabs --------------------------------------------------------------------------------------------
  function showTab(name) {
    document.querySelectorAll(".tabs button").forEach(function (b) { b.setAttribute("aria-selected", b.dataset.tab === name ? "true" : "false"); });
    document.querySelectorAll(".tab").forEach(function (s) { s.hidden = s.id !== "tab-" + name; });
    if (state.name) history.replaceState(null, "", "#" + state.name + "/" + name);
    if (name === "feedback") loadFeedback();
    if (name === "tests") window.StudioTests.show();
  }

  // -- feedback: the chat's thumbs up/down for this assistant ----------------------------------------------
  function loadFeedback() {
    var url = "/api/t/" + encodeURIComponent(BOOT.tenant) + "/feedback?assistant=" + encodeURIComponent(state.name);
    var body = clear(document.querySelector("#feedback-summary tbody")), items = clear($("feedback-items"));
    items.appendChild(h("p", {class: "muted", text: "Loading…"}));
    return request(url, "GET")
      .then(function (r) {
        clear(items);
        if (!r.ok) { items.appendChild(h("p", {class: "note", text: r.data.detail || "Could not load the feedback."})); return; }
        r.data.summary.forEach(function (s) {
          body.appendChild(h("tr", null, h("td", {text: s.prompt_version ? "v" + s.prompt_version : "unknown"}),
            h("td", {text: String(s.helpful)}), h("td", {text: String(s.not_helpful)})));
        });
        if (!r.data.items.length) {
          items.appendChild(h("p", {class: "muted", text: "No ratings yet: users rate answers with the thumbs under them in the chat."}));
        }
        r.data.items.forEach(function (it) {
          var head = (it.value ? "Helpful" : "Not helpful") + " · " + (it.prompt_version ? "v" + it.prompt_version : "version unknown")
            + (it.label === "staging" ? " (staging)" : "") + (it.model ? " · " + it.model : "") + " · " + fullDate(it.at);
          items.appendChild(h("div", {class: "card feedback-item" + (it.value ? " up" : " down")},
            h("div", {class: "muted small", text: head}),
            h("p", null, h("strong", {text: "Question: "}), h("span", {text: it.question})),
            h("p", null, h("strong", {text: "Answer: "}), h("span", {text: it.answer.length > 600 ? it.answer.slice(0, 600) + "…" : it.answer})),
            it.comment ? h("p", {class: "note"}, h("strong", {text: "Comment: "}), h("span", {text: it.comment})) : null,
            it.turn_id && state.detail.you.can_write ? h("div", {class: "row"}, h("button", {type: "button", class: "make-case",
              "aria-label": "Make a test case of: " + it.question.slice(0, 80),
              onclick: function () { window.StudioTests.fromFeedback(it.turn_id, this); }}, "Make a test case")) : null));
        });
      });
  }
  document.querySelectorAll(".tabs button").forEach(function (b) { b.addEventListener("click", function () { showTab(b.dataset.tab); }); });
  document.querySelector(".tabs").addEventListener("keydown", function (e) {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    var tabs = Array.prototype.slice.call(document.querySelectorAll(".tabs button"));
    var i = tabs.indexOf(document.activeElement); if (i < 0) return;
    var next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    next.focus(); showTab(next.dataset.tab);
  });

  // -- draft (form <-> config) -------------------------------------------------------------------------
  function draftConfig() {
    var cfg = {};
    cfg.description = $("f-description").value.trim();
    cfg.tier = $("f-tier").value || null;
    cfg.temperature = parseFloat($("f-temperature").value);
    // As typed (not parseInt): 12.5 must be refused, not saved as 12.
    var mt = $("f-max_tokens").value.trim(); cfg.max_tokens = mt === "" ? null : Number(mt);
    cfg.variables = Array.prototype.map.call(document.querySelectorAll("#f-variables input:checked"), function (i) { return i.value; });
    var so = $("f-signoff").value.trim(); if (so) cfg.signoff = so;
    if ($("f-answer_mode").value) cfg.answer_mode = $("f-answer_mode").value;
    if ($("f-grounding_check").value) cfg.grounding_check = $("f-grounding_check").value === "on";
    return cfg;
  }
  function draft() { return {body: $("body").value, config: draftConfig()}; }
  function fillForm(body, cfg) {
    $("body").value = body || "";
    $("f-description").value = cfg.description || "";
    $("f-tier").value = cfg.tier || (state.detail && state.detail.default_tier) || "";
    $("f-temperature").value = cfg.temperature != null ? cfg.temperature : 0.2;
    $("f-max_tokens").value = cfg.max_tokens != null ? cfg.max_tokens : "";
    $("f-signoff").value = cfg.signoff || "";
    $("f-answer_mode").value = cfg.answer_mode || "";
    $("f-grounding_check").value = cfg.grounding_check == null ? "" : (cfg.grounding_check ? "on" : "off");
    var vars = cfg.variables || [];
    document.querySelectorAll("#f-variables input").forEach(function (i) { i.checked = vars.indexOf(i.value) >= 0; });
    $("temperature-out").textContent = $("f-temperature").value;
    maxTokensWords();
    tierNotes();
  }
  // What the chosen tier's models do with these settings: current cloud models refuse a temperature (it is
  // left out for them) and think before answering (the thinking counts against the maximum length).
  function tierNotes() {
    var tier = $("f-tier").value, info = (state.detail && state.detail.tier_models || {})[tier];
    var t = $("temperature-note"), m = $("max_tokens-note");
    t.hidden = !info || info.temperature;
    m.hidden = !info || !info.thinks;
    if (!info) return;
    t.textContent = "Not used on " + tier + ": its models (" + info.models.join(", ") + ") choose their own wording.";
    m.textContent = "On " + tier + " this includes the model's thinking before it answers: leave room for both.";
  }
  function sameAsBase() {
    if (!state.base) return true;
    var d = draft(), b = state.base;
    if (d.body.replace(/\s+$/, "") !== (b.body || "").replace(/\s+$/, "")) return false;
    var bc = b.config;
    for (var i = 0; i < FIELDS.length; i++) {
      var k = FIELDS[i], x = d.config[k], y = bc[k];
      if ((x === undefined || x === null || x === "") && (y === undefined || y === null || y === "")) continue;
      if (String(x) !== String(y)) return false;
    }
    return JSON.stringify((d.config.variables || []).slice().sort()) === JSON.stringify((bc.variables || []).slice().sort());
  }
  // -- the unsaved draft, kept across reloads of this tab ---------------------------------------------
  // sessionStorage, not localStorage: each tab keeps its own draft (a second tab never adopts the first one's
  // live text) and it ends with the tab. The key and the record name the signed-in user, so a draft is only
  // ever restored for the person who wrote it; sign-out removes this tab's drafts (ui/templates/base.html).
  var DRAFT_PREFIX = "atrium-studio-draft:";
  var drafts = (function () { try { return window.sessionStorage; } catch (e) { return null; } })();
  function storeKey() { return DRAFT_PREFIX + encodeURIComponent(BOOT.subject) + ":" + BOOT.tenant + "/" + state.name; }
  function readDraft() {
    var saved = null;
    try { saved = JSON.parse(drafts.getItem(storeKey()) || "null"); } catch (e) { saved = null; }
    return saved && saved.subject === BOOT.subject && saved.draft ? saved : null;
  }
  function writeDraft() {
    try {
      drafts.setItem(storeKey(), JSON.stringify({subject: BOOT.subject, base: state.baseVersion, draft: draft(),
        message: $("message").value}));
      return true;
    } catch (e) { return false; /* private mode or no storage: the draft just isn't kept across reloads */ }
  }
  function forgetDraft() { try { drafts.removeItem(storeKey()); } catch (e) { /* nothing kept */ } }
  function draftKept() { try { return !!drafts.getItem(storeKey()); } catch (e) { return false; } }
  // Drafts this tab holds for anyone else (whoever signed in here before) are not this user's to see; drafts in
  // localStorage predate per-tab drafts and name nobody: both go.
  function purgeForeignDrafts() {
    var mine = DRAFT_PREFIX + encodeURIComponent(BOOT.subject) + ":";
    [drafts, (function () { try { return window.localStorage; } catch (e) { return null; } })()].forEach(function (store, i) {
      if (!store) return;
      try {
        for (var k = store.length - 1; k >= 0; k--) {
          var key = store.key(k);
          if (key && key.indexOf(DRAFT_PREFIX) === 0 && (i === 1 || key.indexOf(mine) !== 0)) store.removeItem(key);
        }
      } catch (e) { /* storage unavailable: nothing to purge */ }
    });
  }
  function onDraftChanged() {
    var dirty = !sameAsBase();
    var st = $("dirty-state");
    st.textContent = dirty ? "Unsaved changes" : "No changes";
    st.classList.toggle("dirty", dirty);
    if (dirty) writeDraft(); else forgetDraft();
    checkLocally();
  }
  // Immediate feedback while typing; the server re-validates everything on save.
  function checkLocally() { renderProblems(localChecks()); }
  function localChecks() {
    var d = draft(), items = [];
    var declared = d.config.variables || [];
    var re = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, m, used = {};
    while ((m = re.exec(d.body))) used[m[1]] = true;
    Object.keys(used).forEach(function (n) {
      if (declared.indexOf(n) < 0) {
        items.push(["problem", (state.detail.variables_available[n]
          ? "{{" + n + "}} is used but not ticked under Variables."
          : "{{" + n + "}} is not a variable Atrium provides (available: " + Object.keys(state.detail.variables_available).join(", ") + ").")]);
      }
    });
    var stripped = d.body.replace(/\{\{[^{}]*\}\}/g, "");
    if (stripped.indexOf("{{") >= 0) items.push(["problem", "A '{{' is never closed with '}}'."]);
    else if (stripped.indexOf("}}") >= 0) items.push(["problem", "A '}}' closes nothing."]);
    if (!d.body.trim()) items.push(["problem", "The instructions are empty."]);
    if (d.body.trim() && !used.context) items.push(["warning", "The text does not use {{context}}: answers will not see the knowledge base."]);
    var mt = maxTokensProblem();
    if (mt) items.push(["problem", label("max_tokens") + mt]);
    // Once a save was refused for it, the missing change description stays listed with the other problems.
    var noMessage = state.triedSave && !$("message").value.trim();
    $("message").setAttribute("aria-invalid", noMessage ? "true" : "false");
    if (noMessage) items.push(["problem", label("message") + "describe your change in a few words (it is shown in the history)."]);
    return items;
  }
  // Worded like the server's refusal (backend/api/prompts.py), with the limits of the field itself.
  function maxTokensProblem() {
    var el = $("f-max_tokens"), raw = el.value.trim(), v = Number(raw);
    var range = "a whole number of tokens between " + (+el.min).toLocaleString("en-US") + " and " + (+el.max).toLocaleString("en-US");
    if (el.validity && el.validity.badInput) return "that is not a number: use " + range + ".";
    if (raw === "") return "enter " + range + ".";
    if (!Number.isInteger(v)) return raw + " is not a whole number: use " + range + ".";
    if (v < +el.min || v > +el.max) return v.toLocaleString("en-US") + " is out of range: use " + range + ".";
    return null;
  }
  function renderProblems(items) {
    var ul = clear($("problems"));
    items.forEach(function (it) { ul.appendChild(h("li", {class: it[0], text: it[1]})); });
  }

  function setupForm() {
    var d = state.detail;
    var tier = clear($("f-tier"));
    d.tiers.forEach(function (t) {
      var live = d.live_tiers.indexOf(t) >= 0;
      tier.appendChild(h("option", {value: t, text: tierName(t) + (live ? "" : " (not available now)")}));
    });
    $("tier-hint").textContent = "Built-in: runs inside Atrium, free and private, simple answers. Fast and Smart: cloud " +
      "models (when configured), Smart answering best and costing most. The technical name (the model tier) is in brackets.";
    var box = clear($("f-variables")), chips = clear($("insert-chips"));
    chips.appendChild(h("span", {text: "Insert:"}));
    Object.keys(d.variables_available).forEach(function (name) {
      box.appendChild(h("label", null, h("input", {type: "checkbox", value: name}),
        h("span", null, h("code", {text: name}), h("span", {class: "hint", text: d.variables_available[name]}))));
      chips.appendChild(h("button", {type: "button", class: "chip", title: "Insert {{" + name + "}} at the cursor", text: "{{" + name + "}}",
        onclick: function () { insertVar(name); }}));
    });
    box.querySelectorAll("input").forEach(function (i) { i.addEventListener("change", onDraftChanged); });
  }
  // Plain words first, the technical name as the hint (README "model tiers"): an editor picks quality and cost.
  var TIER_NAMES = {local: "Built-in model: free, basic answers", fast: "Fast cloud model: quick, low cost",
    smart: "Smart cloud model: best answers, costs more"};
  function tierName(t) { return TIER_NAMES[t] ? TIER_NAMES[t] + " (" + t + ")" : t; }
  window.StudioWords = {tierName: tierName};
  function maxTokensWords() {
    var v = Number($("f-max_tokens").value);
    $("max_tokens-words").textContent = Number.isInteger(v) && v > 0 ? ": " + v.toLocaleString("en-US") + " tokens ≈ " +
      Math.round(v * 0.75).toLocaleString("en-US") + " words" : "";
  }
  function autoGrow() {
    var ta = $("body");
    ta.style.height = "auto";
    ta.style.height = Math.max(380, ta.scrollHeight + 4) + "px";
  }
  function insertVar(name) {
    var ta = $("body"), s = ta.selectionStart, e = ta.selectionEnd, ins = "{{" + name + "}}";
    ta.value = ta.value.slice(0, s) + ins + ta.value.slice(e);
    ta.focus(); ta.selectionStart = ta.selectionEnd = s + ins.length;
    var box = document.querySelector('#f-variables input[value="' + name + '"]');
    if (box) box.checked = true;
    onDraftChanged();
  }

  // -- loading -----------------------------------------------------------------------------------------
  function loadAssistants() {
    return api("GET", "").then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Could not load assistants", true); return; }
      state.assistants = r.data.assistants;
      renderAssistantList();
    });
  }
  function renderAssistantList() {
    var ul = clear($("assistant-list"));
    state.assistants.forEach(function (a) {
      var meta = "production v" + (a.labels.production || "–") + " · staging v" + (a.labels.staging || "–");
      ul.appendChild(h("li", null, h("button", {
        class: a.name === state.name ? "active" : "", "data-assistant": a.name,
        onclick: function () { selectAssistant(a.name); }},
        h("span", {class: "name", text: a.title}), h("span", {class: "meta", text: meta}))));
    });
  }
  function selectAssistant(name, tab) {
    if (state.name && state.name !== name && !sameAsBase()) {
      // The draft is kept for this tab (sessionStorage); switching is safe.
      var current = (state.assistants || []).filter(function (a) { return a.name === state.name; })[0];
      toast("Your unsaved draft of " + (current ? current.title : state.name) + " is kept in this tab.");
    }
    state.name = name;
    renderAssistantList();
    return refreshDetail().then(function () {
      return loadBase(state.detail.latest, true);
    }).then(function () { showTab(tab || "edit"); });
  }
  function refreshDetail() {
    return api("GET", "/" + state.name).then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Could not load the assistant", true); throw new Error("load"); }
      state.detail = r.data;
      var d = r.data;
      $("assistant-title").textContent = d.title;
      $("assistant-desc").textContent = d.description;
      $("assistant-desc-quote").textContent = d.description ? " (“" + d.description + "”, under the title above)" : "";
      var badges = clear($("label-badges"));
      Object.keys(d.labels).sort().forEach(function (l) {
        badges.appendChild(h("span", {class: "badge " + l, text: l + " · v" + d.labels[l]}));
      });
      setupFormOnce();
      // A save (here or elsewhere) or another assistant: the Compare "to" and the version to promote follow the
      // newest version instead of keeping a choice made before it existed (promoting the wrong one by reflex).
      var shown = state.name + "@" + d.latest;
      state.followNewest = state.shownLatest !== shown;
      state.shownLatest = shown;
      renderHistory(); renderRelease(); renderPlaygroundSelects();
      var entry = state.assistants.find(function (a) { return a.name === state.name; });
      if (entry) { entry.labels = d.labels; entry.latest = d.latest; renderAssistantList(); }
    });
  }
  var formFor = null;
  function setupFormOnce() { if (formFor !== state.name) { setupForm(); formFor = state.name; } }

  function loadBase(version, restore) {
    state.triedSave = false;
    $("conflict").hidden = true; $("restored").hidden = true; $("draft-diff").hidden = true;
    var p = version ? api("GET", "/" + state.name + "/versions/" + version).then(function (r) { return r.data; })
                    : Promise.resolve({version: 0, body: "", config: {variables: ["user_name", "tenant_name", "today", "context"]}});
    return p.then(function (v) {
      state.base = v; state.baseVersion = v.version;
      fillForm(v.body, v.config);
      $("message").value = "";
      if (restore) {
        var saved = readDraft();
        if (saved) {
          fillForm(saved.draft.body, saved.draft.config);
          $("message").value = saved.message || "";
          state.baseVersion = saved.base;
          var b = $("restored"); clear(b);
          b.appendChild(h("span", {text: "Restored your unsaved draft (started from version " + saved.base + ")."}));
          b.appendChild(h("button", {type: "button", text: "Discard draft", onclick: function () {
            forgetDraft();
            loadBase(state.detail.latest, false);
          }}));
          b.hidden = false;
        }
      }
      updateBaseInfo();
      onDraftChanged();
      autoGrow();
    });
  }
  function updateBaseInfo() {
    var l = labelsOf(state.baseVersion), latest = state.detail ? state.detail.latest : 0;
    $("base-info").textContent = state.baseVersion
      ? "Editing on top of version " + state.baseVersion + (l.length ? " (" + l.join(", ") + ")" : "") +
        (latest > state.baseVersion ? " · version " + latest + " is newer" : "")
      : "No version yet: this will be version 1";
  }
  // Back to this tab: another tab (or person) may have saved or moved a label meanwhile.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !state.detail || !$("session-ended").hidden) return;
    refreshDetail().then(updateBaseInfo, function () { /* refreshDetail said why */ });
  });

  function draftFrom(version) {
    var go = sameAsBase() ? Promise.resolve(true)
      : confirmBox("Replace your unsaved draft?", "The editor will hold version " + version + "'s text and settings instead.", "Replace draft");
    go.then(function (ok) {
      if (!ok) return;
      api("GET", "/" + state.name + "/versions/" + version).then(function (r) {
        if (!r.ok) { toast(r.data.detail || "Cannot load the version", true); return; }
        fillForm(r.data.body, r.data.config);
        $("message").value = version === state.detail.latest ? "" : "Restore version " + version;
        state.baseVersion = state.detail.latest; updateBaseInfo(); onDraftChanged(); autoGrow();
        showTab("edit");
        toast("Draft loaded from version " + version + ". Save it to make it the newest version.");
      });
    });
  }

  // -- save --------------------------------------------------------------------------------------------
  function save() {
    var btn = $("btn-save");
    var msg = $("message").value.trim();
    if (sameAsBase() && state.baseVersion === state.base.version) { toast("Nothing changed since version " + state.base.version + "."); return; }
    // Every problem at once (an empty text *and* no change description), not one toast per attempt.
    state.triedSave = true;
    var items = localChecks(), problems = items.filter(function (it) { return it[0] === "problem"; });
    renderProblems(items);
    if (problems.length) {
      toast("Not saved — " + (problems.length === 1 ? "1 problem" : problems.length + " problems") + " to fix: see the list below the editor.", true);
      if (problems.length === 1 && !msg) $("message").focus();
      return;
    }
    var d = draft();
    busy(btn, true);
    api("POST", "/" + state.name + "/versions", {body: d.body, config: d.config, message: msg, base_version: state.baseVersion})
      .then(function (r) {
        busy(btn, false);
        if (r.status === 201) {
          forgetDraft();
          state.triedSave = false;
          var from = state.base.version;
          toast("Saved as version " + r.data.version + ".");
          return refreshDetail().then(function () { return loadBase(r.data.version, false); }).then(function () {
            renderProblems((r.data.warnings || []).map(function (w) { return ["warning", w]; }));
            if (from) showDiffInto($("draft-diff"), from, r.data.version, "Saved. Changes from version " + from + " to " + r.data.version);
          });
        }
        if (r.status === 409) return showConflict(r.data);
        if (r.status === 422 && r.data.problems) {
          renderProblems(r.data.problems.map(function (p) { return ["problem", label(p.field) + p.message]; }));
          toast("Not saved — please fix the highlighted problems.", true);
          return;
        }
        toast(r.status === 401 ? "Not saved: your session has ended (see the top of the page)." : (r.data.detail || "Saving failed") + " (" + r.status + ")", true);
      });
  }
  function label(field) {
    var names = {body: "", description: "Summary of this prompt: ", tier: "Model tier: ", temperature: "Temperature: ",
      max_tokens: "Maximum answer length: ", signoff: "Sign-off: ", answer_mode: "Answers: ",
      grounding_check: "Grounding check: ", variables: "Variables: ", message: "Change description: "};
    return field in names ? names[field] : field + ": ";
  }
  function showConflict(data) {
    state.conflictLatest = data.latest_version;
    var latest = data.latest || {}, v = data.latest_version;
    var what = latest.message ? " (“" + latest.message + "”)" : "";
    // Your own save from another tab (or with your API key) is not "someone else".
    var mine = latest.author === BOOT.subject, byKey = !mine && latest.author_for === BOOT.subject;
    var who = mine || byKey ? "You" : latest.author || "Someone";
    var where = mine ? " in another tab" : byKey ? " with your API key" : "";
    $("conflict-title").textContent = mine || byKey ? "A newer version of yours exists." : "Someone else saved first.";
    $("conflict-text").textContent = " " + who + " saved version " + v + where + what +
      " after this draft started from version " + data.base_version + ".";
    state.conflictMine = mine || byKey;
    $("btn-conflict-theirs").textContent = state.conflictMine ? "Discard this draft, edit version " + v : "Discard mine, edit theirs";
    $("conflict").hidden = false;
    toast("Not saved: version " + data.latest_version + " was saved meanwhile.", true);
    refreshDetail();
  }
  function compareConflict() {
    var d = draft();
    api("POST", "/" + state.name + "/preview", {body: d.body, config: d.config, base_version: state.conflictLatest}).then(function (r) {
      if (!r.ok || !r.data.diff) { toast("Cannot compare: fix the problems in your draft first.", true); return; }
      var panel = $("draft-diff"); panel.hidden = false;
      var theirs = state.conflictMine ? "version " + state.conflictLatest : "theirs";
      renderDiff(panel, r.data.diff, "Version " + state.conflictLatest + " (" + (state.conflictMine ? "saved elsewhere" : "theirs") + ") → your draft",
        theirs, "your draft", "Red: only in " + (state.conflictMine ? "version " + state.conflictLatest : "their version") +
        " — saving this draft as it is would remove it. Green: only in this draft.");
      panel.scrollIntoView({behavior: "smooth", block: "start"});
    });
  }
  function rebaseOnConflict() {
    state.baseVersion = state.conflictLatest;
    $("conflict").hidden = true;
    updateBaseInfo(); onDraftChanged();
    save();
  }
  function review() {
    var d = draft();
    api("POST", "/" + state.name + "/preview", {body: d.body, config: d.config, base_version: state.baseVersion}).then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Cannot review", true); return; }
      if (!r.data.ok) {
        renderProblems(r.data.problems.map(function (p) { return ["problem", label(p.field) + p.message]; }));
        toast("The draft has problems — see below the editor.", true); return;
      }
      renderProblems(r.data.warnings.map(function (w) { return ["warning", w]; }));
      var panel = $("draft-diff"); panel.hidden = false;
      renderDiff(panel, r.data.diff, "Your draft compared with version " + state.baseVersion, "v" + state.baseVersion, "draft");
      panel.scrollIntoView({behavior: "smooth", block: "start"});
    });
  }

  // -- diff --------------------------------------------------------------------------------------------
  function showDiffInto(panel, a, b, title) {
    return api("GET", "/" + state.name + "/diff?from=" + a + "&to=" + b).then(function (r) {
      if (!r.ok) { toast(r.data.detail || "Cannot show the diff", true); return; }
      panel.hidden = false;
      renderDiff(panel, r.data, title || ("Version " + a + " → version " + b), "v" + a, "v" + b);
    });
  }
  function renderDiff(panel, diff, title, leftName, rightName, hint) {
    state.lastDiff = {panel: panel, diff: diff, title: title, l: leftName, r: rightName, hint: hint};
    window.StudioDiff.render(panel, diff, {title: title, left: leftName, right: rightName, hint: hint, layout: state.diffLayout});
  }
  document.querySelectorAll(".seg button").forEach(function (b) {
    b.addEventListener("click", function () {
      state.diffLayout = b.dataset.layout;
      document.querySelectorAll(".seg button").forEach(function (x) { x.classList.toggle("on", x === b); });
      var ld = state.lastDiff; if (ld) renderDiff(ld.panel, ld.diff, ld.title, ld.l, ld.r, ld.hint);
    });
  });

  // -- history -----------------------------------------------------------------------------------------
  function renderHistory() {
    var d = state.detail, tb = document.querySelector("#versions-table tbody");
    clear(tb);
    var from = $("diff-from"), to = $("diff-to"), keepFrom = from.value, keepTo = to.value;
    clear(from); clear(to);
    d.versions.forEach(function (v) {
      var badges = labelsOf(v.version).map(function (l) { return h("span", {class: "badge " + l, text: l}); });
      tb.appendChild(h("tr", {"data-version": v.version},
        h("td", null, h("strong", {text: "v" + v.version})), h("td", {text: v.message || ""}), h("td", {text: v.author || ""}),
        h("td", {title: fullDate(v.created_at), text: ago(v.created_at)}), h("td", null, h("span", {class: "badges"}, badges)),
        h("td", null,
          h("button", {type: "button", text: "Compare with previous", disabled: v.version <= 1 ? true : null,
            onclick: function () { from.value = v.version - 1; to.value = v.version; showDiffInto($("diff-view"), v.version - 1, v.version); }}), " ",
          h("button", {type: "button", text: "Try", onclick: function () { $("pg-a").value = String(v.version); showTab("playground"); $("question").focus(); }}), " ",
          h("button", {type: "button", text: "Edit from here", title: "Start a new draft from this version's text and settings",
            disabled: !d.you.can_write || null, onclick: function () { draftFrom(v.version); }}))));
      from.appendChild(h("option", {value: v.version, text: versionName(v.version)}));
      to.appendChild(h("option", {value: v.version, text: versionName(v.version)}));
    });
    if (d.versions.length) {
      var fallbackFrom = d.labels.production && d.labels.production !== d.latest ? d.labels.production
        : d.versions[Math.min(1, d.versions.length - 1)].version;
      to.value = !state.followNewest && keepTo ? keepTo : d.latest;
      from.value = !state.followNewest && keepFrom ? keepFrom : fallbackFrom;
    }
  }
  $("btn-diff").addEventListener("click", function () {
    var a = $("diff-from").value, b = $("diff-to").value;
    if (!a || !b) return;
    showDiffInto($("diff-view"), a, b);
  });

  // -- playground --------------------------------------------------------------------------------------
  function renderPlaygroundSelects() {
    ["pg-a", "pg-b"].forEach(function (id, i) {
      var sel = $(id), keep = sel.value; clear(sel);
      sel.appendChild(h("option", {value: "draft", text: "Unsaved draft (from the editor)"}));
      state.detail.versions.forEach(function (v) { sel.appendChild(h("option", {value: v.version, text: versionName(v.version)})); });
      var prod = state.detail.labels.production;
      sel.value = keep && sel.querySelector('option[value="' + keep + '"]') ? keep : (i === 0 ? "draft" : String(prod || state.detail.latest));
    });
  }
  $("pg-compare").addEventListener("change", function () { $("pg-b").disabled = !this.checked; });
  function ask() {
    var q = $("question").value.trim();
    if (!q) { $("question").focus(); toast("Type a test question first.", true); return; }
    var picks = [$("pg-a").value]; if ($("pg-compare").checked) picks.push($("pg-b").value);
    var out = clear($("pg-results")), btn = $("btn-ask");
    busy(btn, true);
    var jobs = picks.map(function (pick) {
      var card = h("div", {class: "card result", "data-pick": pick}, h("div", {class: "result-head"},
        h("h3", {text: pick === "draft" ? "Unsaved draft" : "Version " + pick + (labelsOf(+pick).length ? " · " + labelsOf(+pick).join(", ") : "")})),
        h("div", {class: "answer muted", text: "Thinking…"}));
      out.appendChild(card);
      var payload = {question: q};
      if (pick === "draft") { var d = draft(); payload.body = d.body; payload.config = d.config; } else payload.version = +pick;
      return api("POST", "/" + state.name + "/try", payload).then(function (r) { fillResult(card, r); });
    });
    Promise.all(jobs).then(function () { busy(btn, false); });
  }
  function fillResult(card, r) {
    var ans = card.querySelector(".answer");
    if (!r.ok) {
      card.classList.add("error"); ans.classList.remove("muted");
      var msg = r.data.detail || "The test failed";
      if (r.data.problems) msg = r.data.problems.map(function (p) { return label(p.field) + p.message; }).join("\n");
      ans.textContent = msg; return;
    }
    var d = r.data;
    ans.classList.remove("muted"); ans.classList.add("markdown");
    window.StudioMarkdown.render(ans, d.answer);
    if (d.finish_reason === "length") {
      // Marked like the chat marks it (ui/chat.py), before the sign-off, which stays the last line.
      var text = d.answer.replace(/\s+$/, ""), so = (d.signoff || "").trim();
      var hasSo = !!so && text.slice(-so.length) === so;
      var main = hasSo ? text.slice(0, -so.length).replace(/\s+$/, "") : text;
      if (main) {
        window.StudioMarkdown.render(ans, main);
        ans.appendChild(h("p", null, h("em", {class: "cut", text: "(answer cut at the length limit)"})));
        if (hasSo) ans.appendChild(h("p", {text: so}));
      }
    }
    var usage = d.usage || {};
    card.appendChild(h("div", {class: "metrics"},
      metric("Model", (d.model || "none") + (d.tier ? " · " + (TIER_NAMES[d.tier] ? TIER_NAMES[d.tier].split(":")[0] + " (" + d.tier + " tier)" : d.tier + " tier") : "")),
      metric("Text read / written", (usage.prompt_tokens || 0) + " / " + (usage.completion_tokens || 0) + " tokens",
        "Tokens are the pieces of text a model reads and writes, about ¾ of a word each; they are what a model call costs."),
      metric("Cost", "$" + (usage.cost_usd || 0).toFixed(5)), metric("Time", (d.latency_ms / 1000).toFixed(1) + " s"),
      d.grounding ? metric("Answer mode", answerMode(d.grounding)) : null));
    if (d.grounding) card.appendChild(groundingNote(d.grounding));
    var cites = d.citations || [];
    card.appendChild(h("div", null, h("strong", {text: "Sources (" + cites.length + ")"}),
      cites.length ? h("ol", {class: "citations"}, cites.map(function (c) {
        var where = c.section && c.section.indexOf(c.title) === 0 ? c.section : c.title + (c.section ? " — " + c.section : "");
        return h("li", null, h("details", null,
          h("summary", null, h("span", {text: where + (c.page ? ", p. " + c.page : "")}),
            typeof c.score === "number" ? h("span", {class: "score", text: " · match " + c.score.toFixed(2)}) : null),
          h("blockquote", {text: c.quote})));
      })) : h("p", {class: "muted small", text: "No passages from the knowledge base were used."})));
    (d.warnings || []).forEach(function (w) { card.appendChild(h("p", {class: "note", text: w})); });
  }
  // Which way the answer was made, and why (chat/answers.py): shown so an editor can tell a quoted answer from a
  // model's, and see what the grounding check found unsupported.
  function answerMode(g) {
    var names = {grounded: "grounded (quoted from the sources)", generative: "generative (the model's words)",
      checked: "generative, checked", fallback: "generative, mostly unsupported: sources' answer added"};
    return (names[g.mode] || g.mode) + (g.checked && g.score != null ? " · supported " + Math.round(g.score * 100) + "%" : "");
  }
  function groundingNote(g) {
    var unsupported = g.unsupported || [];
    return h("div", {class: "note"}, h("span", {text: "Why this mode: " + g.reason + "."}),
      unsupported.length ? h("ul", null, unsupported.map(function (u) {
        return h("li", null, h("s", {text: u.sentence}), h("span", {class: "muted small", text: " — " + u.reason}));
      })) : null);
  }
  function metric(name, value, hint) { return h("div", {class: "metric", title: hint || null}, h("b", {text: name}), h("span", {text: value})); }

  // -- release -----------------------------------------------------------------------------------------
  function renderRelease() {
    var d = state.detail, cards = clear($("label-cards"));
    var names = Object.keys(d.labels).sort(function (a, b) { return (a === "production" ? -1 : b === "production" ? 1 : a < b ? -1 : 1); });
    names.forEach(function (l) {
      var v = d.labels[l], info = d.versions.find(function (x) { return x.version === v; }) || {};
      var moved = d.history.find(function (e) { return e.label === l; });
      cards.appendChild(h("div", {class: "card label-card " + l, "data-label": l},
        h("div", {class: "lname", text: l}), h("div", {class: "lver", text: "Version " + v}),
        h("div", {class: "lmeta", text: (info.message || "") }),
        h("div", {class: "lmeta", text: moved ? "set by " + moved.who + " " + ago(moved.at) : "set when the assistant was created"})));
    });
    var sel = $("rel-version"), keep = sel.value; clear(sel);
    d.versions.forEach(function (v) { sel.appendChild(h("option", {value: v.version, text: versionName(v.version) + " — " + (v.message || "")})); });
    sel.value = !state.followNewest && keep && sel.querySelector('option[value="' + keep + '"]') ? keep : String(d.latest);
    updateReleasePreview();
    renderRollback(d);
    var tb = clear(document.querySelector("#history-table tbody"));
    if (!d.history.length) tb.appendChild(h("tr", null, h("td", {colspan: 4, class: "muted", text: "No label has been moved yet."})));
    d.history.forEach(function (e) {
      tb.appendChild(h("tr", null, h("td", {title: fullDate(e.at), text: ago(e.at)}), h("td", {text: e.who}),
        h("td", null, h("span", {class: "badge " + e.label, text: e.label})),
        h("td", {text: (e.from ? "v" + e.from : "none") + " → v" + e.to})));
    });
  }
  // The roll-back card. Its target comes from the label history (newest first): the production version before
  // the current one. When the last production move went *back* (a rollback, or promoting an older version),
  // that "version before" is the one just withdrawn: offering it as "Roll back to version 5" would re-deploy
  // the bad version by reflex. Then the card offers to undo that move, said plainly and not styled as the
  // destructive action, or the version production had before the current one was first promoted.
  function renderRollback(d) {
    var prod = d.labels.production, moves = d.history.filter(function (e) { return e.label === "production"; });
    var last = moves[0], btn = $("btn-rollback"), text = $("rollback-text");
    var wentBack = !!(last && last.to === prod && last.from && last.from > prod);
    var target = null;
    if (wentBack) target = last.from;
    else {
      var before = moves.find(function (e) { return e.to === prod && e.from && e.from !== prod; });
      if (before) target = before.from;
      else {
        var older = d.versions.filter(function (v) { return v.version < prod; });
        target = older.length ? older[0].version : null;
      }
    }
    state.rollbackTo = target;
    btn.classList.toggle("danger", !wentBack);
    btn.classList.toggle("undo", wentBack);
    if (!target) {
      text.textContent = "There is no earlier version to roll back to.";
      btn.textContent = "Roll back";
    } else if (wentBack) {
      text.textContent = "Production was moved back from version " + last.from + " to version " + prod + " by " + last.who +
        " " + ago(last.at) + ". Undoing it puts version " + last.from + " back in production for everyone's next message.";
      btn.textContent = "Undo the rollback (back to version " + last.from + ")";
    } else {
      text.textContent = "Production is at version " + prod + ". Roll back to version " + target + " in one click; the change applies to the next chat message.";
      btn.textContent = "Roll back to version " + target;
    }
    $("rollback-title").textContent = wentBack ? "Undo the last rollback" : "Roll back production";
    btn.disabled = !target || !d.you.can_write;
    var note = $("approval-note");
    note.hidden = !(d.require_approval && d.you.can_approve);
    note.textContent = "Approval required: as a tenant admin you approve versions written by someone else by moving production.";
    if (d.require_approval && !d.you.can_approve) {
      btn.disabled = true;
      if (target) text.textContent = "Production is at version " + prod + ". Only a tenant admin can move it to version " + target + ".";
    }
  }
  function updateReleasePreview() {
    var d = state.detail; if (!d) return;
    var v = +$("rel-version").value, l = $("rel-label").value, cur = d.labels[l];
    var info = d.versions.find(function (x) { return x.version === v; }) || {};
    var blocked = null;
    if (l === "production" && d.require_approval) {
      if (!d.you.can_approve) blocked = "Only a tenant admin can move production here: promote to staging and ask an admin to approve.";
      else if (info.author === BOOT.subject) blocked = "You wrote version " + v + ": another tenant admin must approve it for production.";
    }
    $("rel-preview").textContent = blocked || (cur === v ? l + " is already at version " + v + "."
      : l + ": version " + (cur || "none") + " → version " + v + (l === "production" ? " (applies to everyone's next message)" : ""));
    $("rel-preview").classList.toggle("error", !!blocked);
    $("btn-promote").disabled = !d.you.can_write || cur === v || !!blocked;
    // The release gate (studio-gate.js) may close it further: production needs a passing test run there.
    if (window.StudioGate) window.StudioGate.refresh(l === "production" && cur !== v && !blocked ? v : null);
  }
  $("rel-version").addEventListener("change", updateReleasePreview);
  $("rel-label").addEventListener("change", updateReleasePreview);
  function moveLabel(label, version, btn) {
    var cur = state.detail.labels[label];
    var text = label === "production"
      ? "Everyone chatting with " + state.detail.title + " gets version " + version + " from their next message (now: version " + (cur || "none") + ")."
      : "Editors chatting with the staging profile get version " + version + " (now: version " + (cur || "none") + ").";
    return confirmBox("Move " + label + " to version " + version + "?", text, "Move " + label).then(function (ok) {
      if (!ok) return;
      busy(btn, true);
      var payload = {version: version}, reason = label === "production" ? window.StudioGate.overrideReason() : "";
      if (reason) payload.override_reason = reason;
      return api("PUT", "/" + state.name + "/labels/" + encodeURIComponent(label), payload).then(function (r) {
        busy(btn, false);
        if (r.status === 409 && r.data.error === "release_gate") { window.StudioGate.refused(r.data); return; }
        if (!r.ok) { toast(r.data.detail || "Could not move the label", true); return; }
        toast(label + " now points to version " + version + ".");
        return refreshDetail().then(updateBaseInfo);
      });
    });
  }
  $("btn-promote").addEventListener("click", function () {
    var v = +$("rel-version").value; if (!v) return;
    moveLabel($("rel-label").value, v, this);
  });
  $("btn-rollback").addEventListener("click", function () { if (state.rollbackTo) moveLabel("production", state.rollbackTo, this); });

  // -- wiring ------------------------------------------------------------------------------------------
  ["f-answer_mode", "f-grounding_check"].forEach(function (id) { $(id).addEventListener("change", onDraftChanged); });
  ["body", "f-description", "f-tier", "f-max_tokens", "f-signoff"].forEach(function (id) { $(id).addEventListener("input", onDraftChanged); });
  $("f-max_tokens").addEventListener("input", maxTokensWords);
  $("body").addEventListener("input", autoGrow);
  $("f-tier").addEventListener("change", function () { tierNotes(); onDraftChanged(); });
  $("f-temperature").addEventListener("input", function () { $("temperature-out").textContent = this.value; onDraftChanged(); });
  $("message").addEventListener("input", onDraftChanged);
  $("btn-save").addEventListener("click", save);
  $("btn-review").addEventListener("click", review);
  $("btn-try-draft").addEventListener("click", function () { $("pg-a").value = "draft"; showTab("playground"); $("question").focus(); });
  $("btn-ask").addEventListener("click", ask);
  $("question").addEventListener("keydown", function (e) { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ask(); });
  $("btn-conflict-compare").addEventListener("click", compareConflict);
  $("btn-conflict-rebase").addEventListener("click", rebaseOnConflict);
  $("btn-conflict-theirs").addEventListener("click", function () {
    confirmBox("Discard your draft?", "Your unsaved changes are dropped and the editor loads version " + state.conflictLatest + ".", "Discard my draft")
      .then(function (ok) {
        if (!ok) return;
        forgetDraft();
        loadBase(state.conflictLatest, false);
      });
  });
  document.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") { e.preventDefault(); if (!$("tab-edit").hidden) save(); }
  });
  window.addEventListener("beforeunload", function (e) {
    if (state.leaving || !state.base || sameAsBase()) return;
    e.preventDefault(); e.returnValue = "";
  });
  // Signing out (the page shell, ui/templates/base.html) asks here first: the browser's "Leave site?" prompt
  // would come only after the session had already ended, and "Stay" would leave an editor that can no longer save.
  window.beforeSignOut = function () {
    if (!state.base || sameAsBase()) { state.leaving = true; return Promise.resolve(true); }
    var current = (state.assistants || []).filter(function (a) { return a.name === state.name; })[0];
    return confirmBox("Sign out and discard your draft?",
      "Your changes to " + (current ? current.title : state.name) + " are not saved. Signing out removes the draft from this browser.",
      "Discard draft and sign out").then(function (ok) { if (ok) state.leaving = true; return ok; });
  };
  var picker = $("tenant-picker");
  if (picker) picker.addEventListener("change", function () { window.location.href = "/studio?tenant=" + encodeURIComponent(picker.value); });

  // What the Tests tab and the Release card's gate (studio-tests.js, studio-gate.js) read of this page.
  window.StudioApp = {
    boot: BOOT, request: request, showTab: showTab, draft: draft, labelsOf: labelsOf, versionName: versionName,
    name: function () { return state.name; }, detail: function () { return state.detail; }, tierName: tierName,
    refreshDetail: refreshDetail,
    promote: function (btn) { var v = +$("rel-version").value; if (v) moveLabel($("rel-label").value, v, btn); },
  };
  purgeForeignDrafts();
  loadAssistants().then(function () {
    if (!state.assistants.length) { $("assistant-title").textContent = "No assistants configured"; return; }
    var hash = decodeURIComponent(location.hash.slice(1)).split("/");
    var first = state.assistants.find(function (a) { return a.name === hash[0]; }) || state.assistants[0];
    selectAssistant(first.name, ["edit", "history", "playground", "tests", "release", "feedback"].indexOf(hash[1]) >= 0 ? hash[1] : "edit");
  });
})();
