"""Statistics of a run's output folder: ``prmsynth stats``.

`collect_stats` reads a folder written by ``prmsynth run`` (or
``prmsynth merge``) and counts what it holds: questions kept, skipped by
reason and failed; steps per solution; a histogram of step MC values; the
label balance the labelled exports would have at a few thresholds; and the
tokens and cost spent.  `format_table` prints it as plain-text tables
and `plot_stats` draws the same as a figure (matplotlib, the ``plot``
extra).

The numbers come from the primary files, ``trees.jsonl`` and
``skipped.jsonl``; tokens and cost come from ``summary.json`` when it says
the run is complete, else they are summed from those lines.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from prmsynth._io import atomic_file
from prmsynth._seeds import InputError
from prmsynth._tree import ReasoningTree, TreeInvariantError
from prmsynth.export._formats import ExportSettings, label_path
from prmsynth.export._serialize import tree_from_dict
from prmsynth.view._html import read_json_lines

LABEL_THRESHOLDS: tuple[float, ...] = (0.0, 0.25, 0.5)
"""The export thresholds (``--positive-threshold``) whose label balance is counted."""

HISTOGRAM_BINS = 10
"""Bins of the MC value histogram over [0, 1]; 1.0 falls in the last one."""


def histogram_bin(value: float, bins: int = HISTOGRAM_BINS) -> int:
    """The bin (0 .. bins - 1) of an MC value; bin i holds [i / bins, (i + 1) / bins).

    >>> histogram_bin(0.0), histogram_bin(0.1), histogram_bin(0.55), histogram_bin(1.0)
    (0, 1, 5, 9)
    """
    # round first, so that 0.3 (stored as 0.29999...) lands in bin 3 as one reads it
    return min(bins - 1, max(0, int(round(value * bins, 9))))


def _solution_lengths(tree: ReasoningTree) -> list[int]:
    """Steps of every solution: the path from the root to each node that ends one."""
    lengths = []
    for node in tree.nodes():
        if node != tree.root and tree.node(node).terminal:
            lengths.append(len(tree.path(node)) - 1)
    return lengths


def _label_counts(
    trees: list[ReasoningTree], threshold: float, counter: Counter[str] | None = None
) -> Counter[str]:
    """Labelled steps and paths as the labelled exports (``trl`` ...) would give them.

    Every root-to-leaf path is labelled with `label_path`
    and cut at its first unknown step; identical labelled prefixes of one tree
    count once (the export writes them once).
    """

    settings = ExportSettings(positive_threshold=threshold)
    counts = counter if counter is not None else Counter()
    for tree in trees:
        seen: set[tuple[int, ...]] = set()
        for leaf in tree.leaves():
            if leaf == tree.root:
                continue
            steps = label_path(tree, leaf, settings)
            labelled = []
            for step in steps:
                if step.label is None:
                    break
                labelled.append(step)
            counts["steps_unlabelled"] += len(steps) - len(labelled)
            if not labelled:
                counts["paths_without_label"] += 1
                continue
            key = tuple(step.node for step in labelled)
            if key in seen:
                continue
            seen.add(key)
            positive = sum(1 for step in labelled if step.label)
            counts["steps_positive"] += positive
            counts["steps_negative"] += len(labelled) - positive
            if positive == len(labelled):
                counts["paths_without_error"] += 1
            else:
                counts["paths_with_error"] += 1
    return counts


def _read_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot be read: {error}") from None
    if not isinstance(summary, dict):
        raise InputError(path, "expected a JSON object")
    return summary


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def collect_stats(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The statistics of a run's output folder, as a JSON-ready dict.

    Raises [`InputError`][prmsynth.InputError] (naming the file and line) when the
    folder is not a run folder or a line cannot be read.  A torn last line
    (a run still going, or killed) is left out.

    >>> import tempfile
    >>> from prmsynth import Question, ReasoningTree, Verdict
    >>> from prmsynth.export._serialize import tree_to_dict
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> steps = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
    >>> tree.mark_terminal(steps[-1], Verdict(status="correct"))
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "trees.jsonl").write_text(json.dumps(tree_to_dict(tree)) + "\\n")
    >>> stats = collect_stats(folder)
    >>> stats["questions"]["kept"], stats["steps_per_solution"]["max"]
    (1, 2)
    >>> stats["mc_histogram"]["none"], stats["mc_histogram"]["counts"][-1]
    (1, 1)
    >>> stats["label_balance"][0]["steps_positive"]
    2
    """

    folder = Path(out_dir)
    if not folder.exists():
        raise InputError(folder, "no such folder")
    if not folder.is_dir():
        raise InputError(folder, "is not a folder (give the --out folder of prmsynth run)")
    tree_file, skipped_file = folder / "trees.jsonl", folder / "skipped.jsonl"
    if not tree_file.exists() and not skipped_file.exists():
        raise InputError(
            folder, "holds neither trees.jsonl nor skipped.jsonl: not a prmsynth run folder"
        )
    summary = _read_summary(folder)

    trees: list[ReasoningTree] = []
    spent: Counter[str] = Counter()
    seen: set[str] = set()
    if tree_file.exists():
        for line, record in read_json_lines(tree_file):
            try:
                tree = tree_from_dict(record)
            except TreeInvariantError as error:
                raise InputError(tree_file, str(error), line=line) from None
            if tree.question.id in seen:
                continue  # a resumed run keeps the first
            seen.add(tree.question.id)
            trees.append(tree)
            _add_spent(spent, record)
    skipped_by_reason: Counter[str] = Counter()
    failed_by_reason: Counter[str] = Counter()
    if skipped_file.exists():
        for line, record in read_json_lines(skipped_file):
            question_id = str(record.get("question_id"))
            if question_id in seen:
                continue
            seen.add(question_id)
            status = record.get("status")
            reason = str(record.get("reason") or "unknown")
            if status == "skipped":
                skipped_by_reason[reason] += 1
            elif status == "failed":
                failed_by_reason[reason.split(":", 1)[0]] += 1
            else:
                raise InputError(
                    skipped_file, f"unknown status {status!r}", line=line, field="status"
                )
            _add_spent(spent, record)

    lengths = [length for tree in trees for length in _solution_lengths(tree)]
    histogram = [0] * HISTOGRAM_BINS
    unsampled = 0
    for tree in trees:
        for node in tree.nodes():
            if node == tree.root:
                continue
            value = tree.mc_value(node)
            if value is None:
                unsampled += 1
            else:
                histogram[histogram_bin(value)] += 1

    label_balance = []
    for threshold in LABEL_THRESHOLDS:
        counts = _label_counts(trees, threshold)
        labelled = counts["steps_positive"] + counts["steps_negative"]
        label_balance.append(
            {
                "threshold": threshold,
                "steps_positive": counts["steps_positive"],
                "steps_negative": counts["steps_negative"],
                "positive_share": round(counts["steps_positive"] / labelled, 4)
                if labelled
                else None,
                "steps_unlabelled": counts["steps_unlabelled"],
                "paths_without_error": counts["paths_without_error"],
                "paths_with_error": counts["paths_with_error"],
                "paths_without_label": counts["paths_without_label"],
            }
        )

    if summary is not None and summary.get("complete") is True and "prompt_tokens" in summary:
        tokens = {
            "completions": int(_number(summary.get("completions"))),
            "prompt_tokens": int(_number(summary.get("prompt_tokens"))),
            "completion_tokens": int(_number(summary.get("completion_tokens"))),
            "cost_usd": _number(summary.get("cost_usd")),
            "source": "summary.json",
        }
    else:
        tokens = {
            "completions": int(spent["completions"]),
            "prompt_tokens": int(spent["prompt_tokens"]),
            "completion_tokens": int(spent["completion_tokens"]),
            "cost_usd": round(spent["cost"], 6),
            "source": "lines",
        }
    tokens["total_tokens"] = tokens["prompt_tokens"] + tokens["completion_tokens"]

    skipped = sum(skipped_by_reason.values())
    failed = sum(failed_by_reason.values())
    questions: dict[str, Any] = {
        "kept": len(trees),
        "skipped": skipped,
        "skipped_by_reason": dict(skipped_by_reason.most_common()),
        "failed": failed,
        "failed_by_reason": dict(failed_by_reason.most_common()),
        "done": len(trees) + skipped + failed,
        "total": None,
        "not_done": None,
    }
    if summary is not None and isinstance(summary.get("questions_total"), int):
        questions["total"] = summary["questions_total"]
        questions["not_done"] = max(0, summary["questions_total"] - questions["done"])
    return {
        "folder": str(folder),
        "complete": None if summary is None else summary.get("complete") is True,
        "method": _method(folder, summary),
        "questions": questions,
        "steps_per_solution": {
            "solutions": len(lengths),
            "min": min(lengths) if lengths else None,
            "median": statistics.median(lengths) if lengths else None,
            "mean": round(statistics.fmean(lengths), 3) if lengths else None,
            "max": max(lengths) if lengths else None,
        },
        "mc_histogram": {
            "edges": [round(index / HISTOGRAM_BINS, 4) for index in range(HISTOGRAM_BINS + 1)],
            "counts": histogram,
            "none": unsampled,
            "steps": sum(histogram) + unsampled,
        },
        "label_balance": label_balance,
        "tokens": tokens,
    }


