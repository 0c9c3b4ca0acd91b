"""What the model-calling commands share: options, and quieting litellm's noise.

Library code never sets litellm's module globals; the command line, being the
application, may.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from prmsynth._errors import (
    BackendUnavailable,
    ExportError,
    InputError,
    PrefixModeError,
    PublishError,
    storage_error,
)
from prmsynth._seeds import MAX_QUESTION_CHARS, QuestionSpool, spool_questions
from prmsynth._sources import RowSource
from prmsynth._values import SamplingSettings, SearchSettings
from prmsynth.cli._logging import FILE_ONLY, report_error
from prmsynth.cli._types import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY
from prmsynth.llm._backend import BackendSettings, build_llm, check_backend, judge_backend
from prmsynth.llm._client import import_litellm
from prmsynth.llm._continuation import PREFIX_MODES
from prmsynth.search._first_error import Threshold, parse_rule
from prmsynth.search._generation import LLMStepGenerator
from prmsynth.search._policies import POLICIES
from prmsynth.verify._critic import LLMCritic
from prmsynth.view._stats import PlotUnavailableError

#: The exit status of every command: done, failed, bad input (nothing written),
#: interrupted (Ctrl-C; a run folder stays resumable).
EXIT_OK, EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: What each exit status means, for ``prmsynth --help`` and the docs.
EXIT_CODES = (
    (EXIT_OK, "done"),
    (
        EXIT_FAILURE,
        "failed: more than --max-failed-fraction of a run's questions failed, every row "
        "of 'label' or every call of 'evolve' failed, the model stopped serving during a "
        "command, an export or a push could not be made, or 'validate' found records "
        "that break their schema",
    ),
    (
        EXIT_INPUT,
        "bad input, options or config file, or a model that does not answer before the "
        "first question; the message names the file, line and field, and nothing is written",
    ),
    (
        EXIT_INTERRUPTED,
        "interrupted (Ctrl-C): finished questions stay on disk, and the command printed "
        "says how to resume",
    ),
)

#: Errors that are the user's to fix (input, options, a model that does not answer
#: before any work): exit 2, and nothing was written.
_INPUT_ERRORS = (InputError, PrefixModeError, BackendUnavailable, PlotUnavailableError)
#: Errors of a command that could not make what it was asked for: exit 1.
_FAILURES = (ExportError, PublishError)


#: A command's handler: parsed arguments in, exit status out.
Handler = Callable[[argparse.Namespace], int]


class Stopped(Exception):
    """A command's failure once its work has begun (the model stopped serving
    mid-run): exit 1, reported as ``stopped: CAUSE`` and ``note`` (what stays
    on disk).  A command raises it from the error, ``raise Stopped(error) from error``."""

    def __init__(self, cause: BaseException, note: str = "") -> None:
        super().__init__(str(cause))
        self.cause, self.note = cause, note


def exit_status(error: BaseException) -> tuple[int, str] | None:
    """The exit status and message of ``error`` ending a command, the one
    mapping of every command; None for an error that is a bug (it propagates).

    >>> exit_status(InputError("--limit", "must be >= 1, got 0"))
    (2, 'error: --limit: must be >= 1, got 0')
    >>> exit_status(Stopped(BackendUnavailable("the model process died")))
    (1, 'stopped: the model process died')
    >>> exit_status(ZeroDivisionError()) is None
    True
    """
    if isinstance(error, Stopped):
        return EXIT_FAILURE, f"stopped: {error.cause}" + (f"\n{error.note}" if error.note else "")
    # A disk that cannot take what a command writes (full, read-only).
    fatal = storage_error(error)
    if fatal is not None:
        return (EXIT_FAILURE if fatal.after_work else EXIT_INPUT), f"error: {fatal}"
    if isinstance(error, _FAILURES):
        return EXIT_FAILURE, f"error: {error}"
    if isinstance(error, _INPUT_ERRORS):
        return EXIT_INPUT, f"error: {error}"
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename is not None else ""
        return EXIT_INPUT, f"error: {where}{error.strerror or error}"
    return None


def reports_errors(command: str) -> Callable[[Handler], Handler]:
    """A command's handler with the one error path of the command line: an error
    `exit_status` knows is printed (and kept in ``--log-file``) as
    ``prmsynth COMMAND: MESSAGE`` and its status returned; any other propagates."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def handle(args: argparse.Namespace) -> int:
            try:
                return handler(args)
            except Exception as error:
                status = exit_status(error)
                if status is None:
                    raise
                code, message = status
                report_error(f"prmsynth {command}: {message}")
                return code

        return handle

    return decorate


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Writes to ``path`` inside: an ``OSError`` (other than a full or read-only
    disk, which `exit_status` reports itself) becomes an
    [`InputError`][prmsynth.InputError] saying ``PATH: cannot write: CAUSE``."""
    try:
        yield
    except OSError as error:
        if storage_error(error) is not None:
            raise
        raise InputError(path, f"cannot write: {error.strerror or error}") from error


if TYPE_CHECKING:
    from prmsynth.llm._backend import BackendSettings
    from prmsynth.search._first_error import FirstErrorRule


def _not_loop_notice(record: logging.LogRecord) -> bool:
    # litellm's logging worker notes each new event loop; a command runs one
    # loop per stage (check, evolve, search), so the note says nothing useful.
    return "event loop changed" not in record.getMessage()


def quiet_litellm() -> None:
    """Drop litellm's "Give Feedback / Get Help" banner and its event-loop notes.

    prmsynth reports every failed request itself (with the key redacted), so
    the banner that litellm prints to stdout on each error only adds noise.
    """

    litellm = import_litellm()
    litellm.suppress_debug_info = True
    logger = logging.getLogger("LiteLLM")
    if _not_loop_notice not in logger.filters:
        logger.addFilter(_not_loop_notice)


#: What the seed argument of run and evolve reads, for their help.
SEED_SOURCES = (
    "seed questions: a JSON file (JSONL, a JSON array, or JSON objects), .csv, .tsv, "
    ".parquet, a datasets save_to_disk folder, or hf:NAME for a Hugging Face Hub dataset "
    "(Parquet, folders and the Hub need: pip install 'prmsynth[hf]')"
)


def add_field_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    settings: type,
    field: str,
    *flags: str,
    default: Any = attrs.NOTHING,
    show_default: bool = False,
    **options: Any,
) -> argparse.Action:
    """An option for the attrs field ``field`` of ``settings``, whose default and
    help are the field's own (its ``metadata["help"]``, where ``{default}``
    is the field's default), so each is written once; ``default`` overrides
    the option's default (None: "not given", for an option with an effect only
    sometimes); ``show_default`` ends the help with the default (a parser that
    does not do so itself).  ``options`` go to ``add_argument`` (``type``,
    ``metavar``, ...).

    >>> parser = argparse.ArgumentParser()
    >>> _ = add_field_option(parser, BackendSettings, "max_attempts", "--max-attempts", type=int)
    >>> parser.parse_args([]).max_attempts, parser._actions[-1].help
    (5, 'tries per request')
    """
    attribute = attrs.fields_dict(settings)[field]
    own = attribute.default
    if isinstance(own, attrs.Factory):  # type: ignore[arg-type]
        own = own.factory() if not own.takes_self else attrs.NOTHING  # type: ignore[union-attr]
    help = attribute.metadata.get("help")
    if help is None:
        raise TypeError(f"{settings.__name__}.{field} has no help in its metadata")
    return parser.add_argument(
        *flags,
        default=own if default is attrs.NOTHING else default,
        help=help.format(default=own) + (" (default: %(default)s)" if show_default else ""),
        **options,
    )


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--subset``, ``--split`` and ``--revision``: which part of a Hub dataset
    (or of a save_to_disk folder) the input is, for every command that reads one."""
    parser.add_argument(
        "--subset", default=None, help="the Hub dataset's subset (configuration), e.g. main"
    )
    parser.add_argument(
        "--split",
        default=None,
        help="the dataset's split, e.g. test (default: its only split)",
    )
    parser.add_argument(
        "--revision",
        default=None,
        help="the Hub dataset's commit, branch or tag (default: the current commit, "
        "recorded in run.json)",
    )


