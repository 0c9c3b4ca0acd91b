"""Search policies: build a reasoning tree by sampling and verifying completions.

Every policy shares the same pieces: the [`ReasoningTree`][prmsynth.ReasoningTree],
the Monte Carlo estimator (sample ``num_branches`` completions from a prefix,
count the correct ones), the budgets of [`SearchSettings`][prmsynth.SearchSettings]
and its first-error rule.  They differ in *where* they estimate:

* [`OmegaPRM`][prmsynth.OmegaPRM] (Luo et al., 2024, "Improve Mathematical Reasoning in
  Language Models by Automated Process Supervision"): a candidate pool of
  incorrect rollouts ranked by ``Q + U`` and binary search for the first
  wrong step, so a solution of n steps costs O(log n) estimations;
* [`MathShepherd`][prmsynth.MathShepherd] (Wang et al., 2024, "Math-Shepherd"): every step
  prefix of every sampled solution is estimated;
* [`BestOfN`][prmsynth.BestOfN]: independent solutions only, no step estimation (the
  cheapest baseline; only final-answer labels).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from prmsynth._interfaces import (
    LabelResult,
    SearchPolicy,
    SearchResult,
    SearchStatus,
    StepGenerator,
    StepVerifier,
    _Spent,
)
from prmsynth._tree import ReasoningTree
from prmsynth._values import Question, Rollout, SearchSettings, Usage, Verdict
from prmsynth.search._first_error import Evidence, FirstErrorRule, RelativeDrop, Threshold

#: Extra sampling rounds for completions that were cut off or had no answer.
UNUSABLE_RETRIES = 2


def rollout_length(rollout: Rollout) -> int:
    """A rollout's length for the ``beta ** (len / L)`` term: tokens when the
    backend reported them, else whitespace-separated words."""
    if rollout.n_tokens is not None:
        return rollout.n_tokens
    return len(rollout.text.split())


@attrs.define(kw_only=True)
class _Candidate:
    node: int
    rollout: Rollout


@attrs.define(kw_only=True)
class SearchRun(_Spent):
    """The mutable state of one question's search, and the shared estimator.

    One instance per question and policy call.  Policies (yours included)
    use `sample`, `estimate`, `locate_first_error` (or
    `binary_search`, its classic form) and
    `screen` and read the budget from `budget_left`.
    """

    tree: ReasoningTree
    settings: SearchSettings
    generator: StepGenerator
    verifier: StepVerifier
    #: What the question's requests have spent so far.
    usage: Usage = attrs.Factory(Usage)
    n_selections: int = 0

    @property
    def budget_left(self) -> bool:
        return self.n_completions < self.settings.max_branches

    def is_error(self, node: int) -> bool:
        return self.settings.is_error(self.tree.mc_value(node))

    async def sample(self, node: int, n: int) -> list[Rollout]:
        """Sample ``n`` completions from ``node``'s prefix and verify them."""
        question = self.tree.question
        prefix = self.tree.prefix_steps(node)
        response = await self.generator.generate(
            question, prefix, n=n, sample_offset=self.n_completions
        )
        self.usage += Usage.of_response(response, n)
        completions = response.completions
        # The answer is read from the whole solution: a continuation may end
        # without restating an answer the prefix already reached.
        solutions = [self.generator.join_steps([*prefix, c.text]) for c in completions]
        verdicts = await self.verifier.averify_many(
            solutions,
            question.reference_answer,
            finish_reasons=[c.finish_reason for c in completions],
        )
        return [
            Rollout(
                text=completion.text,
                steps=tuple(self.generator.split_steps(completion.text)),
                verdict=verdict,
                n_tokens=completion.n_tokens,
                finish_reason=completion.finish_reason,
            )
            for completion, verdict in zip(completions, verdicts, strict=True)
        ]

    def add_solution(self, node: int, rollout: Rollout) -> int | None:
        """Add a rollout's steps under ``node``; its last step is terminal.  Returns that node."""
        if not rollout.steps:
            return None
        last = self.tree.add_steps(node, rollout.steps)[-1]
        self.tree.mark_terminal(last, rollout.verdict)
        return last

    def absorb(self, node: int, rollouts: Sequence[Rollout]) -> None:
        """Record rollouts at ``node`` and, unless its step is wrong (nothing
        below a wrong step is worth learning from), `grow` from them."""
        self.tree.record_rollouts(node, rollouts)
        if self.is_error(node):
            return
        self.grow(node, rollouts)

    def grow(self, node: int, rollouts: Sequence[Rollout]) -> None:
        """Add ``node``'s correct rollouts to the tree as solutions.  A policy's
        run class extends it (OmegaPRM's also queues the incorrect ones)."""
        for rollout in rollouts:
            if rollout.steps and rollout.usable and rollout.correct:
                self.add_solution(node, rollout)

    async def estimate(self, node: int, *, grow: bool = True) -> float | None:
        """Monte Carlo estimate at ``node``; None when the budget is spent.

        A finished solution's value is exact and a node estimated before (a
        shared prefix) is reused, neither costs completions.  With ``grow``
        the rollouts also `grow` the tree (and OmegaPRM's candidate pool).
        """
        data = self.tree.node(node)
        if data.terminal or data.n_rollouts >= self.settings.num_branches:
            return data.mc_value
        if not self.budget_left:
            return None
        wanted = self.settings.num_branches - data.n_rollouts
        # Cut-off or answerless completions say nothing about the prefix: the
        # shortfall is sampled again (twice at most), within the budget.
        for _ in range(1 + UNUSABLE_RETRIES):
            n = min(wanted, self.settings.max_branches - self.n_completions)
            if n < 1:
                break
            rollouts = await self.sample(node, n)
            if grow:
                self.absorb(node, rollouts)
            else:
                self.tree.record_rollouts(node, rollouts)
            wanted -= sum(rollout.usable for rollout in rollouts)
            if wanted < 1:
                break
        return self.tree.mc_value(node)

    async def screen(self) -> str | None:
        """Sample ``screen_rollouts`` whole solutions as the root's estimate.

        Returns why the question should be skipped (all right, none right,
        or mostly cut off or answerless: ``unusable_rollouts``), or None when
        it is worth searching.
        """
        # Screening is part of the question's budget, like every other sample.
        n = min(self.settings.screen_rollouts, self.settings.max_branches - self.n_completions)
        if n < 1:
            return None
        rollouts = await self.sample(self.tree.root, n)
        self.absorb(self.tree.root, rollouts)
        n_correct = sum(rollout.correct for rollout in rollouts)
        n_usable = sum(rollout.usable for rollout in rollouts)
        if 2 * n_usable < len(rollouts):
            return "unusable_rollouts"  # mostly cut off or answerless: nothing to learn
        if not self.settings.skip_uniform:
            return None
        if n_correct == n_usable:
            return "all_correct"
        if n_correct == 0:
            return "none_correct"
        return None

    async def binary_search(
        self, anchor: int, steps: Sequence[str], verdict: Verdict, *, grow: bool = True
    ) -> int:
        """OmegaPRM's classic binary search: the first step from ``anchor`` on whose
        MC value is at most ``settings.first_error_threshold``, ``num_branches``
        completions per midpoint (`locate_first_error` with a
        [`Threshold`][prmsynth.Threshold] rule).  Returns its index in ``steps``, -1 for none.
        """
        rule = Threshold(
            threshold=self.settings.first_error_threshold,
            num_branches=self.settings.num_branches,
        )
        return await self.locate_first_error(rule, anchor, steps, verdict, grow=grow)

    def evidence(self, anchor: int, nodes: Sequence[int], verdict: Verdict) -> Evidence:
        """The counts of the prefixes ``nodes`` below ``anchor``; index -1 pools ``anchor``
        with its ancestors, the clean prefixes the search has already passed."""
        counts = {}
        pooled = [0, 0]
        for node in self.tree.path(anchor):
            pooled[0] += self.tree.node(node).n_correct
            pooled[1] += self.tree.node(node).n_rollouts
        if pooled[1]:
            counts[-1] = (pooled[0], pooled[1])
        for index, node in enumerate(nodes[:-1]):  # the last prefix's value is exact
            data = self.tree.node(node)
            if data.n_rollouts:
                counts[index] = (data.n_correct, data.n_rollouts)
        return Evidence(n_steps=len(nodes), counts=counts, final_correct=verdict.correct)

    async def locate_first_error(
        self,
        rule: FirstErrorRule,
        anchor: int,
        steps: Sequence[str],
        verdict: Verdict,
        *,
        grow: bool = True,
    ) -> int:
        """Where the first wrong step of ``steps`` (continuing ``anchor``) is, by ``rule``.

        The rule chooses every sample: which prefix (``-1`` is ``anchor``)
        and how many completions; each prefix becomes a node and keeps its
        rollouts.  Sampling stops when the rule is decided or the question's
        budget is spent (no request goes over it).  The decision is stored on
        the nodes ([`ReasoningTree.set_label`][prmsynth.ReasoningTree.set_label]: the first wrong
        step False,
        the steps before it True), so exports use the rule's labels.  With
        ``grow`` the rollouts of the prefixes before the first error then grow
        the tree and the candidate pool.  Returns the index in ``steps``, -1
        for none.
        """
        nodes = self.tree.add_steps(anchor, steps)
        self.tree.mark_terminal(nodes[-1], verdict)
        by_index = {-1: anchor, **dict(enumerate(nodes))}
        sampled: dict[int, list[Rollout]] = {}

        def evidence() -> Evidence:
            return self.evidence(anchor, nodes, verdict)

        fruitless = 0  # batches in a row with no usable rollout
        while fruitless <= UNUSABLE_RETRIES:
            wanted = rule.next_sample(evidence())
            if wanted is None:
                break
            index, n = wanted
            n = min(n, self.settings.max_branches - self.n_completions)
            if n < 1 or index not in by_index or index == len(nodes) - 1:
                break
            node = by_index[index]
            rollouts = await self.sample(node, n)
            self.tree.record_rollouts(node, rollouts)
            sampled.setdefault(index, []).extend(rollouts)
            fruitless = 0 if any(rollout.usable for rollout in rollouts) else fruitless + 1
        first_error = rule.first_error(evidence())
        judged = nodes if first_error == -1 else nodes[: first_error + 1]
        for index, node in enumerate(judged):
            self.tree.set_label(node, index != first_error)
        if grow:
            for index, rollouts in sampled.items():
                if first_error == -1 or index < first_error:
                    self.grow(by_index[index], rollouts)
        return first_error

    def result(self, status: SearchStatus, reason: str | None = None) -> SearchResult:
        return SearchResult(
            tree=self.tree,
            status=status,
            reason=reason,
            usage=self.usage,
            n_selections=self.n_selections,
        )

    def label_result(
        self, chain: Sequence[int], verdict: Verdict, *, first_error: int | None = None
    ) -> LabelResult:
        values = [self.tree.mc_value(node) for node in chain]
        if first_error is None:
            first_error = next(
                (index for index, node in enumerate(chain) if self.is_error(node)), -1
            )
        return LabelResult(
            tree=self.tree,
            step_values=values,
            first_error=first_error,
            final_verdict=verdict,
            usage=self.usage,
        )


