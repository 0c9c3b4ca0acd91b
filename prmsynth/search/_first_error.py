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

from prmsynth._values import _check_non_negative as _non_negative
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


def _rates(size: int) -> list[float]:
    """The grid of success rates ``g`` from clean prefixes (midpoints of ``size`` bins)."""
    return [(i + 0.5) / size for i in range(size)]


# Both caches are keyed by counts alone (a few hundred keys at the default budget), so
# the per-call work is a sum over the grid of g for each way to split the prefixes.
@lru_cache(maxsize=4096)
def _clean_terms(correct: int, total: int, size: int) -> tuple[float, ...]:
    """log P(``correct`` of ``total`` | g) on the grid of ``g``, up to the binomial factor."""
    return tuple(correct * math.log(g) + (total - correct) * math.log1p(-g) for g in _rates(size))


@lru_cache(maxsize=4096)
def _wrong_terms(
    correct: int, total: int, size: int, max_ratio: float
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Per ``g``: log of the mean over ``u`` of P(``correct`` of ``total`` | rate g * u),
    and the first two moments of the rate ``g * u`` given those counts."""
    rates = _rates(size)
    n_ratios = max(1, size // 2)
    ratios = [max_ratio * (j + 0.5) / n_ratios for j in range(n_ratios)]
    logs, firsts, seconds = [], [], []
    for g in rates:
        terms = [correct * math.log(g * u) + (total - correct) * math.log1p(-g * u) for u in ratios]
        top = max(terms)
        weights = [math.exp(t - top) for t in terms]
        mass = sum(weights)
        logs.append(top + math.log(mass / len(ratios)))
        firsts.append(sum(w * g * u for w, u in zip(weights, ratios, strict=True)) / mass)
        seconds.append(sum(w * (g * u) ** 2 for w, u in zip(weights, ratios, strict=True)) / mass)
    return tuple(logs), tuple(firsts), tuple(seconds)


@attrs.frozen(kw_only=True)
class _Split:
    """One way to split the sampled prefixes into clean (before k) and wrong (from k on):
    the evidence's log marginal likelihood under it, and the predictive moments (mean,
    variance) of a clean prefix's success rate and of a wrong one's."""

    log_likelihood: float
    clean: tuple[float, float]
    wrong: tuple[float, float]


def _beta_binomial(mean: float, variance: float, n: int) -> list[float]:
    """P(c of n succeed), c = 0 .. n, when the rate is Beta with this mean and variance."""
    mean = min(max(mean, 1e-6), 1.0 - 1e-6)
    variance = min(max(variance, 1e-9), 0.999 * mean * (1.0 - mean))
    strength = mean * (1.0 - mean) / variance - 1.0
    a, b = mean * strength, (1.0 - mean) * strength
    base = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) - math.lgamma(n + a + b)
    return [
        math.exp(
            base
            + math.lgamma(n + 1)
            - math.lgamma(c + 1)
            - math.lgamma(n - c + 1)
            + math.lgamma(c + a)
            + math.lgamma(n - c + b)
        )
        for c in range(n + 1)
    ]


def _entropy(probabilities: list[float]) -> float:
    return -sum(p * math.log(p) for p in probabilities if p > 0.0)


@attrs.frozen(kw_only=True)
class RelativeDrop(FirstErrorRule):
    """The default: a step is wrong when success from its prefix drops well below the
    model's own success from the question and the prefixes before it.

    A Bayesian noisy search.  Each hypothesis "the first wrong step is k" (or
    "none") predicts that completions succeed at one rate ``g`` from the
    question and prefixes before k, and at a rate ``g * u`` with ``u`` at most
    ``max_ratio`` from prefix k on.  ``g`` and ``u`` are unknown and
    integrated out (uniform priors on a grid), so the rule adapts to how often
    this model solves this question instead of comparing with a fixed number:
    on a hard question where a clean prefix succeeds 30% of the time, 3% means
    wrong; on an easy one 60% may too.  The solution's final answer is exact
    evidence: a wrong one means an error exists, a right one makes an error
    less likely (``p_final_correct_given_error``).

    Sampling is adaptive: ``root_completions`` from the question, then
    ``batch`` completions at a time at the prefix whose outcome is expected
    to tell the most about where the first error is (the largest mutual
    information between the batch's count of successes and the hypothesis),
    at most ``max_per_prefix`` per prefix.  It stops when one hypothesis
    reaches ``confidence``, when the best batch is expected to tell less than
    ``min_gain`` nats per completion (more samples would barely move the
    posterior: a clean-looking solution with a right answer, or a question
    where a wrong prefix hardly differs from a clean one), or when
    ``max_completions`` (the question's ``root_completions`` included) are
    spent.  So the budget goes where it buys the most: a solution whose wrong
    final answer says an error exists and whose drop is readable gets up to
    ``max_completions``; a right answer on clean-looking prefixes a few
    batches.  The answer is the most probable hypothesis.

    >>> rule = RelativeDrop()
    >>> evidence = Evidence(n_steps=4, counts={-1: (6, 8), 0: (5, 8), 1: (0, 8)})
    >>> rule.first_error(evidence)
    1
    """

    name = "relative"
    max_ratio: float = attrs.field(default=0.35, validator=_probability)
    confidence: float = attrs.field(default=0.99, validator=_probability)
    min_gain: float = attrs.field(default=0.0125, validator=_non_negative)
    root_completions: int = attrs.field(default=8, validator=_positive)
    batch: int = attrs.field(default=2, validator=_positive)
    max_completions: int = attrs.field(default=96, validator=_positive)
    max_per_prefix: int = attrs.field(default=20, validator=_positive)
    prior_no_error: float = attrs.field(default=0.5, validator=_probability)
    p_final_correct_given_error: float = attrs.field(default=0.1, validator=_probability)
    grid: int = attrs.field(default=24, validator=_positive)

    def to_dict(self) -> dict[str, Any]:
        """The rule and its parameters, as recorded with a run; ``min_gain``, added
        after runs were recorded without it, only where it changes the rule (not 0),
        so those runs resume with ``min_gain=0``."""
        record = super().to_dict()
        if record["min_gain"] == 0:
            del record["min_gain"]
        return record

    def _splits(self, evidence: Evidence) -> tuple[list[int], list[_Split]]:
        """The sampled prefixes in order, and split ``t`` for each ``t = 0 .. len``: the
        first ``t`` of them clean (with the question), the rest wrong."""
        rates = _rates(self.grid)
        sampled = sorted(i for i, (_, total) in evidence.counts.items() if i != ROOT and total)
        clean_c, clean_n = evidence.counts.get(ROOT, (0, 0))
        wrong_c = sum(evidence.counts[i][0] for i in sampled)
        wrong_n = sum(evidence.counts[i][1] for i in sampled)
        splits = []
        for t in range(len(sampled) + 1):
            if t:
                correct, total = evidence.counts[sampled[t - 1]]
                clean_c, clean_n = clean_c + correct, clean_n + total
                wrong_c, wrong_n = wrong_c - correct, wrong_n - total
            clean = _clean_terms(clean_c, clean_n, self.grid)
            wrong_log, wrong_first, wrong_second = _wrong_terms(
                wrong_c, wrong_n, self.grid, self.max_ratio
            )
            terms = [c + w for c, w in zip(clean, wrong_log, strict=True)]
            top = max(terms)
            weights = [math.exp(t - top) for t in terms]
            mass = sum(weights)
            g1 = sum(w * g for w, g in zip(weights, rates, strict=True)) / mass
            g2 = sum(w * g * g for w, g in zip(weights, rates, strict=True)) / mass
            b1 = sum(w * m for w, m in zip(weights, wrong_first, strict=True)) / mass
            b2 = sum(w * m for w, m in zip(weights, wrong_second, strict=True)) / mass
            splits.append(
                _Split(
                    log_likelihood=top + math.log(mass / len(rates)),
                    clean=(g1, g2 - g1 * g1),
                    wrong=(b1, b2 - b1 * b1),
                )
            )
        return sampled, splits

    def _split_of(self, evidence: Evidence, sampled: list[int]) -> list[int]:
        """For each hypothesis k (``n_steps`` is "none"), the split it implies."""
        which, t = [], 0
        for k in range(evidence.n_steps):
            while t < len(sampled) and sampled[t] < k:
                t += 1
            which.append(t)
        return [*which, len(sampled)]

    def _posterior(
        self, evidence: Evidence, sampled: list[int], splits: list[_Split]
    ) -> list[float]:
        n = evidence.n_steps
        log_error = math.log((1.0 - self.prior_no_error) / n)
        if evidence.final_correct:
            log_error += math.log(max(self.p_final_correct_given_error, 1e-12))
        log_weights = [
            log_error + splits[t].log_likelihood for t in self._split_of(evidence, sampled)
        ]
        # No error: only with a right final answer.
        log_weights[n] = (
            math.log(self.prior_no_error) + splits[-1].log_likelihood
            if evidence.final_correct and self.prior_no_error > 0.0
            else -math.inf
        )
        top = max(log_weights)
        weights = [math.exp(w - top) if w > -math.inf else 0.0 for w in log_weights]
        total = sum(weights)
        return [w / total for w in weights]

    def posterior(self, evidence: Evidence) -> list[float]:
        """P(first error = k) for k = 0 .. n_steps - 1, then P(no error) last.

        >>> rule = RelativeDrop()
        >>> p = rule.posterior(Evidence(n_steps=2, counts={-1: (8, 8)}, final_correct=True))
        >>> p[-1] > 0.8
        True
        """
        return self._posterior(evidence, *self._splits(evidence))

    def next_sample(self, evidence: Evidence) -> tuple[int, int] | None:
        spent = sum(total for _, total in evidence.counts.values())
        root = evidence.n_rollouts(ROOT)
        if root < self.root_completions and spent < self.max_completions:
            return ROOT, min(self.root_completions - root, self.max_completions - spent)
        sampled, splits = self._splits(evidence)
        posterior = self._posterior(evidence, sampled, splits)
        size = min(self.batch, self.max_completions - spent)
        if max(posterior) >= self.confidence or size < 1:
            return None
        # Each split's predictive distribution of the batch's successes, at a clean
        # prefix and at a wrong one (its rates' posterior matched by a Beta).
        clean = [_beta_binomial(*split.clean, size) for split in splits]
        wrong = [_beta_binomial(*split.wrong, size) for split in splits]
        clean_entropy = [_entropy(p) for p in clean]
        wrong_entropy = [_entropy(p) for p in wrong]
        which = self._split_of(evidence, sampled)
        n = evidence.n_steps
        best, best_gain = None, 0.0
        for index in range(ROOT, n - 1):  # the last prefix's value is exact
            if evidence.n_rollouts(index) + size > self.max_per_prefix:
                continue
            # Hypotheses k <= index say the prefix is wrong; the rest say clean.
            by_split: dict[tuple[int, bool], float] = {}
            for k, p in enumerate(posterior):
                if p > 0.0:
                    key = (which[k], k <= index)
                    by_split[key] = by_split.get(key, 0.0) + p
            mixture = [0.0] * (size + 1)
            conditional = 0.0
            for (t, is_wrong), p in by_split.items():
                predictive = wrong[t] if is_wrong else clean[t]
                for c, q in enumerate(predictive):
                    mixture[c] += p * q
                conditional += p * (wrong_entropy[t] if is_wrong else clean_entropy[t])
            gain = _entropy(mixture) - conditional
            if best is None or gain > best_gain + 1e-12:
                best, best_gain = index, gain
        if best is None or best_gain < self.min_gain * size:
            return None
        return best, size

    def first_error(self, evidence: Evidence) -> int:
        posterior = self.posterior(evidence)
        best = max(range(len(posterior)), key=posterior.__getitem__)
        return -1 if best == evidence.n_steps else best


def parse_rule(text: str, *, num_branches: int = 8) -> FirstErrorRule:
    """A rule from its command-line name: ``relative``, ``mc-zero`` or ``threshold:X``;
    ``relative:NAME=VALUE,...`` sets `RelativeDrop`'s parameters (to resume a run
    of another version's defaults, say).

    >>> parse_rule("threshold:0.3").name, parse_rule("mc-zero").name, parse_rule("relative").name
    ('threshold:0.3', 'mc-zero', 'relative')
    >>> parse_rule("relative:max_ratio=0.5,max_completions=40").max_completions
    40
    >>> parse_rule("median")
    Traceback (most recent call last):
    ...
    ValueError: unknown first-error rule 'median': use relative, mc-zero or threshold:X
    """
    name = text.strip().lower()
    if name == "relative":
        return RelativeDrop()
    if name.startswith("relative:"):
        return RelativeDrop(**_rule_parameters(RelativeDrop, text.split(":", 1)[1], text))
    if name == "mc-zero":
        return Threshold(threshold=0.0, num_branches=num_branches)
    if name.startswith("threshold:"):
        try:
            threshold = float(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad threshold in first-error rule {text!r}") from None
        return Threshold(threshold=threshold, num_branches=num_branches)
    raise ValueError(f"unknown first-error rule {text!r}: use relative, mc-zero or threshold:X")


def _rule_parameters(rule: type, spelled: str, text: str) -> dict[str, Any]:
    fields = {field.name: field for field in attrs.fields(rule)}
    parameters: dict[str, Any] = {}
    for part in filter(None, (part.strip() for part in spelled.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in fields or not value.strip():
            raise ValueError(
                f"bad parameter {part!r} in first-error rule {text!r}: use NAME=VALUE with "
                f"NAME one of {', '.join(fields)}"
            )
        kind = int if fields[key].type in (int, "int") else float
        try:
            parameters[key] = kind(value)
        except ValueError:
            raise ValueError(f"bad value for {key} in first-error rule {text!r}") from None
    return parameters


def rule_spelling(record: dict[str, Any]) -> str | None:
    """The ``--first-error-rule`` that gives back a rule as a run recorded it
    (``to_dict``), or None where no spelling does.

    >>> rule_spelling({"name": "relative", "max_ratio": 0.5, "max_completions": 40})
    'relative:max_ratio=0.5,min_gain=0,max_completions=40'
    >>> rule_spelling(Threshold(threshold=0.0).to_dict())
    'mc-zero'
    """
    name = record.get("name")
    if name == "relative":
        default = RelativeDrop().to_dict()
        changed = [
            f"{key}={record.get(key, 0 if key == 'min_gain' else value)}"
            for key, value in default.items()
            if key != "name" and record.get(key, 0 if key == "min_gain" else value) != value
        ]
        return "relative:" + ",".join(changed) if changed else "relative"
    if isinstance(name, str) and (name == "mc-zero" or name.startswith("threshold:")):
        return name
    return None
