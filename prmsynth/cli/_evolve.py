"""The ``prmsynth evolve`` subcommand, and the evolution options of ``prmsynth run``.

``prmsynth evolve SEED_FILE --out questions.jsonl`` writes the seeds and the
evolved questions as JSONL that ``prmsynth run`` reads with its defaults
(``id``, ``problem``, ``final_answer``), with ``source``, ``answer_source``
and the lineage and vote fields at the top level of each line, plus
``questions.rejects.jsonl`` with one line per rejected candidate.  Heavy
imports (litellm, the verifier) happen inside `run`, so building the
parser stays cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from prmsynth._errors import BackendUnavailable, InputError
from prmsynth.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    Stopped,
    add_backend_options,
    add_field_option,
    add_model_options,
    add_seed_options,
    backend_settings_from_args,
    open_backend,
    questions_from_args,
    reports_errors,
    writing,
)
from prmsynth.cli._types import COUNT, NON_NEGATIVE_WHOLE, PROBABILITY
from prmsynth.evolve._evolver import EvolutionSettings, EvolveInstruct, format_stats
from prmsynth.evolve._files import write_report


def _add_vote_options(parser: argparse.ArgumentParser) -> None:
    add_field_option(
        parser,
        EvolutionSettings,
        "n_answer_samples",
        "--n-answer-samples",
        type=COUNT,
        metavar="N",
        show_default=True,
    )
    add_field_option(
        parser,
        EvolutionSettings,
        "agreement_threshold",
        "--agreement-threshold",
        type=PROBABILITY,
        metavar="FRACTION",
        show_default=True,
    )


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evolve`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "evolve",
        help="grow seed questions into more and harder ones, each with a majority-vote answer",
        description=(
            "Evolve-Instruct: rewrite seed questions with random mutations for --rounds "
            "rounds, drop candidates that fail the elimination rules, and solve each survivor "
            "--n-answer-samples times to derive its answer by majority vote (answers are never "
            "copied from the parent). Writes --out (JSONL that 'prmsynth run' reads) and "
            "<out>.rejects.jsonl; the counts go to stderr."
        ),
    )
    add_seed_options(parser)
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="questions file")
    add_backend_options(parser, default_cache="OUT.cache.sqlite")
    parser.add_argument(
        "--rounds", type=COUNT, default=1, metavar="N", help="rounds of evolution (default: 1)"
    )
    add_field_option(
        parser,
        EvolutionSettings,
        "per_seed",
        "--per-seed",
        type=COUNT,
        metavar="K",
        show_default=True,
    )
    add_model_options(parser, sampling=False)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random choices and of the LLM samples"
    )
    _add_vote_options(parser)
    for field in ("mutation_max_tokens", "answer_max_tokens"):
        add_field_option(
            parser,
            EvolutionSettings,
            field,
            "--" + field.replace("_", "-"),
            type=COUNT,
            metavar="N",
            show_default=True,
        )
    parser.add_argument(
        "--llm-equality-check",
        action="store_true",
        help="also ask the LLM whether a candidate equals its parent (WizardLM's check)",
    )
    parser.add_argument(
        "--no-seeds", action="store_true", help="write only the evolved questions, not the seeds"
    )
    parser.set_defaults(handler=run)
    return parser


def add_evolve_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--evolve-rounds``, ``--evolve-per-seed`` and the vote options to a ``run`` parser."""
    parser.add_argument(
        "--evolve-rounds",
        type=NON_NEGATIVE_WHOLE,
        default=0,
        metavar="N",
        help="evolve the seeds for N rounds before the search (0: search the seeds as they are)",
    )
    add_field_option(
        parser, EvolutionSettings, "per_seed", "--evolve-per-seed", type=COUNT, metavar="K"
    )
    _add_vote_options(parser)


def _settings(**values: Any) -> EvolutionSettings:
    try:
        return EvolutionSettings(**values)
    except ValueError as error:
        raise InputError("options", str(error)) from None


def evolution_settings_from_args(args: argparse.Namespace) -> EvolutionSettings | None:
    """The settings of ``run --evolve-rounds N``, or None for N = 0; raises InputError."""

    if args.evolve_rounds < 0:
        raise InputError("--evolve-rounds", f"must be >= 0, got {args.evolve_rounds}")
    if args.evolve_rounds == 0:
        return None
    return _settings(
        rounds=args.evolve_rounds,
        per_seed=args.evolve_per_seed,
        n_answer_samples=args.n_answer_samples,
        agreement_threshold=args.agreement_threshold,
        seed=getattr(args, "seed", 0) or 0,
    )


@reports_errors("evolve")
def run(args: argparse.Namespace) -> int:
    """Run ``evolve`` with parsed ``args``; 0 on success, 2 on bad input, 1 if every call failed."""

    if args.limit is not None and args.limit < 1:
        raise InputError("--limit", f"must be >= 1, got {args.limit}")
    settings = _settings(
        rounds=args.rounds,
        per_seed=args.per_seed,
        n_answer_samples=args.n_answer_samples,
        agreement_threshold=args.agreement_threshold,
        mutation_max_tokens=args.mutation_max_tokens,
        answer_max_tokens=args.answer_max_tokens,
        llm_equality_check=args.llm_equality_check,
        keep_seeds=not args.no_seeds,
        seed=args.seed,
    )
    with questions_from_args(args) as spool:
        questions = list(spool)  # evolution holds its population
    out_path = Path(args.out)
    if out_path.is_dir():
        raise InputError(out_path, "is a folder; --out names a file")
    if not out_path.parent.is_dir():
        raise InputError(out_path, f"folder {str(out_path.parent)!r} does not exist")
    backend = backend_settings_from_args(args, out_path.with_name(out_path.name + ".cache.sqlite"))
    llm, _, cache, _ = open_backend(args, backend)

    log = None if args.quiet else sys.stderr

    def progress(line: str) -> None:
        if log is not None:
            print(f"evolve: {line}", file=log, flush=True)

    evolver = EvolveInstruct(llm=llm, settings=settings, progress=progress)
    started = time.monotonic()
    try:
        report = asyncio.run(evolver.evolve_with_report(questions))
    except BackendUnavailable as error:
        raise Stopped(error) from error
    finally:
        evolver.close()
        if cache is not None:
            cache.close()
    with writing(out_path):
        rejects_path = write_report(report, out_path)
    stats = report.stats
    print(
        f"evolve: {format_stats(stats)}; {stats['completions']} completions, "
        f"{stats['prompt_tokens'] + stats['completion_tokens']} tokens, "
        f"{time.monotonic() - started:.1f} s -> {out_path} (rejects: {rejects_path})",
        file=sys.stderr,
    )
    if stats["attempted"] and stats["errors"] == stats["attempted"]:
        first = next((r.detail for r in report.rejects if r.reason == "error"), "")
        print(f"prmsynth evolve: every LLM call failed; first error: {first}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
