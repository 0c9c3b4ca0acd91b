"""The main job: search every seed question and stream the results to a folder.

The folder is the unit of a run.  ``run.json`` holds the settings it was
started with; ``trees.jsonl`` (kept questions) and ``skipped.jsonl`` (skipped
ones) are the primary records, one line per question written in a single
append, so a question is finished exactly when its line is complete.
``flat.jsonl``, ``sft.jsonl`` and ``dpo.jsonl`` are derived from the trees and
rebuilt whenever a run resumes, so a crash between files never leaves them
inconsistent.  ``summary.json`` says ``"complete": true`` only at the end.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import sys
import time
import types
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TextIO

import attrs

from prmsynth._errors import (
    BudgetExhausted,
    StorageError,
    redact_secrets,
    scrub_secrets,
    storage_error,
)
from prmsynth._interfaces import NoEvolution, SearchResult, evolution_report
from prmsynth._io import (
    SeenKeys,
    append_line,
    atomic_file,
    atomic_files,
    clean_leftovers,
    cut_torn_last_line,
    dumps_json,
    dumps_line,
    folder_lock,
    iter_appended_jsonl,
    read_appended_jsonl,
    scratch_folder,
    set_aside_corrupt_lines,
    write_json,
    write_jsonl,
)
from prmsynth._seeds import InputError, shard_of
from prmsynth._tree import ReasoningTree, TreeInvariantError
from prmsynth._values import Question, Usage
from prmsynth.evolve._files import (
    EVOLVED_FILE,
    load_evolved_questions,
    rejects_path_for,
    write_evolved,
)
from prmsynth.export._formats import validate_record
from prmsynth.export._serialize import (
    dpo_records,
    flat_record,
    result_to_tree_record,
    sft_records,
    tree_from_dict,
)
from prmsynth.run._budget import Budget, BudgetedGenerator, Ledger
from prmsynth.run._executor import Executor, LocalExecutor
from prmsynth.run._pipeline import Pipeline
from prmsynth.run._progress import Progress
from prmsynth.search._first_error import rule_spelling
from prmsynth.search._generation import DEFAULT_SYSTEM_PROMPT

_logger = logging.getLogger(__name__)

PRIMARY_FILES = ("trees.jsonl", "skipped.jsonl")
DERIVED_FILES = ("flat.jsonl", "sft.jsonl", "dpo.jsonl")
OUTPUT_FILES = (*PRIMARY_FILES, *DERIVED_FILES)
#: The export format (and JSON Schema) of each file a run writes.
RUN_FORMATS = {"flat.jsonl": "flat", "sft.jsonl": "sft", "dpo.jsonl": "dpo"}
SETTINGS_FILE = "run.json"
SUMMARY_FILE = "summary.json"
#: Keys of run.json that must match for a run to resume (the rest, such as
#: --limit or --shard, only choose which questions to run).  ``pipeline`` is
#: computed by the library from the Pipeline (`run_identity`), never by a caller.
IDENTITY_KEYS = (
    "pipeline",
    "seed_file_sha256",
    "seed_subset",
    "seed_split",
    "seed_revision",
    "question_fields",
    "answer_field",
    "id_field",
)
#: What run.json held in place of ``pipeline`` before it existed; a folder of
#: those versions is compared on these, less what its pipeline recorded.
_LEGACY_IDENTITY_KEYS = (
    "model",
    "api_base",
    "sampling",
    "policy",
    "first_error_rule",
    "verifier",
    "judge",
    "system_prompt",
)


def select_shard(questions: Iterable[Question], index: int, count: int) -> Iterator[Question]:
    """The questions of shard ``index`` of ``count`` (disjoint, and together all of them)."""
    return (question for question in questions if shard_of(question.id, count) == index)


def _known_total(questions: Iterable[Question]) -> int | None:
    """How many questions a run has, when it can know before reading them: a
    sized collection (a list, the command line's checked spool) can be read
    twice; a one-shot iterator is counted as it is read (None here)."""
    if isinstance(questions, _Shard):
        if not isinstance(questions.questions, Sized):
            return None
        return sum(1 for _ in questions)  # one pass more, in constant memory
    return len(questions) if isinstance(questions, Sized) else None


class _Pulled:
    """The questions as the search pulls them, counted, so that the total of a
    run over a one-shot iterator grows as it is read."""

    def __init__(self, questions: Iterable[Question]) -> None:
        self._questions = questions
        self.count = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[Question]:
        for question in self._questions:
            self.count += 1
            yield question
        self.exhausted = True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@attrs.define
class _Tally:
    """Counts for the run summary and the progress display."""

    status: collections.Counter = attrs.Factory(collections.Counter)
    skip_reasons: collections.Counter = attrs.Factory(collections.Counter)
    verdicts: collections.Counter = attrs.Factory(collections.Counter)
    failures: list = attrs.Factory(list)
    lines: collections.Counter = attrs.Factory(collections.Counter)
    #: What the questions' lines record as spent.
    usage: Usage = attrs.Factory(Usage)
    resumed: int = 0

    def add(self, record: dict[str, Any], *, status: str, verdicts: dict[str, int]) -> None:
        """Count one finished question from the line written for it (a tree
        line or a skipped line: both carry the id, reason and costs)."""
        reason = record.get("reason")
        self.status[status] += 1
        if status == "skipped":
            self.skip_reasons[reason or "unknown"] += 1
        elif status == "failed":
            self.failures.append({"question_id": record["question_id"], "reason": reason or ""})
        self.usage += Usage.from_record(record)
        self.verdicts.update(verdicts)

    @property
    def done(self) -> int:
        return sum(self.status.values())


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class RunSummary:
    """What a run did, as ``summary.json`` records it (`as_dict` gives its keys).

    A summary written while the run goes on has no ``finished_at`` (nor
    ``questions_total``, ``questions_not_done``, ``stopped_by`` and
    ``wall_seconds``); ``complete`` is True only when every question is done.
    ``usage`` is what the run spent (under a budget, what the ledger counted,
    the questions left unfinished included).
    """

    complete: bool
    started_at: str
    #: run.json's settings, repeated at the top of the summary.
    run_info: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    #: The corrupt lines set aside when the run resumed, described.
    lines_set_aside: tuple[str, ...] = ()
    questions_done: int
    questions_resumed: int
    kept: int
    skipped: int
    skipped_by_reason: Mapping[str, int] = attrs.field(converter=_frozen_mapping)
    failed: int
    failures: tuple[Mapping[str, str], ...] = ()
    usage: Usage
    rollout_verdicts: Mapping[str, int] = attrs.field(converter=_frozen_mapping)
    lines_written: Mapping[str, int] = attrs.field(converter=_frozen_mapping)
    questions_total: int | None = None
    questions_not_done: int | None = None
    stopped_by: str | None = None
    finished_at: str | None = None
    wall_seconds: float | None = None
    #: The error that ended the run, secrets redacted.
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary as ``summary.json`` holds it, keys in its order."""
        summary: dict[str, Any] = {
            "complete": self.complete,
            "started_at": self.started_at,
            **self.run_info,
        }
        if self.lines_set_aside:
            summary["lines_set_aside"] = list(self.lines_set_aside)
        summary.update(
            questions_done=self.questions_done,
            questions_resumed=self.questions_resumed,
            kept=self.kept,
            skipped=self.skipped,
            skipped_by_reason=dict(self.skipped_by_reason),
            failed=self.failed,
            failures=[dict(failure) for failure in self.failures],
            completions=self.usage.n_completions,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            cost_usd=round(self.usage.cost, 6),
            rollout_verdicts=dict(self.rollout_verdicts),
            lines_written=dict(self.lines_written),
        )
        if self.finished_at is not None:
            summary.update(
                questions_total=self.questions_total,
                questions_not_done=self.questions_not_done,
                stopped_by=self.stopped_by,
                finished_at=self.finished_at,
                wall_seconds=self.wall_seconds,
            )
        if self.error is not None:
            summary["error"] = self.error
        return summary


def _verdict_counts(tree: ReasoningTree) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for node in tree.nodes():
        data = tree.node(node)
        for rollout in (
            *data.correct_rollouts,
            *data.incorrect_rollouts,
            *data.unusable_rollouts,
        ):
            counts[rollout.verdict.status] += 1
    return dict(counts)


def _skipped_record(result: SearchResult) -> dict[str, Any]:
    root = result.tree.node(result.tree.root)
    return {
        "question_id": result.question.id,
        "question": result.question.text,
        "status": result.status,
        "reason": None if result.reason is None else redact_secrets(result.reason),
        "n_correct": root.n_correct,
        "n_rollouts": root.n_rollouts,
        **result.usage.as_record(),
        "rollout_verdicts": _verdict_counts(result.tree),
    }


@attrs.define(kw_only=True)
class _Folder:
    """What an output folder already holds: the ids of its finished questions
    and their counts (the trees themselves stay on disk)."""

    finished: set[str]
    tally: _Tally
    #: The corrupt lines set aside on resume, described.
    set_aside: list[str] = attrs.Factory(list)


def _clear(out_dir: Path) -> None:
    evolved = out_dir / EVOLVED_FILE
    for path in (
        *(out_dir / name for name in (*OUTPUT_FILES, SETTINGS_FILE, SUMMARY_FILE)),
        evolved,
        rejects_path_for(evolved),
    ):
        path.unlink(missing_ok=True)


def questions_to_search(
    pipeline: Pipeline,
    seeds: Iterable[Question],
    out_dir: Path,
    *,
    shard: tuple[int, int] | None = None,
    log: TextIO | None = None,
) -> Iterable[Question] | _EvolutionStream:
    """The questions a run searches: ``pipeline.evolver``'s, evolved once.

    Without an evolver, the seeds themselves, read lazily (a million of them
    never sit in memory).  When the folder holds ``evolved.jsonl`` from an
    earlier run, its questions.  Otherwise an `_EvolutionStream`
    that yields each question as evolution accepts it, so the search starts
    while evolution goes on; at its end the evolved set is written to
    ``evolved.jsonl`` (rejects beside it) and read back on resume, so a
    resumed run searches the same questions and pays for no evolution twice.
    With ``shard`` only that shard of the seeds (by a stable hash of the id)
    is evolved and searched, so every evolved question belongs to its seed's shard.
    """
    if isinstance(pipeline.evolver, NoEvolution):
        return seeds if shard is None else _Shard(questions=seeds, shard=shard)
    path = out_dir / EVOLVED_FILE
    if path.exists():
        return load_evolved_questions(path)
    if shard is not None:
        seeds = select_shard(seeds, *shard)
    # Evolution holds its population (seeds and every round) in memory.
    return _EvolutionStream(evolver=pipeline.evolver, seeds=list(seeds), path=path, log=log)


@attrs.frozen(kw_only=True)
class _Shard:
    """One shard of the seeds, read again from them each time it is iterated."""

    questions: Iterable[Question]
    shard: tuple[int, int]

    def __iter__(self) -> Iterator[Question]:
        return select_shard(self.questions, *self.shard)


async def _unfinished(
    questions: AsyncIterable[Question], finished: set[str]
) -> AsyncIterator[Question]:
    async for question in questions:
        if question.id not in finished:
            yield question


@attrs.define(kw_only=True)
class _EvolutionStream:
    """Evolved questions as they are accepted, then ``evolved.jsonl`` written."""

    evolver: Any
    seeds: list[Question]
    path: Path
    log: TextIO | None
    #: Every question yielded so far (the run's total grows with it).
    questions: list[Question] = attrs.Factory(list)
    finished: bool = False

    async def __aiter__(self) -> AsyncIterator[Question]:
        ready: asyncio.Queue[Question | None] = asyncio.Queue()
        task = asyncio.ensure_future(self._evolve(ready))
        try:
            while (question := await ready.get()) is not None:
                self.questions.append(question)
                yield question
            await task  # its error, if any (a backend gone), ends the run
        finally:
            if not task.done():
                task.cancel()

    async def _evolve(self, ready: asyncio.Queue[Question | None]) -> None:
        try:
            # Each question is searched as the evolver hands it over (Evolve-Instruct:
            # when its answer vote is won; an evolver with only `evolve`: at its end).
            report = await evolution_report(self.evolver, self.seeds, on_question=ready.put_nowait)
            questions, rejects = list(report.questions), list(report.rejects)
            write_evolved(self.path, questions, rejects)
            self.finished = True
            if self.log is not None:
                print(
                    f"evolve: {len(questions)} questions, {len(rejects)} rejected -> {self.path}",
                    file=self.log,
                )
        finally:
            ready.put_nowait(None)


def run_identity(pipeline: Pipeline) -> dict[str, Any]:
    """What ``run.json`` records of a (prepared) pipeline: its `identity` under
    ``pipeline``, compared on resume, and flat copies for readers (stats, the
    dataset card, the viewer).

    >>> from prmsynth import LLMStepGenerator, Pipeline
    >>> from prmsynth.testing import ScriptedLLM
    >>> pipeline = Pipeline(generator=LLMStepGenerator(llm=ScriptedLLM(lambda r: ""),
    ...                                                prefix_mode="quote"))
    >>> info = run_identity(pipeline)
    >>> info["prefix_mode"], info["policy"], info["first_error_rule"]["name"]
    ('quote', 'OmegaPRM', 'relative')
    >>> pipeline.verifier.close()
    """
    identity = pipeline.identity()
    generator, policy = identity["generator"], identity["policy"]
    settings = getattr(pipeline.policy, "settings", None)
    return {
        "pipeline": identity,
        "policy": policy["name"],
        "search": settings.to_dict() if hasattr(settings, "to_dict") else None,
        "first_error_rule": policy.get("first_error_rule"),
        "sampling": generator.get("sampling"),
        "prefix_mode": generator.get("prefix_mode"),
        "system_prompt": generator.get("system_prompt", DEFAULT_SYSTEM_PROMPT),
        "verifier": identity["verifier"]["name"],
    }


def _paths_differing(old: Any, new: Any, path: str) -> list[str]:
    """Where two identities differ, as dotted paths with both values
    (``pipeline.policy.settings.max_search: was 4, now 9``); parts of another
    name (another policy, another rule) are one difference, not one per field."""
    if isinstance(old, dict) and isinstance(new, dict):
        if "name" in old and "name" in new and old["name"] != new["name"]:
            return _paths_differing(old["name"], new["name"], f"{path}.name")
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _paths_differing(old.get(key), new.get(key), f"{path}.{key}")
        return found
    if old == new:
        return []
    shown = [json.dumps(value, default=str) for value in (old, new)]
    if max(map(len, shown)) > 40:
        return [path]
    return [f"{path}: was {shown[0]}, now {shown[1]}"]


def _legacy_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A folder of a version before the pipeline identity, compared on the keys it has."""
    pipeline = new["pipeline"]
    keys = list(_LEGACY_IDENTITY_KEYS)
    if pipeline["policy"].get("first_error_rule") is None:
        keys.remove("first_error_rule")  # recorded then for every policy, used by some
    differences = [k for k in keys if old.get(k) != new.get(k)]
    # Before prefix modes, the embedded model continued a prefix and servers got it quoted.
    implied = "continue" if str(old.get("model", "")).startswith("prmsynth/") else "quote"
    if new.get("prefix_mode") != implied:
        differences.append("prefix_mode")
    used = pipeline["policy"].get("settings") or {}
    old_search = old.get("search") or {}
    differences += [f"search.{k}" for k in used if old_search.get(k) != used[k]]
    evolver = pipeline.get("evolver") or {}
    if old.get("evolution") != evolver.get("settings"):
        differences.append("evolution")
    return differences


def _identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    # As written: run.json holds its settings without credentials (a password
    # in --api-base is ***), so they are compared that way.
    old, new = scrub_secrets(old), scrub_secrets(new)
    differences = []
    for key in IDENTITY_KEYS:
        if key == "pipeline" and "pipeline" not in old and "pipeline" in new:
            differences += _legacy_differences(old, new)
        else:
            differences += _paths_differing(old.get(key), new.get(key), key)
    return differences


def _rule_hint(old: dict[str, Any], differences: list[str]) -> str:
    """How to ask for the first-error rule a folder was started with, when the
    rule is among the differences (another version's defaults, say)."""
    if not any(d.startswith("pipeline.policy.first_error_rule") for d in differences):
        return ""
    recorded = ((old.get("pipeline") or {}).get("policy") or {}).get("first_error_rule")
    spelled = rule_spelling(recorded) if isinstance(recorded, dict) else None
    return f" (its rule: --first-error-rule {spelled})" if spelled else ""


def prepare_output_directory(
    out_dir: Path, run_info: dict[str, Any], *, overwrite: bool
) -> _Folder:
    """Start a folder, or resume the run it holds.

    A folder started with other settings is refused (``--overwrite`` starts
    over).  On resume, torn last lines are cut, failed questions are dropped
    so they run again, and the derived files are rebuilt from the trees.
    """
    settings_path = out_dir / SETTINGS_FILE
    present = [n for n in (*OUTPUT_FILES, SUMMARY_FILE, SETTINGS_FILE) if (out_dir / n).exists()]
    if present and overwrite:
        _clear(out_dir)
        present = []
    if present:
        if not settings_path.exists():
            raise InputError(
                out_dir,
                f"holds files of an unknown run ({', '.join(present)}); "
                "choose another --out or pass --overwrite to start over",
            )
        try:
            old = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(settings_path, f"cannot read: {error}") from None
        differences = _identity_differences(old, run_info)
        if differences:
            raise InputError(
                out_dir,
                "was started with other settings (" + "; ".join(differences) + "); "
                "run with the same settings to resume"
                + _rule_hint(old, differences)
                + ", or pass --overwrite to start over",
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(settings_path, run_info)
    set_aside = [
        *set_aside_corrupt_lines(out_dir / "trees.jsonl"),
        *set_aside_corrupt_lines(out_dir / "skipped.jsonl"),
    ]
    for name in PRIMARY_FILES:
        cut_torn_last_line(out_dir / name)
    folder = _Folder(finished=set(), tally=_Tally(), set_aside=set_aside)
    _resume_trees(out_dir, folder, run_info.get("system_prompt", DEFAULT_SYSTEM_PROMPT))
    _resume_skipped(out_dir, folder)
    folder.tally.resumed = folder.tally.done
    return folder


def _resume_trees(out_dir: Path, folder: _Folder, system_prompt: str) -> None:
    """Count the kept trees and write the derived files afresh from them, one
    tree at a time; a question kept twice keeps its first tree."""
    path = out_dir / "trees.jsonl"
    duplicates = False
    names = list(DERIVED_FILES)
    with atomic_files([out_dir / name for name in names]) as handles:
        files = dict(zip(names, handles, strict=True))
        for line, record in _appended(path):
            try:
                tree = tree_from_dict(record)
            except TreeInvariantError as error:
                raise InputError(path, str(error), line=line) from None
            if tree.question.id in folder.finished:
                duplicates = True
                continue
            folder.finished.add(tree.question.id)
            folder.tally.add(record, status="kept", verdicts=_verdict_counts(tree))
            _write_derived(files, tree, system_prompt)
    if duplicates:
        write_jsonl(path, _first_of_each_question(_appended(path)))


def _first_of_each_question(lines: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[dict]:
    seen: set[str] = set()
    for _, record in lines:
        if record["question_id"] not in seen:
            seen.add(record["question_id"])
            yield record


def _resume_skipped(out_dir: Path, folder: _Folder) -> None:
    """Keep the skipped questions' lines (failed ones run again), unless the
    question was kept after all."""
    path = out_dir / "skipped.jsonl"
    finished = folder.finished  # kept trees so far; each skipped question joins it once

    def still_skipped() -> Iterator[dict[str, Any]]:
        for _, record in _appended(path):
            if record.get("status") != "skipped" or record["question_id"] in finished:
                continue
            finished.add(record["question_id"])
            folder.tally.add(record, status="skipped", verdicts=record.get("rollout_verdicts", {}))
            yield record

    write_jsonl(path, still_skipped())


def derived_records(tree: ReasoningTree, system_prompt: str) -> dict[str, list[dict[str, Any]]]:
    """The flat, SFT and DPO lines of one kept tree."""
    return {
        "flat.jsonl": [flat_record(tree)],
        "sft.jsonl": sft_records(tree, system_prompt=system_prompt),
        "dpo.jsonl": dpo_records(tree, system_prompt=system_prompt),
    }


def _write_derived(files: dict[str, IO[str]], tree: ReasoningTree, system_prompt: str) -> None:
    for name, records in derived_records(tree, system_prompt).items():
        files[name].writelines(dumps_line(record) for record in records)


def run_to_directory(
    pipeline: Pipeline,
    questions: Iterable[Question],
    out_dir: Path,
    *,
    run_info: dict[str, Any],
    overwrite: bool = False,
    budget: Budget | None = None,
    log: TextIO | None = sys.stderr,
    progress_interval: float = 10.0,
    on_result: Callable[[SearchResult], None] | None = None,
    shard: tuple[int, int] | None = None,
    extra_files: Mapping[str, str] | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Evolve (with ``pipeline.evolver``) and search ``questions`` into
    ``out_dir``, resuming what the folder already holds.

    Each finished question is one appended line in ``trees.jsonl`` or
    ``skipped.jsonl``, so a crash (SIGKILL included) keeps every finished
    question and a rerun of the same command continues where it stopped.
    ``summary.json`` says ``"complete": true`` only when every question is
    done; the returned [`RunSummary`][prmsynth.run._folder.RunSummary] is what it
    says last.  ``questions`` are read lazily, as the search takes them: a list, a
    [`QuestionSpool`][prmsynth._seeds.QuestionSpool] or any other sized
    collection gives the progress its total at the start, a one-shot iterator
    (from [`iter_questions`][prmsynth.iter_questions]) as it is read.
    Raises [`InputError`][prmsynth.InputError] when the folder holds a run with other
    settings (unless ``overwrite``).  ``extra_files`` (name: text, such as the
    command line's ``config.yaml``) are written beside ``run.json`` once the
    folder is accepted.  ``executor`` searches the questions (default: this
    process; [`RayExecutor`][prmsynth.RayExecutor]: a Ray cluster); the
    folder is written here either way.
    """
    _check_budget_can_finish(pipeline, budget)
    with folder_lock(out_dir):
        clean_leftovers(out_dir)  # what a killed command left: finished or removed
        return _run_locked(
            pipeline,
            questions,
            out_dir,
            run_info=run_info,
            overwrite=overwrite,
            budget=budget or Budget(),
            log=log,
            progress_interval=progress_interval,
            on_result=on_result,
            shard=shard,
            extra_files=extra_files or {},
            executor=executor or LocalExecutor(),
        )


def _check_budget_can_finish(pipeline: Pipeline, budget: Budget | None) -> None:
    """Refuse a completion budget below what one question needs to be screened:
    it could only spend without finishing anything."""
    settings = getattr(pipeline.policy, "settings", None)
    if budget is None or budget.max_completions is None or settings is None:
        return
    needed = min(getattr(settings, "screen_rollouts", 1), getattr(settings, "max_branches", 1))
    if budget.max_completions < needed:
        raise InputError(
            "--max-completions",
            f"{budget.max_completions} is below the {needed} completions that screening one "
            "question takes (screen_rollouts); no question could finish",
        )


def _run_locked(
    pipeline: Pipeline,
    questions: Iterable[Question],
    out_dir: Path,
    *,
    run_info: dict[str, Any],
    overwrite: bool,
    budget: Budget,
    log: TextIO | None,
    progress_interval: float,
    on_result: Callable[[SearchResult], None] | None,
    shard: tuple[int, int] | None,
    extra_files: Mapping[str, str],
    executor: Executor,
) -> RunSummary:
    started = time.monotonic()
    # The prefix mode is settled (a probe, for "auto") before the identity is taken.
    pipeline = asyncio.run(pipeline.prepared())
    run_info = {**run_info, **run_identity(pipeline)}
    folder = prepare_output_directory(out_dir, run_info, overwrite=overwrite)
    for name, text in extra_files.items():
        with atomic_file(out_dir / name) as file:
            file.write(text)
    for problem in folder.set_aside:
        if log is not None:
            print(f"warning: {problem}; its question runs again", file=log)
    # Where evolution runs is the executor's (a Ray cluster's worker, or here).
    evolver = executor.evolver_for(pipeline.evolver)
    if evolver is not pipeline.evolver:
        pipeline = attrs.evolve(pipeline, evolver=evolver)
    to_search = questions_to_search(pipeline, questions, out_dir, shard=shard, log=log)
    loop = _RunLoop(
        pipeline=pipeline,
        executor=executor,
        out_dir=out_dir,
        run_info=run_info,
        folder=folder,
        questions=_Questions.of(to_search, folder),
        budget=budget,
        started=started,
        on_result=on_result,
        log=log,
        progress_interval=progress_interval,
    )
    return loop.run()


@attrs.define(kw_only=True)
class _Questions:
    """The questions a run has left to search, and how many it has in all."""

    remaining: Iterator[Question] | AsyncIterator[Question]
    #: The evolution that yields the questions, when the run evolves them.
    evolution: _EvolutionStream | None = None
    #: The seeds as the search pulls them, otherwise.
    pulled: _Pulled | None = None
    #: Their number, when it is known before they are read.
    known_total: int | None = None

    @classmethod
    def of(cls, to_search: Iterable[Question] | _EvolutionStream, folder: _Folder) -> _Questions:
        if isinstance(to_search, _EvolutionStream):
            return cls(remaining=_unfinished(to_search, folder.finished), evolution=to_search)
        pulled = _Pulled(to_search)
        return cls(
            remaining=(question for question in pulled if question.id not in folder.finished),
            pulled=pulled,
            known_total=_known_total(to_search),
        )

    def total(self, done: int) -> int:
        """How many questions the run has (``done`` of them are finished)."""
        if self.evolution is not None:
            return len(self.evolution.questions)  # grows as evolution accepts questions
        if self.known_total is not None:
            return self.known_total
        # An iterator not read to its end: at least what is done.
        return max(self.pulled.count if self.pulled is not None else 0, done)

    def all_known(self) -> bool:
        """Whether `total` is final: every question was read (or counted beforehand)."""
        if self.evolution is not None:
            return self.evolution.finished
        return self.known_total is not None or (self.pulled is not None and self.pulled.exhausted)


@attrs.define(kw_only=True)
class _RunLoop:
    """One run over a prepared folder: search, write each finished question's
    lines (`take`), stop when the budget is spent (`should_stop`), and write
    the summary (`finish`)."""

    pipeline: Pipeline
    executor: Executor
    out_dir: Path
    run_info: dict[str, Any]
    folder: _Folder
    questions: _Questions
    budget: Budget
    #: ``time.monotonic()`` when the run started.
    started: float
    on_result: Callable[[SearchResult], None] | None = None
    log: TextIO | None = None
    progress_interval: float = 10.0
    started_at: str = attrs.Factory(_now)
    #: What earlier runs in this folder spent on no line (their unfinished and
    #: failed questions): it counts against the budget too.
    unlined: Usage = attrs.field(init=False)
    ledger: Ledger = attrs.field(init=False)
    progress: Progress = attrs.field(init=False)
    stopped_by: str | None = None
    files: dict[str, IO[str]] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        # Only the summary carries the spend of questions that wrote no line;
        # every summary, a run's first one included, carries it on, so that a
        # run killed before its last summary passes it to the next.
        earlier = _read_json(self.summary_path) or {}
        lined = self.tally.usage
        self.unlined = Usage(
            n_completions=max(0, earlier.get("completions", 0) - lined.n_completions),
            cost=max(0.0, earlier.get("cost_usd", 0.0) - lined.cost),
        )
        self.ledger = Ledger(
            budget=self.budget,
            spent=Usage(
                n_completions=lined.n_completions + self.unlined.n_completions,
                cost=lined.cost + self.unlined.cost,
            ),
        )
        if self.budget.limited:
            # Every request reserves its share before it is sent (see run._budget).
            generator = BudgetedGenerator(generator=self.pipeline.generator, ledger=self.ledger)
            self.pipeline = attrs.evolve(self.pipeline, generator=generator)
        self.progress = Progress(
            total=self.questions.total(self.tally.done),
            stream=self.log,
            interval=self.progress_interval,
            detail=self.executor.progress_detail,
        )

    @property
    def tally(self) -> _Tally:
        return self.folder.tally

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def system_prompt(self) -> str:
        return self.run_info["system_prompt"]

    def run(self) -> RunSummary:
        """Search every remaining question into the folder; returns the last summary."""
        write_json(self.summary_path, self.summary().as_dict())
        self.progress.update(self.tally)
        self.files = {name: _open_for_append(self.out_dir / name) for name in OUTPUT_FILES}
        error: BaseException | None = None
        try:
            asyncio.run(self._consume())
        except BaseException as caught:  # keep the summary honest, then re-raise
            error = caught
            fatal = storage_error(caught)
            if fatal is not None:
                fatal.after_work = True  # the questions finished before it stay in the folder
                error = fatal
                raise fatal from None
            raise
        finally:
            summary = self.finish(error)
        return summary

    async def _consume(self) -> None:
        # aclosing: an error here (a full disk) stops the search at once.
        async with contextlib.aclosing(
            self.executor.astream(
                self.pipeline, self.questions.remaining, stop_when=self.should_stop
            )
        ) as results:
            async for result in results:
                self.take(result)

    def should_stop(self) -> bool:
        """Whether the budget is spent; the first reason is kept as ``stopped_by``."""
        ledger, budget = self.ledger, self.budget
        reason = ledger.exhausted
        if (
            budget.max_completions is not None
            and ledger.spent_completions >= budget.max_completions
        ):
            reason = reason or "max_completions"
        if budget.max_cost is not None and ledger.spent_cost >= budget.max_cost:
            reason = reason or "max_cost"
        if self.stopped_by is None:
            self.stopped_by = reason
        return reason is not None

    def take(self, result: SearchResult) -> None:
        """Write one finished question's lines and count it."""
        if result.status == "failed" and self.ledger.exhausted is not None:
            if (result.reason or "").startswith(BudgetExhausted.__name__):
                # Stopped by the budget, not failed: nothing is written, and a
                # resumed run searches the question again.
                self.should_stop()
                self.progress.update(self.tally, result)
                return
        lines = self._kept_lines(result) if result.status == "kept" else []
        problems = _schema_problems(lines)
        if problems:
            # Nothing that fails its schema is written; the question is
            # recorded as failed (and runs again on resume).
            result = attrs.evolve(
                result, status="failed", reason="schema: " + "; ".join(problems[:3])
            )
            _logger.warning("question %s failed: %s", result.question.id, result.reason)
            lines = []
        if not lines:
            lines = [("skipped.jsonl", _skipped_record(result))]
        # A kept question's tree line is its commit; derived lines follow.
        for name, record in lines:
            append_line(self.files[name], record)
            self.tally.lines[name] += 1
        self.tally.add(lines[0][1], status=result.status, verdicts=_verdict_counts(result.tree))
        self.progress.total = self.questions.total(self.tally.done)
        self.progress.update(self.tally, result)
        if self.on_result is not None:
            self.on_result(result)

    def _kept_lines(self, result: SearchResult) -> list[tuple[str, dict[str, Any]]]:
        """Every line a kept question writes, its tree line first."""
        lines = [("trees.jsonl", result_to_tree_record(result))]
        for name, records in derived_records(result.tree, self.system_prompt).items():
            lines += [(name, record) for record in records]
        return lines

    def finish(self, error: BaseException | None) -> RunSummary:
        """Close the files and write the final summary (also after ``error``)."""
        for file in self.files.values():
            with contextlib.suppress(OSError):  # each line was written and synced already
                file.close()
        self.pipeline.verifier.close()
        self.progress.close(self.tally)
        summary = self.summary(finished=True, error=error)
        try:
            write_json(self.summary_path, summary.as_dict())
        except StorageError:
            if error is None:
                raise
            # The run stops for its own error; the summary is rebuilt on resume.
        return summary

    def spent(self) -> Usage:
        """What the run has spent: under a budget, the ledger's count (it saw
        every request, unfinished questions' too); else what the lines record
        and earlier runs spent on no line."""
        if self.budget.limited:
            spent = self.ledger.spent
            return attrs.evolve(
                self.tally.usage, n_completions=spent.n_completions, cost=spent.cost
            )
        return self.tally.usage + self.unlined

    def summary(self, *, finished: bool = False, error: BaseException | None = None) -> RunSummary:
        """The summary now; with ``finished``, the one the run ends with."""
        tally = self.tally
        end: dict[str, Any] = {}
        complete = False
        if finished:
            total = self.questions.total(tally.done)
            not_done = total - tally.done
            complete = (
                error is None
                and self.stopped_by is None
                and tally.status["failed"] == 0
                and not_done == 0
                and self.questions.all_known()
            )
            end = {
                "questions_total": total,
                "questions_not_done": not_done,
                "stopped_by": self.stopped_by,
                "finished_at": _now(),
                "wall_seconds": round(time.monotonic() - self.started, 3),
            }
            if error is not None:
                end["error"] = redact_secrets(f"{type(error).__name__}: {error}")
        return RunSummary(
            complete=complete,
            started_at=self.started_at,
            run_info=self.run_info,
            lines_set_aside=tuple(self.folder.set_aside),
            questions_done=tally.done,
            questions_resumed=tally.resumed,
            kept=tally.status["kept"],
            skipped=tally.status["skipped"],
            skipped_by_reason=tally.skip_reasons,
            failed=tally.status["failed"],
            failures=tuple(tally.failures),
            usage=self.spent(),
            rollout_verdicts=tally.verdicts,
            lines_written=tally.lines,
            **end,
        )


def _schema_problems(lines: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Every line checked against its format's schema."""
    problems = []
    for name, record in lines:
        if name == "trees.jsonl":
            problems += [f"tree: {p}" for p in validate_record(record, "tree")]
        else:
            problems += [f"{name}: {p}" for p in validate_record(record, RUN_FORMATS[name])]
    return problems


def _open_for_append(path: Path) -> IO[str]:
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise (storage_error(error, path) or error) from None


def _missing_shards(infos: Sequence[dict[str, Any]]) -> list[str]:
    """The shards ``"I/N"`` of a sharded run that none of the folders holds."""
    shards = set()
    for info in infos:
        try:
            index, count = (int(part) for part in str(info.get("shard")).split("/"))
        except ValueError:
            return []  # not sharded
        shards.add((index, count))
    counts = {count for _, count in shards}
    if len(counts) != 1:
        return []  # shards of different splits
    count = counts.pop()
    return [f"{index}/{count}" for index in range(count) if (index, count) not in shards]


def merge_directories(sources: Sequence[Path], out_dir: Path) -> dict[str, Any]:
    """Join the output folders of several shards into ``out_dir``.

    The shards must have been run with the same settings; a question present
    in several shards is kept once.  Derived files are rebuilt from the trees.
    Records are streamed one at a time (the question ids met so far are kept
    in a scratch file), so memory stays flat however many questions there are;
    every file, ``run.json`` and ``summary.json`` included, is renamed into
    place together once all are written.  Merging the same shards again into
    the folder (a rerun) makes the merge afresh.
    """
    infos = []
    for source in sources:
        info = _read_json(source / SETTINGS_FILE)
        if info is None:
            raise InputError(source, f"has no {SETTINGS_FILE}: not a prmsynth run folder")
        infos.append(info)
    for source, info in zip(sources[1:], infos[1:], strict=True):
        differences = _identity_differences(infos[0], info)
        if differences:
            raise InputError(
                source, f"was run with other settings than {sources[0]} ({'; '.join(differences)})"
            )
    with folder_lock(out_dir):  # a run or another merge into the folder is refused
        return _merge_locked(sources, infos, out_dir)


def _merge_locked(
    sources: Sequence[Path], infos: Sequence[dict[str, Any]], out_dir: Path
) -> dict[str, Any]:
    clean_leftovers(out_dir)  # a killed merge's renames finished, its scratch removed
    merged_from = [str(source) for source in sources]
    if any((out_dir / name).exists() for name in (*OUTPUT_FILES, SETTINGS_FILE)):
        # The same merge again (a rerun) is made afresh; anything else is refused.
        if (_read_json(out_dir / SETTINGS_FILE) or {}).get("merged_from") != merged_from:
            raise InputError(out_dir, "already holds a run; merge into an empty folder")
    system_prompt = infos[0].get("system_prompt", DEFAULT_SYSTEM_PROMPT)
    incomplete = []
    kept = skipped = completions = 0
    # The summary's cost is summed as before, trees then skipped, so it comes
    # out the same to the last bit: a float per question, never the records.
    tree_costs, skipped_costs = array.array("d"), array.array("d")
    names = [*OUTPUT_FILES, SETTINGS_FILE, SUMMARY_FILE]
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_folder(out_dir / "merge"))
        seen = stack.enter_context(SeenKeys(scratch / "questions.sqlite"))
        # Every file, run.json and summary.json included, is renamed into place
        # together once all are written: a killed merge leaves the folder as it
        # was, or (its renames finished by the next command) merged.
        handles = stack.enter_context(atomic_files([out_dir / name for name in names]))
        files = dict(zip(names, handles, strict=True))
        for source in sources:
            if not (_read_json(source / SUMMARY_FILE) or {}).get("complete"):
                incomplete.append(str(source))
            for line, record in _appended(source / "trees.jsonl"):
                if not seen.first(_question_key(record["question_id"])):
                    continue
                try:
                    tree = tree_from_dict(record)
                except TreeInvariantError as error:
                    raise InputError(source / "trees.jsonl", str(error), line=line) from None
                files["trees.jsonl"].write(dumps_line(record))
                _write_derived(files, tree, system_prompt)
                kept += 1
                completions += record.get("n_completions", 0)
                tree_costs.append(record.get("cost", 0.0))
            for _, record in _appended(source / "skipped.jsonl"):
                if record.get("status") == "skipped" and seen.first(
                    _question_key(record["question_id"])
                ):
                    files["skipped.jsonl"].write(dumps_line(record))
                    skipped += 1
                    completions += record.get("n_completions", 0)
                    skipped_costs.append(record.get("cost", 0.0))
        info = {key: value for key, value in infos[0].items() if key != "shard"}
        info["merged_from"] = merged_from
        files[SETTINGS_FILE].write(dumps_json(info))
        missing = _missing_shards(infos)
        summary = {
            **info,
            # Complete only with every shard present and every one of them complete.
            "complete": not incomplete and not missing,
            "incomplete_shards": incomplete,
            "missing_shards": missing,
            "kept": kept,
            "skipped": skipped,
            "completions": completions,
            "cost_usd": sum(itertools.chain(tree_costs, skipped_costs)),
            "finished_at": _now(),
        }
        files[SUMMARY_FILE].write(dumps_json(summary))
    return summary


def _appended(path: Path) -> Iterator[tuple[int, Any]]:
    """The records of a shard's append-only file, streamed (none when it is absent)."""
    return iter_appended_jsonl(path) if path.exists() else iter(())


def _question_key(question_id: Any) -> bytes:
    return str(question_id).encode("utf-8", "surrogatepass")


@attrs.frozen
class RunFolder:
    """A durable run folder: what ``prmsynth run`` writes, from Python.

    One line per finished question in ``trees.jsonl`` (kept) or
    ``skipped.jsonl`` (skipped or failed, with the reason), the derived
    ``flat.jsonl``, ``sft.jsonl`` and ``dpo.jsonl``, the settings in
    ``run.json`` and the counts in ``summary.json``.  [`run`][prmsynth.RunFolder.run]
    resumes what the folder holds: a crash keeps every finished question and
    the same call continues; a folder run with other settings is refused.

    >>> import tempfile
    >>> from prmsynth import LLMStepGenerator, Pipeline, Question, SearchSettings, OmegaPRM
    >>> from prmsynth.testing import ScriptedLLM
    >>> llm = ScriptedLLM(lambda request: "2 + 3 = 5.\\n\\nThe answer is \\\\boxed{5}.")
    >>> pipeline = Pipeline(generator=LLMStepGenerator(llm=llm),
    ...                     policy=OmegaPRM(settings=SearchSettings(screen_rollouts=2)))
    >>> folder = RunFolder(tempfile.mkdtemp())
    >>> summary = folder.run(pipeline, [Question(id="q1", text="2 + 3?", reference_answer="5")])
    >>> summary["complete"], summary["skipped_by_reason"], folder.summary()["questions_done"]
    (True, {'all_correct': 1}, 1)
    >>> [record["reason"] for record in folder.skipped()]
    ['all_correct']
    >>> pipeline.verifier.close()
    """

    path: Path = attrs.field(converter=Path)

    def run(
        self,
        pipeline: Pipeline,
        questions: Iterable[Question],
        *,
        run_info: dict[str, Any] | None = None,
        overwrite: bool = False,
        max_completions: int | None = None,
        max_cost: float | None = None,
        log: TextIO | None = None,
        on_result: Callable[[SearchResult], None] | None = None,
        shard: tuple[int, int] | None = None,
        executor: Executor | None = None,
    ) -> dict[str, Any]:
        """Evolve (``pipeline.evolver``, kept in ``evolved.jsonl``) and search
        ``questions`` into the folder, resuming it; returns the summary.

        ``questions`` may be any iterable, read as the search takes them: a
        one-shot iterator ([`iter_questions`][prmsynth.iter_questions]) keeps a
        million seeds out of memory.

        ``run_info`` is recorded in ``run.json``; its settings (model,
        sampling, search, ...) must match the folder's on resume unless
        ``overwrite``.  ``max_completions`` / ``max_cost`` (US dollars) are
        hard: every request reserves its share before it is sent, and a
        question the budget cannot finish is left for a resumed run.
        ``log`` gets progress lines (None: quiet).
        ``shard=(i, n)`` searches only shard ``i`` of ``n`` (join them with
        [`merge`][prmsynth.RunFolder.merge]).  ``executor``: where the
        questions are searched (default: this process;
        [`RayExecutor`][prmsynth.RayExecutor] ships the Pipeline to a Ray
        cluster's workers; the folder is written here either way).
        """
        summary = run_to_directory(
            pipeline,
            questions,
            self.path,
            run_info=dict(run_info or {}),
            overwrite=overwrite,
            budget=Budget(max_completions=max_completions, max_cost=max_cost),
            log=log,
            on_result=on_result,
            shard=shard,
            executor=executor,
        )
        return summary.as_dict()

    def merge(self, shards: Sequence[str | os.PathLike]) -> dict[str, Any]:
        """Join the folders of a sharded run into this (empty or new) folder;
        returns the merged summary."""
        return merge_directories([Path(shard) for shard in shards], self.path)

    def trees(self) -> Iterator[ReasoningTree]:
        """The kept trees, in the order they finished, read one at a time."""
        for _, record in _appended(self.path / "trees.jsonl"):
            yield tree_from_dict(record)

    def skipped(self) -> list[dict[str, Any]]:
        """The skipped and failed questions' records (``status``, ``reason``, costs)."""
        return read_appended_jsonl(self.path / "skipped.jsonl", repair=False)

    def settings(self) -> dict[str, Any] | None:
        """``run.json``: the settings the folder was run with (None before a run)."""
        return _read_json(self.path / SETTINGS_FILE)

    def summary(self) -> dict[str, Any] | None:
        """``summary.json``: counts, costs and whether every question is done."""
        return _read_json(self.path / SUMMARY_FILE)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot be read as JSON: {error}") from None