def add_seed_options(parser: argparse.ArgumentParser) -> None:
    """The seed questions and their fields, for run and evolve: ``seed_file``,
    ``--column-names``, ``--answer-column``, ``--id-column``, the source options,
    ``--limit`` and ``--max-question-chars``."""

    parser.add_argument("seed_file", metavar="SEEDS", help=SEED_SOURCES)
    parser.add_argument(
        "--column-names",
        default="problem",
        help="field(s) holding the question text; several, comma-separated, are joined "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--answer-column",
        default="final_answer",
        help="field holding the answer (default: %(default)s)",
    )
    parser.add_argument(
        "--id-column",
        default=None,
        help="field holding each question's id, kept in every record that names the "
        "question; unset: the field id, else idx, else the row's position",
    )
    add_source_options(parser)
    parser.add_argument(
        "--limit", type=COUNT, default=None, help="use only the first N seed questions"
    )
    parser.add_argument(
        "--max-question-chars",
        type=COUNT,
        default=MAX_QUESTION_CHARS,
        help="refuse seed questions longer than this (characters) (default: %(default)s)",
    )


def seed_source_from_args(args: argparse.Namespace) -> RowSource:
    """The seed source the command line names: ``seed_file`` with ``--subset``,
    ``--split`` and ``--revision``, a Hub dataset pinned to the commit it is at."""
    return RowSource(
        location=str(args.seed_file),
        subset=getattr(args, "subset", None),
        split=getattr(args, "split", None),
        revision=getattr(args, "revision", None),
    ).pinned()


