"""Search policies: build a reasoning tree by sampling and verifying completions.

The default, :class:`OmegaPRM`, follows the OmegaPRM paper (Luo et al., 2024,
"Improve Mathematical Reasoning in Language Models by Automated Process
Supervision") as the seed script implemented it: screen the question, estimate
Monte Carlo values, keep incorrect rollouts in a candidate pool ranked by
``Q + U``, and binary-search a selected rollout for its first wrong step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs

from prmsynth._interfaces import SearchPolicy, StepGenerator, StepVerifier
from prmsynth._tree import ReasoningTree
from prmsynth._values import Question, Rollout, SearchSettings

SearchStatus = Literal["kept", "skipped", "failed"]


@attrs.frozen(kw_only=True)
class SearchResult:
    """The outcome of searching one question: the whole tree and what it cost.

    ``status`` is ``"kept"`` (the tree is training data), ``"skipped"`` (the
    question teaches a PRM nothing, ``reason`` says why) or ``"failed"`` (an
    error, ``reason`` holds it).
    """

    tree: ReasoningTree
    status: SearchStatus
    reason: str | None = None
    n_completions: int = 0
    n_selections: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def question(self) -> Question:
        return self.tree.question


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
class _SearchRun:
    """The mutable state of one question's search (one instance per call)."""

    tree: ReasoningTree
    settings: SearchSettings
    generator: StepGenerator
    verifier: StepVerifier
    pool: list[_Candidate] = attrs.Factory(list)
    n_completions: int = 0
    n_selections: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def budget_left(self) -> bool:
        return self.n_completions < self.settings.max_branches

    async def sample(self, node: int, n: int) -> list[Rollout]:
        """Sample ``n`` completions from ``node``'s prefix and verify them."""
        question = self.tree.question
        prefix = self.tree.prefix_steps(node)
        response = await self.generator.generate(
            question, prefix, n=n, sample_offset=self.n_completions
        )
        self.n_completions += n
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens
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

    def absorb(self, node: int, rollouts: Sequence[Rollout]) -> None:
        """Record rollouts at ``node``; grow the tree and the pool from them."""
        self.tree.record_rollouts(node, rollouts)
        mc_value = self.tree.mc_value(node)
        if mc_value == 0.0:
            return  # every completion failed: nothing here to learn from
        for rollout in rollouts:
            if not rollout.steps:
                continue
            if rollout.correct:
                chain = self.tree.add_steps(node, rollout.steps)
                self.tree.mark_terminal(chain[-1], rollout.verdict)
            elif mc_value < 1.0:
                self.pool.append(_Candidate(node=node, rollout=rollout))

    async def estimate(self, node: int) -> float | None:
        """Monte Carlo estimate at ``node``; None when the budget is spent."""
        data = self.tree[node]
        if data["terminal"]:
            return data["mc_value"]  # a finished solution's value is exact
        if data["n_rollouts"] >= self.settings.num_branches:
            return data["mc_value"]  # estimated before (a shared prefix): reuse it
        if not self.budget_left:
            return None
        rollouts = await self.sample(node, self.settings.num_branches)
        self.absorb(node, rollouts)
        return self.tree.mc_value(node)

    def priority(self, candidate: _Candidate, total_visits: int) -> float:
        settings = self.settings
        mc_value = self.tree.mc_value(candidate.node) or 0.0
        quality = settings.alpha ** (1.0 - mc_value) * settings.beta ** (
            rollout_length(candidate.rollout) / settings.length_scale
        )
        visits = self.tree[candidate.node]["visits"]
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

    async def binary_search(self, candidate: _Candidate) -> None:
        """Find the first step of ``candidate.rollout`` from which no completion succeeds.

        Every prefix estimated on the way becomes a node; MC = 0 at the
        midpoint means the error is at or before it.
        """
        steps = candidate.rollout.steps
        anchor, left, right = candidate.node, 0, len(steps) - 1
        while left <= right:
            middle = (left + right) // 2
            node = self.tree.add_steps(anchor, steps[left : middle + 1])[-1]
            if middle == len(steps) - 1:
                # The rollout's own end: an incorrect finished solution.
                self.tree.mark_terminal(node, candidate.rollout.verdict)
            mc_value = await self.estimate(node)
            if mc_value is None:
                return
            if mc_value == 0.0:
                right = middle - 1
            else:
                anchor, left = node, middle + 1


def _screening_reason(rollouts: Sequence[Rollout]) -> str | None:
    n_correct = sum(rollout.correct for rollout in rollouts)
    if n_correct == len(rollouts):
        return "all_correct"
    if n_correct == 0:
        return "none_correct"
    return None


@attrs.frozen(kw_only=True)
class OmegaPRM(SearchPolicy):
    """OmegaPRM-style Monte Carlo tree search with binary search for the first error.

    1. Screening: sample ``screen_rollouts`` solutions; skip the question when
       all or none are right.  These rollouts are the root's estimate.
    2. Estimation at a node samples ``num_branches`` completions; MC value is
       the fraction correct over all completions seen there.  Correct ones join
       the tree as step chains; if 0 < MC < 1 the incorrect ones enter the
       candidate pool.
    3. Selection pops the candidate with the highest ``Q + U`` (computed fresh);
       expansion binary-searches its steps, estimating each midpoint prefix.
    4. Stop after ``max_search`` selections or ``max_branches`` completions
       (checked before every estimation, so at most one estimation over).

    Subclass it and override :meth:`search` (or compose the pieces of your own
    policy from :class:`prmsynth.ReasoningTree`) to change the algorithm.
    """

    settings: SearchSettings = attrs.field(factory=SearchSettings)

    async def search(
        self,
        question: Question,
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> SearchResult:
        run = _SearchRun(
            tree=ReasoningTree(question),
            settings=self.settings,
            generator=generator,
            verifier=verifier,
        )
        tree = run.tree
        screening = await run.sample(tree.root, self.settings.screen_rollouts)
        run.absorb(tree.root, screening)
        reason = _screening_reason(screening)
        if reason is None:
            while run.pool and run.n_selections < self.settings.max_search and run.budget_left:
                candidate = run.select()
                run.n_selections += 1
                await run.binary_search(candidate)
        return SearchResult(
            tree=tree,
            status="kept" if reason is None else "skipped",
            reason=reason,
            n_completions=run.n_completions,
            n_selections=run.n_selections,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
        )
