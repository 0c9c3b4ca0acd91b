"""prmsynth: training data for process reward models.

Seed questions go in; step-by-step solutions come out as reasoning trees
whose nodes carry Monte Carlo estimates of "a completion from this prefix
reaches the right answer", ready to export for PRM, SFT and DPO trainers.

The public names live here; the modules behind them are private.  Importing
prmsynth imports neither litellm nor llama_cpp: they load on first use.

>>> import prmsynth
>>> settings = prmsynth.SearchSettings(num_branches=8)
>>> settings.num_branches
8
"""

from typing import TYPE_CHECKING

from prmsynth._errors import (
    BackendUnavailable,
    BudgetExhausted,
    ExportError,
    InputError,
    LLMError,
    PrefixModeError,
    PublishError,
    StorageError,
    TreeInvariantError,
)
from prmsynth._interfaces import (
    LLM,
    LabelResult,
    NoEvolution,
    QuestionEvolver,
    SearchPolicy,
    SearchResult,
    StepCritic,
    StepGenerator,
    StepVerifier,
)
from prmsynth._seeds import iter_questions, load_questions, reference_from_answer
from prmsynth._tree import NodeStats, ReasoningTree
from prmsynth._values import (
    Completion,
    Critique,
    LLMResponse,
    Question,
    Rollout,
    SamplingSettings,
    SearchSettings,
    Step,
    Usage,
    Verdict,
)
from prmsynth._version import __version__ as __version__
from prmsynth.export._serialize import (
    dpo_records,
    flat_record,
    read_tree_file,
    sft_records,
    tree_from_dict,
    tree_to_dict,
)
from prmsynth.run._pipeline import Pipeline
from prmsynth.search._first_error import Evidence, FirstErrorRule, RelativeDrop, Threshold
from prmsynth.search._generation import (
    LengthCappedSplitter,
    LLMStepGenerator,
    PrefixModeChoice,
    derive_seed,
    split_on_blank_lines,
    split_on_lines,
    split_on_step_markers,
)
from prmsynth.search._policies import (
    BestOfN,
    MathShepherd,
    MonteCarloPolicy,
    OmegaPRM,
    OmegaPRMRun,
    SearchRun,
)

if TYPE_CHECKING:  # for type checkers and the API docs; at run time see __getattr__
    from prmsynth.evolve._evolver import (
        EvolutionReport,
        EvolutionSettings,
        EvolveInstruct,
        Rejection,
    )
    from prmsynth.export._formats import (
        FORMATS,
        ExportSettings,
        export_file,
        export_records,
        label_path,
        load_schema,
        parse_math_shepherd,
        validate_file,
        validate_record,
    )
    from prmsynth.llm._cache import CachedLLM, CompletionCache
    from prmsynth.llm._client import DEFAULT_MODEL, LiteLLMClient
    from prmsynth.llm._ratelimit import RequestLimiter
    from prmsynth.llm._retry import RetryPolicy
    from prmsynth.llm._router import RouterLLM
    from prmsynth.publish._push import PushReport, push
    from prmsynth.run._executor import Executor, LocalExecutor
    from prmsynth.run._folder import RunFolder
    from prmsynth.run._ray import RayExecutor
    from prmsynth.train._evaluate import (
        BestOfNScore,
        Candidate,
        LabelledSolution,
        ProcessBenchScore,
        best_of_n,
        choose_threshold,
        processbench_score,
        read_candidates,
        read_labelled_solutions,
    )
    from prmsynth.train._model import LocalPRM
    from prmsynth.train._served import ServedPRM
    from prmsynth.train._trainer import TrainReport, TrainSettings, train_prm
    from prmsynth.verify._critic import LLMCritic
    from prmsynth.verify._judge import LLMJudgeVerifier
    from prmsynth.verify._math import (
        ExactMatchVerifier,
        FunctionVerifier,
        MathAnswerVerifier,
        extract_answer,
    )
    from prmsynth.view._html import render_html, write_html
    from prmsynth.view._stats import collect_stats, format_table, plot_stats