def questions_from_args(
    args: argparse.Namespace,
    source: RowSource | None = None,
    *,
    shard: tuple[int, int] | None = None,
) -> contextlib.AbstractContextManager[QuestionSpool]:
    """The seed questions of ``add_seed_options``: ``seed_file`` (or ``source``,
    from `seed_source_from_args`), ``--column-names``, ``--answer-column``,
    ``--id-column``, ``--limit`` and ``--max-question-chars``, spooled by
    [`spool_questions`][prmsynth._seeds.spool_questions] (every row checked first)."""
    fields = [name.strip() for name in args.column_names.split(",") if name.strip()]
    if not fields:
        raise InputError("--column-names", "names no field")
    id_field = getattr(args, "id_column", None)
    if id_field is not None and not id_field.strip():
        raise InputError("--id-column", "names no field")
    return spool_questions(
        source or seed_source_from_args(args),
        question_fields=fields,
        answer_field=args.answer_column,
        id_field=id_field,
        limit=args.limit,
        max_question_chars=getattr(args, "max_question_chars", MAX_QUESTION_CHARS),
        shard=shard,
    )


def add_model_options(parser: argparse.ArgumentParser, *, sampling: bool = True) -> None:
    """The model: ``--model``, ``--api-base``; with ``sampling`` also
    ``--temperature``, ``--top-p``, ``--max-tokens``, ``--seed`` (run and label)."""

    parser.add_argument(
        "--model",
        default=None,
        help="litellm model string (default: the embedded SmolLM2-135M-Instruct, "
        "prmsynth/smollm2-135m-instruct)",
    )
    parser.add_argument("--api-base", default=None, help="base URL of the model's API")
    if not sampling:
        return
    add_field_option(parser, SamplingSettings, "temperature", "--temperature", type=NON_NEGATIVE)
    add_field_option(parser, SamplingSettings, "top_p", "--top-p", type=PROBABILITY)
    add_field_option(parser, SamplingSettings, "max_tokens", "--max-tokens", type=COUNT)
    parser.add_argument(
        "--seed", type=int, default=0, help="sampling seed (where the backend honours one)"
    )
    parser.add_argument(
        "--prefix-mode",
        choices=PREFIX_MODES,
        default="auto",
        help="how a partial solution reaches the model: 'continue' sends it as the start of "
        "the model's own reply to continue (the Monte Carlo value as OmegaPRM defines it; "
        "vLLM, SGLang, llama.cpp, Ollama, Anthropic, Mistral, DeepSeek, the embedded model); "
        "'quote' quotes it in a user message (any chat API); 'auto' continues where a probe "
        "shows the server does, else quotes with a warning",
    )


def sampling_from_args(args: argparse.Namespace) -> Any:
    """The [`SamplingSettings`][prmsynth.SamplingSettings] of ``add_model_options``
    (raises [`InputError`][prmsynth.InputError] on a bad value)."""

    try:
        return SamplingSettings(
            temperature=args.temperature,
            top_p=args.top_p,
            max_tokens=args.max_tokens,
            seed=args.seed,
        )
    except ValueError as error:
        raise InputError("options", str(error)) from None


