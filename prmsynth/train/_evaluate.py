"""Judging a PRM: ProcessBench's first-error metrics, and Best-of-N selection.

**ProcessBench** (Zheng et al., 2024): each solution has a human label, the
index of its first wrong step or -1.  A PRM predicts the first step whose
score is below a threshold (-1 if none); *error accuracy* is the share of
wrong solutions whose first error it finds exactly, *correct accuracy* the
share of right solutions it passes whole, and F1 their harmonic mean.  The
threshold is given, or chosen for the best F1 on a separate split.

**Best-of-N**: among candidate solutions of a question, pick the one with the
best PRM score (the minimum, the last or the product of its step scores) and
count how often it is right, against a majority vote over the final answers
and a random pick (both as expected values over ties, so no seed decides).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from prmsynth._errors import InputError
from prmsynth._seeds import reference_from_answer
from prmsynth._sources import iter_json_records
from prmsynth._values import Question
from prmsynth.export._serialize import read_tree_file
from prmsynth.verify._math import MathAnswerVerifier, extract_answer


class StepScorer(Protocol):
    """Anything that scores steps: each step's probability of being right.

    ``answer`` is the reference answer where the data has one (judges that
    check final answers need it; a PRM ignores it).
    """

    def score(
        self, problem: str, steps: Sequence[str], answer: str | None = None
    ) -> list[float]: ...


# -- reading ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LabelledSolution:
    """One ProcessBench-style solution: ``label`` is its first wrong step, -1 for none."""

    id: str
    problem: str
    steps: tuple[str, ...]
    label: int
    answer: str | None = None
    final_answer_correct: bool | None = None


def _steps(path: Any, line: int, record: dict[str, Any]) -> tuple[str, ...]:
    steps = record.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise InputError(path, "expected a non-empty list of strings", line=line, field="steps")
    return tuple(steps)


def _text(path: Any, line: int, record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, "expected non-empty text", line=line, field=field)
    return value


def _answer(path: Any, line: int, record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(path, "expected text or a number", line=line, field=field)

    return reference_from_answer(str(value)) or None


def read_labelled_solutions(path: str | os.PathLike) -> list[LabelledSolution]:
    """ProcessBench-format data (a JSON array or JSON Lines): ``problem``,
    ``steps``, ``label`` (first wrong step, -1 for none), optionally ``id``,
    ``answer`` (the reference) and ``final_answer_correct``.  Bad input raises
    [`InputError`][prmsynth.InputError] naming the file, line and field."""
    solutions = []
    for line, record in iter_json_records(path):
        if not isinstance(record, dict):
            raise InputError(path, "expected a JSON object", line=line)
        steps = _steps(path, line, record)
        label = record.get("label")
        if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
            raise InputError(
                path,
                f"expected -1 or a step index below {len(steps)}, got {label!r}",
                line=line,
                field="label",
            )
        correct = record.get("final_answer_correct")
        if correct is not None and not isinstance(correct, bool):
            raise InputError(
                path, "expected true or false", line=line, field="final_answer_correct"
            )
        solutions.append(
            LabelledSolution(
                id=str(record.get("id", len(solutions))),
                problem=_text(path, line, record, "problem"),
                steps=steps,
                label=label,
                answer=_answer(path, line, record, "answer"),
                final_answer_correct=correct,
            )
        )
    if not solutions:
        raise InputError(path, "no solutions")
    return solutions


# -- ProcessBench ----------------------------------------------------------------------


def first_error(scores: Sequence[float], threshold: float) -> int:
    """The first step scored below ``threshold``, -1 if none.

    >>> first_error([0.9, 0.7, 0.2, 0.8], 0.5), first_error([0.9, 0.6], 0.5)
    (2, -1)
    """
    return next((i for i, score in enumerate(scores) if score < threshold), -1)


@attrs.frozen(kw_only=True)
class ProcessBenchScore:
    """ProcessBench's metrics at one threshold."""

    threshold: float
    error_accuracy: float
    correct_accuracy: float
    f1: float
    n_error: int
    n_correct: int

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def processbench_score(
    scores: Sequence[Sequence[float]], labels: Sequence[int], threshold: float
) -> ProcessBenchScore:
    """Error accuracy, correct accuracy and their harmonic mean (F1), as ProcessBench
    computes them (a side with no solution counts 0).

    >>> s = processbench_score([[0.9, 0.1], [0.8, 0.9], [0.2, 0.9]], [1, -1, 1], 0.5)
    >>> s.error_accuracy, s.correct_accuracy, round(s.f1, 3)
    (0.5, 1.0, 0.667)
    """
    predictions = [first_error(row, threshold) for row in scores]
    errors = [p == y for p, y in zip(predictions, labels, strict=True) if y != -1]
    corrects = [p == -1 for p, y in zip(predictions, labels, strict=True) if y == -1]
    error_accuracy = sum(errors) / len(errors) if errors else 0.0
    correct_accuracy = sum(corrects) / len(corrects) if corrects else 0.0
    total = error_accuracy + correct_accuracy
    return ProcessBenchScore(
        threshold=threshold,
        error_accuracy=error_accuracy,
        correct_accuracy=correct_accuracy,
        f1=2 * error_accuracy * correct_accuracy / total if total else 0.0,
        n_error=len(errors),
        n_correct=len(corrects),
    )