@attrs.frozen(kw_only=True)
class MonteCarloPolicy(SearchPolicy):
    """The base of the Monte Carlo search policies: screen, then `expand`.

    [`search`][prmsynth.SearchPolicy.search] starts a [`SearchRun`][prmsynth.SearchRun]
    (the shared estimator: sampling, estimation, screening, budgets, the
    first-error search), screens the question, and hands the run to
    `expand`, the one method a subclass writes.  ``label`` locates the
    first error of a given solution with `rule`.

    >>> import asyncio
    >>> from prmsynth import FunctionVerifier, LLMStepGenerator, Question
    >>> from prmsynth.testing import ScriptedLLM
    >>> class FirstStepsOnly(MonteCarloPolicy):
    ...     async def expand(self, run):
    ...         for rollout in run.tree.node(run.tree.root).incorrect_rollouts:
    ...             await run.estimate(run.tree.add_step(run.tree.root, rollout.steps[0]))
    >>> replies = ["Add.\\n\\nSo 4.", "Guess.\\n\\nSo 5."]
    >>> llm = ScriptedLLM(lambda request: replies[request.sample_index % 2])
    >>> ends_right = FunctionVerifier(lambda response, answer: response.endswith(answer + "."))
    >>> question = Question(id="q", text="2 + 2?", reference_answer="4")
    >>> result = asyncio.run(FirstStepsOnly().search(
    ...     question, generator=LLMStepGenerator(llm=llm), verifier=ends_right))
    >>> result.status, result.n_completions  # 16 to screen, 4 for the one wrong first step
    ('kept', 20)
    """

    settings: SearchSettings = attrs.field(factory=SearchSettings)
    #: Where a solution first goes wrong; None: [`RelativeDrop`][prmsynth.RelativeDrop],
    #: or the threshold rule when ``settings.first_error_threshold`` is above 0.
    first_error_rule: FirstErrorRule | None = None
    #: The run class `start` makes (a subclass of [`SearchRun`][prmsynth.SearchRun]).
    run_class: ClassVar[type[SearchRun]] = SearchRun
    #: The fields of [`SearchSettings`][prmsynth.SearchSettings] this policy reads: only
    #: they are part of its `identity` (None: all of them, the safe default for a
    #: subclass of your own).
    settings_used: ClassVar[tuple[str, ...] | None] = None
    #: Whether the policy locates first errors (with `rule`).
    uses_rule: ClassVar[bool] = True

    def identity(self) -> dict[str, Any]:
        """The policy and the parameters it uses, as a run records it.

        Settings the policy never reads are left out, so that a run resumed
        with a different value of one (``num_branches`` under OmegaPRM's
        adaptive rule, say) is the same run, and one resumed with another
        value of a setting that matters is refused.

        >>> identity = OmegaPRM().identity()
        >>> identity["name"], identity["first_error_rule"]["name"], "num_branches" in identity["settings"]
        ('OmegaPRM', 'relative', False)
        """  # noqa: E501
        settings = self.settings.to_dict()
        if self.settings_used is not None:
            settings = {name: settings[name] for name in self.settings_used}
        return {
            "name": type(self).__name__,
            "settings": settings,
            "first_error_rule": self.rule.to_dict() if self.uses_rule else None,
        }

    def option_effects(self) -> dict[str, bool]:
        """Whether each sampling size this policy could take has an effect here:
        ``num_branches`` (per-step estimation, or a threshold rule's binary
        search), ``max_search`` and the first-error rule.  The command line
        refuses an option that has none.

        >>> OmegaPRM().option_effects()["num_branches"]  # the adaptive rule sizes its own samples
        False
        >>> MathShepherd().option_effects()["num_branches"]
        True
        """
        used = self.settings_used
        return {
            "num_branches": used is None
            or "num_branches" in used
            or (self.uses_rule and isinstance(self.rule, Threshold)),
            "max_search": used is None or "max_search" in used,
            "first_error_rule": self.uses_rule,
        }

    @property
    def rule(self) -> FirstErrorRule:
        """The first-error rule this policy applies."""
        if self.first_error_rule is not None:
            return self.first_error_rule
        if self.settings.first_error_threshold > 0.0:
            return Threshold(
                threshold=self.settings.first_error_threshold,
                num_branches=self.settings.num_branches,
            )
        return RelativeDrop()

    def start(
        self, question: Question, generator: StepGenerator, verifier: StepVerifier
    ) -> SearchRun:
        """A fresh run (``run_class``) for ``question``, with an empty tree."""
        return self.run_class(
            tree=ReasoningTree(question),
            settings=self.settings,
            generator=generator,
            verifier=verifier,
        )

    async def search(
        self,
        question: Question,
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> SearchResult:
        run = self.start(question, generator, verifier)
        reason = await run.screen()
        if reason is not None:
            return run.result("skipped", reason)
        await self.expand(run)
        return run.result("kept")

    @abc.abstractmethod
    async def expand(self, run: SearchRun) -> None:
        """Grow the screened ``run``: estimate prefixes, add solutions, locate
        first errors, within ``run``'s budget (`SearchRun.budget_left`)."""

    async def label(
        self,
        question: Question,
        steps: Sequence[str],
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> LabelResult:
        """Locate the first wrong step of a given solution with `rule`."""
        run, chain, verdict = await self._given_solution(question, steps, generator, verifier)
        first_error = await run.locate_first_error(
            self.rule, run.tree.root, steps, verdict, grow=False
        )
        return run.label_result(chain, verdict, first_error=first_error)

    async def _given_solution(
        self,
        question: Question,
        steps: Sequence[str],
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> tuple[SearchRun, list[int], Verdict]:
        if not steps:
            raise ValueError("a solution to label needs at least one step")
        run = self.start(question, generator, verifier)
        [verdict] = await verifier.averify_many(
            [generator.join_steps(steps)], question.reference_answer
        )
        chain = run.tree.add_steps(run.tree.root, steps)
        if len(chain) != len(steps):
            raise ValueError("steps must be non-empty text")
        run.tree.mark_terminal(chain[-1], verdict)
        return run, chain, verdict


@attrs.define(kw_only=True)
class OmegaPRMRun(SearchRun):
    """OmegaPRM's state on top of the shared estimator: the candidate pool of
    incorrect rollouts and the ``Q + U`` selection over it."""

    pool: list[_Candidate] = attrs.Factory(list)

    def grow(self, node: int, rollouts: Sequence[Rollout]) -> None:
        """The correct rollouts join the tree; while ``node``'s MC value is
        below 1, the incorrect ones join the candidate pool."""
        super().grow(node, rollouts)
        mc_value = self.tree.mc_value(node)
        if mc_value is None or mc_value >= 1.0:
            return
        for rollout in rollouts:
            if rollout.steps and rollout.usable and not rollout.correct:
                self.pool.append(_Candidate(node=node, rollout=rollout))

    def priority(self, candidate: _Candidate, total_visits: int) -> float:
        """OmegaPRM's ``Q + U`` for a candidate, from the tree as it is now."""
        settings = self.settings
        mc_value = self.tree.mc_value(candidate.node) or 0.0
        quality = settings.alpha ** (1.0 - mc_value) * settings.beta ** (
            rollout_length(candidate.rollout) / settings.length_scale
        )
        visits = self.tree.node(candidate.node).visits
        exploration = settings.exploration * math.sqrt(total_visits) / (1 + visits)
        return quality + exploration

    def select(self) -> _Candidate:
        """Pop the candidate with the highest priority, computed now (not when inserted)."""
        total_visits = self.tree.total_visits()
        best = max(
            range(len(self.pool)),
            key=lambda index: (self.priority(self.pool[index], total_visits), -index),
        )
        candidate = self.pool.pop(best)
        self.tree.increment_visits(candidate.node)
        return candidate


@attrs.frozen(kw_only=True)
class OmegaPRM(MonteCarloPolicy):
    """OmegaPRM-style Monte Carlo tree search with binary search for the first error.

    1. Screening: sample ``screen_rollouts`` solutions; skip the question when
       all or none are right.  These rollouts are the root's estimate.
    2. Estimation at a node samples ``num_branches`` completions; MC value is
       the fraction correct over all completions seen there.  Correct ones join
       the tree as step chains; if the node is not wrong and MC < 1 the
       incorrect ones enter the candidate pool.
    3. Selection pops the candidate with the highest ``Q + U`` (computed fresh);
       expansion binary-searches its steps, estimating each midpoint prefix.
    4. Stop after ``max_search`` selections or ``max_branches`` completions
       (checked before every estimation, so at most one estimation over).

    Subclass it, or write a [`MonteCarloPolicy`][prmsynth.MonteCarloPolicy] of
    your own (see ``docs/policies.md``).
    """

    run_class: ClassVar[type[SearchRun]] = OmegaPRMRun
    settings_used: ClassVar[tuple[str, ...] | None] = (
        "screen_rollouts",
        "max_search",
        "max_branches",
        "alpha",
        "beta",
        "length_scale",
        "exploration",
        "first_error_threshold",
        "skip_uniform",
    )

    async def expand(self, run: SearchRun) -> None:
        """Select candidates by ``Q + U`` and locate each one's first error."""
        if not isinstance(run, OmegaPRMRun):
            raise TypeError(
                f"OmegaPRM needs an OmegaPRMRun (its run_class), got {type(run).__name__}"
            )
        while run.pool and run.n_selections < self.settings.max_search and run.budget_left:
            candidate = run.select()
            run.n_selections += 1
            await run.locate_first_error(
                self.rule, candidate.node, candidate.rollout.steps, candidate.rollout.verdict
            )


@attrs.frozen(kw_only=True)
class MathShepherd(MonteCarloPolicy):
    """Math-Shepherd per-step estimation: every prefix of every solution is estimated.

    After screening, each distinct screening solution (in order) gets
    ``num_branches`` completions from every one of its step prefixes, until
    ``max_branches`` completions are spent.  The soft label of a step is its
    MC value; the hard label is ``n_correct > 0``.  Costs grow linearly with
    the number of steps, which is what [`OmegaPRM`][prmsynth.OmegaPRM] avoids.
    """

    settings_used: ClassVar[tuple[str, ...] | None] = (
        "screen_rollouts",
        "num_branches",
        "max_branches",
        "first_error_threshold",
        "skip_uniform",
    )

    async def expand(self, run: SearchRun) -> None:
        """Estimate every prefix of every screening solution, in order."""
        root = run.tree.node(run.tree.root)
        for rollout in (*root.correct_rollouts, *root.incorrect_rollouts):
            last = run.add_solution(run.tree.root, rollout)
            if last is None:
                continue
            for node in run.tree.path(last)[1:]:
                if await run.estimate(node, grow=False) is None:
                    return

    async def label(
        self,
        question: Question,
        steps: Sequence[str],
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> LabelResult:
        """Estimate every prefix of a given solution; `rule` names the first error."""
        run, chain, verdict = await self._given_solution(question, steps, generator, verifier)
        for node in chain:
            if await run.estimate(node, grow=False) is None:
                break
        evidence = run.evidence(run.tree.root, chain, verdict)
        return run.label_result(chain, verdict, first_error=self.rule.first_error(evidence))


@attrs.frozen(kw_only=True)
class BestOfN(MonteCarloPolicy):
    """Independent solutions only: ``screen_rollouts`` samples, no step estimation.

    The cheapest baseline: each solution joins the tree with its final
    verdict, and only the root (and the solutions' last steps) carry values.
    """

    settings_used: ClassVar[tuple[str, ...] | None] = (
        "screen_rollouts",
        "max_branches",
        "first_error_threshold",
        "skip_uniform",
    )
    uses_rule: ClassVar[bool] = False

    async def search(
        self,
        question: Question,
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> SearchResult:
        run = self.start(question, generator, verifier)
        reason = await run.screen()
        await self.expand(run)  # skipped or not, the solutions are the data
        return run.result("kept" if reason is None else "skipped", reason)

    async def expand(self, run: SearchRun) -> None:
        """The incorrect screening solutions join the tree (the correct ones
        joined it while screening)."""
        for rollout in run.tree.node(run.tree.root).incorrect_rollouts:
            run.add_solution(run.tree.root, rollout)


POLICIES: dict[str, type[MonteCarloPolicy]] = {
    "omegaprm": OmegaPRM,
    "math-shepherd": MathShepherd,
    "best-of-n": BestOfN,
}