def add_first_error_options(parser: argparse.ArgumentParser) -> None:
    """``--first-error-rule`` and ``--first-error-threshold``, for run and label."""
    parser.add_argument(
        "--first-error-rule",
        default=None,
        metavar="RULE",
        help="where a solution first goes wrong: 'relative' (default: success from the prefix "
        "drops well below the model's success from the question and the prefixes before "
        "it, sampled adaptively; 'relative:max_ratio=0.5,...' sets its parameters), 'mc-zero' "
        "(no completion from the prefix succeeds) or 'threshold:X' (MC value at most X)",
    )
    add_field_option(
        parser, SearchSettings, "first_error_threshold", "--first-error-threshold", type=PROBABILITY
    )


def first_error_rule_from_args(
    args: argparse.Namespace, num_branches: int
) -> FirstErrorRule | None:
    """The rule ``--first-error-rule`` names, or None for the policy's default."""

    if args.first_error_rule is None:
        return None
    try:
        return parse_rule(args.first_error_rule, num_branches=num_branches)
    except ValueError as error:
        raise InputError("--first-error-rule", str(error)) from None


def policy_from_args(
    args: argparse.Namespace, *, num_branches_default: int, **settings: Any
) -> Any:
    """The search policy of ``--policy``, its first-error rule and sampling sizes.

    Each sampling size has one owner: ``--num-branches`` sizes a threshold
    rule's binary search (the rule's ``num_branches``) or Math-Shepherd's
    per-step estimation (the settings'); the default ``relative`` rule sizes
    its own samples.  An option given a value other than its default where it
    has no effect is refused ([`InputError`][prmsynth.InputError]), never ignored.
    ``settings`` are further [`SearchSettings`][prmsynth.SearchSettings] fields.
    """

    num_branches = args.num_branches if args.num_branches is not None else num_branches_default
    rule = first_error_rule_from_args(args, num_branches)
    if rule is None and args.first_error_threshold > 0.0:
        rule = Threshold(threshold=args.first_error_threshold, num_branches=num_branches)
    try:
        search = SearchSettings(
            num_branches=num_branches, first_error_threshold=args.first_error_threshold, **settings
        )
    except ValueError as error:
        raise InputError("options", str(error)) from None
    policy = POLICIES[args.policy](settings=search, first_error_rule=rule)
    effects = policy.option_effects()
    why = f"--policy {args.policy}"
    if policy.uses_rule:
        why += f" and the {policy.rule.name} first-error rule"
    defaults = {"num_branches": num_branches_default, "max_search": SearchSettings().max_search}
    for dest, advice in (
        (
            "num_branches",
            "the relative rule sizes its own samples (its batch, root_completions and "
            "max_completions); choose --first-error-rule mc-zero or threshold:X for a binary "
            "search with N completions per midpoint, or --policy math-shepherd",
        ),
        ("max_search", "only omegaprm selects candidates"),
    ):
        value = getattr(args, dest, None)
        if value is not None and value != defaults[dest] and not effects[dest]:
            option = "--" + dest.replace("_", "-")
            raise InputError(option, f"has no effect with {why}: {advice}; leave it out")
    if not effects["first_error_rule"] and (
        args.first_error_rule is not None or args.first_error_threshold != 0.0
    ):
        raise InputError(
            "--first-error-rule", f"has no effect with {why}: it locates no first errors"
        )
    return policy


def generator_from_args(args: argparse.Namespace, llm: Any, sampling: Any, command: str) -> Any:
    """The step generator of ``--prefix-mode``, its mode settled before the first question.

    ``auto`` probes a server once: a model that does not continue a started
    reply falls back to quoting, with one warning on stderr saying why and
    what it changes.  ``continue`` on such a backend raises
    [`PrefixModeError`][prmsynth.PrefixModeError] (bad options, exit 2).
    """

    generator = LLMStepGenerator(llm=llm, sampling=sampling, prefix_mode=args.prefix_mode)
    choice = asyncio.run(generator.resolve_prefix_mode())
    if choice.fallback is not None:
        message = f"prmsynth {command}: warning: prefix mode quote: {choice.fallback}."
        logging.getLogger(__name__).warning(message, extra=FILE_ONLY)
        if not getattr(args, "quiet", False):
            print(message, file=sys.stderr)
    return attrs.evolve(generator, prefix_mode=choice.mode)


