/* Atrium Prompt Studio: answers rendered as the chat renders them (Markdown: paragraphs, emphasis, code, lists,
 * headings, quotes, tables, links), so an editor sees what users will see instead of raw `**bold**`.
 *
 * Safe by construction: the renderer never parses HTML and never assigns innerHTML. Every node is made with
 * createElement and every piece of text goes in through a text node, so `<img onerror=…>` in an answer (a model
 * can be talked into writing anything, and a retrieved document can contain anything) shows as the literal text it
 * is. Links keep only http(s), mailto and same-site targets; anything else (javascript:, data:) stays plain text.
 * No CDN and no third-party code: the whole renderer is this file, served by the app with the studio.
 */
window.StudioMarkdown = (function () {
  "use strict";

  function el(tag, cls) { var e = document.createElement(tag); if (cls) e.className = cls; return e; }
  function text(s) { return document.createTextNode(s); }

  function safeHref(url) {
    var u = url.trim();
    if (/^(https?:|mailto:)/i.test(u)) return u;
    // Same site; never protocol-relative: "//evil", nor "/\evil", which browsers read as "//evil" too.
    if (/^\/(?![\/\\])/.test(u) || /^#/.test(u)) return u;
    return null;
  }

  // Inline: the earliest of these wins at each position; their inner text is rendered again (bold in a link…).
  var INLINE = [
    {re: /`([^`\n]+)`/, make: function (m) { var c = el("code"); c.appendChild(text(m[1])); return c; }},
    {re: /\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__/, make: function (m) { return wrap("strong", m[1] || m[2]); }},
    {re: /~~(?=\S)([\s\S]*?\S)~~/, make: function (m) { return wrap("del", m[1]); }},
    {re: /\*(?=[^\s*])([^*\n]*?[^\s*])\*|(^|[^\w])_(?=\S)([^_\n]*?\S)_(?!\w)/, make: function (m) {
      if (m[1] !== undefined) return wrap("em", m[1]);
      var f = document.createDocumentFragment();
      if (m[2]) f.appendChild(text(m[2]));
      f.appendChild(wrap("em", m[3]));
      return f;
    }},
    {re: /\[([^\]\n]+)\]\(([^()\s]+)\)/, make: function (m) {
      var href = safeHref(m[2]);
      if (!href) return text(m[0]);
      var a = el("a"); a.href = href; a.rel = "noopener noreferrer"; a.target = "_blank";
      inline(a, m[1]);
      return a;
    }},
  ];
  function wrap(tag, s) { var e = el(tag); inline(e, s); return e; }

  function inline(parent, s) {
    while (s) {
      var best = null, bestRule = null;
      for (var i = 0; i < INLINE.length; i++) {
        var m = INLINE[i].re.exec(s);
        if (m && (!best || m.index < best.index)) { best = m; bestRule = INLINE[i]; }
      }
      if (!best) { appendLines(parent, s); return; }
      if (best.index) appendLines(parent, s.slice(0, best.index));
      parent.appendChild(bestRule.make(best));
      s = s.slice(best.index + best[0].length);
    }
  }
  // A single line break inside a paragraph stays a line break (the chat shows answers' lines as written).
  function appendLines(parent, s) {
    s.split("\n").forEach(function (line, i) {
      if (i) parent.appendChild(el("br"));
      if (line) parent.appendChild(text(line));
    });
  }

  var FENCE = /^\s*(```|~~~)/, HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/, HR = /^\s*([-*_])(\s*\1){2,}\s*$/;
  var BULLET = /^(\s*)([-*+])\s+(.*)$/, ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/, QUOTE = /^\s*>\s?(.*)$/;
  var TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function cells(line) {
    var t = line.trim().replace(/^\|/, "").replace(/\|$/, "");
    return t.split("|").map(function (c) { return c.trim(); });
  }

  function blocks(parent, lines) {
    var i = 0;
    while (i < lines.length) {
      var line = lines[i], m;
      if (!line.trim()) { i++; continue; }
      if ((m = FENCE.exec(line))) {
        var fence = m[1], code = [];
        i++;
        while (i < lines.length && lines[i].trim().indexOf(fence) !== 0) code.push(lines[i++]);
        i++;  // the closing fence (or the end)
        var pre = el("pre"), c = el("code");
        c.appendChild(text(code.join("\n"))); pre.appendChild(c); parent.appendChild(pre);
        continue;
      }
      if ((m = HEADING.exec(line))) {
        // Inside an answer a heading is a sub-heading of the card it sits in: h4–h6, never the page's h1.
        var hd = el("h" + Math.min(6, m[1].length + 3), "md-h"); inline(hd, m[2]); parent.appendChild(hd);
        i++; continue;
      }
      if (HR.test(line)) { parent.appendChild(el("hr")); i++; continue; }
      if (line.indexOf("|") >= 0 && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].indexOf("-") >= 0) {
        var table = el("table", "md-table"), head = el("thead"), tr = el("tr");
        cells(line).forEach(function (cl) { var th = el("th"); th.scope = "col"; inline(th, cl); tr.appendChild(th); });
        head.appendChild(tr); table.appendChild(head);
        var body = el("tbody");
        i += 2;
        while (i < lines.length && lines[i].trim() && lines[i].indexOf("|") >= 0) {
          var row = el("tr");
          cells(lines[i]).forEach(function (cl) { var td = el("td"); inline(td, cl); row.appendChild(td); });
          body.appendChild(row); i++;
        }
        table.appendChild(body);
        var scroll = el("div", "md-table-scroll"); scroll.appendChild(table); parent.appendChild(scroll);
        continue;
      }
      if (QUOTE.test(line)) {
        var quoted = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) { quoted.push(m[1]); i++; }
        var bq = el("blockquote"); blocks(bq, quoted); parent.appendChild(bq);
        continue;
      }
      if (BULLET.test(line) || ORDERED.test(line)) { i = list(parent, lines, i); continue; }
      var para = [];
      while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) &&
             !QUOTE.test(lines[i]) && !(para.length && (BULLET.test(lines[i]) || ORDERED.test(lines[i])))) {
        para.push(lines[i].replace(/^\s+/, "")); i++;
      }
      var p = el("p"); inline(p, para.join("\n")); parent.appendChild(p);
    }
  }

  // One list (bulleted or numbered) from line i; more-indented items nest. Returns the next line's index.
  function list(parent, lines, i) {
    var first = BULLET.exec(lines[i]) || ORDERED.exec(lines[i]);
    var ordered = !BULLET.test(lines[i]), indent = first[1].length;
    var ul = el(ordered ? "ol" : "ul");
    if (ordered && +first[2] !== 1) ul.start = +first[2];
    var li = null;
    while (i < lines.length) {
      var line = lines[i];
      if (!line.trim()) {
        // A blank line ends the list unless the next line continues it.
        var next = lines[i + 1];
        if (next && (BULLET.test(next) || ORDERED.test(next) || /^\s{2,}\S/.test(next))) { i++; continue; }
        break;
      }
      var m = BULLET.exec(line) || ORDERED.exec(line);
      if (m && m[1].length > indent && li) { i = list(li, lines, i); continue; }
      if (m && m[1].length < indent) break;
      if (m) {
        if (BULLET.test(line) === ordered) break;  // the other kind of list starts
        li = el("li"); inline(li, m[3]); ul.appendChild(li); i++;
        continue;
      }
      if (li && /^\s+\S/.test(line)) { li.appendChild(el("br")); inline(li, line.trim()); i++; continue; }
      break;
    }
    parent.appendChild(ul);
    return i;
  }

  // render(container, markdown): replaces the container's children with the rendered answer.
  function render(container, source) {
    while (container.firstChild) container.removeChild(container.firstChild);
    blocks(container, String(source || "").replace(/\r\n?/g, "\n").split("\n"));
    return container;
  }
  return {render: render, safeHref: safeHref};
})();