def choose_threshold(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """The threshold with the best ProcessBench F1 on these solutions: every
    distinct score (and just above the highest) is tried; ties go to the one
    nearest 0.5.

    >>> choose_threshold([[0.9, 0.3], [0.8, 0.7]], [1, -1])
    0.7
    """
    values = sorted({float(s) for row in scores for s in row})
    candidates = [*values, math.nextafter(values[-1], math.inf)] if values else [0.5]
    return max(
        candidates,
        key=lambda t: (processbench_score(scores, labels, t).f1, -abs(t - 0.5)),
    )


def calibration_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(calibration, evaluation)`` indices: ``fraction`` of ``n`` items, drawn
    with ``seed``, for choosing the threshold; the rest for the metrics."""
    if not 0 < fraction < 1:
        raise InputError("--calibration-fraction", f"must be in (0, 1), got {fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cut = min(n - 1, max(1, round(fraction * n)))
    return sorted(order[:cut]), sorted(order[cut:])


def score_all(
    scorer: StepScorer,
    items: Sequence[Any],
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 8,
) -> list[list[float]]:
    """Every item's step scores (items have ``problem``, ``steps``, ``answer``);
    a scorer with ``score_batch`` (a local PRM) gets ``batch_size`` items at a
    time.  A scorer that returns the wrong number of scores raises ValueError."""
    batched = getattr(scorer, "score_batch", None)
    size = batch_size if batched is not None else 1
    rows: list[list[float]] = []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        if batched is not None:
            results = batched([(item.problem, item.steps) for item in chunk])
        else:
            results = [scorer.score(item.problem, item.steps, item.answer) for item in chunk]
        for item, result in zip(chunk, results, strict=True):
            row = [float(s) for s in result]
            if len(row) != len(item.steps):
                raise ValueError(f"the scorer gave {len(row)} scores for {len(item.steps)} steps")
            rows.append(row)
        if progress is not None:
            progress(len(rows), len(items))
    return rows


# -- Best-of-N -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Candidate:
    """One candidate solution of a question, with whether its final answer is right."""

    question_id: str
    problem: str
    steps: tuple[str, ...]
    correct: bool
    final: str | None = None
    answer: str | None = None


def candidates_from_trees(path: str | os.PathLike) -> list[Candidate]:
    """The finished solutions of a ``prmsynth run`` folder's trees (each
    root-to-leaf path the verifier judged right or wrong)."""

    candidates = []
    for tree in read_tree_file(path):
        for leaf in tree.leaves():
            data = tree.node(leaf)
            if not data.terminal or data.verdict not in ("correct", "incorrect"):
                continue
            steps = tuple(tree.prefix_steps(leaf))
            candidates.append(
                Candidate(
                    question_id=tree.question.id,
                    problem=tree.question.text,
                    steps=steps,
                    correct=data.verdict == "correct",
                    final=extract_answer("\n\n".join(steps)),
                    answer=tree.question.reference_answer,
                )
            )
    return candidates


def read_candidates(path: str | os.PathLike) -> list[Candidate]:
    """Candidates from a run folder (its ``trees.jsonl``), a ``trees.jsonl``, or
    JSON rows with ``problem``, ``steps``, ``answer`` (the reference), and
    optionally ``question_id`` (default: the problem text) and ``correct``
    (default: checked against ``answer`` by the default verifier)."""
    path = Path(path)
    if path.is_dir():
        path = path / "trees.jsonl"
    if not path.is_file():
        raise InputError(path, "no such file")
    if path.name.endswith("trees.jsonl"):
        candidates = candidates_from_trees(path)
    else:
        candidates = _candidates_from_rows(path)
    if not candidates:
        raise InputError(path, "no finished candidate solution")
    return candidates


def _candidates_from_rows(path: Path) -> list[Candidate]:
    verifier = MathAnswerVerifier()
    candidates = []
    try:
        for line, record in iter_json_records(path):
            if not isinstance(record, dict):
                raise InputError(path, "expected a JSON object", line=line)
            steps = _steps(path, line, record)
            problem = _text(path, line, record, "problem")
            answer = _answer(path, line, record, "answer")
            if answer is None:
                raise InputError(path, "missing (the reference answer)", line=line, field="answer")
            verdict = verifier.verify("\n\n".join(steps), answer)
            correct = record.get("correct", verdict.correct)
            if not isinstance(correct, bool):
                raise InputError(path, "expected true or false", line=line, field="correct")
            candidates.append(
                Candidate(
                    question_id=str(record.get("question_id", problem)),
                    problem=problem,
                    steps=steps,
                    correct=correct,
                    final=verdict.extracted_answer,
                    answer=answer,
                )
            )
    finally:
        verifier.close()
    return candidates


#: How a solution's step scores become one score.
AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "last": lambda scores: scores[-1],
    "product": math.prod,
}


def _expected_right(group: Iterable[Candidate]) -> float:
    group = list(group)
    return sum(c.correct for c in group) / len(group) if group else 0.0


@attrs.frozen(kw_only=True)
class BestOfNScore:
    """Accuracy of each way of picking one candidate per question."""

    accuracy: dict[str, float]
    n_questions: int
    n_candidates: int

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def best_of_n(candidates: Sequence[Candidate], scores: Sequence[Sequence[float]]) -> BestOfNScore:
    """Accuracy of picking by PRM score (``prm-min``, ``prm-last``, ``prm-product``),
    by ``majority`` vote over final answers, at ``random``, and the ``oracle``
    (some candidate is right).  Ties count as the expected accuracy of a
    random choice among them; a question where no candidate states an answer
    falls back to a random pick for the vote.

    >>> c = [Candidate(question_id="q", problem="p", steps=("s",), correct=ok, final=f)
    ...      for ok, f in [(True, "5"), (False, "4"), (False, "4")]]
    >>> best_of_n(c, [[0.9], [0.2], [0.3]]).accuracy["prm-min"]
    1.0
    >>> best_of_n(c, [[0.9], [0.2], [0.3]]).accuracy["majority"]
    0.0
    """
    by_question: dict[str, list[int]] = defaultdict(list)
    for index, candidate in enumerate(candidates):
        by_question[candidate.question_id].append(index)
    totals: Counter[str] = Counter()
    for indices in by_question.values():
        group = [candidates[i] for i in indices]
        for name, aggregate in AGGREGATES.items():
            values = [aggregate(scores[i]) for i in indices]
            best = max(values)
            totals[f"prm-{name}"] += _expected_right(
                c for c, v in zip(group, values, strict=True) if v == best
            )
        votes = Counter(c.final for c in group if c.final is not None)
        if votes:
            top = max(votes.values())
            winners = [answer for answer, n in votes.items() if n == top]
            totals["majority"] += sum(
                _expected_right(c for c in group if c.final == w) for w in winners
            ) / len(winners)
        else:
            totals["majority"] += _expected_right(group)
        totals["random"] += _expected_right(group)
        totals["oracle"] += float(any(c.correct for c in group))
    n = len(by_question)
    order = ("prm-min", "prm-last", "prm-product", "majority", "random", "oracle")
    return BestOfNScore(
        accuracy={name: totals[name] / n for name in order},
        n_questions=n,
        n_candidates=len(candidates),
    )


# -- judges that are not a trained model -------------------------------------------------


@attrs.define
class OutcomeJudge:
    """The final-answer-only baseline: every step gets the solution's outcome,
    1 if its final answer is right, else 0 (from ``final_answer_correct``
    when the data has it, else checked against ``answer``).  On ProcessBench
    it passes every right solution and puts every error at the first step."""

    outcomes: dict[tuple[str, tuple[str, ...]], bool] = attrs.Factory(dict)
    _verifier: Any = None

    @classmethod
    def for_solutions(cls, solutions: Iterable[Any]) -> OutcomeJudge:
        judge = cls()
        for s in solutions:
            known = getattr(s, "final_answer_correct", None)
            if known is None:
                known = getattr(s, "correct", None)
            if known is not None:
                judge.outcomes[(s.problem, tuple(s.steps))] = known
        return judge

    def score(self, problem: str, steps: Sequence[str], answer: str | None = None) -> list[float]:
        correct = self.outcomes.get((problem, tuple(steps)))
        if correct is None:
            if answer is None:
                raise InputError(
                    "outcome", "needs final_answer_correct or answer in every row", field="answer"
                )
            if self._verifier is None:
                from prmsynth.verify._math import MathAnswerVerifier

                self._verifier = MathAnswerVerifier()
            correct = self._verifier.verify("\n\n".join(steps), answer).correct
        return [float(correct)] * len(steps)

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.close()


@attrs.define
class MonteCarloJudge:
    """prmsynth's own Monte Carlo labeller as a judge (``mc:MODEL``): the
    policy's first error decides which steps are wrong, and the MC values
    order steps within each side.  Steps before the first error score in
    [0.5, 1], the first error and later ones in [0, 0.5), so threshold 0.5
    gives the labeller's own first error.  Needs the reference ``answer``."""

    pipeline: Any

    def score(self, problem: str, steps: Sequence[str], answer: str | None = None) -> list[float]:
        if answer is None:
            raise InputError("mc", "needs the reference answer in every row", field="answer")
        question = Question(id="evaluate", text=problem, reference_answer=answer)
        result = asyncio.run(self.pipeline.label_solution(question, list(steps)))
        if result.status == "failed":
            return [0.5] * len(steps)
        first = result.first_error if result.first_error is not None else -1
        scores = []
        for index, value in enumerate(result.step_values):
            wrong = first != -1 and index >= first
            v = (0.0 if wrong else 1.0) if value is None else value
            scores.append(0.495 * v if wrong else 0.5 + 0.5 * v)
        return scores

    def close(self) -> None:
        self.pipeline.verifier.close()