def add_backend_options(parser: argparse.ArgumentParser, *, default_cache: str) -> None:
    """The options of every command that calls the model, with the defaults of
    ``BackendSettings``."""

    add_field_option(parser, BackendSettings, "concurrency", "--concurrency", type=COUNT)
    add_field_option(parser, BackendSettings, "requests_per_minute", "--rpm", type=POSITIVE)
    add_field_option(parser, BackendSettings, "tokens_per_minute", "--tpm", type=POSITIVE)
    add_field_option(parser, BackendSettings, "request_timeout", "--request-timeout", type=POSITIVE)
    add_field_option(parser, BackendSettings, "max_attempts", "--max-attempts", type=COUNT)
    add_field_option(parser, BackendSettings, "router_config", "--router-config")
    parser.add_argument("--cache", default=None, help=f"completion cache file ({default_cache})")
    parser.add_argument("--no-cache", action="store_true", help="do not cache completions")


def backend_settings_from_args(args: argparse.Namespace, default_cache: Path) -> BackendSettings:
    """The ``BackendSettings`` of ``add_backend_options`` (raises
    [`InputError`][prmsynth.InputError] on a bad value)."""
    cache = None if args.no_cache else Path(args.cache) if args.cache else default_cache
    try:
        return BackendSettings(
            model=args.model,
            api_base=args.api_base,
            concurrency=args.concurrency,
            requests_per_minute=args.rpm,
            tokens_per_minute=args.tpm,
            request_timeout=args.request_timeout,
            max_attempts=args.max_attempts,
            router_config=args.router_config,
            cache_path=cache,
        )
    except ValueError as error:
        raise InputError("options", str(error)) from None


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    """``--judge-model`` and ``--judge-api-base``, for run and label."""
    parser.add_argument(
        "--judge-model",
        default=None,
        metavar="MODEL",
        help="a critic LLM (litellm model string) that reads each solution and names its first "
        "wrong step; its verdict is stored beside the Monte Carlo one (export --consensus "
        "keeps the solutions where the two agree)",
    )
    parser.add_argument(
        "--judge-api-base", default=None, help="the critic's server (default: the provider's)"
    )


def critic_from_args(args: argparse.Namespace, backend: BackendSettings, cache: Any) -> Any:
    """The critic ``--judge-model`` names, checked and sharing the run's cache; None without.

    Raises [`BackendUnavailable`][prmsynth.BackendUnavailable] when it cannot serve.
    """

    if args.judge_model is None:
        return None
    settings = judge_backend(backend, args.judge_model, args.judge_api_base)
    check_backend(settings)
    llm, _, _ = build_llm(settings, cache=cache)
    return LLMCritic(llm=llm)


def judge_info(args: argparse.Namespace) -> dict[str, Any] | None:
    """What run.json and label rows record of the critic."""
    if args.judge_model is None:
        return None
    return {"model": args.judge_model, "api_base": args.judge_api_base}


def open_backend(
    args: argparse.Namespace, backend: BackendSettings, *, fresh_cache: bool = False
) -> tuple[Any, str, Any, Any]:
    """The opening of every command that calls a model: ``(llm, model, cache, critic)``.

    litellm is quieted, the backend (and the critic of ``--judge-model``, if
    the command has one) must answer one minimal request, then the LLM is
    built with its cache.  Raises [`BackendUnavailable`][prmsynth.BackendUnavailable]
    before anything is written when a model cannot serve.  ``fresh_cache``
    (``run --overwrite`` on its own folder's cache) empties the cache first,
    once the backend has answered.
    """

    quiet_litellm()
    check_backend(backend)
    if fresh_cache and backend.cache_path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{backend.cache_path}{suffix}").unlink(missing_ok=True)
    llm, model, cache = build_llm(backend)
    try:
        critic = critic_from_args(args, backend, cache) if hasattr(args, "judge_model") else None
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    return llm, model, cache, critic
