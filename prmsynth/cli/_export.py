"""The ``prmsynth export`` and ``prmsynth validate`` subcommands.

``export`` turns ``trees.jsonl`` files into one training format (see
``docs/exports.md``), validating every record before anything is written,
and writes a manifest beside the output.  ``validate`` checks a JSONL file
against a format's schema: exit 0 when valid, 1 with the first errors
(line numbers and fields) when not, 2 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import attrs

from prmsynth._errors import InputError
from prmsynth.cli._common import EXIT_FAILURE, EXIT_OK, reports_errors, writing
from prmsynth.cli._types import PROBABILITY
from prmsynth.export._formats import FORMATS, ExportSettings, export_file, validate_file
from prmsynth.run._folder import RunFolder

_ERRORS_SHOWN = 10


def add_parsers(subparsers: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add the ``export`` and ``validate`` subcommands to an argparse ``subparsers`` object.

    >>> parser = argparse.ArgumentParser(prog="prmsynth")
    >>> export, validate = add_parsers(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["export", "trees.jsonl", "--format", "trl", "--out", "trl.jsonl"])
    >>> (args.command, args.format, args.positive_threshold, args.deduplicate)
    ('export', 'trl', 0.0, True)
    """

    export = subparsers.add_parser(
        "export",
        help="write trees as training data in one format (trl, math-shepherd, prm800k, ...)",
        description=(
            "Read trees.jsonl files and write one training format: "
            + ", ".join(FORMATS)
            + ". Every record is checked against the format's JSON Schema before anything is "
            "written; a manifest (counts, label balance, settings, sources) goes to "
            "OUT.manifest.json. See docs/exports.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    export.add_argument("trees", nargs="+", metavar="TREES.jsonl", help="tree files of a run")
    export.add_argument("--format", required=True, choices=FORMATS, help="output format")
    export.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output file; with --validation-fraction, STEM.train.jsonl and "
        "STEM.validation.jsonl beside it instead",
    )
    add_export_settings_options(export)

    validate = subparsers.add_parser(
        "validate",
        help="check a JSONL file against a format's JSON Schema",
        description=(
            "Check every line of FILE against the JSON Schema of --format. Exit 0 when valid, "
            "1 when some line is not (the first errors are printed with line numbers), "
            "2 when the file cannot be read."
        ),
    )
    validate.add_argument("file", metavar="FILE", help="JSONL file")
    validate.add_argument("--format", required=True, choices=FORMATS, help="expected format")
    export.set_defaults(handler=run_export)
    validate.set_defaults(handler=run_validate)
    return export, validate


def add_export_settings_options(
    parser: argparse.ArgumentParser, *, validation_fraction: float | None = None
) -> None:
    """The options of [`ExportSettings`][prmsynth.ExportSettings], with its
    defaults (``validation_fraction`` overrides that one), for export and push."""

    # The defaults come from ExportSettings, so the two cannot drift apart.
    defaults = {field.name: field.default for field in attrs.fields(ExportSettings)}
    if validation_fraction is not None:
        defaults["validation_fraction"] = validation_fraction
    parser.add_argument(
        "--positive-threshold",
        type=PROBABILITY,
        default=defaults["positive_threshold"],
        help="a step whose MC value is above this is positive (0.0: any completion succeeded)",
    )
    parser.add_argument(
        "--labels",
        choices=("search", "mc"),
        default=defaults["labels"],
        help="search: the first errors the run's rule named (thresholds label the steps it did "
        "not judge); mc: MC thresholds alone",
    )
    parser.add_argument(
        "--negative-threshold",
        type=PROBABILITY,
        default=defaults["negative_threshold"],
        help="prm800k: a negative step with MC value at most this is rated -1, others 0",
    )
    parser.add_argument(
        "--balance",
        choices=("none", "downsample"),
        default=defaults["balance"],
        help="downsample the larger class (solutions with / without an error) in each file",
    )
    parser.add_argument(
        "--balance-seed",
        type=int,
        default=defaults["balance_seed"],
        help="seed of the downsampling",
    )
    parser.add_argument(
        "--deduplicate",
        action=argparse.BooleanOptionalAction,
        default=defaults["deduplicate"],
        help="write identical records once",
    )
    parser.add_argument(
        "--validation-fraction",
        type=PROBABILITY,
        default=defaults["validation_fraction"],
        help="share of questions (by a stable hash of the question id) in the validation file",
    )
    parser.add_argument(
        "--split-seed", type=int, default=defaults["split_seed"], help="seed of the question hash"
    )
    parser.add_argument(
        "--consensus",
        action="store_true",
        help="keep only solutions whose critic verdict (a run with --judge-model) agrees with "
        "the labels on the first wrong step",
    )
    parser.add_argument(
        "--soft-labels",
        action="store_true",
        help="trl, math-shepherd: write each step's MC value as a float label in [0, 1] instead "
        "of a boolean (a step without a value of its own is joined to the next that has one)",
    )
    parser.add_argument(
        "--system-prompt",
        default=None,
        help="system message of the chat formats (default: the generator's)",
    )
    parser.add_argument(
        "--generator",
        default=None,
        metavar="NAME",
        help="processbench: the model that wrote the solutions (default: the model in the "
        "run.json beside TREES, named as ProcessBench names models: the part after the last /)",
    )


def export_settings_from_args(args: argparse.Namespace, trees: list[str]) -> Any:
    """The [`ExportSettings`][prmsynth.ExportSettings] of ``add_export_settings_options``
    for exports of ``trees`` (raises [`InputError`][prmsynth.InputError] on a bad value)."""

    options: dict[str, Any] = {
        "labels": args.labels,
        "positive_threshold": args.positive_threshold,
        "negative_threshold": args.negative_threshold,
        "balance": args.balance,
        "balance_seed": args.balance_seed,
        "deduplicate": args.deduplicate,
        "validation_fraction": args.validation_fraction,
        "split_seed": args.split_seed,
        "consensus": args.consensus,
        "soft_labels": args.soft_labels,
    }
    if args.system_prompt is not None:
        options["system_prompt"] = args.system_prompt
    options["generator"] = args.generator or run_generator(trees)
    try:
        return ExportSettings(**options)
    except ValueError as error:
        raise InputError("options", str(error)) from None


def run_generator(trees: list[str]) -> str | None:
    """The model the runs that wrote ``trees`` used, as ProcessBench names a
    generator (the model string after its last ``/``); None when no ``run.json``
    beside them says, or they disagree.

    >>> import json, pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "run.json").write_text(json.dumps({"model": "hosted_vllm/Qwen/Qwen2.5-7B"}))
    >>> run_generator([str(folder / "trees.jsonl")])
    'Qwen2.5-7B'
    """

    names = set()
    for path in trees:
        try:
            model = (RunFolder(Path(path).parent).settings() or {}).get("model")
        except InputError:
            model = None  # provenance only: an unreadable run.json leaves it unknown
        names.add(model.rsplit("/", 1)[-1] if isinstance(model, str) and model else None)
    return names.pop() if len(names) == 1 else None


@reports_errors("export")
def run_export(args: argparse.Namespace) -> int:
    """Run ``export`` with parsed ``args``: 0 when written, 1 when a record failed its
    schema, 2 on bad input (nothing is written in either case)."""
    settings = export_settings_from_args(args, args.trees)
    with writing(args.out):
        manifest = export_file(args.trees, args.format, args.out, settings)
    counts = manifest["counts"]
    files = ", ".join(
        f"{entry['path']} ({entry['records']} records)" for entry in manifest["files"].values()
    )
    print(
        f"{counts['trees']} trees -> {files}; {counts['duplicates_removed']} duplicates and "
        f"{counts['removed_by_balance']} removed by balancing"
        + (
            f", {counts['removed_by_consensus']} by consensus, "
            f"{counts['removed_without_critique']} without a critique"
            if settings.consensus
            else ""
        ),
        file=sys.stderr,
    )
    return EXIT_OK


@reports_errors("validate")
def run_validate(args: argparse.Namespace) -> int:
    """Run ``validate`` with parsed ``args``: 0 valid, 1 schema errors, 2 unreadable file."""
    errors = validate_file(args.file, args.format)
    if not errors:
        print(f"{args.file}: valid {args.format}", file=sys.stderr)
        return EXIT_OK
    for error in errors[:_ERRORS_SHOWN]:
        print(f"{args.file}: {error}", file=sys.stderr)
    if len(errors) > _ERRORS_SHOWN:
        print(f"{args.file}: ... and {len(errors) - _ERRORS_SHOWN} more errors", file=sys.stderr)
    print(f"{args.file}: not valid {args.format} ({len(errors)} errors)", file=sys.stderr)
    return EXIT_FAILURE
