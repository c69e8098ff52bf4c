/* The tenant console's actions. Each goes to the REST API's own route with the browser's session (the same
 * guard, services and audit as any API caller): upload (with its progress, then each document's status until it
 * is ready or failed), delete, re-index, create a key (shown once) and revoke one. The page is re-read after a
 * change, so what it shows is always the server's. No framework, no CDN. */
(() => {
  "use strict";
  const main = document.getElementById("main");
  if (!main || !main.dataset.tenant) return;
  const api = "/api/t/" + encodeURIComponent(main.dataset.tenant);
  const notice = document.getElementById("notice");

  function say(text, bad) {
    notice.textContent = text;
    notice.classList.toggle("bad", !!bad);
  }

  async function call(method, path, body) {
    const init = {method, credentials: "same-origin", headers: {}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(api + path, init);
    let data = null;
    try { data = await r.json(); } catch (e) { /* no body */ }
    if (!r.ok) {
      const detail = data && (data.detail || data.error);
      throw new Error(typeof detail === "string" ? detail : "the server answered " + r.status);
    }
    return data;
  }

  // What was just done is said again after the page is read anew (a reload would otherwise wipe it at once).
  const KEEP = "atrium-console-notice";
  function reloadSaying(text, bad) {
    try { window.sessionStorage.setItem(KEEP, JSON.stringify({text, bad: !!bad})); } catch (e) { /* private mode */ }
    window.location.reload();
  }
  try {
    const kept = JSON.parse(window.sessionStorage.getItem(KEEP) || "null");
    window.sessionStorage.removeItem(KEEP);
    if (kept) say(kept.text, kept.bad);
  } catch (e) { /* nothing kept */ }

  // -- Knowledge ----------------------------------------------------------------------------------------------
  const uploadForm = document.getElementById("upload-form");
  if (uploadForm) {
    uploadForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const files = document.getElementById("upload-files").files;
      if (!files.length) { say("Choose one or more files first.", true); return; }
      const form = new FormData();
      for (const f of files) form.append("files", f);
      form.append("kb", document.getElementById("upload-kb").value.trim());
      const row = document.getElementById("upload-progress-row");
      const bar = document.getElementById("upload-progress");
      const submit = document.getElementById("upload-submit");
      row.hidden = false;
      bar.value = 0;
      submit.disabled = true;
      say("Uploading " + files.length + " file(s)…");
      // XMLHttpRequest, not fetch: only it reports the upload's progress.
      const xhr = new XMLHttpRequest();
      xhr.open("POST", api + "/documents");
      xhr.withCredentials = true;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total);
      });
      xhr.addEventListener("load", () => {
        submit.disabled = false;
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        // The refusal usually names the file already: say it once.
        const refused = (data.errors || []).map((e) => (e.filename && !String(e.detail).includes(e.filename)
          ? e.filename + ": " : "") + e.detail);
        rememberRefused(files, xhr.status, data);
        if (xhr.status >= 400 && !(data.documents || []).length) {
          row.hidden = true;
          say("Not added. " + (refused.join(" ") || data.detail || "The server answered " + xhr.status + "."), true);
          return;
        }
        bar.value = 100;
        const docs = data.documents || [];
        say(docs.length + " document(s) accepted; reading them now…" + (refused.length ? " Refused: " + refused.join(" ") : ""),
            refused.length > 0);
        follow(docs.map((d) => d.id), refused.length > 0);
      });
      xhr.addEventListener("error", () => { submit.disabled = false; row.hidden = true; say("Cannot reach the server.", true); });
      xhr.send(form);
    });
  }

  // Each accepted document's status until it is ready or failed, then the page again.
  async function follow(ids, keepNotice) {
    const pending = new Set(ids);
    const outcome = [];
    while (pending.size) {
      await new Promise((r) => window.setTimeout(r, 1000));
      for (const id of Array.from(pending)) {
        try {
          const d = await call("GET", "/documents/" + encodeURIComponent(id));
          if (d.status === "ready" || d.status === "failed") {
            pending.delete(id);
            outcome.push("“" + (d.title || d.filename) + "” " + (d.status === "ready" ? "is ready." : "failed: see why below."));
          }
          else if (!keepNotice) say("Reading " + (d.title || d.filename) + ": " + d.status + " " + Math.round(100 * d.progress) + "%");
        } catch (e) { pending.delete(id); }
      }
    }
    const failed = outcome.some((t) => t.endsWith("below."));
    if (keepNotice) reloadSaying(notice.textContent + " " + outcome.join(" "), true);
    else reloadSaying(outcome.join(" "), failed);
  }

  for (const button of document.querySelectorAll(".delete-doc")) {
    button.addEventListener("click", async () => {
      if (!window.confirm("Delete “" + button.dataset.name + "” and its passages? The assistant stops using it at once.")) return;
      button.disabled = true;
      try {
        const r = await call("DELETE", "/documents/" + encodeURIComponent(button.dataset.id));
        reloadSaying(r.deleted ? "Deleted “" + button.dataset.name + "”." : "Deleting “" + button.dataset.name + "”: a worker finishes it.");
      } catch (e) { button.disabled = false; say("Not deleted: " + e.message, true); }
    });
  }

  for (const id of ["reindex-all", "reindex-failed"]) {
    const button = document.getElementById(id);
    if (!button) continue;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const r = await call("POST", "/reindex", {include_failed: button.dataset.includeFailed === "true"});
        say(r.queued + " document(s) queued to be read again.");
        if (r.queued) follow(r.documents.map((d) => d.id), false); else button.disabled = false;
      } catch (e) { button.disabled = false; say("Not re-indexed: " + e.message, true); }
    });
  }

  // -- Keys ---------------------------------------------------------------------------------------------------
  const keyForm = document.getElementById("key-form");
  if (keyForm) {
    keyForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const scopes = Array.from(keyForm.querySelectorAll("input[name=scopes]:checked")).map((c) => c.value);
      if (!scopes.length) { say("Give the key at least one scope.", true); return; }
      const body = {name: document.getElementById("key-name").value.trim(), scopes};
      const days = document.getElementById("key-days").value.trim();
      if (days !== "") body.expires_in_days = Number(days);
      const submit = document.getElementById("key-submit");
      submit.disabled = true;
      try {
        const k = await call("POST", "/keys", body);
        keyForm.hidden = true;
        document.getElementById("new-key").hidden = false;
        document.getElementById("new-key-token").value = k.token;
        document.getElementById("new-key-title").focus();
        say("Key “" + (k.name || k.id) + "” created.");
        refreshKeys();
      } catch (e) { submit.disabled = false; say("Not created: " + e.message, true); }
    });
    document.getElementById("copy-key").addEventListener("click", async () => {
      const token = document.getElementById("new-key-token");
      token.select();
      try { await navigator.clipboard.writeText(token.value); say("Copied."); }
      catch (e) { say("Select the key and copy it (Ctrl+C).", true); }
    });
  }

  function bindRevoke(root) {
  for (const button of root.querySelectorAll(".revoke-key")) {
    button.addEventListener("click", async () => {
      if (!window.confirm("Revoke “" + button.dataset.name + "”? Whatever uses it stops working at once.")) return;
      button.disabled = true;
      try {
        const r = await call("DELETE", "/keys/" + encodeURIComponent(button.dataset.id));
        const also = (r.also_revoked || []).length;
        reloadSaying("Revoked “" + button.dataset.name + "”" + (also ? " and " + also + " key(s) made with it." : "."));
      } catch (e) { button.disabled = false; say("Not revoked: " + e.message, true); }
    });
  }
  }
  bindRevoke(document);

  // -- Keys: the list shows a new key at once ---------------------------------------------------------------
  // The page is read again and its list of keys replaced (the server draws it, as on any load), while the new
  // key's one-time token stays on screen above it.
  async function refreshKeys() {
    const section = document.getElementById("keys-h") && document.getElementById("keys-h").closest("section");
    if (!section) return;
    try {
      const r = await fetch(window.location.href, {credentials: "same-origin", headers: {Accept: "text/html"}});
      if (!r.ok) return;
      const fresh = new DOMParser().parseFromString(await r.text(), "text/html").getElementById("keys-h");
      if (!fresh) return;
      const replacement = document.importNode(fresh.closest("section"), true);
      section.replaceWith(replacement);
      bindRevoke(replacement);
    } catch (e) { /* the list is as it was: "Done" reads the page again */ }
  }

  // -- Knowledge: a refused file stays listed with the reason and the fix until dismissed ---------------------
  // Kept for this tab (sessionStorage, per department): a reload or the next upload does not wipe them.
  const refusedBox = document.getElementById("refused");
  const REFUSED = "atrium-console-refused:" + main.dataset.tenant;

  function loadRefused() {
    try { return JSON.parse(window.sessionStorage.getItem(REFUSED) || "[]"); } catch (e) { return []; }
  }

  function storeRefused(items) {
    try { window.sessionStorage.setItem(REFUSED, JSON.stringify(items.slice(-50))); } catch (e) { /* kept on screen only */ }
  }

  function rememberRefused(files, status, data) {
    const names = Array.from(files || []).map((f) => f.name);
    let errors = (data && data.errors) || [];
    if (!errors.length && status >= 400) { // refused as a whole (e.g. too many files): each file, one reason
      const detail = (data && (data.detail || data.error)) || "the server answered " + status;
      errors = names.map((filename) => ({filename, error: (data && data.error) || "", detail: String(detail)}));
    }
    if (!errors.length) return;
    const at = new Date().toISOString();
    storeRefused(loadRefused().concat(errors.map((e) => ({
      id: at + ":" + Math.random().toString(36).slice(2, 8), filename: e.filename || "(no name)",
      error: e.error || "", detail: String(e.detail || "")}))));
    showRefused();
  }

  function showRefused() {
    if (!refusedBox) return;
    let fixes = {};
    try { fixes = JSON.parse(refusedBox.dataset.fixes || "{}"); } catch (e) { /* the general fix only */ }
    const list = document.getElementById("refused-list");
    const items = loadRefused();
    list.replaceChildren();
    for (const item of items) {
      const li = document.createElement("li");
      li.className = "refused-row";
      li.dataset.filename = item.filename;
      const text = document.createElement("p");
      const name = document.createElement("strong");
      name.textContent = item.filename;
      text.append(name, " was not added. ");
      const why = document.createElement("span");
      why.className = "refused-why";
      why.textContent = "Why: " + item.detail;
      const fix = document.createElement("span");
      fix.className = "refused-fix";
      fix.textContent = "Fix: " + (fixes[item.error] || fixes[""] || "");
      text.append(why, document.createElement("br"), fix);
      const dismiss = document.createElement("button");
      dismiss.type = "button";
      dismiss.className = "button dismiss-refused";
      dismiss.textContent = "Dismiss";
      const hidden = document.createElement("span");
      hidden.className = "visually-hidden";
      hidden.textContent = " the note on " + item.filename;
      dismiss.appendChild(hidden);
      dismiss.addEventListener("click", () => {
        storeRefused(loadRefused().filter((other) => other.id !== item.id));
        const next = li.nextElementSibling || li.previousElementSibling;
        showRefused();
        // The keyboard stays in the list: the next note's button, else the upload form.
        const focus = next && document.querySelector('.refused-row[data-filename="' + CSS.escape(next.dataset.filename) + '"] button');
        (focus || document.getElementById("upload-files")).focus();
      });
      li.append(text, dismiss);
      list.appendChild(li);
    }
    refusedBox.hidden = items.length === 0;
  }
  showRefused();

  // -- Knowledge: re-index one document -----------------------------------------------------------------------
  for (const button of document.querySelectorAll(".reindex-doc")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await call("POST", "/documents/" + encodeURIComponent(button.dataset.id) + "/reindex");
        say("“" + button.dataset.name + "” queued to be read again.");
        follow([button.dataset.id], false);
      } catch (e) { button.disabled = false; say("Not re-indexed: " + e.message, true); }
    });
  }

  // -- Dates: one unambiguous format ------------------------------------------------------------------------
  // A browser's date field shows the date in its own locale's order (01/02/2026 is January or February); the
  // range fields take and show YYYY-MM-DD, as the server reads them.
  for (const input of main.querySelectorAll('input[type="date"]')) {
    const value = input.value;
    input.type = "text";
    input.value = value;
    input.inputMode = "numeric";
    input.pattern = "\\d{4}-\\d{2}-\\d{2}";
    input.placeholder = "YYYY-MM-DD";
    input.autocomplete = "off";
    const label = input.id && document.querySelector('label[for="' + CSS.escape(input.id) + '"]');
    if (label && !label.querySelector(".date-format")) {
      const hint = document.createElement("span");
      hint.className = "muted small date-format";
      hint.textContent = " (YYYY-MM-DD)";
      label.appendChild(hint);
    }
  }

  // -- Usage: raise one member's allowance for the month ---------------------------------------------------------
  function raiseAllowances() {
    const form = document.getElementById("raise-form");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const subject = document.getElementById("raise-member").value;
      const body = {subject};
      const tokens = document.getElementById("raise-tokens").value.trim();
      const dollars = document.getElementById("raise-usd").value.trim();
      if (tokens !== "") body.tokens_per_day = Number(tokens);
      if (dollars !== "") body.monthly_budget_usd = Number(dollars);
      if (tokens === "" && dollars === "") { say("Give tokens a day, dollars this month or both.", true); return; }
      const submit = document.getElementById("raise-submit");
      submit.disabled = true;
      try {
        const r = await call("POST", "/usage/allowances", body);
        const parts = [];
        if (r.tokens_per_day !== null) parts.push(r.tokens_per_day.toLocaleString("en-US") + " tokens a day");
        if (r.monthly_budget_usd !== null) parts.push("$" + r.monthly_budget_usd.toFixed(2) + " this month");
        reloadSaying("Raised " + r.subject + "'s allowance to " + parts.join(" and ") + " until " + r.until.slice(0, 10) + ".");
      } catch (e) { submit.disabled = false; say("Not raised: " + e.message, true); }
    });
  }
  raiseAllowances();
})();
