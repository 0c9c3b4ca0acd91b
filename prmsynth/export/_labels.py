"""The labelling rule: which steps of a root-to-leaf path are right, wrong or unknown.

The rule is shared by ``trl``, ``math-shepherd``, ``prm800k``,
``processbench``, ``kto`` and ``step-dpo`` (see `label_path`).  A root-to-leaf path is a list of
steps, and a step's value is its node's ``mc_value``.

0. A step the search's first-error rule judged (its node's ``label``, set
   by the run) keeps that judgement (``ExportSettings.labels = "search"``,
   the default), so the labels trainers see are the ones the search made.
   The rules below label the other steps, or every step with
   ``labels = "mc"`` (thresholds only, an explicit override).
1. A step never sampled from (``mc_value`` None) takes the nearest value
   *below* it on the path when that value is positive (``> positive_threshold``):
   a later prefix that can reach the answer means this one can too (the
   Math-Shepherd "hard" estimate).  Otherwise it stays unknown: a negative
   label is never invented from no data.
2. Going down the path, the first step whose value is ``<= positive_threshold``
   is the first error, and every step after it is negative whatever its own
   value (after the first error every step is wrong, as in Math-Shepherd and
   ProcessBench).
3. A path is exported up to its first unknown step; a path with no labelled
   step gives no record.

With ``soft_labels`` (``trl`` and ``math-shepherd`` only) the same paths carry,
in place of the rule's labels, the MC value of each step the run estimated (see
`ExportSettings`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import attrs

from prmsynth._tree import ReasoningTree
from prmsynth.export._settings import ExportSettings

__all__ = [
    "LabelledStep",
    "agrees_with_critic",
    "label_path",
    "labelled_paths",
    "passes_consensus",
    "soft_paths",
    "steps_after_right_prefixes",
]


@attrs.frozen(kw_only=True)
class LabelledStep:
    """One step of a root-to-leaf path with its label (see `label_path`).

    ``mc_value`` is the node's own value; ``value`` the one the label comes
    from (the node's own, or inherited from below; None for a step that is
    negative only because an earlier step was, or that is unknown).
    ``label`` is True, False, or None (unknown); ``rating`` is PRM800K's 1, 0
    or -1, None when unknown.
    """

    node: int
    text: str
    mc_value: float | None
    value: float | None
    label: bool | None
    rating: int | None


def label_path(
    tree: ReasoningTree, leaf: int, settings: ExportSettings | None = None
) -> list[LabelledStep]:
    """Label every step on the path from the root to ``leaf`` (the root excluded).

    The rule, shared by every labelled format: a step never sampled from
    takes the nearest MC value below it when that is positive, else stays
    unknown; from the first step whose value is ``<= positive_threshold`` on,
    every step is negative.  ``rating`` is 1 for a positive step; a negative
    step is rated -1 when its value is ``<= negative_threshold`` or a step
    before it was rated -1, and 0 otherwise.

    >>> from prmsynth import Question, ReasoningTree, Rollout, Verdict
    >>> tree = ReasoningTree(Question(id="q", text="Q", reference_answer="5"))
    >>> nodes = tree.add_steps(tree.root, ["a", "b", "c", "d"])
    >>> wrong = Rollout(text="x", steps=("x",), verdict=Verdict(status="incorrect"))
    >>> tree.mark_terminal(nodes[1], Verdict(status="correct"))  # value 1.0
    >>> tree.record_rollouts(nodes[2], [wrong])  # value 0.0
    >>> [(step.label, step.value) for step in label_path(tree, nodes[3])]
    [(True, 1.0), (True, 1.0), (False, 0.0), (False, None)]
    """
    settings = settings or ExportSettings()
    nodes = tree.path(leaf)[1:]
    own = [tree.mc_value(node) for node in nodes]
    values = list(own)
    nearest_below: float | None = None
    for index in reversed(range(len(nodes))):
        if own[index] is not None:
            nearest_below = own[index]
        elif nearest_below is not None and nearest_below > settings.positive_threshold:
            values[index] = nearest_below
    steps = []
    error_seen = strong_error_seen = False
    for node, mc_value, value in zip(nodes, own, values, strict=True):
        label: bool | None
        rating: int | None
        if error_seen:
            # negative because an earlier step was: only the step's own value is shown
            label, value = False, mc_value
        elif settings.labels == "search" and tree.node(node).label is not None:
            label = tree.node(node).label  # the first-error rule's judgement
        elif value is None:
            label = None
        else:
            label = value > settings.positive_threshold
        if label is None:
            rating = None
        elif label:
            rating = 1
        elif strong_error_seen or (value is not None and value <= settings.negative_threshold):
            rating, strong_error_seen = -1, True
        else:
            rating = 0
        if label is False:
            error_seen = True
        steps.append(
            LabelledStep(
                node=node,
                text=tree.node(node).text,
                mc_value=mc_value,
                value=value,
                label=label,
                rating=rating,
            )
        )
    return steps


def _labelled_prefix(steps: list[LabelledStep]) -> list[LabelledStep]:
    for index, step in enumerate(steps):
        if step.label is None:
            return steps[:index]
    return steps


def _leaf_paths(tree: ReasoningTree) -> Iterator[int]:
    for leaf in tree.leaves():
        if leaf != tree.root:
            yield leaf


def agrees_with_critic(steps: Sequence[LabelledStep], critic_first_error: int) -> bool:
    """Whether a critic's first error names the same first wrong step as the
    labels of ``steps`` (a path's labelled prefix, so a critic's error after
    its end means "no error here").

    >>> def steps(*labels):
    ...     return [LabelledStep(node=i, text="", mc_value=None, value=None, label=label,
    ...                          rating=None) for i, label in enumerate(labels)]
    >>> agrees_with_critic(steps(True, False, False), 1)
    True
    >>> agrees_with_critic(steps(True, True), 3)  # the critic's error is beyond the prefix
    True
    >>> agrees_with_critic(steps(True, True), 0)
    False
    """
    labelled = next((i for i, step in enumerate(steps) if step.label is False), -1)
    return labelled == (critic_first_error if critic_first_error < len(steps) else -1)


def passes_consensus(
    tree: ReasoningTree, leaf: int, steps: Sequence[LabelledStep], stats: Counter[str]
) -> bool:
    critic_first_error = tree.node(leaf).critic_first_error
    if critic_first_error is None:
        stats["removed_without_critique"] += 1
        return False
    if not agrees_with_critic(steps, critic_first_error):
        stats["removed_by_consensus"] += 1
        return False
    return True


def labelled_paths(
    tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]
) -> Iterator[list[LabelledStep]]:
    """The labelled prefix of every root-to-leaf path that has one (and, with
    ``consensus``, whose critique agrees)."""
    for leaf in _leaf_paths(tree):
        steps = label_path(tree, leaf, settings)
        prefix = _labelled_prefix(steps)
        if len(prefix) < len(steps):
            stats["paths_cut_at_unknown_step"] += 1
        if not prefix:
            stats["paths_without_labelled_step"] += 1
            continue
        if settings.consensus and not passes_consensus(tree, leaf, prefix, stats):
            continue
        yield prefix


def _estimated_pieces(steps: Sequence[LabelledStep]) -> list[list[LabelledStep]]:
    """Cut a labelled path into pieces that each end at a step with an MC value
    of its own: what a soft-labelled record writes as its steps.

    A step never sampled from has no value to write, so it joins the next step
    that has one (the label there is the value of the prefix through both);
    the steps after the last estimated one are left out.

    >>> def steps(*values):
    ...     return [LabelledStep(node=i, text=str(i), mc_value=value, value=value, label=True,
    ...                          rating=1) for i, value in enumerate(values)]
    >>> [[step.node for step in piece] for piece in _estimated_pieces(steps(None, 0.5, 1.0, None))]
    [[0, 1], [2]]
    """
    pieces: list[list[LabelledStep]] = []
    pending: list[LabelledStep] = []
    for step in steps:
        pending.append(step)
        if step.mc_value is not None:
            pieces.append(pending)
            pending = []
    return pieces


def soft_paths(
    tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]
) -> Iterator[tuple[list[LabelledStep], list[list[LabelledStep]]]]:
    """``(steps, pieces)``: the steps a soft-labelled record covers and their
    `_estimated_pieces`, for the paths a hard-labelled export writes."""
    for steps in labelled_paths(tree, settings, stats):
        pieces = _estimated_pieces(steps)
        if not pieces:
            stats["paths_without_estimated_step"] += 1
            continue
        yield [step for piece in pieces for step in piece], pieces


def steps_after_right_prefixes(
    tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]
) -> dict[int, LabelledStep]:
    """Every labelled step whose earlier steps are all positive, by node, in path order.

    A step is judged only where its prefix is right: the first error of a path
    ends it, since the steps after it continue a wrong prefix and are negative
    only because of it.  A node on several paths is kept once; its label is the
    same on every path that labels it (an inherited value is only ever positive).
    """
    found: dict[int, LabelledStep] = {}
    for steps in labelled_paths(tree, settings, stats):
        for step in steps:
            found.setdefault(step.node, step)
            if step.label is False:
                break
    return found
