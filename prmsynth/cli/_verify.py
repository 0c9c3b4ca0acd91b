"""The ``prmsynth verify-answers`` subcommand: check a JSONL file of responses.

Each input row is written back with two added fields, ``correct`` (bool) and
``verdict`` (``"correct"``, ``"incorrect"`` or ``"unparseable"``); a count
of each verdict goes to stderr.  Heavy imports (the verifier, sympy) happen
inside `run`, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prmsynth._errors import InputError
from prmsynth._io import atomic_file, dumps_line
from prmsynth._sources import iter_json_objects
from prmsynth.cli._common import EXIT_OK, reports_errors, writing
from prmsynth.cli._types import POSITIVE
from prmsynth.verify._math import MathAnswerVerifier


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``verify-answers`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "verify-answers",
        help="check responses in a JSONL file against reference answers",
        description=(
            "Read INPUT (JSONL), check each row's response against its reference answer, "
            "and write each row back with the added fields 'correct' (true/false) and "
            "'verdict' (correct, incorrect or unparseable). Counts go to stderr."
        ),
    )
    parser.add_argument("input", metavar="INPUT.jsonl", help="JSONL file, one JSON object a line")
    parser.add_argument(
        "--response-field",
        required=True,
        metavar="FIELD",
        help="field holding the model's response",
    )
    parser.add_argument(
        "--reference-field",
        required=True,
        metavar="FIELD",
        help="field holding the reference answer",
    )
    parser.add_argument(
        "--finish-reason-field",
        default=None,
        metavar="FIELD",
        help="optional field with the backend's finish reason ('length' marks a truncation)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="OUT.jsonl",
        help="output file (written whole at the end); default: stdout",
    )
    parser.add_argument(
        "--timeout",
        type=POSITIVE,
        default=2.0,
        metavar="SECONDS",
        help="time bound of one symbolic check (default: 2.0)",
    )
    parser.set_defaults(handler=run)
    return parser


def _read_rows(path: str, fields: list[str], optional_fields: list[str]) -> list[dict]:
    """Parse and validate every row before any output is written."""

    rows = []
    for line, row in iter_json_objects(path, fields):
        for field in fields:
            value = row[field]
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise InputError(path, "must be a string or a number", line=line, field=field)
        for field in optional_fields:
            value = row.get(field)
            if value is not None and not isinstance(value, str):
                raise InputError(path, "must be a string", line=line, field=field)
        rows.append(row)
    return rows


@reports_errors("verify-answers")
def run(args: argparse.Namespace) -> int:
    """Run ``verify-answers`` with parsed ``args``; return 0, or 2 on bad input."""
    if not args.timeout > 0:
        raise InputError("--timeout", f"must be > 0, got {args.timeout}")
    optional = [args.finish_reason_field] if args.finish_reason_field else []
    rows = _read_rows(args.input, [args.response_field, args.reference_field], optional)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.is_dir():
        raise InputError(out_path, f"folder {str(out_path.parent)!r} does not exist")

    counts = {"correct": 0, "incorrect": 0, "unparseable": 0}
    verifier = MathAnswerVerifier(timeout=args.timeout)

    def write_rows(handle: Any) -> None:
        for row in rows:
            finish_reason = row.get(args.finish_reason_field) if args.finish_reason_field else None
            verdict = verifier.verify(
                str(row[args.response_field]),
                str(row[args.reference_field]),
                finish_reason=finish_reason,
            )
            counts[verdict.status] += 1
            handle.write(dumps_line(dict(row, correct=verdict.correct, verdict=verdict.status)))

    try:
        with writing(out_path or "<stdout>"):
            if out_path is None:
                write_rows(sys.stdout)
                sys.stdout.flush()
            else:
                # A half-written file never carries the final name.
                with atomic_file(out_path) as handle:
                    write_rows(handle)
    finally:
        verifier.close()

    total = sum(counts.values())
    print(
        f"{total} rows: {counts['correct']} correct, {counts['incorrect']} incorrect, "
        f"{counts['unparseable']} unparseable",
        file=sys.stderr,
    )
    return EXIT_OK
