"""A self-contained HTML viewer of reasoning trees: ``prmsynth view``.

`render_html` turns trees into one HTML file that needs nothing else:
no network, no CDN, no external file.  The trees are embedded as compact JSON
in a ``<script type="application/json">`` element (every ``<``, ``>`` and
``&`` escaped, so no text can close the element) and drawn by a small
vanilla-JS script in the same file.  A Content-Security-Policy allows only
that script and that style sheet (by their hashes) and no fetch of any kind.

Model text is untrusted: the script writes every text with ``textContent``,
never ``innerHTML``.  Only the selected question's tree is drawn, and a
node's children only when it is first opened, so a file of a few thousand
questions stays fast.

Per node the file keeps the step text, the MC value, the counts of correct
and incorrect completions, whether the step ends a solution (and its
verdict), whether the first-error rule judges it wrong, and at most one
correct and one incorrect completion, cut to ``excerpt_chars``; full rollout
texts stay in ``trees.jsonl``.

**The first error** is marked where the binary search placed it: a step
judged wrong by the first-error rule (``SearchSettings.is_error``: MC value
``<= first_error_threshold``) with no wrong step above it on its path.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prmsynth._seeds import InputError
from prmsynth._tree import ReasoningTree

DEFAULT_EXCERPT_CHARS = 160
"""Longest completion excerpt kept per node (one correct, one incorrect)."""

_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

_STYLE = """
:root { --line: #d9dde3; --muted: #5f6b7a; --bg: #f6f7f9; --accent: #2451b7; }
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2330; background: var(--bg); display: flex; flex-direction: column; }
header { display: flex; align-items: center; gap: 16px; flex-wrap: wrap;
  padding: 8px 14px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 16px; margin: 0; }
#totals { color: var(--muted); }
.legend { display: flex; align-items: center; gap: 6px; margin-left: auto;
  color: var(--muted); font-size: 12px; }
.scale { width: 120px; height: 10px; border-radius: 3px;
  background: linear-gradient(90deg, hsl(0,70%,42%), hsl(60,70%,42%), hsl(120,70%,42%)); }
