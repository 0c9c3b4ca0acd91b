"""First-error rules: where a solution's first wrong step is, from Monte Carlo counts.

A rule sees the evidence gathered on one solution so far, the completions
sampled from some of its step prefixes and how many reached the answer, and
says where to sample next (``next_sample``) and, once it stops asking, which
step is the first wrong one (``first_error``).  Rules are small swappable
objects: [`RelativeDrop`][prmsynth.RelativeDrop] (the default), [`Threshold`][prmsynth.Threshold]
(the classic
rules, ``mc-zero`` among them) or your own subclass of [`FirstErrorRule`][prmsynth.FirstErrorRule].

Indices: ``-1`` is the question alone (the root), ``0 .. n_steps - 1`` the
prefixes ending with each step.  The last prefix is the whole solution, whose
value is exact (its final answer is right or wrong), so rules never sample it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import attrs

from prmsynth._values import _check_positive as _positive
from prmsynth._values import _check_probability as _probability

ROOT = -1


@attrs.frozen(kw_only=True)
class Evidence:
    """What is known about one solution: counts per prefix and the final answer.

    ``counts[i] = (n_correct, n_rollouts)`` for every prefix sampled so far
    (``-1`` is the question alone); ``final_correct`` is whether the
    solution's own final answer is right.

    >>> Evidence(n_steps=3, counts={-1: (6, 8)}, final_correct=False).mc_value(-1)
    0.75
    """

    n_steps: int
    counts: Mapping[int, tuple[int, int]] = attrs.field(factory=dict)
    final_correct: bool = False

    def mc_value(self, index: int) -> float | None:
        """The fraction of completions from prefix ``index`` that reached the answer."""
        if index == self.n_steps - 1:
            return 1.0 if self.final_correct else 0.0
        correct, total = self.counts.get(index, (0, 0))
        return correct / total if total else None

    def n_rollouts(self, index: int) -> int:
        return self.counts.get(index, (0, 0))[1]


class FirstErrorRule(abc.ABC):
    """Decides, from Monte Carlo counts, where a solution first goes wrong.

    Subclass it and override `first_error` (and, for a rule that
    chooses its own samples, `next_sample`).
    """

    #: How the rule is named on the command line and in ``run.json``.
    name: str = "custom"

    def next_sample(self, evidence: Evidence) -> tuple[int, int] | None:
        """``(prefix index, completions)`` to sample next, or None when decided.

        The default estimates every prefix once with ``num_branches``
        completions, in order (per-step estimation).
        """
        for index in range(-1, evidence.n_steps - 1):
            if evidence.n_rollouts(index) == 0:
                return index, self.num_branches
        return None

    @abc.abstractmethod
    def first_error(self, evidence: Evidence) -> int:
        """The index of the first wrong step, -1 when none."""

    #: Completions per estimated prefix for rules that do not adapt.
    num_branches: int = 8

    def to_dict(self) -> dict[str, Any]:
        """The rule and its parameters, as recorded with a run."""
        fields = attrs.asdict(self) if attrs.has(type(self)) else {}
        return {"name": self.name, **fields}


@attrs.frozen(kw_only=True)
class Threshold(FirstErrorRule):
    """The classic rule: a step is wrong when its MC value is at most ``threshold``.

    ``threshold = 0`` is ``mc-zero`` (no completion from the prefix reached
    the answer).  Samples ``num_branches`` completions at the midpoints of a
    binary search, as OmegaPRM does.

    >>> rule = Threshold(threshold=0.0, num_branches=4)
    >>> rule.next_sample(Evidence(n_steps=5, counts={2: (2, 4)}))  # 2 is right: look at 3
    (3, 4)
    >>> rule.first_error(Evidence(n_steps=5, counts={2: (2, 4), 3: (0, 4)}))
    3
    """

    threshold: float = attrs.field(default=0.0, validator=_probability)
    num_branches: int = attrs.field(default=8, validator=_positive)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "mc-zero" if self.threshold == 0.0 else f"threshold:{self.threshold:g}"

    def _wrong(self, evidence: Evidence, index: int) -> bool | None:
        value = evidence.mc_value(index)
        return None if value is None else value <= self.threshold

    def _bounds(self, evidence: Evidence) -> tuple[int, int]:
        """The binary search's interval: after the last right midpoint, before the first wrong."""
        left, right = 0, evidence.n_steps - 1
        while left <= right:
            middle = (left + right) // 2
            wrong = self._wrong(evidence, middle)
            if wrong is None:
                break
            if wrong:
                right = middle - 1
            else:
                left = middle + 1
        return left, right

    def next_sample(self, evidence: Evidence) -> tuple[int, int] | None:
        left, right = self._bounds(evidence)
        if left > right:
            return None
        return (left + right) // 2, self.num_branches

    def first_error(self, evidence: Evidence) -> int:
        left, right = self._bounds(evidence)
        if left <= right:  # undecided (a budget ran out): the first wrong one seen
            wrong = [i for i in range(evidence.n_steps) if self._wrong(evidence, i)]
            return wrong[0] if wrong else -1
        return left if left < evidence.n_steps and self._wrong(evidence, left) else -1


