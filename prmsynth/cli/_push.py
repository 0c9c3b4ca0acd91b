"""``prmsynth push OUT REPO_ID``: publish a run's exports as a Hugging Face Hub dataset.

Each ``--formats`` entry becomes one config with train and validation splits,
exported with the options ``prmsynth export`` takes, beside a dataset card.
``--dry-run`` writes the folder that would be uploaded and uploads nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from prmsynth.cli._common import EXIT_OK, reports_errors
from prmsynth.cli._export import add_export_settings_options, export_settings_from_args
from prmsynth.cli._main import command_line
from prmsynth.publish._push import DEFAULT_FORMATS, DEFAULT_VALIDATION_FRACTION, push


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``push`` subcommand to an argparse ``subparsers`` object."""

    parser = subparsers.add_parser(
        "push",
        help="publish a run's exports as a Hugging Face Hub dataset with a dataset card",
        description=(
            "Export the run in OUT in each of --formats (one dataset config each, with train "
            "and validation splits by question), write a dataset card (configs with their "
            "features and counts, one record of each, the run's settings, the method and its "
            "citations, the commands that reproduce the data from the run.json and config.yaml "
            "uploaded beside it) and upload them to the Hub dataset REPO_ID. The token comes "
            "from HF_TOKEN or 'hf auth login' and is never printed or written. Needs: "
            "pip install 'prmsynth[hf]'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT", help="the run folder")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub dataset, e.g. user/my-prm-data")
    parser.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        help="export formats, comma-separated; each becomes one config",
    )
    parser.add_argument(
        "--private", action="store_true", help="create the repository private (a new one only)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write the folder that would be uploaded, print its path, upload nothing",
    )
    parser.add_argument(
        "--folder",
        default=None,
        metavar="DIR",
        help="assemble the upload in DIR, an empty or new folder (default: a temporary one, "
        "kept with --dry-run)",
    )
    parser.add_argument(
        "--license", default="unknown", help="the dataset card's license id (e.g. apache-2.0)"
    )
    parser.add_argument(
        "--language",
        default="en",
        help="the language(s) of the seed questions, ISO 639 codes, comma-separated "
        "(the dataset card's language)",
    )
    add_export_settings_options(parser, validation_fraction=DEFAULT_VALIDATION_FRACTION)
    parser.set_defaults(handler=run)
    return parser


@reports_errors("push")
def run(args: argparse.Namespace) -> int:
    """Run ``push`` with parsed ``args``: 0 when uploaded (or written, with
    --dry-run), 1 when an export or the upload failed, 2 on bad input."""

    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    settings = export_settings_from_args(args, [os.path.join(args.out, "trees.jsonl")])
    report = push(
        args.out,
        args.repo_id,
        formats=formats,
        settings=settings,
        private=args.private,
        dry_run=args.dry_run,
        folder=args.folder,
        license=args.license,
        language=[code.strip() for code in args.language.split(",") if code.strip()],
        command=command_line(args, leave_out=("dry_run", "folder")),
    )
    counts = "; ".join(
        f"{config}: " + ", ".join(f"{count} {split}" for split, count in splits.items())
        for config, splits in report.records.items()
    )
    if report.left_out:
        print(f"left out (no records): {', '.join(report.left_out)}", file=sys.stderr)
    if report.url is None:
        print(f"dry run: {counts} -> {report.folder} (nothing uploaded)", file=sys.stderr)
        print(report.folder)
    else:
        print(f"pushed {counts} -> {report.url}", file=sys.stderr)
    return EXIT_OK
