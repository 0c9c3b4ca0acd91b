"""Labelling solutions you already have: ``prmsynth label``.

Each input row holds ``id`` (or the field ``--id-column`` names), ``problem``,
``steps`` (a list of strings) and ``answer`` (the reference).  Each output row is the input plus
``step_values`` (one MC value or null per step), ``first_error`` (0-based
index of the first step judged wrong, -1 if none) and ``n_completions``;
with ``--judge-model``, also ``critic_first_error`` (the critic's first wrong
step, null when it gave no verdict) and ``critic_agrees``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prmsynth._errors import BackendUnavailable, InputError, redact_secrets
from prmsynth._interfaces import gather_or_cancel
from prmsynth._io import append_line, write_jsonl
from prmsynth._seeds import reference_from_answer
from prmsynth._sources import RowSource, iter_rows
from prmsynth._values import Question
from prmsynth.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Stopped,
    add_backend_options,
    add_first_error_options,
    add_judge_options,
    add_model_options,
    add_source_options,
    backend_settings_from_args,
    generator_from_args,
    open_backend,
    policy_from_args,
    reports_errors,
    sampling_from_args,
)
from prmsynth.cli._types import COUNT
from prmsynth.run._pipeline import Pipeline
from prmsynth.search._policies import POLICIES

if TYPE_CHECKING:
    from prmsynth._interfaces import LabelResult
    from prmsynth.run._pipeline import Pipeline

REQUIRED_FIELDS = ("id", "problem", "steps", "answer")
#: Completions per estimated prefix where ``--num-branches`` has an effect.
NUM_BRANCHES = 8


def read_label_rows(
    source: str | os.PathLike | RowSource, *, id_field: str = "id"
) -> list[tuple[dict[str, Any], Question, list[str]]]:
    """Read and check every row (of any source ``load_questions`` reads)
    before any work starts; a row's id is its ``id_field``."""
    rows = []
    seen: dict[str, str] = {}
    required = (id_field, *(name for name in REQUIRED_FIELDS if name != "id"))
    for row in iter_rows(source, required=required):
        record = row.record
        steps = record["steps"]
        if (
            not isinstance(steps, list)
            or not steps
            or not all(isinstance(step, str) and step.strip() for step in steps)
        ):
            raise row.error("expected a non-empty list of non-empty strings", field="steps")
        if not isinstance(record["problem"], str) or not record["problem"].strip():
            raise row.error("expected non-empty text", field="problem")
        answer = record["answer"]
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise row.error("expected text or a number", field="answer")
        reference = reference_from_answer(str(answer))
        if not reference:
            raise row.error("empty value", field="answer")
        row_id = record[id_field]
        if isinstance(row_id, bool) or not isinstance(row_id, (str, int, float)):
            raise row.error("expected text or a number", field=id_field)
        row_id = str(row_id)
        if row_id in seen:
            raise row.error(f"duplicate id {row_id!r} (first on {seen[row_id]})")
        seen[row_id] = row.where
        question = Question(id=row_id, text=record["problem"].strip(), reference_answer=reference)
        rows.append((record, question, [step.strip() for step in steps]))
    return rows


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label",
        help="estimate step values and the first wrong step of solutions you already have",
        description=(
            "Label existing step-by-step solutions: each input row has id, problem, steps "
            "(a list of strings) and answer; each output row adds step_values, first_error "
            "and n_completions. Completions continue each step prefix verbatim."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "input",
        help="rows with id, problem, steps, answer: a JSON file, .parquet, a datasets "
        "save_to_disk folder, or hf:NAME (steps a list of strings; not in CSV)",
    )
    add_source_options(parser)
    parser.add_argument(
        "--id-column",
        default="id",
        help="field holding each row's id (MATH-500's unique_id, say)",
    )
    parser.add_argument("--out", required=True, help="output JSONL")
    # Labels need a first error: the policies that locate one.
    parser.add_argument(
        "--policy",
        choices=tuple(name for name, policy in POLICIES.items() if policy.uses_rule),
        default="omegaprm",
    )
    parser.add_argument(
        "--num-branches",
        "--num-completions",  # its first name, kept working
        type=COUNT,
        default=None,
        dest="num_branches",
        help=f"completions per estimated prefix (K, default {NUM_BRANCHES}): Math-Shepherd's "
        "per-step estimation, or a threshold rule's binary search; the relative rule sizes its "
        "own samples, so it is refused there",
    )
    add_first_error_options(parser)
    add_judge_options(parser)
    parser.add_argument(
        "--max-branches",
        "--max-completions-per-row",  # its first name, kept working
        type=COUNT,
        default=None,
        dest="max_branches",
        help="completions per row in total (default: no limit)",
    )
    add_model_options(parser)
    add_backend_options(parser, default_cache="OUT.cache.sqlite")
    parser.set_defaults(handler=run)


