/* Atrium's additions to Chainlit's chat page (loaded through custom_js in .chainlit/config.toml).
 *
 * Each part fixes one thing Chainlit 2.x does not let an app configure, by watching the page (a MutationObserver)
 * rather than by depending on Chainlit's internals; if Chainlit changes its page, a part stops doing anything and
 * the page behaves as plain Chainlit.
 *
 * 1. Sources open only when clicked. Since 2.11, Chainlit opens its side panel by itself whenever the chat's set of
 *    display="side" elements changes (MessagesContainer: setSideView({title: <last element's name>, elements: <all
 *    side elements of the chat>})): after every cited answer and on every reopened chat, titled after one passage
 *    and listing all of them, and as a modal sheet on a phone (Chainlit issues #2932, #2979; fix proposed in
 *    PR #2982). A click on a source sets the panel to that one passage under its own name, which is what is kept:
 *    a panel that appears (or changes) without a click on a source just before is closed at once, before it is
 *    painted (atrium.css keeps it hidden until then).
 * 2. A file the chat does not take is named in the refusal, with the types it does take (react-dropzone's toast
 *    lists raw MIME types and no file name); an empty file's refusal (the server's 400, see ui/upload_guard.py)
 *    reads "empty.txt is empty — nothing to add.".
 * 3. Renaming a conversation: a blank name cannot be confirmed (the server refuses it too), and Enter confirms.
 * 4. The header names the assistant when there is only one (Chainlit shows its selector only for two or more), and
 *    a user without any assistant gets no message box (the chat's first message says why and whom to ask).
 * 5. A wrong password is said once: the login form's own alert says it (translation auth.login.errors.unauthorized),
 *    so the toast that repeats it ("Unauthorized: Wrong username or password.") is dropped. Where the alert says
 *    less (a language without that translation), the toast stays.
 * 6. Icon buttons have names: Chainlit's sidebar, search, new-chat, send, attach, stop, copy and feedback buttons
 *    are icons with a hover tooltip only, so a screen reader announced "button". Each gets an aria-label in the
 *    page's language (Chainlit's own translation of its tooltip, fetched once; English until it arrives). So do
 *    the phone's sidebar sheet and the account menu, whose labels point at nothing.
 * 8. A session that ended says why on the sign-in page: the server clears a cookie that no longer works and leaves
 *    the reason in a short-lived cookie (atrium_session_notice: signed out elsewhere, ended by an administrator,
 *    too old), shown above the form once.
 * 7. Signing out is one page load. Chainlit's sign-out POSTs /logout, then both reloads the page and routes to the
 *    login page; the two navigations race, and when the second cancels the first the reload's redirect to the
 *    identity provider's sign-out (backend/auth/oidc_logout.py) was lost: the provider's session stayed open. Once
 *    the POST succeeds, this page goes to the login page itself, once, and Chainlit's own follow-up never runs.
 * 9. Every page has a name and its message box a label: one h1 (a visually hidden one when Chainlit's page has
 *    none; a heading of an answer's markdown is not the page's: it is announced one level lower), and the message
 *    box is named after its placeholder (a placeholder is no label).
 * 10. The sign-in page loads without an error in the console: Chainlit asks the server who the user is (GET
 *    /user) and logs the 401 it expects on a sign-in page, twice (the browser's failed request and its own
 *    console.error). When the server marks the page as requested without any session cookie (ui/offline_page.py),
 *    the answer is certain: this page gives Chainlit that 401 itself, without a request, and drops Chainlit's
 *    report of it. Signed in (or with a cookie that may work), the request goes to the server as before.
 * 11. The header carries the navigation every page of Atrium shares (ui/templates/base.html: Chat, and the studio,
 *    console and operations page for those who may use them, as /api/me's `pages` lists them), and the account
 *    menu the same links (on a phone, where the header has no room for them).
 * 12. The theme follows the system's (prefers-color-scheme) until the user picks one, as the studio, the console and
 *    the operations page do. Chainlit's ThemeProvider reads the user's choice from localStorage "vite-ui-theme"
 *    (what its theme button writes) and else falls back to the config's default_theme, which may only be "light"
 *    or "dark" (Chainlit's config type: "system" there is refused, and leaving it out means "dark"). "system" is a
 *    value the provider itself understands: written before Chainlit's page starts (this file is a plain script
 *    in the head, Chainlit's bundle a module, run after it) when no choice is stored, so the user's choice wins.
 * 13. No warning in the console on an ordinary load. Chainlit's chat draws its file drop zone before it has its
 *    settings (while it still asks the server who the user is) with a fallback list of accepted types,
 *    {"application/*", "audio/*", "image/*", "text/*", "video/*"}; react-dropzone takes no "application/*" and
 *    warns, once per render: `Skipped "application/*" because it is not a valid MIME type`. The list the chat uses
 *    once its settings arrive is .chainlit/config.toml's, which has no such entry (tests/ui/test_chat_look.py
 *    checks it against react-dropzone's rule), so exactly that message is Chainlit's fallback's and is dropped.
 *    Chainlit's dialogs (the rating's comment, a conversation's rename or delete) have a title and no description,
 *    yet point aria-describedby at one; Radix warns about it as the dialog opens, before any script of the page
 *    can act ("Missing `Description` or `aria-describedby={undefined}` for {DialogContent}"). What it warns
 *    about is fixed here (a dialog's aria-describedby that names no element is removed: a screen reader finds
 *    nothing to describe it with either way, and axe counts a dangling reference), and that one warning dropped.
 *    Any other warning still reaches the console (tests/browser/test_chat_quiet.py fails on it).
 * 14. A conversation's menu (rename, share, delete) from the keyboard. Chainlit draws each conversation in the
 *    sidebar as a link holding a button, and inside that button the menu's trigger: a <div> with a popup's ARIA
 *    attributes, which no element may nest inside a button (axe: aria-allowed-attr; as a button of its own it
 *    would be a control inside a control, nested-interactive) and which the keyboard cannot reach (Radix opens it
 *    on a pointer press only). The page's markup is React's and stays as it is; what changes is who says what:
 *    the conversation's button, the second Tab stop of each conversation (the link is the first, and opens it),
 *    carries the popup's attributes and opens the menu with Enter, Space or the down arrow; the inner <div> is
 *    left a mouse target without ARIA. When the menu closes, the keyboard is back on that button.
 * 15. A question sent before the chat is ready is sent when it is, not lost. Chainlit draws the message box before
 *    its socket has connected, and its start handler (on_chat_start) runs as a task that makes the composer busy
 *    again right after it connected; in both moments the box takes typing and looks ready, but Enter does nothing
 *    (MessageComposer's submit returns early while the session is not connected or busy) — the question stayed in
 *    the box unsent, or went with the box when Chainlit redrew the page. The send button is what knows: disabled
 *    although the box holds text means "not now". Enter pressed then holds the question: the composer says so
 *    (role=status), and the moment the send button is enabled, the question is sent, as if Enter were pressed
 *    again. Typing on edits the held question, emptying the box drops it; a box Chainlit redraws gets it back.
 *    While an answer is running (the stop button is shown) Enter does what Chainlit does: nothing.
 */
