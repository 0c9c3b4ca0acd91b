"""``prmsynth run``: search seed questions into reasoning trees in a durable run folder."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prmsynth._errors import BackendUnavailable, InputError
from prmsynth._interfaces import NoEvolution
from prmsynth._sources import HUB_PREFIX, RowSource
from prmsynth._values import SearchSettings
from prmsynth._version import __version__
from prmsynth.cli import _evolve as _evolve_cli
from prmsynth.cli._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Stopped,
    add_backend_options,
    add_field_option,
    add_first_error_options,
    add_judge_options,
    add_model_options,
    add_seed_options,
    backend_settings_from_args,
    generator_from_args,
    judge_info,
    open_backend,
    policy_from_args,
    questions_from_args,
    reports_errors,
    sampling_from_args,
    seed_source_from_args,
)
from prmsynth.cli._config import dump_config, effective_config
from prmsynth.cli._logging import FILE_ONLY
from prmsynth.cli._main import build_parser, command_line, command_parsers
from prmsynth.cli._types import COUNT, NON_NEGATIVE_WHOLE, POSITIVE, PROBABILITY
from prmsynth.evolve._evolver import EvolveInstruct
from prmsynth.run._budget import Budget
from prmsynth.run._executor import executor_from_option
from prmsynth.run._folder import SUMMARY_FILE, run_to_directory
from prmsynth.run._pipeline import Pipeline
from prmsynth.search._policies import POLICIES
from prmsynth.verify._math import MathAnswerVerifier

_logger = logging.getLogger(__name__)
#: The share of failed questions above which a run exits 1.
DEFAULT_MAX_FAILED_FRACTION = 0.1
#: The effective options a run writes beside run.json; ``--config`` reads it back.
CONFIG_FILE = "config.yaml"


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="search step-by-step solutions for seed questions and write trees and records",
        description=(
            "Search step-by-step solutions for every seed question with an LLM, estimate a "
            "Monte Carlo value for every step prefix (OmegaPRM-style), and write trees.jsonl, "
            "flat.jsonl, sft.jsonl, dpo.jsonl, skipped.jsonl and summary.json into --out, "
            "with the settings in run.json and every option in config.yaml "
            "('prmsynth run --config OUT/config.yaml' resumes it)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_seed_options(parser)
    parser.add_argument("--out", required=True, help="output folder")
    add_model_options(parser)
    add_field_option(parser, SearchSettings, "screen_rollouts", "--screen-rollouts", type=COUNT)
    # None: not given (each is refused where it has no effect, see policy_from_args).
    add_field_option(
        parser, SearchSettings, "num_branches", "--num-branches", type=COUNT, default=None
    )
    add_field_option(
        parser,
        SearchSettings,
        "max_search",
        "--max-search",
        type=NON_NEGATIVE_WHOLE,
        default=None,
    )
    add_field_option(parser, SearchSettings, "max_branches", "--max-branches", type=COUNT)
    parser.add_argument(
        "--policy", choices=tuple(POLICIES), default="omegaprm", help="search policy"
    )

    add_first_error_options(parser)
    add_judge_options(parser)
    add_backend_options(parser, default_cache="OUT/cache.sqlite")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in --out (by default a folder with the same settings is resumed)",
    )
    parser.add_argument(
        "--shard", default=None, metavar="I/N", help="run only shard I (0-based) of N"
    )
    parser.add_argument(
        "--max-completions",
        type=COUNT,
        default=None,
        help="hard limit on completions: no request is sent past it; unfinished questions "
        "run again on resume",
    )
    parser.add_argument(
        "--max-cost",
        type=POSITIVE,
        default=None,
        help="hard limit in USD: each request reserves its estimated cost before it is sent, "
        "so the run goes over by at most what requests in flight cost beyond the estimate",
    )
    parser.add_argument(
        "--max-failed-fraction",
        type=PROBABILITY,
        default=DEFAULT_MAX_FAILED_FRACTION,
        metavar="FRACTION",
        help="exit with status 1 when more than this share of the questions done failed",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="search on a Ray cluster (pip install 'prmsynth[ray]'): a pool of workers, one per "
        "CPU, each with its own copy of the pipeline; 'auto' joins the cluster this process "
        "runs in, HOST:PORT or ray://HOST:PORT another, no ADDRESS starts one on this machine; "
        "--concurrency, --rpm and --tpm hold per worker",
    )

    _evolve_cli.add_evolve_options(parser)
    parser.set_defaults(handler=run)


@reports_errors("run")
def run(args: argparse.Namespace) -> int:
    cache = None
    checked = False
    scratch = contextlib.ExitStack()
    try:
        if args.limit is not None and args.limit < 1:
            raise InputError("--limit", f"must be >= 1, got {args.limit}")
        if not 0.0 <= args.max_failed_fraction <= 1.0:
            raise InputError(
                "--max-failed-fraction", f"must be in [0, 1], got {args.max_failed_fraction}"
            )
        shard = _parse_shard(args.shard)
        sampling = sampling_from_args(args)
        backend = backend_settings_from_args(args, Path(args.out) / "cache.sqlite")
        if args.max_cost is not None:
            from prmsynth.llm._backend import unpriced_models

            unpriced = unpriced_models(backend)
            if unpriced:
                raise InputError(
                    "--max-cost",
                    f"litellm knows no price for {', '.join(sorted(set(unpriced)))}, so its "
                    "cost would count as $0 and the budget could never stop the run; give it a "
                    "price (input_cost_per_token and output_cost_per_token in a --router-config "
                    "deployment's litellm_params, or litellm.register_model from Python), or "
                    "cap the run with --max-completions",
                )
        defaults = SearchSettings()
        policy = policy_from_args(
            args,
            num_branches_default=defaults.num_branches,
            screen_rollouts=args.screen_rollouts,
            max_search=args.max_search if args.max_search is not None else defaults.max_search,
            max_branches=args.max_branches,
        )
        evolution = _evolve_cli.evolution_settings_from_args(args)
        source = seed_source_from_args(args)
        # Every row is checked before any work; the questions (of this shard)
        # then wait in a scratch file, not in memory.
        questions = scratch.enter_context(questions_from_args(args, source, shard=shard))
        fields = [name.strip() for name in args.column_names.split(",") if name.strip()]
        # Before anything is written: a backend that cannot serve stops here.
        # --overwrite starts over: the folder's own cache too (a shared --cache stays).
        own_cache = backend.cache_path == Path(args.out) / "cache.sqlite"
        llm, model, cache, critic = open_backend(
            args, backend, fresh_cache=args.overwrite and own_cache
        )
        generator = generator_from_args(args, llm, sampling, "run")
        checked = True
        log = None if args.quiet else sys.stderr
        verifier = MathAnswerVerifier()
        evolver = NoEvolution()
        if evolution is not None:

            def progress(line: str) -> None:
                if log is not None:
                    print(f"evolve: {line}", file=log, flush=True)

            # One equivalence worker for the evolver's votes and the verifier.
            evolver = EvolveInstruct(
                llm=llm, settings=evolution, equivalence=verifier.equivalence, progress=progress
            )
        pipeline = Pipeline(
            generator=generator,
            verifier=verifier,
            policy=policy,
            evolver=evolver,
            critic=critic,
            # More questions in flight than request slots keeps the backend saturated.
            concurrency=2 * backend.concurrency,
        )
        run_info = {
            "prmsynth_version": __version__,
            # Where the seeds came from, pinned: a file by its bytes, a Hub
            # dataset by its commit, so a resume or a rerun reads the same rows.
            "seed_file": _seed_location(source),
            "seed_file_sha256": source.sha256(),
            "seed_subset": source.subset,
            "seed_split": source.split,
            "seed_revision": source.revision,
            "question_fields": fields,
            "answer_field": args.answer_column,
            "id_field": args.id_column,
            # What decides the labels (the pipeline's identity, run.json's
            # "pipeline") is added by the library; these are for readers.
            "model": model,
            "api_base": args.api_base,
            "judge": judge_info(args),
            "limit": args.limit,
            "shard": args.shard,
            "command": command_line(args, leave_out=("quiet", "overwrite")),
        }
        try:
            summary = run_to_directory(
                pipeline,
                questions,
                Path(args.out),
                run_info=run_info,
                overwrite=args.overwrite,
                budget=Budget(max_completions=args.max_completions, max_cost=args.max_cost),
                log=log,
                extra_files={CONFIG_FILE: _config_text(args)},
                executor=executor_from_option(args.ray),
            )
        except BackendUnavailable as error:
            # The model stopped serving after the check: finished questions stay.
            raise Stopped(error) from error
    except KeyboardInterrupt:
        report = _interrupted_report(args, started=checked)
        _logger.warning(report.strip(), extra=FILE_ONLY)
        print(report, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        scratch.close()
        if cache is not None:
            cache.close()
    stopped = f" (stopped: {summary.stopped_by})" if summary.stopped_by else ""
    usage = summary.usage
    done_line = (
        f"done{stopped}: {summary.kept} kept, {summary.skipped} skipped "
        f"{dict(summary.skipped_by_reason)}, {summary.failed} failed, "
        f"{summary.questions_not_done} not done; {usage.n_completions} completions, "
        f"{usage.prompt_tokens + usage.completion_tokens:,} tokens, "
        f"${round(usage.cost, 6):.4f}, {summary.wall_seconds:.1f} s -> {args.out}"
    )
    _logger.info(done_line, extra=FILE_ONLY)
    if log is not None:
        print(done_line, file=log)
    failed, done = summary.failed, summary.questions_done
    if done and failed / done > args.max_failed_fraction:
        message = (
            f"prmsynth run: {failed} of {done} questions failed, more than "
            f"--max-failed-fraction {args.max_failed_fraction:g}; "
            f"{_common_reasons(summary.failures)}. Failed questions run again on resume."
        )
        _logger.error(message, extra=FILE_ONLY)
        print(message, file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _config_text(args: argparse.Namespace) -> str:
    """``config.yaml``: every option of this run, as ``--config`` reads it back."""

    config = effective_config(command_parsers(build_parser())["run"], args)
    config["overwrite"] = False  # replaying the file resumes, never starts over
    return dump_config(config, command=("prmsynth", "run"))


def _common_reasons(failures: Sequence[Mapping[str, Any]], shown: int = 3) -> str:
    """The most frequent failure reasons, with counts.

    >>> _common_reasons([{"reason": "LLMError: x"}, {"reason": "LLMError: x"}, {"reason": "y"}])
    'most common reasons: 2x LLMError: x; 1x y'
    """

    counts = collections.Counter(failure.get("reason") or "unknown" for failure in failures)
    listed = "; ".join(f"{count}x {reason}" for reason, count in counts.most_common(shown))
    return f"most common reasons: {listed}"


def _interrupted_report(args: argparse.Namespace, *, started: bool) -> str:
    """What Ctrl-C prints: how far the run got, and the command that resumes it."""

    out = Path(args.out)
    config = out / CONFIG_FILE
    if not started or not config.exists():
        return "\nprmsynth run: interrupted before the first question; nothing to resume"
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    progress = (
        f"{summary.get('questions_done', 0)}/{summary.get('questions_total', '?')} questions "
        f"done ({summary.get('failed', 0)} failed), {summary.get('completions', 0)} "
        f"completions, ${summary.get('cost_usd', 0.0):.4f}"
    )
    return (
        f"\nprmsynth run: interrupted: {progress}. Finished questions are in {out}; "
        f"resume with:\n  prmsynth run --config {shlex.quote(str(config))}"
    )


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (0-based I) as a pair; None when not sharding."""

    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError("--shard", f"expected I/N such as 0/4, got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise InputError("--shard", f"need 0 <= I < N, got {text!r}")
    return index, count


def _seed_location(source: RowSource) -> str:
    """The seed source as run.json records it: a local path made absolute."""

    local = source.local_path()
    if local is None:
        return source.location
    resolved = str(local.resolve())
    return HUB_PREFIX + resolved if source.kind == "hub" else resolved