@reports_errors("label")
def run(args: argparse.Namespace) -> int:
    sampling = sampling_from_args(args)
    out = Path(args.out)
    backend = backend_settings_from_args(args, out.with_name(out.name + ".cache.sqlite"))
    policy = policy_from_args(
        args, num_branches_default=NUM_BRANCHES, max_branches=args.max_branches or 2**62
    )
    if out.is_dir():
        raise InputError(out, "is a folder; --out names a file")
    rows = read_label_rows(
        RowSource(
            location=args.input, subset=args.subset, split=args.split, revision=args.revision
        ),
        id_field=args.id_column,
    )
    llm, _, cache, critic = open_backend(args, backend)
    try:
        generator = generator_from_args(args, llm, sampling, "label")
    except BaseException:
        if cache is not None:
            cache.close()
        raise

    pipeline = Pipeline(
        generator=generator,
        policy=policy,
        critic=critic,
        # More rows in flight than request slots keeps the backend busy.
        concurrency=2 * backend.concurrency,
    )
    verifier = pipeline.verifier
    out.parent.mkdir(parents=True, exist_ok=True)
    # Finished rows go to a .partial file as they complete, so a crash keeps
    # them; the final file appears, in input order, only when every row is done.
    partial = out.with_name(out.name + ".partial")
    results: dict[int, dict[str, Any]] = {}

    async def label_all() -> None:
        semaphore = asyncio.Semaphore(pipeline.concurrency)

        async def one(index: int, record: dict, question: Question, steps: Sequence[str]) -> None:
            async with semaphore:
                labels = await pipeline.label_solution(question, steps)
            results[index] = row = label_row(record, labels, pipeline, args.judge_model)
            append_line(partial_file, row)

        await gather_or_cancel(one(i, *row) for i, row in enumerate(rows))

    with open(partial, "w", encoding="utf-8") as partial_file:
        try:
            asyncio.run(label_all())
        except BackendUnavailable as error:
            raise Stopped(error, f"{len(results)} finished rows are in {partial}") from error
        finally:
            verifier.close()
            if cache is not None:
                cache.close()
    write_jsonl(out, (results[index] for index in range(len(rows))))
    partial.unlink()
    spent = sum(row["n_completions"] for row in results.values())
    with_error = sum(
        (row["first_error"] is not None and row["first_error"] >= 0) for row in results.values()
    )
    failed = sum(row["status"] == "failed" for row in results.values())
    sizes = f"K={policy.settings.num_branches}" if policy.option_effects()["num_branches"] else ""
    print(
        f"labelled {len(rows) - failed} solutions with {args.policy} "
        f"({', '.join(filter(None, [policy.rule.name, sizes, generator.prefix_mode]))}): "
        f"{with_error} with a first error, {failed} failed, {spent} completions -> {out}",
        file=sys.stderr,
    )
    return EXIT_OK if failed < max(1, len(rows)) else EXIT_FAILURE


def label_row(
    record: dict[str, Any], labels: LabelResult, pipeline: Pipeline, judge_model: str | None
) -> dict[str, Any]:
    """The output row of one input row: the input, the labels, and the critic's verdict."""
    row = {
        **record,
        "status": labels.status,
        "step_values": labels.step_values,
        "first_error": labels.first_error,
        "n_completions": labels.n_completions,
        "final_answer_correct": None
        if labels.final_verdict is None
        else labels.final_verdict.correct,
        "first_error_rule": pipeline.policy.rule.name,
        "prefix_mode": getattr(pipeline.generator, "prefix_mode", None),
    }
    if labels.status == "failed":
        row["reason"] = None if labels.reason is None else redact_secrets(labels.reason)
    if judge_model is not None:
        critique = labels.critique
        row["critic_model"] = judge_model
        row["critic_first_error"] = None if critique is None else critique.first_error
        row["critic_agrees"] = (
            None
            if critique is None or critique.first_error is None or labels.first_error is None
            else critique.first_error == labels.first_error
        )
    return row
