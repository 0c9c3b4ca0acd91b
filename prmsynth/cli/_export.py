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
from prmsynth.cli._common import EXIT_FAILURE, EXIT_OK, add_field_option, reports_errors, writing
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

    # Default and help come from ExportSettings, so the two cannot drift apart.
    fraction = attrs.NOTHING if validation_fraction is None else validation_fraction
    add_field_option(
        parser, ExportSettings, "positive_threshold", "--positive-threshold", type=PROBABILITY
    )
    add_field_option(parser, ExportSettings, "labels", "--labels", choices=("search", "mc"))
    add_field_option(
        parser, ExportSettings, "negative_threshold", "--negative-threshold", type=PROBABILITY
    )
    add_field_option(parser, ExportSettings, "balance", "--balance", choices=("none", "downsample"))
    add_field_option(parser, ExportSettings, "balance_seed", "--balance-seed", type=int)
    add_field_option(
        parser,
        ExportSettings,
        "deduplicate",
        "--deduplicate",
        action=argparse.BooleanOptionalAction,
    )
    add_field_option(
        parser,
        ExportSettings,
        "validation_fraction",
        "--validation-fraction",
        type=PROBABILITY,
        default=fraction,
    )
    add_field_option(parser, ExportSettings, "split_seed", "--split-seed", type=int)
    add_field_option(parser, ExportSettings, "consensus", "--consensus", action="store_true")
    add_field_option(parser, ExportSettings, "soft_labels", "--soft-labels", action="store_true")
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