_LAZY = {
    "LiteLLMClient": "prmsynth.llm._client",
    "RequestLimiter": "prmsynth.llm._ratelimit",
    "RetryPolicy": "prmsynth.llm._retry",
    "CompletionCache": "prmsynth.llm._cache",
    "CachedLLM": "prmsynth.llm._cache",
    "RouterLLM": "prmsynth.llm._router",
    "DEFAULT_MODEL": "prmsynth.llm._client",
    "MathAnswerVerifier": "prmsynth.verify._math",
    "ExactMatchVerifier": "prmsynth.verify._math",
    "FunctionVerifier": "prmsynth.verify._math",
    "LLMJudgeVerifier": "prmsynth.verify._judge",
    "LLMCritic": "prmsynth.verify._critic",
    "EvolveInstruct": "prmsynth.evolve._evolver",
    "ExportSettings": "prmsynth.export._formats",
    "export_file": "prmsynth.export._formats",
    "export_records": "prmsynth.export._formats",
    "label_path": "prmsynth.export._formats",
    "parse_math_shepherd": "prmsynth.export._formats",
    "validate_file": "prmsynth.export._formats",
    "validate_record": "prmsynth.export._formats",
    "load_schema": "prmsynth.export._formats",
    "FORMATS": "prmsynth.export._formats",
    "EvolutionSettings": "prmsynth.evolve._evolver",
    "EvolutionReport": "prmsynth.evolve._evolver",
    "Rejection": "prmsynth.evolve._evolver",
    "extract_answer": "prmsynth.verify._math",
    "RunFolder": "prmsynth.run._folder",
    "Executor": "prmsynth.run._executor",
    "LocalExecutor": "prmsynth.run._executor",
    "RayExecutor": "prmsynth.run._ray",
    "push": "prmsynth.publish._push",
    "PushReport": "prmsynth.publish._push",
    "write_html": "prmsynth.view._html",
    "render_html": "prmsynth.view._html",
    "collect_stats": "prmsynth.view._stats",
    "format_table": "prmsynth.view._stats",
    "plot_stats": "prmsynth.view._stats",
    # Training and judging PRMs: torch and transformers load only when a model does.
    "train_prm": "prmsynth.train._trainer",
    "TrainSettings": "prmsynth.train._trainer",
    "TrainReport": "prmsynth.train._trainer",
    "LocalPRM": "prmsynth.train._model",
    "ServedPRM": "prmsynth.train._served",
    "processbench_score": "prmsynth.train._evaluate",
    "ProcessBenchScore": "prmsynth.train._evaluate",
    "choose_threshold": "prmsynth.train._evaluate",
    "best_of_n": "prmsynth.train._evaluate",
    "BestOfNScore": "prmsynth.train._evaluate",
    "Candidate": "prmsynth.train._evaluate",
    "LabelledSolution": "prmsynth.train._evaluate",
    "read_candidates": "prmsynth.train._evaluate",
    "read_labelled_solutions": "prmsynth.train._evaluate",
}


def __getattr__(name: str):
    # The verifier pulls in math-verify and sympy, the client litellm: both load
    # only when asked for, so `import prmsynth` stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prmsynth' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "FORMATS",
    "LLM",
    "BackendUnavailable",
    "BestOfN",
    "BestOfNScore",
    "BudgetExhausted",
    "CachedLLM",
    "Candidate",
    "Completion",
    "CompletionCache",
    "Critique",
    "Evidence",
    "EvolutionReport",
    "EvolutionSettings",
    "EvolveInstruct",
    "ExactMatchVerifier",
    "Executor",
    "ExportError",
    "ExportSettings",
    "FirstErrorRule",
    "FunctionVerifier",
    "InputError",
    "LLMCritic",
    "LLMError",
    "LLMJudgeVerifier",
    "LLMResponse",
    "LLMStepGenerator",
    "LabelResult",
    "LabelledSolution",
    "LengthCappedSplitter",
    "LiteLLMClient",
    "LocalExecutor",
    "LocalPRM",
    "MathAnswerVerifier",
    "MathShepherd",
    "MonteCarloPolicy",
    "NoEvolution",
    "NodeStats",
    "OmegaPRM",
    "OmegaPRMRun",
    "Pipeline",
    "PrefixModeChoice",
    "PrefixModeError",
    "ProcessBenchScore",
    "PublishError",
    "PushReport",
    "Question",
    "QuestionEvolver",
    "RayExecutor",
    "ReasoningTree",
    "Rejection",
    "RelativeDrop",
    "RequestLimiter",
    "RetryPolicy",
    "Rollout",
    "RouterLLM",
    "RunFolder",
    "SamplingSettings",
    "SearchPolicy",
    "SearchResult",
    "SearchRun",
    "SearchSettings",
    "ServedPRM",
    "Step",
    "StepCritic",
    "StepGenerator",
    "StepVerifier",
    "StorageError",
    "Threshold",
    "TrainReport",
    "TrainSettings",
    "TreeInvariantError",
    "Usage",
    "Verdict",
    "best_of_n",
    "choose_threshold",
    "collect_stats",
    "derive_seed",
    "dpo_records",
    "export_file",
    "export_records",
    "extract_answer",
    "flat_record",
    "format_table",
    "iter_questions",
    "label_path",
    "load_questions",
    "load_schema",
    "parse_math_shepherd",
    "plot_stats",
    "processbench_score",
    "push",
    "read_candidates",
    "read_labelled_solutions",
    "read_tree_file",
    "reference_from_answer",
    "render_html",
    "sft_records",
    "split_on_blank_lines",
    "split_on_lines",
    "split_on_step_markers",
    "train_prm",
    "tree_from_dict",
    "tree_to_dict",
    "validate_file",
    "validate_record",
    "write_html",
]
