(function () {
  "use strict";
  // Data: {title, threshold, questions: [Q]}.  Q: id, q (question), a (reference
  // answer or null), s (status), r (reason), m (root MC value), c / n (root
  // correct / all completions), f (first errors), p (child-index paths to them),
  // x (costs), t (root node or null).  Node: x (text), v (MC value or null),
  // c / n (correct / all completions), t (1: ends a solution), d (its verdict),
  // w (1: wrong by the first-error rule), e (1: first error), k (children),
  // g / b (excerpt of a correct / incorrect completion).
  var data = JSON.parse(document.getElementById("prmsynth-data").textContent);
  var questions = data.questions;
  var PAGE = 200;
  var filtered = [], shown = 0, selected = -1;
  var byId = Object.create(null);
  questions.forEach(function (q, i) { if (!(q.id in byId)) byId[q.id] = i; });

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function colour(v) {
    if (v === null || v === undefined) return "#9e9e9e";
    var hue = Math.round(120 * Math.max(0, Math.min(1, v)));
    return "hsl(" + hue + ", 70%, 42%)";
  }
  function chip(v) {
    var node = el("span", "mc", v === null || v === undefined ? "\u2013" : v.toFixed(2));
    node.style.setProperty("background-color", colour(v));
    node.title = v === null || v === undefined ? "never sampled" : "MC value " + v;
    return node;
  }
  function counts(c, n) {
    var node = el("span", "counts");
    node.appendChild(el("span", "ok", "\u2713" + c));
    node.appendChild(document.createTextNode(" "));
    node.appendChild(el("span", "bad", "\u2717" + (n - c)));
    node.title = c + " of " + n + " completions from here reached the reference answer";
    return node;
  }
  function statusBadge(s) { return el("span", "status " + s, s); }

  // -- the question list -------------------------------------------------------
  function applyFilter() {
    var term = $("search").value.trim().toLowerCase();
    var status = $("status").value;
    var errorsOnly = $("errors-only").checked;
    filtered = [];
    for (var i = 0; i < questions.length; i++) {
      var q = questions[i];
      if (status && q.s !== status) continue;
      if (errorsOnly && !q.f) continue;
      if (term) {
        if (q._lower === undefined) q._lower = (q.id + "\n" + q.q).toLowerCase();
        if (q._lower.indexOf(term) < 0) continue;
      }
      filtered.push(i);
    }
    $("list").replaceChildren();
    shown = 0;
    showMore();
    $("count").textContent = filtered.length + " of " + questions.length + " questions";
  }
  function listItem(index) {
    var q = questions[index];
    var item = el("li");
    item.dataset.index = index;
    if (index === selected) item.className = "selected";
    var row = el("div", "row");
    row.appendChild(chip(q.m));
    row.appendChild(el("span", "qid", q.id));
    row.appendChild(statusBadge(q.s));
    if (q.f) {
      row.appendChild(el("span", "badge error", q.f > 1 ? q.f + " first errors" : "first error"));
    }
    item.appendChild(row);
    item.appendChild(el("div", "snippet", q.q.slice(0, 140)));
    return item;
  }
  function showMore() {
    var end = Math.min(filtered.length, shown + PAGE);
    var fragment = document.createDocumentFragment();
    for (; shown < end; shown++) fragment.appendChild(listItem(filtered[shown]));
    $("list").appendChild(fragment);
    var left = filtered.length - shown;
    $("more").hidden = left <= 0;
    $("more").textContent = "Show " + Math.min(PAGE, left) + " more (" + left + " left)";
  }

  // -- the tree ------------------------------------------------------------------
  function renderNode(node, depth) {
    var expandable = (node.k && node.k.length) || node.g || node.b;
    var wrap = el(expandable ? "details" : "div", "node");
    if (!expandable) wrap.classList.add("leaf");
    if (node.e) wrap.classList.add("first-error");
    if (node.w) wrap.classList.add("wrong");
    wrap.style.setProperty("--mc", colour(node.v));
    wrap._node = node;
    wrap._depth = depth;
    var head = el(expandable ? "summary" : "div", "head");
    head.appendChild(el("span", "toggle", expandable ? "\u25B6" : "\u00B7"));
    head.appendChild(el("span", "depth", "step " + depth));
    head.appendChild(chip(node.v));
    head.appendChild(counts(node.c, node.n));
    if (node.e) head.appendChild(el("span", "badge error", "first error"));
    if (node.t) {
      var right = node.d === "correct";
      head.appendChild(el("span", "badge " + (right ? "end-correct" : "end-wrong"),
        "end: " + (node.d || "?")));
    }
    if (node.k && node.k.length) {
      var branches = node.k.length > 1 ? " branches" : " branch";
      head.appendChild(el("span", "badge", node.k.length + branches));
    }
    head.appendChild(el("span", "text", node.x));
    wrap.appendChild(head);
    if (expandable) {
      wrap.addEventListener("toggle", function () { if (wrap.open) fill(wrap); });
    }
    return wrap;
  }
  function fill(wrap) {
    // Children are drawn the first time a node opens.
    if (wrap._filled) return;
    wrap._filled = true;
    var node = wrap._node;
    var body = el("div", "body");
    if (node.g) {
      var good = el("div", "excerpt");
      good.appendChild(el("b", null, "\u2713 a correct completion: "));
      good.appendChild(document.createTextNode(node.g));
      body.appendChild(good);
    }
    if (node.b) {
      var bad = el("div", "excerpt");
      bad.appendChild(el("b", null, "\u2717 an incorrect completion: "));
      bad.appendChild(document.createTextNode(node.b));
      body.appendChild(bad);
    }
    wrap.appendChild(body);
    var kids = el("div", "kids");
    (node.k || []).forEach(function (child) {
      kids.appendChild(renderNode(child, wrap._depth + 1));
    });
    wrap.appendChild(kids);
    wrap._kids = kids;
  }
  function open(wrap) {
    if (wrap.tagName !== "DETAILS") return;
    fill(wrap);
    wrap.open = true;
  }
  function expandAll(container, budget) {
    var stack = Array.prototype.slice.call(container.children);
    while (stack.length && budget > 0) {
      var wrap = stack.shift();
      if (wrap.tagName !== "DETAILS") continue;
      open(wrap);
      budget--;
      Array.prototype.push.apply(stack, Array.prototype.slice.call(wrap._kids.children));
    }
  }
  function reveal(path) {
    var container = $("tree"), wrap = null;
    for (var i = 0; i < path.length; i++) {
      wrap = container.children[path[i]];
      if (!wrap) return;
      if (i < path.length - 1) { open(wrap); container = wrap._kids; }
    }
    if (!wrap) return;
    wrap.scrollIntoView({block: "center"});
    wrap.classList.remove("flash");
    void wrap.offsetWidth;
    wrap.classList.add("flash");
  }

  // -- the selected question -----------------------------------------------------
  function fact(list, term, value) {
    list.appendChild(el("dt", null, term));
    var dd = el("dd");
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = value;
    list.appendChild(dd);
    return dd;
  }
  function select(index) {
    var q = questions[index];
    if (!q) return;
    selected = index;
    Array.prototype.forEach.call($("list").children, function (item) {
      item.classList.toggle("selected", Number(item.dataset.index) === index);
    });
    var detail = $("detail");
    detail.replaceChildren();
    var title = el("h2");
    title.appendChild(el("span", null, "Question " + q.id));
    title.appendChild(statusBadge(q.s));
    detail.appendChild(title);
    detail.appendChild(el("p", "question", q.q));
    var facts = el("dl", "facts");
    fact(facts, "Reference answer", q.a === null ? "(not recorded)" : q.a).classList.add("answer");
    if (q.r) fact(facts, "Reason", q.r);
    var root = el("span");
    root.appendChild(chip(q.m));
    root.appendChild(document.createTextNode(" "));
    root.appendChild(counts(q.c, q.n));
    root.appendChild(document.createTextNode(" of " + q.n + " completions from the question"));
    fact(facts, "Question MC value", root);
    var rule = "MC value \u2264 " + data.threshold;
    if (q.t) {
      if (q.p.length) {
        var where = el("span");
        var note = q.p.length + " (" + rule + ", nothing wrong above it) ";
        where.appendChild(document.createTextNode(note));
        q.p.forEach(function (path) {
          var button = el("button", "goto", "step " + path.length);
          button.title = "open the path to this step";
          button.addEventListener("click", function () { reveal(path); });
          where.appendChild(button);
          where.appendChild(document.createTextNode(" "));
        });
        fact(facts, "First error", where);
      } else {
        fact(facts, "First error", "none found (" + rule + ")");
      }
    }
    if (q.x) {
      var parts = [];
      if (q.x.completions !== undefined) parts.push(q.x.completions + " completions");
      if (q.x.tokens !== undefined) parts.push(q.x.tokens.toLocaleString() + " tokens");
      if (q.x.cost !== undefined) parts.push("$" + Number(q.x.cost).toFixed(4));
      if (parts.length) fact(facts, "Spent", parts.join(", "));
    }
    detail.appendChild(facts);
    var tree = el("div", "tree");
    tree.id = "tree";
    if (q.t && q.t.k && q.t.k.length) {
      var toolbar = el("div", "toolbar");
      var expand = el("button", null, "Expand all");
      expand.addEventListener("click", function () { expandAll(tree, 2000); });
      var collapse = el("button", null, "Collapse all");
      collapse.addEventListener("click", function () {
        tree.querySelectorAll("details[open]").forEach(function (d) { d.open = false; });
      });
      toolbar.appendChild(expand);
      toolbar.appendChild(collapse);
      if (q.p.length) {
        var errors = el("button", null, "Show first errors");
        errors.addEventListener("click", function () { q.p.forEach(reveal); });
        toolbar.appendChild(errors);
      }
      detail.appendChild(toolbar);
      q.t.k.forEach(function (child) { tree.appendChild(renderNode(child, 1)); });
    } else {
      var why = q.t ? "No steps in this tree." : "No tree: the question was " + q.s + ".";
      tree.appendChild(el("p", "empty", why));
    }
    detail.appendChild(tree);
    detail.scrollTop = 0;
    try { history.replaceState(null, "", "#" + encodeURIComponent(q.id)); } catch (ignored) {}
  }

  // -- start ---------------------------------------------------------------------
  document.title = data.title;
  $("title").textContent = data.title;
  var tally = {};
  questions.forEach(function (q) { tally[q.s] = (tally[q.s] || 0) + 1; });
  $("totals").textContent = questions.length + " questions: " + Object.keys(tally).sort().map(
    function (s) { return tally[s] + " " + s; }).join(", ");
  $("rule").textContent = "first error: MC \u2264 " + data.threshold;
  Object.keys(tally).sort().forEach(function (s) {
    $("status").appendChild(el("option", null, s));
  });
  var timer = null;
  $("search").addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(applyFilter, 120);
  });
  $("status").addEventListener("change", applyFilter);
  $("errors-only").addEventListener("change", applyFilter);
  $("more").addEventListener("click", showMore);
  $("list").addEventListener("click", function (event) {
    var item = event.target.closest("li");
    if (item) select(Number(item.dataset.index));
  });
  document.addEventListener("keydown", function (event) {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    var step = event.key === "ArrowDown" || event.key === "j" ? 1
      : event.key === "ArrowUp" || event.key === "k" ? -1 : 0;
    if (!step || !filtered.length) return;
    var at = filtered.indexOf(selected) + step;
    at = Math.max(0, Math.min(filtered.length - 1, at));
    while (at >= shown) showMore();
    select(filtered[at]);
    var item = $("list").children[at];
    if (item) item.scrollIntoView({block: "nearest"});
    event.preventDefault();
  });
  applyFilter();
  var wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted in byId) select(byId[wanted]);
  else if (filtered.length) select(filtered[0]);
  else $("detail").appendChild(el("p", "empty", "No questions in this file."));
  document.body.dataset.ready = "1";
})();
