"""The ``prmsynth view`` and ``prmsynth stats`` subcommands.

``view`` writes one self-contained HTML file to browse the trees of a run
(see `_html`); ``stats`` prints tables of what a run folder
holds and, with ``--plot``, draws them (see `_stats`).  Both
exit 2 with a message naming the file (and line) on bad input.  Heavy
imports happen inside the ``run_*`` functions, so building the parser stays
cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prmsynth._errors import InputError
from prmsynth.cli._common import EXIT_OK, reports_errors, writing
from prmsynth.cli._types import COUNT, PROBABILITY
from prmsynth.view._html import DEFAULT_EXCERPT_CHARS, write_html
from prmsynth.view._stats import (
    collect_stats,
    format_table,
    plot_stats,
    require_matplotlib,
)


def add_parsers(subparsers: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add the ``view`` and ``stats`` subcommands to an argparse ``subparsers`` object.

    >>> parser = argparse.ArgumentParser(prog="prmsynth")
    >>> view, stats = add_parsers(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["view", "out/trees.jsonl", "--out", "trees.html"])
    >>> (args.command, args.trees, args.out, args.first_error_threshold, args.excerpt_chars)
    ('view', 'out/trees.jsonl', 'trees.html', None, 160)
    >>> args = parser.parse_args(["stats", "out", "--plot", "stats.png"])
    >>> (args.command, args.out_dir, args.plot, args.json)
    ('stats', 'out', 'stats.png', False)
    """

    view = subparsers.add_parser(
        "view",
        help="write one self-contained HTML file to browse the trees of a run",
        description=(
            "Write one HTML file (no network, nothing else needed) that lists the questions "
            "and shows each tree: steps as expandable nodes coloured by MC value (red 0 to "
            "green 1, grey when never sampled), counts of correct and incorrect completions, "
            "the reference answer and the first error. TREES is a trees.jsonl file or a run "
            "folder (then its skipped questions are listed too). See docs/viewer.md."
        ),
    )
    view.add_argument("trees", metavar="TREES", help="trees.jsonl of a run, or its output folder")
    view.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    view.add_argument("--title", default=None, help="page title (default: from the input name)")
    view.add_argument(
        "--first-error-threshold",
        type=PROBABILITY,
        default=None,
        metavar="VALUE",
        help="a step is wrong when its MC value is at most this; the first wrong step on a "
        "path is marked (default: the run's, from run.json beside the trees, else 0.0)",
    )
    view.add_argument(
        "--excerpt-chars",
        type=COUNT,
        default=DEFAULT_EXCERPT_CHARS,
        metavar="N",
        help="keep one correct and one incorrect completion per step, cut to N characters "
        f"(0: none) (default: {DEFAULT_EXCERPT_CHARS})",
    )

    stats = subparsers.add_parser(
        "stats",
        help="print statistics of a run folder (questions, steps, MC values, labels, cost)",
        description=(
            "Print tables of what a run folder holds: questions kept, skipped by reason and "
            "failed; steps per solution; a histogram of step MC values; the label balance of "
            "the labelled exports at thresholds 0, 0.25 and 0.5; tokens and cost. "
            "See docs/viewer.md."
        ),
    )
    stats.add_argument("out_dir", metavar="OUT_DIR", help="the --out folder of prmsynth run")
    stats.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also draw the statistics as a PNG figure (needs: pip install 'prmsynth[plot]')",
    )
    stats.add_argument(
        "--json", action="store_true", help="print the statistics as JSON instead of tables"
    )
    view.set_defaults(handler=run_view)
    stats.set_defaults(handler=run_stats)
    return view, stats


@reports_errors("view")
def run_view(args: argparse.Namespace) -> int:
    """Run ``view`` with parsed ``args``; return 0, or 2 on bad input."""
    if args.excerpt_chars < 0:
        raise InputError("--excerpt-chars", f"must be >= 0, got {args.excerpt_chars}")
    with writing(args.out):
        written = write_html(
            args.trees,
            args.out,
            title=args.title,
            first_error_threshold=args.first_error_threshold,
            excerpt_chars=args.excerpt_chars,
        )
    size = written["bytes"] / 1e6
    print(
        f"{written['questions']} questions, first error at MC <= "
        f"{written['first_error_threshold']}: {size:.1f} MB -> {args.out}",
        file=sys.stderr,
    )
    return EXIT_OK


@reports_errors("stats")
def run_stats(args: argparse.Namespace) -> int:
    """Run ``stats`` with parsed ``args``; return 0, or 2 on bad input."""
    if args.plot is not None:
        require_matplotlib()  # before any output, so a missing extra costs nothing
        if not Path(args.plot).resolve().parent.is_dir():
            raise InputError(args.plot, f"folder {str(Path(args.plot).parent)!r} does not exist")
    stats = collect_stats(args.out_dir)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        print(format_table(stats), end="")
    if args.plot is not None:
        with writing(args.plot):
            plot_stats(stats, args.plot)
        print(f"figure -> {args.plot}", file=sys.stderr)
    return EXIT_OK