@lru_cache(maxsize=8)
def _grid_tables(
    size: int, max_ratio: float
) -> tuple[list[tuple[float, float]], list[list[tuple[float, float]]]]:
    """log(p), log(1 - p) on the grid of success rates ``g`` and of ``g * u``."""
    rates = [(i + 0.5) / size for i in range(size)]
    ratios = [max_ratio * (j + 0.5) / max(1, size // 2) for j in range(max(1, size // 2))]
    good = [(math.log(g), math.log1p(-g)) for g in rates]
    bad = [[(math.log(g * u), math.log1p(-g * u)) for u in ratios] for g in rates]
    return good, bad


@attrs.frozen(kw_only=True)
class RelativeDrop(FirstErrorRule):
    """The default: a step is wrong when success from its prefix drops well below the
    model's own success from the question and the prefixes before it.

    A noisy binary search over a posterior.  Each hypothesis "the first
    wrong step is k" (or "none") predicts that completions succeed at one
    rate ``g`` from the question and prefixes before k, and at a rate ``g * u``
    with ``u`` at most ``max_ratio`` from prefix k on.  ``g`` and ``u`` are
    unknown and integrated out (uniform priors on a grid), so the rule adapts
    to how often this model solves this question instead of comparing with a
    fixed number: on a hard question where a clean prefix succeeds 30% of the
    time, 3% means wrong; on an easy one 60% may too.  A right final answer
    is evidence against an error (``p_final_correct_given_error``).

    Sampling is adaptive: ``batch`` completions at a time, at the prefix
    where the posterior is most uncertain whether the error lies before or
    after, until one hypothesis reaches ``confidence`` or ``max_completions``
    (the question's ``root_completions`` included) are spent.

    >>> rule = RelativeDrop()
    >>> evidence = Evidence(n_steps=4, counts={-1: (6, 8), 0: (5, 8), 1: (0, 8)})
    >>> rule.first_error(evidence)
    1
    """

    name = "relative"
    max_ratio: float = attrs.field(default=0.5, validator=_probability)
    confidence: float = attrs.field(default=0.98, validator=_probability)
    root_completions: int = attrs.field(default=8, validator=_positive)
    batch: int = attrs.field(default=4, validator=_positive)
    max_completions: int = attrs.field(default=40, validator=_positive)
    max_per_prefix: int = attrs.field(default=16, validator=_positive)
    prior_no_error: float = attrs.field(default=0.5, validator=_probability)
    p_final_correct_given_error: float = attrs.field(default=0.05, validator=_probability)
    grid: int = attrs.field(default=24, validator=_positive)

    def posterior(self, evidence: Evidence) -> list[float]:
        """P(first error = k) for k = 0 .. n_steps - 1, then P(no error) last.

        >>> rule = RelativeDrop()
        >>> p = rule.posterior(Evidence(n_steps=2, counts={-1: (8, 8)}, final_correct=True))
        >>> p[-1] > 0.9
        True
        """
        good_table, bad_table = _grid_tables(self.grid, self.max_ratio)
        n = evidence.n_steps
        log_weights = []
        for k in range(n + 1):
            good_c = good_n = bad_c = bad_n = 0
            for index, (correct, total) in evidence.counts.items():
                if index < k:
                    good_c, good_n = good_c + correct, good_n + total
                else:
                    bad_c, bad_n = bad_c + correct, bad_n + total
            if k == n:  # no error: the final answer must be right
                prior = math.log(self.prior_no_error) if evidence.final_correct else -math.inf
            else:
                prior = math.log((1.0 - self.prior_no_error) / n)
                if evidence.final_correct:
                    prior += math.log(max(self.p_final_correct_given_error, 1e-12))
            if prior == -math.inf:
                log_weights.append(-math.inf)
                continue
            terms = []
            for (log_g, log_not_g), bad_row in zip(good_table, bad_table, strict=True):
                term = good_c * log_g + (good_n - good_c) * log_not_g
                if bad_n:
                    inner = [bad_c * lb + (bad_n - bad_c) * lnb for lb, lnb in bad_row]
                    top = max(inner)
                    term += top + math.log(sum(math.exp(x - top) for x in inner) / len(inner))
                terms.append(term)
            top = max(terms)
            mean = sum(math.exp(t - top) for t in terms) / len(terms)
            log_weights.append(prior + top + math.log(mean))
        top = max(log_weights)
        weights = [math.exp(w - top) if w > -math.inf else 0.0 for w in log_weights]
        total = sum(weights)
        return [w / total for w in weights]

    def next_sample(self, evidence: Evidence) -> tuple[int, int] | None:
        spent = sum(total for _, total in evidence.counts.values())
        root = evidence.n_rollouts(ROOT)
        if root < self.root_completions:
            return ROOT, self.root_completions - root
        posterior = self.posterior(evidence)
        if max(posterior) >= self.confidence or spent + self.batch > self.max_completions:
            return None
        # Sample where P(the first error is at or before this prefix) is nearest 1/2.
        best, best_gap, below = None, 2.0, 0.0
        for index in range(evidence.n_steps - 1):  # the last prefix's value is exact
            below += posterior[index]
            if evidence.n_rollouts(index) + self.batch > self.max_per_prefix:
                continue
            gap = abs(below - 0.5)
            if gap < best_gap:
                best, best_gap = index, gap
        return None if best is None else (best, self.batch)

    def first_error(self, evidence: Evidence) -> int:
        posterior = self.posterior(evidence)
        best = max(range(len(posterior)), key=posterior.__getitem__)
        return -1 if best == evidence.n_steps else best


def parse_rule(text: str, *, num_branches: int = 8) -> FirstErrorRule:
    """A rule from its command-line name: ``relative``, ``mc-zero`` or ``threshold:X``.

    >>> parse_rule("threshold:0.3").name, parse_rule("mc-zero").name, parse_rule("relative").name
    ('threshold:0.3', 'mc-zero', 'relative')
    >>> parse_rule("median")
    Traceback (most recent call last):
    ...
    ValueError: unknown first-error rule 'median': use relative, mc-zero or threshold:X
    """
    name = text.strip().lower()
    if name == "relative":
        return RelativeDrop()
    if name == "mc-zero":
        return Threshold(threshold=0.0, num_branches=num_branches)
    if name.startswith("threshold:"):
        try:
            threshold = float(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad threshold in first-error rule {text!r}") from None
        return Threshold(threshold=threshold, num_branches=num_branches)
    raise ValueError(f"unknown first-error rule {text!r}: use relative, mc-zero or threshold:X")
