/* Atrium Prompt Studio: render a version diff (from GET .../diff or POST .../preview) side by side or inline. */
window.StudioDiff = (function () {
  "use strict";
  var D = window.StudioDOM, h = D.h, clear = D.clear, fmt = D.fmt;
  var SETTING_NAMES = {description: "Description", tier: "Model tier", model: "Model", temperature: "Creativity (temperature)",
    max_tokens: "Maximum answer length", signoff: "Sign-off line", variables: "Variables",
    answer_mode: "Answers to knowledge questions", grounding_check: "Grounding check"};

  // opts: {title, left, right, hint, layout: "split" | "inline"}
  function render(panel, diff, opts) {
    var title = opts.title, leftName = opts.left, rightName = opts.right, hint = opts.hint, layout = opts.layout || "split";
    clear(panel);
    panel.appendChild(h("div", {class: "diff-head"}, h("h3", {text: title}), headline(diff)));
    if (hint) panel.appendChild(h("p", {class: "muted small", text: hint}));
    // Past the server's work budget for matching lines, the changed part comes as one replaced block.
    if (diff.line_diff === "block") panel.appendChild(h("p", {class: "muted small diff-block-note",
      text: "These versions differ too much to match line by line: the changed part is shown as removed and added whole."}));
    if (diff.identical) { panel.appendChild(h("div", {class: "empty-state", text: "These two are identical."})); return; }
    if (diff.settings.length) {
      var t = h("table", {class: "table diff-settings"}, h("thead", null, h("tr", null, h("th", {text: "Setting"}), h("th", {text: leftName}), h("th", {text: rightName}))));
      var tb = h("tbody");
      diff.settings.forEach(function (s) {
        tb.appendChild(h("tr", {"data-field": s.field}, h("td", {text: SETTING_NAMES[s.field] || s.field}),
          h("td", {text: fmt(s.from)}), h("td", {text: fmt(s.to)})));
      });
      t.appendChild(tb); panel.appendChild(h("div", {class: "table-scroll diff-settings-wrap"}, t));
    }
    var table = h("table", {class: "diff " + layout, "aria-label": "Text differences"});
    var body = h("tbody");
    diff.rows.forEach(function (row) {
      if (layout === "split") {
        body.appendChild(h("tr", {class: row.op},
          h("td", {class: "no", text: row.left_no || ""}),
          h("td", {class: "l" + (row.left === null ? " empty" : ""), text: row.left === null ? "" : row.left}),
          h("td", {class: "no", text: row.right_no || ""}),
          h("td", {class: "r" + (row.right === null ? " empty" : ""), text: row.right === null ? "" : row.right})));
      } else {
        if (row.op === "equal") body.appendChild(inlineRow("equal", " ", row.left_no, row.right_no, row.left));
        else {
          if (row.left !== null) body.appendChild(inlineRow("delete", "−", row.left_no, "", row.left));
          if (row.right !== null) body.appendChild(inlineRow("insert", "+", "", row.right_no, row.right));
        }
      }
    });
    table.appendChild(body);
    if (diff.rows.length) panel.appendChild(table);
  }
  // "+3 −1 lines, 1 setting changed" / "2 settings changed": a change of settings only is not "+0 −0 lines",
  // which reads as "nothing changed".
  function headline(diff) {
    var n = diff.settings.length, a = diff.stats.added, r = diff.stats.removed, parts = [];
    if (diff.identical) return h("span", {class: "diff-stats", text: "no changes"});
    if (a || r || !n) parts.push(h("span", {class: "add", text: "+" + a}), " ", h("span", {class: "del", text: "−" + r}), " lines");
    if (n) parts.push((parts.length ? ", " : "") + n + (n === 1 ? " setting" : " settings") + " changed");
    return h("span", {class: "diff-stats"}, parts);
  }
  function inlineRow(op, sign, a, b, text) {
    return h("tr", {class: op}, h("td", {class: "no", text: a || ""}), h("td", {class: "no", text: b || ""}),
      h("td", {class: "sign", text: sign}), h("td", {class: "line", text: text}));
  }
  return {render: render};
})();