(() => {
  "use strict";

  // -- 13. no warning about Chainlit's fallback list of file types (first: before Chainlit's page starts) -------

  const ANSWERED_WARNINGS = [
    'Skipped "application/*" because it is not a valid MIME type.', // Chainlit's fallback list of types
    "Warning: Missing `Description` or `aria-describedby={undefined}` for {DialogContent}.", // see dialogs()
  ];
  const consoleWarn = console.warn.bind(console);
  console.warn = (...args) => {
    if (typeof args[0] === "string" && ANSWERED_WARNINGS.some((w) => args[0].startsWith(w))) return;
    consoleWarn(...args);
  };

  // A dialog described by an element that does not exist is described by nothing (part 13).
  function dialogs() {
    const described = "[role=dialog][aria-describedby], [role=alertdialog][aria-describedby]";
    for (const box of document.querySelectorAll(described)) {
      if (!document.getElementById(box.getAttribute("aria-describedby"))) box.removeAttribute("aria-describedby");
    }
  }

  // -- 12. the theme follows the system's until the user picks one (first: before Chainlit's page starts) -------

  const THEME_KEY = "vite-ui-theme"; // Chainlit's ThemeProvider storageKey
  try {
    if (!window.localStorage.getItem(THEME_KEY)) window.localStorage.setItem(THEME_KEY, "system");
  } catch (e) { /* no storage (a locked-down browser): Chainlit's default_theme applies */ }

  const html = document.documentElement;
  const rootPath = (document.querySelector('meta[property="og:root_path"]') || {}).content || "";
  const ACCEPTED_TYPES = ["text/plain", "text/markdown", "text/html", "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document"];
  const ACCEPTED_WORDS = ".txt, .md, .pdf, .docx or .html";

  // -- 1. sources: the side panel opens on a click only --------------------------------------------------------

  let clicked = 0; // until when a click on a source may open the panel
  let opened = null; // the name of the panel the user opened (and still has open)

  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest("a.element-link") : null;
    if (link) clicked = Date.now() + 3000;
  }, true);

  function closePanel(title) {
    const back = title.querySelector("button"); // desktop: the arrow before the title
    if (back) {
      back.click();
      return;
    }
    const sheet = title.closest('[role="dialog"]'); // phone: a sheet with its close button
    const close = sheet && [...sheet.querySelectorAll("button")].find((b) => b.querySelector(".sr-only"));
    if (close) close.click();
    else (sheet || document).dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
  }

  function sources() {
    const title = document.getElementById("side-view-title");
    if (!title) {
      opened = null;
      html.classList.remove("atrium-side-ok");
      return;
    }
    const name = title.textContent.trim();
    const content = document.getElementById("side-view-content");
    const one = !content || content.children.length <= 1;
    if (name === opened && one) return;
    if (Date.now() < clicked && one) { // what a click on a source opens: that one passage, under its name
      opened = name;
      clicked = 0;
      html.classList.add("atrium-side-ok");
      return;
    }
    opened = null; // Chainlit opened it, or replaced the passage the user was reading with all of them
    html.classList.remove("atrium-side-ok");
    closePanel(title);
  }

  // -- 2. attachments: a refused file is named ---------------------------------------------------------------

  let refused = [];
  let picked = [];

  function noteFiles(files) {
    picked = [...files].map((f) => f.name);
    const accepted = (settings && settings.features && settings.features.spontaneous_file_upload
      && Array.isArray(settings.features.spontaneous_file_upload.accept))
      ? settings.features.spontaneous_file_upload.accept : ACCEPTED_TYPES;
    refused = [...files].filter((f) => !accepted.includes(f.type)).map((f) => f.name);
  }

  document.addEventListener("change", (event) => {
    const input = event.target;
    if (input instanceof HTMLInputElement && input.type === "file" && input.files) noteFiles(input.files);
  }, true);
  document.addEventListener("drop", (event) => {
    if (event.dataTransfer && event.dataTransfer.files) noteFiles(event.dataTransfer.files);
  }, true);

  const EMPTY = ": it is empty — nothing to add"; // "Could not add <name>: <the server's 400>"

  function toasts() {
    for (const title of document.querySelectorAll("[data-sonner-toast] [data-title]")) {
      const text = title.textContent;
      if (text.startsWith("File type must be")) {
        const names = refused.length ? refused.join(", ") : "This file";
        title.textContent = `${names} can't be added: use ${ACCEPTED_WORDS}.`;
      } else if (text.endsWith(EMPTY)) {
        const name = picked.find((n) => text.endsWith(` ${n}${EMPTY}`));
        if (name) title.textContent = `${name} is empty — nothing to add.`;
      }
    }
  }

  // -- 3. renaming: no blank names, Enter confirms ----------------------------------------------------------

  function rename() {
    const input = document.querySelector('[role="dialog"] input#name');
    if (!input || input.dataset.atrium) return;
    input.dataset.atrium = "1";
    const dialog = input.closest('[role="dialog"]');
    // [Cancel, Confirm]: the dialog's other button is its corner close (an icon with a screen-reader label).
    const confirm = () => [...dialog.querySelectorAll("button")].filter((b) => !b.querySelector(".sr-only")).pop();
    const sync = () => {
      const button = confirm();
      if (button) button.disabled = !input.value.trim();
    };
    input.addEventListener("input", sync);
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      event.preventDefault();
      const button = confirm();
      if (button && !button.disabled) button.click();
    });
    sync();
  }

  // -- 4. the assistant's name; no message box without an assistant ----------------------------------------

  let settings = null;
  let loading = false;

  // Chainlit's /project/<what> in the page's language (settings, translations): its JSON, or null.
  function projectJson(what) {
    const language = encodeURIComponent(navigator.language || "en-US");
    return fetch(`${rootPath}/project/${what}?language=${language}`, { credentials: "include" })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }

  function loadSettings() {
    if (settings || loading) return;
    loading = true;
    projectJson("settings").then((data) => { settings = data; loading = false; header(); });
  }

  function header() {
    const bar = document.getElementById("header");
    if (!bar) { // signed out (the login page): the next user's settings are fetched again
      settings = null;
      html.classList.remove("atrium-no-assistant");
      return;
    }
    loadSettings();
    if (!settings) return;
    const profiles = settings.chatProfiles || [];
    if (html.classList.contains("atrium-no-assistant") !== (profiles.length === 0)) {
      html.classList.toggle("atrium-no-assistant", profiles.length === 0);
    }
    let label = document.getElementById("atrium-assistant");
    if (profiles.length !== 1 || document.getElementById("chat-profiles")) {
      if (label) label.remove();
      return;
    }
    const profile = profiles[0];
    const department = ((profile.markdown_description || "").match(/^\*\*(.+?)\*\*/) || [])[1];
    let text = profile.display_name || profile.name;
    if (department && !text.includes(department)) text = `${department} · ${text}`;
    if (!label) {
      label = document.createElement("span");
      label.id = "atrium-assistant";
      (bar.firstElementChild || bar).appendChild(label);
    }
    if (label.textContent !== text) {
      label.textContent = text;
      label.title = text;
    }
  }

  // -- 5. the login page: a wrong password is said once ------------------------------------------------------

  function loginError() {
    const alert = document.querySelector("form [role=alert]");
    const said = alert ? alert.textContent.trim() : "";
    if (!said) return;
    for (const toast of document.querySelectorAll("[data-sonner-toast]")) {
      const title = toast.querySelector("[data-title]");
      if (title && title.textContent.trim().endsWith(said) && toast.style.display !== "none") {
        toast.style.display = "none";
      }
    }
  }

  // -- 6. icon buttons get names ---------------------------------------------------------------------------

  // [selector, translation key, English]: the icon's button, and what Chainlit's tooltip says.
  const ICON_BUTTONS = [
    ["#sidebar-trigger-button", "threadHistory.sidebar.title", "Conversations"],
    ["#search-chats-button", "threadHistory.sidebar.filters.search", "Search"],
    ["#new-chat-button", "navigation.newChat.button", "New conversation"],
    ["#chat-submit", "chat.input.actions.send", "Send message"],
    ["#upload-button", "chat.input.actions.attachFiles", "Attach files"],
    ["#stop-button", "chat.input.actions.stop", "Stop the answer"],
    ["button:has(> svg.lucide-copy)", "chat.messages.actions.copy.button", "Copy to clipboard"],
    ["button:has(> svg.lucide-thumbs-up)", "chat.messages.feedback.positive", "Helpful"],
    ["button:has(> svg.lucide-thumbs-down)", "chat.messages.feedback.negative", "Not helpful"],
  ];
  let words = null;
  let fetchingWords = false;

  function word(key, english) {
    if (!words && !fetchingWords) {
      fetchingWords = true;
      projectJson("translations").then((data) => {
        words = (data && data.translation) || {};
        // The English names given meanwhile give way to the page's language.
        for (const b of document.querySelectorAll("[data-atrium-named]")) b.removeAttribute("aria-label");
        names();
      });
    }
    const found = key.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), words);
    return typeof found === "string" && found ? found : english;
  }

  function names() {
    // A dialog or menu whose aria-labelledby names no element has no name: the phone's sidebar sheet (Radix
    // renders no title for it) and the account menu (labelled by its trigger's id, which Chainlit overrides).
    for (const box of document.querySelectorAll("[role=dialog][aria-labelledby], [role=menu][aria-labelledby]")) {
      if (box.getAttribute("aria-label") || document.getElementById(box.getAttribute("aria-labelledby"))) continue;
      if (box.querySelector("#thread-history")) {
        box.setAttribute("aria-label", word("threadHistory.sidebar.title", "Conversations"));
        box.dataset.atriumNamed = "1";
      } else if (box.getAttribute("role") === "menu") {
        const first = (box.innerText || "").trim().split("\n")[0]; // the account menu opens with the user's name
        if (first) box.setAttribute("aria-label", first);
      }
    }
    for (const [selector, key, english] of ICON_BUTTONS) {
      for (const button of document.querySelectorAll(selector)) {
        if (button.getAttribute("aria-label")) continue;
        button.setAttribute("aria-label", word(key, english));
        button.dataset.atriumNamed = "1";
        // The attach button is marked role="presentation" by react-dropzone's wrapper: it is a button.
        if (button.getAttribute("role") === "presentation") button.setAttribute("role", "button");
      }
    }
  }

  // -- 7. signing out: one navigation ---------------------------------------------------------------------

  const pageFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    const method = String((init && init.method) || (input instanceof Request ? input.method : "GET")).toUpperCase();
    const url = new URL(input instanceof Request ? input.url : String(input), window.location.href);
    if (method === "GET" && url.pathname === `${rootPath}/user` && signedOut) return nobody(); // part 10
    const response = pageFetch(input, init);
    if (method !== "POST") return response;
    if (url.pathname === `${rootPath}/login`) { // signed in from this page: from now on the server says who
      return response.then((r) => {
        if (r.ok) signedOut = false;
        return r;
      });
    }
    if (url.pathname !== `${rootPath}/logout`) return response;
    return response.then((r) => {
      if (!r.ok) return r;
      window.location.replace(`${rootPath}/login`);
      return new Promise(() => {}); // the page is leaving: Chainlit's reload and route change never start
    });
  };

  // -- 8. why the last session ended, on the sign-in page ------------------------------------------------

  const ENDED = {
    session_signed_out: "You were signed out (in another tab or window). Sign in again to continue.",
    session_ended: "An administrator ended your sessions. Sign in again to continue.",
    session_expired: "Your session reached its maximum length. Sign in again to continue.",
  };

  function sessionNotice() {
    const form = document.querySelector("form");
    if (!form || !form.querySelector("input[type=password], button[type=submit]")) return;
    const match = document.cookie.match(/(?:^|;\s*)atrium_session_notice=([a-z_]+)/);
    if (!match || document.getElementById("atrium-session-notice")) return;
    const note = document.createElement("p");
    note.id = "atrium-session-notice";
    note.setAttribute("role", "status");
    note.className = "atrium-session-notice";
    note.textContent = ENDED[match[1]] || "Your session is no longer valid. Sign in again to continue.";
    form.prepend(note);
    document.cookie = `atrium_session_notice=; Path=${rootPath || "/"}; Max-Age=0; SameSite=Lax`;
  }

  // -- 9. one h1; the message box has a label -------------------------------------------------------------

  function landmarks() {
    const ANSWER_H1 = ".message-content h1:not([aria-level]), [data-step-type] h1:not([aria-level])";
    for (const heading of document.querySelectorAll(ANSWER_H1)) {
      heading.setAttribute("role", "heading");
      heading.setAttribute("aria-level", "2");
    }
    const own = document.getElementById("atrium-page-title");
    const others = [...document.querySelectorAll("h1:not([aria-level])")].filter((h) => h !== own);
    if (others.length && own) own.remove();
    if (!others.length) {
      const signIn = !document.getElementById("header") && document.querySelector("form input[type=password]");
      const title = signIn ? "Sign in to Atrium" : `Atrium — ${word("navigation.header.chat", "Chat")}`;
      const h1 = own || document.createElement("h1");
      if (!own) {
        h1.id = "atrium-page-title";
        h1.className = "atrium-sr-only";
        document.body.prepend(h1);
      }
      if (h1.textContent !== title) h1.textContent = title;
    }
    // Chainlit's assistant picker is a combobox with no name; its sidebar menus hold groups of items in <div>s
    // under a <ul> (axe: "list"), so they are announced as the groups they are, not as broken lists.
    const picker = document.getElementById("chat-profiles");
    if (picker && !picker.getAttribute("aria-label")) picker.setAttribute("aria-label", "Assistant");
    for (const list of document.querySelectorAll("ul[data-sidebar=menu]:not([role])")) {
      if ([...list.children].some((child) => !["LI", "SCRIPT", "TEMPLATE"].includes(child.tagName))) {
        list.setAttribute("role", "group");
      }
    }
    // The sign-in page's side picture is decoration, not an "Image" to announce.
    for (const img of document.querySelectorAll('img[src$="/favicon"][alt="Image"]')) img.alt = "";
    const input = document.getElementById("chat-input");
    if (input && !input.getAttribute("aria-label")) {
      input.setAttribute("aria-label", word("chat.input.placeholder", "Ask your department's assistant…"));
      input.dataset.atriumNamed = "1";
    }
  }

  // -- 10. the sign-in page: no 401 in the console -------------------------------------------------------

  let signedOut = (document.querySelector('meta[name="atrium-session"]') || {}).content === "none";
  let expected401 = 0; // Chainlit's reports of the 401s this page gave it, still to come

  function nobody() {
    expected401 += 1;
    return Promise.resolve(new Response(JSON.stringify({ detail: "Unauthorized" }), {
      status: 401, statusText: "Unauthorized", headers: { "Content-Type": "application/json" },
    }));
  }

  const consoleError = console.error.bind(console);
  console.error = (...args) => {
    const [error] = args;
    if (expected401 > 0 && args.length === 1 && error instanceof Error && error.status === 401) {
      expected401 -= 1; // Chainlit's report of the 401 given above: the sign-in page is where it belongs
      return;
    }
    consoleError(...args);
  };

  // -- 11. the shared header's navigation -------------------------------------------------------------------
  // The links every page of Atrium shows in its header (ui/templates/base.html), from /api/me's `pages`: the chat,
  // the studio for prompt editors, the console for tenant admins, the operations page for operators (the pages
  // decide again; this only saves typing an address). The account menu lists them too (the phone's header has no
  // room for them; Radix's menu moves only between its own items, so the header keeps them for the keyboard).

  let me = null;
  let meLoading = false;
  const MENU_WORDS = {"/chat": "Open the chat", "/studio": "Open the studio", "/console": "Open the console",
    "/admin": "Open the operations page"};

  function surfaces() {
    return ((me && me.pages) || []).filter((p) => p && typeof p.href === "string" && typeof p.label === "string")
      .map((p) => [p.label, p.href]);
  }

  function surfaceLinks() {
    const bar = document.getElementById("header");
    if (!bar) { me = null; return; }
    if (!me) {
      if (meLoading) return;
      meLoading = true;
      fetch("/api/me", { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : {}))
        .catch(() => ({}))
        .then((data) => { me = data; meLoading = false; surfaceLinks(); });
      return;
    }
    const links = surfaces();
    if (!links.length) return;
    if (!document.getElementById("atrium-nav")) {
      const nav = document.createElement("nav");
      nav.id = "atrium-nav";
      nav.setAttribute("aria-label", "Atrium");
      const list = document.createElement("ul");
      for (const [label, href] of links) {
        const item = document.createElement("li");
        const a = document.createElement("a");
        a.href = href;
        a.textContent = label;
        if (href === "/chat") a.setAttribute("aria-current", "page");
        item.appendChild(a);
        list.appendChild(item);
      }
      nav.appendChild(list);
      (bar.lastElementChild || bar).prepend(nav);
    }
    const away = links.filter(([, href]) => href !== "/chat"); // the menu leads elsewhere, not here
    for (const menu of document.querySelectorAll("[role=menu]")) {
      if (!away.length || menu.querySelector(".atrium-menu-link")) continue;
      const items = menu.querySelectorAll("[role=menuitem]");
      const last = items[items.length - 1];
      // Only the account menu, which ends with its sign-out item: not the theme menu, not a conversation's menu.
      if (!last || !/^(sign out|log ?out)$/i.test((last.textContent || "").trim())) continue;
      for (const [label, href] of away) {
        const a = document.createElement("a");
        a.setAttribute("role", "menuitem");
        a.className = `${last.className} atrium-menu-link`;
        a.href = href;
        a.textContent = MENU_WORDS[href] || `Open the ${label.toLowerCase()}`;
        last.before(a);
      }
    }
  }

  // -- 14. a conversation's menu from the keyboard -----------------------------------------------------------

  const MENU_TRIGGER = '[data-sidebar="menu-button"] > [id="thread-options"]';
  let menuRow = null; // the conversation button whose menu the keyboard opened

  function openFromKeyboard(event) {
    const row = event.currentTarget;
    if (event.target !== row) return; // (the keydown given to the trigger below passes through here too)
    const trigger = row.querySelector(':scope > [id="thread-options"]');
    if (!trigger || !["Enter", " ", "ArrowDown"].includes(event.key)) return;
    event.preventDefault(); // not the link's navigation: the menu
    event.stopPropagation();
    menuRow = row;
    // Radix's trigger opens on its own keydown (Enter, Space, ArrowDown) and moves the focus into the menu.
    trigger.dispatchEvent(new KeyboardEvent("keydown", { key: event.key, code: event.code, bubbles: true,
      cancelable: true }));
  }

  function conversationMenus() {
    for (const trigger of document.querySelectorAll(MENU_TRIGGER)) {
      const row = trigger.parentElement;
      if (trigger.hasAttribute("aria-haspopup")) trigger.removeAttribute("aria-haspopup");
      if (trigger.hasAttribute("aria-expanded")) trigger.removeAttribute("aria-expanded");
      if (!row.dataset.atriumMenu) {
        row.dataset.atriumMenu = "1";
        row.setAttribute("aria-haspopup", "menu");
        row.addEventListener("keydown", openFromKeyboard);
        row.addEventListener("keyup", (event) => { if (event.key === " ") event.preventDefault(); });
      }
      const open = trigger.getAttribute("data-state") === "open" ? "true" : "false";
      if (row.getAttribute("aria-expanded") !== open) row.setAttribute("aria-expanded", open);
    }
    if (menuRow && !document.querySelector("[role=menu]")) { // the menu closed: back where the keyboard was
      const row = menuRow;
      menuRow = null;
      if (row.isConnected && (!document.activeElement || document.activeElement === document.body)) row.focus();
    }
  }

  // -- 15. a question sent before the chat is ready is sent when it is ------------------------------------------

  const HELD_WORDS = "Connecting to the assistant… your message is sent as soon as the chat is ready.";
  // {box, text, path}: the question Enter was pressed for while Chainlit's composer could not send it
  let held = null;

  function sendButton() {
    return document.getElementById("chat-submit");
  }

  document.addEventListener("keydown", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLTextAreaElement) || box.id !== "chat-input") return;
    // Chainlit's own rule for "Enter sends" (MessageComposer/Input.tsx): Enter without Shift, outside an IME.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    const send = sendButton();
    // Ready (Chainlit sends it), empty (nothing to send), or an answer running (no send button): Chainlit's way.
    if (!send || !send.disabled || !box.value.trim()) return;
    held = { box, text: box.value, path: window.location.pathname };
    heldNote();
  }, true);

  document.addEventListener("input", (event) => {
    const box = event.target;
    if (!held || !(box instanceof HTMLTextAreaElement) || box.id !== "chat-input" || !event.isTrusted) return;
    if (box.value.trim()) held = { ...held, box, text: box.value }; // the user edits the held question
    else held = null; // ... or takes it back
    heldNote();
  }, true);

  // Chainlit's box is a React-controlled textarea: a value set through the element's own setter and announced
  // with an input event is what React reads as typing.
  function refill(box, text) {
    const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
    setter.call(box, text);
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  // The note is a live region that is there, empty, whenever the composer is (one created already holding its
  // words is not announced by every screen reader); it speaks while a question waits.
  function heldNote() {
    const composer = document.getElementById("message-composer");
    if (!composer) return;
    // (Not aria-busy on the composer: that would keep a screen reader from reading this note, which is inside it.)
    let note = document.getElementById("atrium-held");
    if (!note) {
      note = document.createElement("p");
      note.id = "atrium-held";
      note.className = "atrium-held";
      note.setAttribute("role", "status");
      composer.appendChild(note);
    }
    const words = held ? HELD_WORDS : "";
    if (note.textContent !== words) note.textContent = words;
  }

  function heldQuestion() {
    if (held) {
      const box = document.getElementById("chat-input");
      const send = sendButton();
      if (!document.getElementById("header") || window.location.pathname !== held.path) {
        held = null; // signed out, or gone to another conversation: the question was for the chat it was typed in
      } else if (box && box !== held.box) { // Chainlit redrew the box while the question waited: it gets it back
        held = { ...held, box };
        if (!box.value.trim()) refill(box, held.text); // sent on the send button's next change
      } else if (box && send && !send.disabled && box.value.trim()) {
        held = null;
        send.click(); // as Enter would: Chainlit's own submit, now that it sends
      }
    }
    heldNote();
  }

  // --------------------------------------------------------------------------------------------------------

  function update() {
    sources();
    toasts();
    rename();
    header();
    loginError();
    sessionNotice();
    names();
    landmarks();
    surfaceLinks();
    conversationMenus();
    dialogs();
    heldQuestion();
  }

  // (`disabled`: the send button becoming usable is what sends a held question, part 15.)
  new MutationObserver(update).observe(html, { childList: true, subtree: true, characterData: true,
    attributes: true, attributeFilter: ["disabled"] });
  update();
})();