.swatch { width: 12px; height: 10px; border-radius: 3px; background: #9e9e9e; }
main { flex: 1; display: grid; grid-template-columns: minmax(260px, 360px) 1fr; min-height: 0; }
#side { display: flex; flex-direction: column; border-right: 1px solid var(--line);
  background: #fff; min-height: 0; }
.filters { padding: 8px; display: grid; gap: 6px; border-bottom: 1px solid var(--line); }
.filters input[type=search], .filters select { width: 100%; padding: 5px 7px; font: inherit;
  border: 1px solid var(--line); border-radius: 4px; }
.filters label { color: var(--muted); font-size: 12px; }
#count { color: var(--muted); font-size: 12px; }
#list { list-style: none; margin: 0; padding: 0; overflow: auto; flex: 1; }
#list li { padding: 6px 10px; border-bottom: 1px solid #eef0f3; cursor: pointer; }
#list li:hover { background: #f0f4ff; }
#list li.selected { background: #dfe8ff; }
#list .row { display: flex; align-items: center; gap: 6px; }
#list .qid { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#list .snippet { color: var(--muted); font-size: 12px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
#more { margin: 8px; }
#detail { overflow: auto; padding: 14px 18px; min-height: 0; }
#detail h2 { font-size: 17px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; }
.question { white-space: pre-wrap; background: #fff; border: 1px solid var(--line);
  border-radius: 6px; padding: 10px 12px; margin: 0 0 10px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0 0 10px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
.answer { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; }
.toolbar { display: flex; gap: 6px; margin: 8px 0; flex-wrap: wrap; }
button { font: inherit; font-size: 12px; padding: 3px 9px; border: 1px solid var(--line);
  border-radius: 4px; background: #fff; cursor: pointer; }
button:hover { border-color: var(--accent); }
.mc { display: inline-block; min-width: 38px; padding: 0 5px; border-radius: 3px; color: #fff;
  font: 600 12px/18px ui-monospace, SFMono-Regular, Menlo, monospace; text-align: center; }
.status { font-size: 11px; padding: 0 6px; border-radius: 9px; background: #e8eaee;
  color: #333; font-weight: 500; }
.status.kept { background: #dff3e4; color: #17602c; }
.status.skipped { background: #fff1d6; color: #7a5200; }
.status.failed { background: #fbe0e0; color: #8c1d1d; }
.badge { font-size: 11px; padding: 0 6px; border-radius: 9px; border: 1px solid var(--line);
  color: var(--muted); white-space: nowrap; }
.badge.error { background: #b3261e; border-color: #b3261e; color: #fff; font-weight: 600; }
.badge.end-correct { border-color: #2e7d32; color: #2e7d32; }
.badge.end-wrong { border-color: #b3261e; color: #b3261e; }
.counts { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; white-space: nowrap; }
.counts .ok { color: #2e7d32; }
.counts .bad { color: #b3261e; }
.tree, .kids { margin: 0; padding: 0; }
.kids { margin-left: 18px; border-left: 1px dashed var(--line); padding-left: 8px; }
.node { margin: 4px 0; background: #fff; border: 1px solid var(--line);
  border-left: 5px solid var(--mc, #9e9e9e); border-radius: 5px; }
.node.first-error { box-shadow: 0 0 0 2px #b3261e; }
.node.flash { animation: flash 1.2s ease-out 1; }
@keyframes flash { from { background: #ffe3a3; } to { background: #fff; } }
.head { display: flex; gap: 8px; align-items: baseline; padding: 5px 8px; list-style: none; }
summary.head { cursor: pointer; }
summary.head::-webkit-details-marker { display: none; }
.toggle { width: 12px; color: var(--muted); flex: none; }
details[open] > summary .toggle { transform: rotate(90deg); display: inline-block; }
.depth { color: var(--muted); font-size: 11px; white-space: nowrap; flex: none; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; flex: 1; }
.body { padding: 0 8px 6px 28px; }
.excerpt { color: var(--muted); font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere;
  margin: 2px 0; }
.excerpt b { font-weight: 600; }
.empty { color: var(--muted); font-style: italic; }
"""

_SCRIPT = r"""
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
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="prmsynth view">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1 id="title">{title}</h1>
<span id="totals"></span>
<span class="legend"><span>MC 0</span><span class="scale"></span><span>1</span>
<span class="swatch"></span><span>never sampled</span><span id="rule"></span></span>
</header>
<main>
<nav id="side">
<div class="filters">
<input type="search" id="search" placeholder="Search ids and questions" aria-label="search">
<select id="status" aria-label="status"><option value="">every status</option></select>
<label><input type="checkbox" id="errors-only"> only questions with a first error</label>
<span id="count"></span>
</div>
<ul id="list"></ul>
<button id="more" hidden></button>
</nav>
<section id="detail"></section>
</main>
<script type="application/json" id="prmsynth-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _content_security_policy() -> str:
    # Nothing may be fetched; only this file's own script and style run.
    return (
        "default-src 'none'; "
        f"script-src {_source_hash(_SCRIPT)}; "
        f"style-src {_source_hash(_STYLE)}; "
        "base-uri 'none'; form-action 'none'"
    )


def embed_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element.

    Every ``<``, ``>`` and ``&`` becomes a ``\\u`` escape (which JSON readers
    turn back), so no text can close the element or open a comment.

    >>> embed_json({"text": "</script><script>alert(1)</script>"})
    '{"text":"\\\\u003c/script\\\\u003e\\\\u003cscript\\\\u003ealert(1)\\\\u003c/script\\\\u003e"}'
    >>> json.loads(embed_json({"text": "a < b & c"}))
    {'text': 'a < b & c'}
    """
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(_JSON_ESCAPES)


def _excerpt(rollouts: list[dict[str, Any]], limit: int) -> str | None:
    if not rollouts or limit <= 0:
        return None
    text = " ".join(str(rollouts[0].get("text", "")).split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _compact_node(
    record: dict[str, Any],
    *,
    is_error: Callable[[float | None], bool],
    excerpt_chars: int,
    wrong_above: bool,
    path: list[int],
    first_errors: list[list[int]],
    is_root: bool = False,
) -> dict[str, Any]:
    mc_value = record.get("mc_value")
    node: dict[str, Any] = {
        "x": record.get("text", ""),
        "v": None if mc_value is None else round(float(mc_value), 4),
        "c": int(record.get("n_correct", 0)),
        "n": int(record.get("n_rollouts", 0)),
    }
    if record.get("terminal"):
        node["t"] = 1
        node["d"] = record.get("verdict")
    wrong = not is_root and is_error(mc_value)
    if wrong:
        node["w"] = 1
        if not wrong_above:
            node["e"] = 1
            first_errors.append(list(path))
    good = _excerpt(record.get("correct_rollouts") or [], excerpt_chars)
    bad = _excerpt(record.get("incorrect_rollouts") or [], excerpt_chars)
    if good:
        node["g"] = good
    if bad:
        node["b"] = bad
    children = record.get("children") or []
    if children:
        node["k"] = [
            _compact_node(
                child,
                is_error=is_error,
                excerpt_chars=excerpt_chars,
                wrong_above=wrong_above or wrong,
                path=[*path, index],
                first_errors=first_errors,
            )
            for index, child in enumerate(children)
        ]
    return node


def compact_question(
    record: dict[str, Any],
    *,
    first_error_threshold: float = 0.0,
    excerpt_chars: int = DEFAULT_EXCERPT_CHARS,
) -> dict[str, Any]:
    """The viewer's compact form of one tree record (a ``trees.jsonl`` line) or
    of a ``skipped.jsonl`` line (a question with no tree).

    The root is the question, never a step, so it is never a first error.

    >>> from prmsynth import Question, ReasoningTree, Rollout, Verdict
    >>> from prmsynth.export._serialize import tree_to_dict
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> right, wrong = tree.add_steps(tree.root, ["2 + 3 = 5."])[0], tree.add_step(0, "2 + 3 = 6.")
    >>> tree.mark_terminal(right, Verdict(status="correct"))
    >>> bad = Rollout(text="So 6.", steps=("So 6.",), verdict=Verdict(status="incorrect"))
    >>> tree.record_rollouts(wrong, [bad])
    >>> question = compact_question(tree_to_dict(tree))
    >>> question["p"], question["t"]["k"][1]
    ([[1]], {'x': '2 + 3 = 6.', 'v': 0.0, 'c': 0, 'n': 1, 'w': 1, 'e': 1, 'b': 'So 6.'})
    """
    from prmsynth._values import SearchSettings

    # the first-error rule of the search itself (ValueError for a bad threshold)
    is_error = SearchSettings(first_error_threshold=first_error_threshold).is_error
    first_errors: list[list[int]] = []
    steps = record.get("reasoning_steps")
    root = None
    if isinstance(steps, dict):
        root = _compact_node(
            steps,
            is_error=is_error,
            excerpt_chars=excerpt_chars,
            wrong_above=False,
            path=[],
            first_errors=first_errors,
            is_root=True,
        )
    if root is not None:
        mc_value, n_correct, n_rollouts = root["v"], root["c"], root["n"]
    else:
        n_correct = int(record.get("n_correct") or 0)
        n_rollouts = int(record.get("n_rollouts") or 0)
        mc_value = round(n_correct / n_rollouts, 4) if n_rollouts else None
    answer = record.get("final_answer")
    question: dict[str, Any] = {
        "id": str(record.get("question_id", "")),
        "q": str(record.get("question", "")),
        "a": None if answer is None else str(answer),
        "s": str(record.get("status") or ("kept" if root is not None else "unknown")),
        "r": record.get("reason"),
        "m": mc_value,
        "c": n_correct,
        "n": n_rollouts,
        "f": len(first_errors),
        "p": first_errors,
        "t": root,
    }
    spent = {}
    if "n_completions" in record:
        spent["completions"] = record["n_completions"]
    if "prompt_tokens" in record or "completion_tokens" in record:
        spent["tokens"] = int(record.get("prompt_tokens") or 0) + int(
            record.get("completion_tokens") or 0
        )
    if "cost" in record:
        spent["cost"] = record["cost"]
    if spent:
        question["x"] = spent
    return question


def render_html(
    trees: Iterable[ReasoningTree | dict[str, Any]],
    *,
    title: str,
    first_error_threshold: float = 0.0,
    excerpt_chars: int = DEFAULT_EXCERPT_CHARS,
) -> str:
    """One self-contained HTML page that lists the questions and shows each tree.

    ``trees`` holds [`ReasoningTree`][prmsynth.ReasoningTree] objects or records: ``trees.jsonl``
    lines (with their status and costs) or ``skipped.jsonl`` lines (listed
    with no tree).  Steps are coloured by MC value (red 0 to green 1, grey
    when never sampled) and the first error by ``first_error_threshold`` is
    marked.  Nothing is fetched: data, script and style are in the page.

    >>> from prmsynth import Question, ReasoningTree
    >>> tree = ReasoningTree(Question(id="q1", text="</script><b>2 + 3?", reference_answer="5"))
    >>> page = render_html([tree], title="demo & co")
    >>> page.startswith("<!DOCTYPE html>"), "<title>demo &amp; co</title>" in page
    (True, True)
    >>> "</script><b>" in page, "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e2 + 3?" in page
    (False, True)
    >>> "http://" in page or "https://" in page
    False
    """
    from prmsynth._values import SearchSettings
    from prmsynth.export._serialize import tree_to_dict

    SearchSettings(first_error_threshold=first_error_threshold)  # checks it before any work
    if excerpt_chars < 0:
        raise ValueError(f"excerpt_chars must be >= 0, got {excerpt_chars}")
    questions = []
    for tree in trees:
        record = tree_to_dict(tree) if isinstance(tree, ReasoningTree) else tree
        questions.append(
            compact_question(
                record, first_error_threshold=first_error_threshold, excerpt_chars=excerpt_chars
            )
        )
    data = {"title": title, "threshold": first_error_threshold, "questions": questions}
    return _PAGE.format(
        csp=_content_security_policy(),
        title=html.escape(title),
        style=_STYLE,
        data=embed_json(data),
        script=_SCRIPT,
    )


# -- reading run files -------------------------------------------------------------------


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every JSON object line of ``path``.

    A last line without its newline that does not parse is the line a
    running (or killed) run was writing: it is left out.  Any other bad line
    raises [`InputError`][prmsynth.InputError] naming the file and line.
    """
    try:
        file = open(path, "rb")  # closed by the with below
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a file") from None
    except OSError as error:
        raise InputError(path, f"cannot be read: {error.strerror or error}") from None
    with file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise InputError(path, "not UTF-8 text", line=number) from None
            except json.JSONDecodeError as error:
                if not raw.endswith(b"\n"):
                    return  # a torn last line (no newline after it)
                raise InputError(path, f"bad JSON: {error.msg}", line=number) from None
            if not isinstance(record, dict):
                raise InputError(path, "expected a JSON object", line=number)
            yield number, record


def _read_tree_records(path: Path) -> Iterator[dict[str, Any]]:
    from prmsynth._tree import TreeInvariantError
    from prmsynth.export._serialize import tree_from_dict

    for line, record in read_json_lines(path):
        try:
            tree_from_dict(record)
        except TreeInvariantError as error:
            raise InputError(path, str(error), line=line) from None
        yield record


def _run_threshold(folder: Path) -> float | None:
    """``search.first_error_threshold`` of the run.json in ``folder``, if there is one."""
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        value = info["search"]["first_error_threshold"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_html(
    tree_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    first_error_threshold: float | None = None,
    excerpt_chars: int = DEFAULT_EXCERPT_CHARS,
) -> dict[str, Any]:
    """Write the viewer of ``tree_path`` to ``out_path`` (a temporary file, then a rename).

    ``tree_path`` is a ``trees.jsonl`` file, or a run's output folder: then
    its ``trees.jsonl`` and the questions of its ``skipped.jsonl`` are shown.
    ``first_error_threshold`` defaults to the run's (``run.json`` beside the
    trees), else 0.0.  Every tree is checked first; bad input raises
    [`InputError`][prmsynth.InputError] naming the file and line, and nothing is
    written.  Returns what was written: questions, threshold, bytes.
    """
    tree_path = Path(tree_path)
    out_path = Path(out_path)
    if tree_path.is_dir():
        folder = tree_path
        tree_file = folder / "trees.jsonl"
        if not tree_file.exists():
            raise InputError(tree_path, "holds no trees.jsonl: not a prmsynth run folder")
        skipped_file: Path | None = folder / "skipped.jsonl"
    else:
        folder, tree_file, skipped_file = tree_path.parent, tree_path, None
    if first_error_threshold is None:
        first_error_threshold = _run_threshold(folder)
        if first_error_threshold is None:
            first_error_threshold = 0.0
    records: list[dict[str, Any]] = list(_read_tree_records(tree_file))
    if skipped_file is not None and skipped_file.exists():
        kept = {str(record.get("question_id")) for record in records}
        records.extend(
            record
            for _, record in read_json_lines(skipped_file)
            if str(record.get("question_id")) not in kept
        )
    if title is None:
        title = f"prmsynth: {folder.resolve().name}/{tree_file.name}"
    try:
        page = render_html(
            records,
            title=title,
            first_error_threshold=first_error_threshold,
            excerpt_chars=excerpt_chars,
        )
    except ValueError as error:
        raise InputError("options", str(error)) from None
    if not out_path.parent.is_dir():
        raise InputError(out_path, f"folder {str(out_path.parent)!r} does not exist")
    encoded = page.encode("utf-8")
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(encoded)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, out_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return {
        "questions": len(records),
        "first_error_threshold": first_error_threshold,
        "bytes": len(encoded),
        "out": str(out_path),
    }
