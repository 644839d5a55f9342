// The reference shop's only script of its own (served from 'self'; no inline script anywhere).
// The rules editor: diagnostics as you type, from the JSON endpoint, each one at its place.
(function () {
  "use strict";

  function caretUnder(source, column) {
    var prefix = source.slice(0, Math.max(column - 1, 0));
    return prefix.replace(/[^\t]/g, " ") + "^";
  }

  function offsetOf(text, line, column) {
    var lines = text.split("\n");
    var offset = 0;
    for (var k = 0; k < line - 1 && k < lines.length; k++) {
      offset += lines[k].length + 1;
    }
    return offset + column - 1;
  }

  function show(box, diagnostics, textarea) {
    box.replaceChildren();
    if (diagnostics.length === 0) {
      var ok = document.createElement("p");
      ok.className = "ok";
      ok.textContent = "No problems.";
      box.appendChild(ok);
      return;
    }
    diagnostics.forEach(function (d) {
      var item = document.createElement("div");
      item.className = "diagnostic " + d.severity;
      item.dataset.line = d.line;
      item.dataset.column = d.column;
      var where = document.createElement("strong");
      where.textContent = d.line + ":" + d.column;
      item.appendChild(where);
      item.appendChild(document.createTextNode(" " + (d.code || "") + " " + d.message));
      var pre = document.createElement("pre");
      pre.className = "mono";
      pre.textContent = d.source_line + "\n" + caretUnder(d.source_line, d.column);
      item.appendChild(pre);
      if (d.suggestion) {
        var hint = document.createElement("p");
        hint.className = "hint";
        hint.textContent = d.suggestion;
        item.appendChild(hint);
      }
      box.appendChild(item);
    });
  }

  function jumpTo(textarea, line, column) {
    var at = offsetOf(textarea.value, line, column);
    textarea.focus();
    textarea.setSelectionRange(at, at);
  }

  function editor(form) {
    var textarea = form.querySelector("textarea[name=text]");
    var box = document.getElementById("diagnostics");
    var token = form.querySelector("input[name=csrf_token]").value;
    var url = form.dataset.diagnosticsUrl;
    var timer = null;
    var asked = 0;

    function check() {
      var mine = ++asked;
      var body = new URLSearchParams();
      body.set("text", textarea.value);
      fetch(url, {
        method: "POST",
        headers: { "X-CSRF-Token": token },
        body: body,
        credentials: "same-origin",
      })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (mine === asked) {
            show(box, answer.diagnostics, textarea);
            form.dataset.checked = String(mine);
          }
        });
    }

    textarea.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 250);
    });
    box.addEventListener("click", function (event) {
      var item = event.target.closest(".diagnostic");
      if (item) {
        jumpTo(textarea, Number(item.dataset.line), Number(item.dataset.column));
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("rules-form");
    if (form) {
      editor(form);
    }
  });
})();
