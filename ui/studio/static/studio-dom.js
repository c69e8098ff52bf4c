/* Atrium Prompt Studio: small DOM helpers shared by the studio scripts (no framework, no CDN). */
window.StudioDOM = (function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") el.textContent = v;
      else if (k === "class") el.className = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) el.appendChild(typeof x === "string" ? document.createTextNode(x) : x); });
      else el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return el;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  var toastTimer = null;
  function toast(msg, bad) {
    var t = $("toast"); t.textContent = msg; t.className = "toast" + (bad ? " bad" : ""); t.hidden = false;
    clearTimeout(toastTimer); toastTimer = setTimeout(function () { t.hidden = true; }, bad ? 7000 : 3500);
  }
  function busy(btn, on) { btn.disabled = on; btn.classList.toggle("busy", on); }
  function ago(iso) {
    if (!iso || iso === "draft") return "";
    var d = new Date(iso); if (isNaN(d)) return iso;
    var s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 60) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    if (s < 172800) return "yesterday";
    return d.toLocaleDateString(undefined, {year: "numeric", month: "short", day: "numeric"});
  }
  function fullDate(iso) { var d = new Date(iso); return isNaN(d) ? (iso || "") : d.toLocaleString(); }
  function confirmBox(title, text, okLabel) {
    var dlg = $("confirm");
    $("confirm-title").textContent = title; $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel || "Confirm";
    return new Promise(function (resolve) {
      dlg.addEventListener("close", function onClose() { dlg.removeEventListener("close", onClose); resolve(dlg.returnValue === "ok"); });
      dlg.returnValue = ""; dlg.showModal();
    });
  }

  function fmt(v) {
    if (v === null || v === undefined || v === "") return "—";
    return Array.isArray(v) ? v.join(", ") : String(v);
  }
  return {$: $, h: h, clear: clear, toast: toast, busy: busy, ago: ago, fullDate: fullDate, confirmBox: confirmBox, fmt: fmt};
})();
