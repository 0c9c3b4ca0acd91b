"""``prmsynth merge``: join the folders of a sharded run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prmsynth.cli._common import EXIT_OK, reports_errors
from prmsynth.run._folder import merge_directories


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="join the output folders of several shards",
        description="Join the output folders of runs made with --shard I/N into one folder.",
    )
    parser.add_argument("folders", nargs="+", help="shard output folders")
    parser.add_argument("--out", required=True, help="an empty (or new) folder")
    parser.set_defaults(handler=run)


@reports_errors("merge")
def run(args: argparse.Namespace) -> int:
    summary = merge_directories([Path(folder) for folder in args.folders], Path(args.out))
    print(
        f"merged {len(args.folders)} folders: {summary['kept']} kept, "
        f"{summary['skipped']} skipped, complete: {summary['complete']} -> {args.out}",
        file=sys.stderr,
    )
    if summary["missing_shards"]:
        print(f"missing shards: {', '.join(summary['missing_shards'])}", file=sys.stderr)
    if summary["incomplete_shards"]:
        print(f"unfinished: {', '.join(summary['incomplete_shards'])}", file=sys.stderr)
    return EXIT_OK
