"""The main job: search every seed question and stream the results to a folder."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from prmsynth._generation import DEFAULT_SYSTEM_PROMPT
from prmsynth._pipeline import Pipeline
from prmsynth._search import SearchResult
from prmsynth._seeds import InputError
from prmsynth._serialize import (
    append_line,
    dpo_records,
    flat_record,
    result_to_tree_record,
    sft_records,
    write_json_atomic,
)
from prmsynth._values import Question

OUTPUT_FILES = ("trees.jsonl", "flat.jsonl", "sft.jsonl", "dpo.jsonl", "skipped.jsonl")
SUMMARY_FILE = "summary.json"


def prepare_output_directory(out_dir: Path, *, overwrite: bool) -> None:
    """Refuse to mix a new run into a folder that holds an earlier one."""
    existing = [name for name in (*OUTPUT_FILES, SUMMARY_FILE) if (out_dir / name).exists()]
    if existing and not overwrite:
        raise InputError(
            out_dir,
            f"already holds a run ({', '.join(existing)}); "
            "choose another --out or pass --overwrite",
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Tally:
    """Counts for the run summary."""

    def __init__(self) -> None:
        self.status: collections.Counter[str] = collections.Counter()
        self.skip_reasons: collections.Counter[str] = collections.Counter()
        self.verdicts: collections.Counter[str] = collections.Counter()
        self.failures: list[dict[str, str]] = []
        self.lines: collections.Counter[str] = collections.Counter()
        self.n_completions = self.prompt_tokens = self.completion_tokens = 0

    def add(self, result: SearchResult) -> None:
        self.status[result.status] += 1
        if result.status == "skipped":
            self.skip_reasons[result.reason or "unknown"] += 1
        elif result.status == "failed":
            self.failures.append({"question_id": result.question.id, "reason": result.reason or ""})
        self.n_completions += result.n_completions
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        tree = result.tree
        for node in tree.nodes():
            for rollout in (*tree[node]["correct_rollouts"], *tree[node]["incorrect_rollouts"]):
                self.verdicts[rollout.verdict.status] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "questions_done": sum(self.status.values()),
            "kept": self.status["kept"],
            "skipped": self.status["skipped"],
            "skipped_by_reason": dict(self.skip_reasons),
            "failed": self.status["failed"],
            "failures": self.failures,
            "completions": self.n_completions,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "rollout_verdicts": dict(self.verdicts),
            "lines_written": dict(self.lines),
        }


def run_to_directory(
    pipeline: Pipeline,
    questions: Sequence[Question],
    out_dir: Path,
    *,
    run_info: dict[str, Any],
    log: TextIO | None = sys.stderr,
    on_result: Callable[[SearchResult], None] | None = None,
) -> dict[str, Any]:
    """Search ``questions`` and write every output file in ``out_dir``.

    Each question's lines are appended (and flushed) as soon as it finishes,
    so a crash keeps all finished questions.  ``summary.json`` is written at
    the start with ``"complete": false`` and replaced at the end; only a
    summary that says ``"complete": true`` marks a finished run.
    """
    started = time.monotonic()
    tally = _Tally()
    summary: dict[str, Any] = {"complete": False, "started_at": _now(), **run_info}
    summary_path = out_dir / SUMMARY_FILE
    write_json_atomic(summary_path, summary)
    system_prompt = getattr(pipeline.generator, "system_prompt", DEFAULT_SYSTEM_PROMPT)
    files = {name: open(out_dir / name, "w", encoding="utf-8") for name in OUTPUT_FILES}

    def write(name: str, record: dict[str, Any]) -> None:
        append_line(files[name], record)
        tally.lines[name] += 1

    async def consume() -> None:
        async for result in pipeline.astream(questions):
            tally.add(result)
            if result.status == "kept":
                write("trees.jsonl", result_to_tree_record(result))
                write("flat.jsonl", flat_record(result.tree))
                for record in sft_records(result.tree, system_prompt=system_prompt):
                    write("sft.jsonl", record)
                for record in dpo_records(result.tree, system_prompt=system_prompt):
                    write("dpo.jsonl", record)
            else:
                root = result.tree[result.tree.root]
                write(
                    "skipped.jsonl",
                    {
                        "question_id": result.question.id,
                        "status": result.status,
                        "reason": result.reason,
                        "n_correct": root["n_correct"],
                        "n_rollouts": root["n_rollouts"],
                    },
                )
            if log is not None:
                done = sum(tally.status.values())
                detail = f"{result.reason}" if result.reason else f"{len(result.tree)} nodes"
                print(
                    f"[{done}/{len(questions)}] question {result.question.id}: {result.status} "
                    f"({detail}; {result.n_completions} completions)",
                    file=log,
                    flush=True,
                )
            if on_result is not None:
                on_result(result)

    error: BaseException | None = None
    try:
        asyncio.run(consume())
    except BaseException as caught:  # keep the summary honest, then re-raise
        error = caught
        raise
    finally:
        for file in files.values():
            file.close()
        pipeline.verifier.close()
        summary.update(tally.as_dict())
        summary.update(
            complete=error is None,
            finished_at=_now(),
            wall_seconds=round(time.monotonic() - started, 3),
            questions_total=len(questions),
        )
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        write_json_atomic(summary_path, summary)
    return summary
