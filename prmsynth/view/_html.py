"""A self-contained HTML viewer of reasoning trees: ``prmsynth view``.

`render_html` turns trees into one HTML file that needs nothing else:
no network, no CDN, no external file.  The trees are embedded as compact JSON
in a ``<script type="application/json">`` element (every ``<``, ``>`` and
``&`` escaped, so no text can close the element) and drawn by a small
vanilla-JS script in the same file.  A Content-Security-Policy allows only
that script and that style sheet (by their hashes) and no fetch of any kind.

The script, the style sheet and the page skeleton are package files in
``prmsynth/view/assets/`` (``viewer.js``, ``viewer.css``, ``page.html``, with
``$name`` placeholders), read with ``importlib.resources`` and inlined
verbatim; the CSP hashes are computed from their text when a page is made.

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
import functools
import hashlib
import html
import json
import os
import string
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from prmsynth._io import atomic_file, iter_appended_jsonl
from prmsynth._seeds import InputError
from prmsynth._tree import ReasoningTree, TreeInvariantError
from prmsynth._values import SearchSettings
from prmsynth.export._serialize import tree_from_dict, tree_to_dict

DEFAULT_EXCERPT_CHARS = 160
"""Longest completion excerpt kept per node (one correct, one incorrect)."""

_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

_ASSETS = "assets"
_PAGE_FIELDS = frozenset({"csp", "title", "style", "data", "script"})
"""The ``$name`` placeholders of ``assets/page.html``, each filled by `render_html`
(``substitute`` raises on one not filled; a test checks there are no others)."""

# What would end the inline element early (the HTML parser looks for these,
# not for JavaScript or CSS syntax); the data is escaped, the assets are checked.
_CLOSERS = {"viewer.js": ("</script", "<!--"), "viewer.css": ("</style",)}


@functools.cache
def _asset(name: str) -> str:
    """The text of ``prmsynth/view/assets/<name>``, read once per process.

    The script and the style sheet are inlined verbatim, and the page's CSP
    allows them by hash, so a text that could close its element is refused here.
    """
    assets = resources.files("prmsynth.view").joinpath(_ASSETS)
    text = assets.joinpath(name).read_text(encoding="utf-8")
    for closer in _CLOSERS.get(name, ()):
        if closer in text.lower():
            raise RuntimeError(f"prmsynth/view/{_ASSETS}/{name} must not contain {closer!r}")
    return text


@functools.cache
def _page_template() -> string.Template:
    # string.Template, not str.format: the page's ``$name`` fields never clash
    # with the braces of inline CSS or JavaScript.
    return string.Template(_asset("page.html"))


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _content_security_policy(script: str, style: str) -> str:
    # Nothing may be fetched; only this file's own script and style run.  The
    # hashes are of the exact text inlined, so an edited asset stays allowed.
    return (
        "default-src 'none'; "
        f"script-src {_source_hash(script)}; "
        f"style-src {_source_hash(style)}; "
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
    script, style = _asset("viewer.js"), _asset("viewer.css")
    # substitute() puts each value in once and never rescans it, so a ``$`` in
    # the title, the data or the script is kept as it is.
    fields = {
        "csp": _content_security_policy(script, style),
        "title": html.escape(title),
        "style": style,
        "data": embed_json(data),
        "script": script,
    }
    return _page_template().substitute(fields)


# -- reading run files -------------------------------------------------------------------


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every JSON object line of a run's file,
    streamed; a torn last line (a run still writing, or killed) is left out."""
    for number, record in iter_appended_jsonl(path):
        if not isinstance(record, dict):
            raise InputError(path, "expected a JSON object", line=number)
        yield number, record


def _read_tree_records(path: Path) -> Iterator[dict[str, Any]]:
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
    with atomic_file(out_path, binary=True) as file:
        file.write(encoded)
    return {
        "questions": len(records),
        "first_error_threshold": first_error_threshold,
        "bytes": len(encoded),
        "out": str(out_path),
    }