def _method(folder: Path, summary: dict[str, Any] | None) -> dict[str, Any]:
    """How the labels were made, from the run's settings: the model, the policy,
    the first-error rule and how partial solutions reached the model."""
    info = summary
    if info is None or "policy" not in info:
        try:
            info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            info = {}
    if not isinstance(info, dict):
        info = {}
    rule = info.get("first_error_rule")
    return {
        "model": info.get("model"),
        "policy": info.get("policy"),
        "first_error_rule": rule.get("name") if isinstance(rule, dict) else rule,
        "prefix_mode": info.get("prefix_mode"),
    }


def _add_spent(spent: Counter[str], record: dict[str, Any]) -> None:
    spent["completions"] += _number(record.get("n_completions"))
    spent["prompt_tokens"] += _number(record.get("prompt_tokens"))
    spent["completion_tokens"] += _number(record.get("completion_tokens"))
    spent["cost"] += _number(record.get("cost"))


# -- text --------------------------------------------------------------------------------


def _table(title: str, header: list[str], rows: list[list[Any]], *, align: str) -> str:
    """A plain-text table; ``align`` has one letter per column, ``l`` or ``r``."""
    cells = [header, *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [
            value.ljust(width) if side == "l" else value.rjust(width)
            for value, width, side in zip(row, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([title, line(header), rule, *(line(row) for row in cells[1:])])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(stats: dict[str, Any]) -> str:
    """The statistics as plain-text tables, one per section.

    >>> stats = {"folder": "out", "complete": True,
    ...          "questions": {"kept": 3, "skipped": 1, "skipped_by_reason": {"all_correct": 1},
    ...                        "failed": 0, "failed_by_reason": {}, "done": 4, "total": 4,
    ...                        "not_done": 0},
    ...          "steps_per_solution": {"solutions": 2, "min": 3, "median": 3.5, "mean": 3.5,
    ...                                 "max": 4},
    ...          "mc_histogram": {"edges": [0, 0.5, 1], "counts": [1, 2], "none": 0, "steps": 3},
    ...          "label_balance": [{"threshold": 0.0, "steps_positive": 3, "steps_negative": 1,
    ...                             "positive_share": 0.75, "steps_unlabelled": 0,
    ...                             "paths_without_error": 1, "paths_with_error": 1,
    ...                             "paths_without_label": 0}],
    ...          "tokens": {"completions": 10, "prompt_tokens": 1000, "completion_tokens": 500,
    ...                     "total_tokens": 1500, "cost_usd": 0.25, "source": "summary.json"}}
    >>> print(format_table(stats).split("\\n\\n")[1])
    Questions
                   count
    -------------  -----
    kept               3
    skipped            1
      all_correct      1
    failed             0
    done               4
    total              4
    """
    questions = stats["questions"]
    complete = {True: "complete", False: "not complete", None: "no summary.json"}
    sections = [f"Run folder {stats['folder']} ({complete[stats['complete']]})"]
    method = stats.get("method") or {}
    if any(method.values()):
        rows_method = [[name.replace("_", " "), value] for name, value in method.items() if value]
        sections.append(_table("Method", ["", "value"], rows_method, align="ll"))
    rows: list[list[Any]] = [["kept", questions["kept"]], ["skipped", questions["skipped"]]]
    rows += [[f"  {reason}", count] for reason, count in questions["skipped_by_reason"].items()]
    rows.append(["failed", questions["failed"]])
    rows += [[f"  {reason}", count] for reason, count in questions["failed_by_reason"].items()]
    rows.append(["done", questions["done"]])
    if questions["total"] is not None:
        rows.append(["total", questions["total"]])
        if questions["not_done"]:
            rows.append(["not done", questions["not_done"]])
    sections.append(_table("Questions", ["", "count"], rows, align="lr"))

    steps = stats["steps_per_solution"]
    sections.append(
        _table(
            "Steps per solution (root to each step that ends a solution)",
            ["solutions", "min", "median", "mean", "max"],
            [[steps["solutions"], steps["min"], steps["median"], steps["mean"], steps["max"]]],
            align="rrrrr",
        )
    )

    histogram = stats["mc_histogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    total = histogram["steps"] or 1
    rows = []
    for index, count in enumerate(counts):
        closing = "]" if index == len(counts) - 1 else ")"
        label = f"[{edges[index]:.2f}, {edges[index + 1]:.2f}{closing}"
        rows.append([label, count, f"{100 * count / total:.1f}%", "#" * round(40 * count / total)])
    rows.append(["never sampled", histogram["none"], f"{100 * histogram['none'] / total:.1f}%", ""])
    sections.append(
        _table("MC values of steps", ["MC value", "steps", "share", ""], rows, align="lrrl")
    )

    rows = [
        [
            f"> {entry['threshold']}",
            entry["steps_positive"],
            entry["steps_negative"],
            None if entry["positive_share"] is None else f"{100 * entry['positive_share']:.1f}%",
            entry["steps_unlabelled"],
            entry["paths_without_error"],
            entry["paths_with_error"],
        ]
        for entry in stats["label_balance"]
    ]
    sections.append(
        _table(
            "Label balance of the labelled exports (a step is positive when its value is above "
            "the threshold)",
            [
                "positive if",
                "positive",
                "negative",
                "positive share",
                "unlabelled",
                "paths ok",
                "paths with error",
            ],
            rows,
            align="lrrrrrr",
        )
    )

    tokens = stats["tokens"]
    sections.append(
        _table(
            f"Tokens and cost (from {tokens['source']})",
            ["completions", "prompt tokens", "completion tokens", "total tokens", "cost (USD)"],
            [
                [
                    tokens["completions"],
                    tokens["prompt_tokens"],
                    tokens["completion_tokens"],
                    tokens["total_tokens"],
                    f"{tokens['cost_usd']:.4f}",
                ]
            ],
            align="rrrrr",
        )
    )
    return "\n\n".join(sections) + "\n"


# -- figure ------------------------------------------------------------------------------


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed (it comes with the ``plot`` extra)."""


def require_matplotlib() -> None:
    """Raise `PlotUnavailableError` unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'prmsynth[plot]' (or pip install matplotlib)"
        ) from None


def plot_stats(stats: dict[str, Any], path: str | os.PathLike) -> None:
    """Draw the statistics as one PNG figure at ``path`` (temporary file, then a rename).

    Needs matplotlib: ``pip install 'prmsynth[plot]'``; without it raises
    `PlotUnavailableError` saying so.
    """
    require_matplotlib()

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    figure.suptitle(f"prmsynth run: {stats['folder']}")

    questions = stats["questions"]
    names = ["kept"]
    values = [questions["kept"]]
    for reason, count in questions["skipped_by_reason"].items():
        names.append(f"skipped:\n{reason}")
        values.append(count)
    if questions["failed"]:
        names.append("failed")
        values.append(questions["failed"])
    colours = ["#2e7d32"] + ["#e0a100"] * len(questions["skipped_by_reason"])
    colours += ["#b3261e"] * (len(names) - len(colours))
    ax = axes[0][0]
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars)
    ax.margins(y=0.12)
    ax.set_title("Questions")
    ax.set_ylabel("questions")

    histogram = stats["mc_histogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    ax = axes[0][1]
    width = edges[1] - edges[0]
    centres = [edge + width / 2 for edge in edges[:-1]]
    cmap = matplotlib.colormaps["RdYlGn"]
    ax.bar(centres, counts, width=width * 0.95, color=[cmap(c) for c in centres])
    if histogram["none"]:
        ax.bar([1.0 + width], [histogram["none"]], width=width * 0.95, color="#9e9e9e")
        ax.set_xticks([0, 0.5, 1.0, 1.0 + width], ["0", "0.5", "1", "never\nsampled"])
    ax.set_title("MC values of steps")
    ax.set_xlabel("MC value")
    ax.set_ylabel("steps")

    ax = axes[1][0]
    balance = stats["label_balance"]
    labels = [f"> {entry['threshold']}" for entry in balance]
    positive = [entry["steps_positive"] for entry in balance]
    negative = [entry["steps_negative"] for entry in balance]
    ax.bar(labels, positive, color="#2e7d32", label="positive")
    ax.bar(labels, negative, bottom=positive, color="#b3261e", label="negative")
    ax.set_title("Step labels by export threshold")
    ax.set_xlabel("positive if MC value")
    ax.set_ylabel("labelled steps")
    ax.legend()

    ax = axes[1][1]
    steps = stats["steps_per_solution"]
    tokens = stats["tokens"]
    ax.axis("off")
    rows = [
        ["solutions", _cell(steps["solutions"])],
        [
            "steps per solution (min / median / mean / max)",
            " / ".join(_cell(steps[key]) for key in ("min", "median", "mean", "max")),
        ],
        ["completions", _cell(tokens["completions"])],
        ["prompt tokens", _cell(tokens["prompt_tokens"])],
        ["completion tokens", _cell(tokens["completion_tokens"])],
        ["cost (USD)", f"{tokens['cost_usd']:.4f}"],
    ]
    table = ax.table(cellText=rows, loc="center", cellLoc="left", colWidths=[0.7, 0.3])
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.6)
    ax.set_title(f"Solutions, tokens and cost (from {tokens['source']})")

    path = Path(path)
    with atomic_file(path, binary=True) as file:
        figure.savefig(file, format="png", dpi=100)
