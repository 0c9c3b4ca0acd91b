"""Training-ready exports: every format a PRM, SFT or DPO trainer reads, each with a schema.

Reasoning trees are the product, but trainers read files.  This module turns
trees into the record formats the field uses (TRL stepwise supervision,
Math-Shepherd, PRM800K, ProcessBench, chat SFT, TRL SFT, DPO pairs, per-step
KTO, Step-DPO) and
validates every record against a JSON Schema (Draft 2020-12) shipped in
``prmsynth/export/schemas/`` before anything is written.

**The labelling rule** (shared by ``trl``, ``math-shepherd``, ``prm800k``,
``processbench``, ``kto`` and ``step-dpo``, see `label_path`): a root-to-leaf path is a list of
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

>>> from prmsynth import Question, ReasoningTree, Verdict
>>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
>>> first, last = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
>>> tree.mark_terminal(last, Verdict(status="correct"))
>>> [record["labels"] for record in export_records([tree], "trl")]
[[True, True]]
"""

from __future__ import annotations

import array
import contextlib
import functools
import hashlib
import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import attrs

from prmsynth._errors import ExportError, InputError
from prmsynth._io import (
    SeenKeys,
    atomic_files,
    clean_leftovers,
    dumps_json,
    dumps_line,
    iter_appended_jsonl,
    numbered_lines,
    scratch_folder,
)
from prmsynth._tree import ReasoningTree, TreeInvariantError
from prmsynth.export._serialize import (
    STEP_SEPARATOR,
    dpo_records,
    flat_record,
    full_solutions,
    sft_records,
    tree_from_dict,
    tree_to_dict,
)

if TYPE_CHECKING:
    import jsonschema

FORMATS: tuple[str, ...] = (
    "tree",
    "flat",
    "trl",
    "math-shepherd",
    "prm800k",
    "processbench",
    "sft",
    "sft-trl",
    "dpo",
    "dpo-trl",
    "dpo-step",
    "dpo-step-trl",
    "kto",
    "step-dpo",
)
"""The format names [`export_records`][prmsynth.export_records],
[`export_file`][prmsynth.export_file] and [`validate_file`][prmsynth.validate_file] know."""

# Formats that share a record layout share a schema file.
_SCHEMA_NAMES = {
    "dpo-step": "dpo",
    "dpo-step-trl": "dpo-trl",
}

# Formats whose examples have a class (an error in the solution or not), so
# they can be balanced and their label balance reported.
_LABELLED_FORMATS = frozenset({"trl", "math-shepherd", "prm800k", "processbench", "kto"})

# Formats whose trainers read a float label per step: TRL's ``labels``, the
# ``value`` list OpenRLHF reads from a Math-Shepherd record.
_SOFT_LABEL_FORMATS = ("trl", "math-shepherd")

STEP_TAG = "ки"
"""Math-Shepherd's step tag: each step of ``input`` ends with ``" ки"``."""

_STEP_MARKER = re.compile(r"^\s*step\s*\d+\s*[:.]\s*", re.IGNORECASE)

SplitName = Literal["train", "validation"]
"""The two sides of a train/validation split (see `question_split`)."""


def _check_fraction(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


def _default_system_prompt() -> str:
    from prmsynth.search._generation import DEFAULT_SYSTEM_PROMPT

    return DEFAULT_SYSTEM_PROMPT


@attrs.frozen(kw_only=True)
class ExportSettings:
    """Options of an export; all of them are written into the manifest.

    ``labels``: ``"search"`` (default) keeps the first-error rule's judgement
    of every step the run judged and uses the thresholds for the others;
    ``"mc"`` labels every step by the thresholds alone.
    ``positive_threshold``: a step whose MC value is above it is positive
    (``True`` / ``+`` / rating 1); the default 0.0 means "some completion from
    this prefix reached the answer" (Math-Shepherd's hard label).
    ``negative_threshold``: for the 3-way ``prm800k`` rating, a negative step
    whose value is at most this is rated -1 (and so is every step after it),
    other negative steps 0; it must not exceed ``positive_threshold``.
    ``balance``: ``"none"``, or ``"downsample"`` the majority class (solutions
    with an error against solutions without) at random with ``balance_seed``,
    in each output file; labelled formats only.  ``deduplicate``: write
    identical records once.  ``validation_fraction``: the share of questions
    (by a stable hash of the question id and ``split_seed``) whose records go
    to the validation file; no question is on both sides.  ``system_prompt``:
    the system message of the chat formats (default: the generator's).
    ``consensus``: keep only the solutions where a critic's first error (see
    [`StepCritic`][prmsynth.StepCritic], stored by a run with a critic)
    agrees with the labels, on the steps exported; solutions no critic read
    are left out too.  Labelled formats only.  ``generator``: the model that
    wrote the solutions, as ProcessBench's ``generator`` field names it (None:
    unknown; ``prmsynth export`` reads it from the ``run.json`` beside the trees).
    ``soft_labels``: each label is the MC value of its step, a float in [0, 1],
    not a boolean (``trl`` ``labels``, ``math-shepherd`` ``value``; the other
    formats refuse it with an [`InputError`][prmsynth.InputError]).  Only the values the run
    estimated are written: a step with no MC value of its own is joined to the
    next step that has one (their texts, with a blank line between), and the
    steps after the last such step are left out.

    >>> settings = ExportSettings(positive_threshold=0.5)
    >>> (settings.negative_threshold, settings.deduplicate, settings.balance)
    (0.0, True, 'none')
    >>> ExportSettings(positive_threshold=0.2, negative_threshold=0.5)
    Traceback (most recent call last):
    ...
    ValueError: negative_threshold (0.5) must not exceed positive_threshold (0.2)
    """

    labels: Literal["search", "mc"] = attrs.field(
        default="search", validator=attrs.validators.in_(("search", "mc"))
    )
    positive_threshold: float = attrs.field(default=0.0, validator=_check_fraction)
    negative_threshold: float = attrs.field(default=0.0, validator=_check_fraction)
    balance: Literal["none", "downsample"] = attrs.field(
        default="none", validator=attrs.validators.in_(("none", "downsample"))
    )
    balance_seed: int = 0
    deduplicate: bool = True
    validation_fraction: float = attrs.field(default=0.0, validator=_check_fraction)
    split_seed: int = 0
    system_prompt: str = attrs.field(factory=_default_system_prompt)
    consensus: bool = False
    generator: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    soft_labels: bool = False

    def __attrs_post_init__(self) -> None:
        if self.negative_threshold > self.positive_threshold:
            raise ValueError(
                f"negative_threshold ({self.negative_threshold}) must not exceed "
                f"positive_threshold ({self.positive_threshold})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (what the manifest records)."""
        return attrs.asdict(self)


# -- labels ----------------------------------------------------------------------------


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
        elif settings.labels == "search" and tree[node]["label"] is not None:
            label = tree[node]["label"]  # the first-error rule's judgement
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
                text=tree[node]["text"],
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


# -- Math-Shepherd text --------------------------------------------------------------


def _strip_step_marker(text: str) -> str:
    # A generator that writes "Step 1: ..." would otherwise give "Step 1: Step 1: ...".
    stripped = _STEP_MARKER.sub("", text, count=1)
    return stripped if stripped.strip() else text


def math_shepherd_record(
    problem: str, steps: Sequence[str], labels: Sequence[bool], *, task: str
) -> dict[str, Any]:
    """A Math-Shepherd record: ``"Step i: ..."`` lines tagged with ``" ки"`` in ``input``,
    ``+`` / ``-`` in place of each tag in ``label``, and the same marks as a list
    in ``value`` (what OpenRLHF's process reward dataset reads with
    ``--label_key value``).

    >>> record = math_shepherd_record("What is 2 + 3?", ["2 + 3 = 5.", "So 6."], [True, False],
    ...                               task="toy")
    >>> record["input"]
    'What is 2 + 3? Step 1: 2 + 3 = 5. ки\\nStep 2: So 6. ки'
    >>> record["label"]
    'What is 2 + 3? Step 1: 2 + 3 = 5. +\\nStep 2: So 6. -'
    >>> record["value"]
    ['+', '-']
    >>> parse_math_shepherd(record) == ("What is 2 + 3?", ["2 + 3 = 5.", "So 6."], [True, False])
    True
    """
    if len(steps) != len(labels):
        raise ValueError(f"{len(steps)} steps but {len(labels)} labels")
    lines = [f"Step {number}: {step}" for number, step in enumerate(steps, start=1)]
    tagged = "\n".join(f"{line} {STEP_TAG}" for line in lines)
    marks = ["+" if label else "-" for label in labels]
    marked = "\n".join(f"{line} {mark}" for line, mark in zip(lines, marks, strict=True))
    return {
        "input": f"{problem} {tagged}",
        "label": f"{problem} {marked}",
        "value": marks,
        "task": task,
    }


def parse_math_shepherd(record: dict[str, Any]) -> tuple[str, list[str], list[bool]]:
    """Read a Math-Shepherd record back into ``(problem, steps, labels)``.

    Labels are read at the positions of the ``" ки"`` tags of ``input``;
    ``ValueError`` when ``label`` is not ``input`` with each tag replaced by
    ``+`` or ``-``.  The problem is the text before the first ``" Step 1: "``.

    >>> parse_math_shepherd({"input": "Q? Step 1: a ки", "label": "Q? Step 1: a +", "task": "t"})
    ('Q?', ['a'], [True])
    >>> parse_math_shepherd({"input": "Q? Step 1: a ки", "label": "Q? Step 1: b +", "task": "t"})
    Traceback (most recent call last):
    ...
    ValueError: label differs from input before tag 1
    """
    text, marked = record["input"], record["label"]
    segments = text.split(f" {STEP_TAG}")
    if len(segments) < 2 or segments[-1] != "":
        raise ValueError(f"input must end with the step tag ' {STEP_TAG}'")
    segments = segments[:-1]
    labels: list[bool] = []
    position = 0
    for number, segment in enumerate(segments, start=1):
        if marked[position : position + len(segment)] != segment:
            raise ValueError(f"label differs from input before tag {number}")
        position += len(segment)
        mark = marked[position : position + 2]
        if mark not in (" +", " -"):
            raise ValueError(f"label has {mark!r} in place of tag {number}, not ' +' or ' -'")
        labels.append(mark == " +")
        position += 2
    if position != len(marked):
        raise ValueError("label runs on after the last tag")
    first = segments[0]
    marker = " Step 1: "
    split_at = first.find(marker)
    if split_at >= 0:
        problem, steps = first[:split_at], [first[split_at + len(marker) :]]
    else:
        problem, steps = "", [first]
    for number, segment in enumerate(segments[1:], start=2):
        marker = f"\nStep {number}: "
        steps.append(segment[len(marker) :] if segment.startswith(marker) else segment.lstrip("\n"))
    return problem, steps, labels


# -- records per format --------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Example:
    """One record with what the pipeline needs to know about it."""

    record: dict[str, Any]
    question_id: str
    has_error: bool | None  # the class used for balancing; None where a format has none
    step_counts: tuple[int, int, int] = (0, 0, 0)  # positive, neutral, negative steps


def _step_counts(steps: Sequence[LabelledStep], *, three_way: bool) -> tuple[int, int, int]:
    if three_way:
        ratings = Counter(step.rating for step in steps)
        return ratings[1], ratings[0], ratings[-1]
    positive = sum(1 for step in steps if step.label)
    return positive, 0, len(steps) - positive


def _chat_prompt(tree: ReasoningTree, settings: ExportSettings) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": settings.system_prompt},
        {"role": "user", "content": tree.question.text},
    ]


def _continue_prompt(
    tree: ReasoningTree, settings: ExportSettings, prefix: Sequence[str]
) -> list[dict[str, str]]:
    """The messages the default generator asks for the step after ``prefix`` with."""
    from prmsynth.search._generation import DEFAULT_CONTINUE_TEMPLATE

    if not prefix:
        return _chat_prompt(tree, settings)
    content = DEFAULT_CONTINUE_TEMPLATE.format(
        question=tree.question.text, prefix=STEP_SEPARATOR.join(prefix)
    )
    return [
        {"role": "system", "content": settings.system_prompt},
        {"role": "user", "content": content},
    ]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


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


def _passes_consensus(
    tree: ReasoningTree, leaf: int, steps: Sequence[LabelledStep], stats: Counter[str]
) -> bool:
    critic_first_error = tree[leaf]["critic_first_error"]
    if critic_first_error is None:
        stats["removed_without_critique"] += 1
        return False
    if not agrees_with_critic(steps, critic_first_error):
        stats["removed_by_consensus"] += 1
        return False
    return True


def _labelled_paths(
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
        if settings.consensus and not _passes_consensus(tree, leaf, prefix, stats):
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


def _soft_paths(
    tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]
) -> Iterator[tuple[list[LabelledStep], list[list[LabelledStep]]]]:
    """``(steps, pieces)``: the steps a soft-labelled record covers and their
    `_estimated_pieces`, for the paths a hard-labelled export writes."""
    for steps in _labelled_paths(tree, settings, stats):
        pieces = _estimated_pieces(steps)
        if not pieces:
            stats["paths_without_estimated_step"] += 1
            continue
        yield [step for piece in pieces for step in piece], pieces


def _soft_example(
    tree: ReasoningTree,
    record: dict[str, Any],
    steps: list[LabelledStep],
    pieces: list[list[LabelledStep]],
) -> _Example:
    # The class and the label balance count the rule's label at each labelled step.
    ends = [piece[-1] for piece in pieces]
    return _Example(
        record=record,
        question_id=tree.question.id,
        has_error=not all(step.label for step in steps),
        step_counts=_step_counts(ends, three_way=False),
    )


def _trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    if settings.soft_labels:
        for steps, pieces in _soft_paths(tree, settings, stats):
            values = [piece[-1].mc_value for piece in pieces]
            record = {
                "prompt": tree.question.text,
                "completions": [
                    STEP_SEPARATOR.join(step.text for step in piece) for piece in pieces
                ],
                "labels": values,
                "mc_values": list(values),
            }
            yield _soft_example(tree, record, steps, pieces)
        return
    for steps in _labelled_paths(tree, settings, stats):
        yield _Example(
            record={
                "prompt": tree.question.text,
                "completions": [step.text for step in steps],
                "labels": [bool(step.label) for step in steps],
                "mc_values": [step.value for step in steps],
            },
            question_id=tree.question.id,
            has_error=not all(step.label for step in steps),
            step_counts=_step_counts(steps, three_way=False),
        )


def _soft_math_shepherd_examples(
    tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]
) -> Iterator[_Example]:
    question = tree.question
    for steps, pieces in _soft_paths(tree, settings, stats):
        texts = [
            STEP_SEPARATOR.join(_strip_step_marker(step.text) for step in piece) for piece in pieces
        ]
        if any(STEP_TAG in text for text in [question.text, *texts]):
            stats["paths_with_step_tag_in_text"] += 1
            continue
        ends = [piece[-1] for piece in pieces]
        # label keeps the rule's marks for Math-Shepherd's readers; value has the floats
        record = math_shepherd_record(
            question.text, texts, [bool(step.label) for step in ends], task=question.source
        )
        record["value"] = [step.mc_value for step in ends]
        yield _soft_example(tree, record, steps, pieces)


def _math_shepherd_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    if settings.soft_labels:
        yield from _soft_math_shepherd_examples(tree, settings, stats)
        return
    question = tree.question
    for steps in _labelled_paths(tree, settings, stats):
        texts = [_strip_step_marker(step.text) for step in steps]
        if any(STEP_TAG in text for text in [question.text, *texts]):
            # The tag inside the text would be read as one more step's label.
            stats["paths_with_step_tag_in_text"] += 1
            continue
        yield _Example(
            record=math_shepherd_record(
                question.text,
                texts,
                [bool(step.label) for step in steps],
                task=question.source,
            ),
            question_id=question.id,
            has_error=not all(step.label for step in steps),
            step_counts=_step_counts(steps, three_way=False),
        )


def _prm800k_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    question = tree.question
    for steps in _labelled_paths(tree, settings, stats):
        last = tree[steps[-1].node]
        if any(step.rating == -1 for step in steps):
            finish_reason = "found_error"
        elif last["terminal"] and len(steps) == len(tree.path(steps[-1].node)) - 1:
            finish_reason = "solution"
        else:
            finish_reason = "give_up"
        yield _Example(
            record={
                "labeler": "prmsynth",
                "timestamp": None,
                "generation": None,
                "is_quality_control_question": False,
                "is_initial_screening_question": False,
                "question": {
                    "problem": question.text,
                    "ground_truth_answer": question.reference_answer,
                },
                "label": {
                    "steps": [
                        {
                            "completions": [
                                {"text": step.text, "rating": step.rating, "flagged": False}
                            ],
                            "human_completion": None,
                            "chosen_completion": 0,
                        }
                        for step in steps
                    ],
                    "total_time": None,
                    "finish_reason": finish_reason,
                },
            },
            question_id=question.id,
            has_error=not all(step.label for step in steps),
            step_counts=_step_counts(steps, three_way=True),
        )


def _processbench_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    # A ProcessBench item is a finished solution with a known first error (or none):
    # the path to a terminal node with every step labelled, or the path to a node
    # after its first error followed by a failed completion sampled from that node
    # (after the first error every step is wrong, so its steps need no label of
    # their own).  Binary search stops at the first error, so the second kind is
    # where most wrong solutions of a tree are.
    question = tree.question
    for node in tree.nodes():
        data = tree[node]
        if node == tree.root:
            continue
        steps = label_path(tree, node, settings)
        known = all(step.label is not None for step in steps)
        first_error = next((i for i, step in enumerate(steps) if step.label is False), -1)
        texts = [step.text for step in steps]
        if data["terminal"]:
            if data["verdict"] is None:
                stats["solutions_without_verdict"] += 1
            elif not known:
                stats["solutions_with_unknown_step"] += 1
            elif settings.consensus and not _passes_consensus(tree, node, steps, stats):
                pass
            else:
                yield _Example(
                    record={
                        "id": f"{question.id}-n{node}",
                        "generator": settings.generator,
                        "problem": question.text,
                        "steps": texts,
                        "label": first_error,
                        "final_answer_correct": data["verdict"] == "correct",
                    },
                    question_id=question.id,
                    has_error=first_error != -1,
                    step_counts=_step_counts(steps, three_way=False),
                )
        if not known or first_error == -1:
            continue  # a failed continuation of a good prefix: its first error is unknown
        if settings.consensus:
            # No critic read the prefix with this continuation.
            stats["removed_without_critique"] += len(data["incorrect_rollouts"])
            continue
        for index, rollout in enumerate(data["incorrect_rollouts"]):
            if rollout.finish_reason == "length" or not rollout.steps:
                continue  # a cut-off text is no finished solution
            yield _Example(
                record={
                    "id": f"{question.id}-n{node}-r{index}",
                    "generator": settings.generator,
                    "problem": question.text,
                    "steps": [*texts, *rollout.steps],
                    "label": first_error,
                    "final_answer_correct": False,
                },
                question_id=question.id,
                has_error=True,
                step_counts=(first_error, 0, len(steps) + len(rollout.steps) - first_error),
            )


def _tree_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    yield _Example(record=tree_to_dict(tree), question_id=tree.question.id, has_error=None)


def _flat_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    yield _Example(record=flat_record(tree), question_id=tree.question.id, has_error=None)


def _sft_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for record in sft_records(tree, system_prompt=settings.system_prompt):
        yield _Example(record=record, question_id=tree.question.id, has_error=None)


def _sft_trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for text, correct in full_solutions(tree):
        if correct:
            yield _Example(
                record={"prompt": _chat_prompt(tree, settings), "completion": _assistant(text)},
                question_id=tree.question.id,
                has_error=None,
            )


def _dpo_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for record in dpo_records(tree, system_prompt=settings.system_prompt):
        yield _Example(record=record, question_id=tree.question.id, has_error=None)


def _dpo_trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    # The same pairs as the seed's format, in TRL's conversational layout.
    for record in dpo_records(tree, system_prompt=settings.system_prompt):
        yield _Example(
            record={
                "prompt": record["input"]["messages"],
                "chosen": record["preferred_output"],
                "rejected": record["non_preferred_output"],
            },
            question_id=tree.question.id,
            has_error=None,
        )


def _step_pairs(
    tree: ReasoningTree, settings: ExportSettings
) -> Iterator[tuple[list[dict[str, str]], str, str]]:
    """(prompt, chosen, rejected): two continuations sampled from the same step prefix."""
    for node in tree.nodes():
        if node == tree.root:
            continue  # the root's rollouts are whole solutions: the dpo export has them
        data = tree[node]

        def usable(rollouts: list[Any]) -> list[str]:
            texts: list[str] = []
            for rollout in rollouts:
                text = rollout.text.strip()
                # a cut-off text is no continuation to prefer or reject
                if rollout.finish_reason != "length" and text and text not in texts:
                    texts.append(text)
            return texts

        correct = usable(data["correct_rollouts"])
        incorrect = usable(data["incorrect_rollouts"])
        if not correct or not incorrect:
            continue
        prompt = _continue_prompt(tree, settings, tree.prefix_steps(node))
        for chosen, rejected in zip(correct, incorrect):  # noqa: B905 (pairs run out)
            yield prompt, chosen, rejected


def _dpo_step_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for prompt, chosen, rejected in _step_pairs(tree, settings):
        yield _Example(
            record={
                "input": {"messages": prompt},
                "preferred_output": _assistant(chosen),
                "non_preferred_output": _assistant(rejected),
            },
            question_id=tree.question.id,
            has_error=None,
        )


def _dpo_step_trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for prompt, chosen, rejected in _step_pairs(tree, settings):
        yield _Example(
            record={
                "prompt": prompt,
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
            },
            question_id=tree.question.id,
            has_error=None,
        )


def _steps_after_right_prefixes(
    tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]
) -> dict[int, LabelledStep]:
    """Every labelled step whose earlier steps are all positive, by node, in path order.

    A step is judged only where its prefix is right: the first error of a path
    ends it, since the steps after it continue a wrong prefix and are negative
    only because of it.  A node on several paths is kept once; its label is the
    same on every path that labels it (an inherited value is only ever positive).
    """
    found: dict[int, LabelledStep] = {}
    for steps in _labelled_paths(tree, settings, stats):
        for step in steps:
            found.setdefault(step.node, step)
            if step.label is False:
                break
    return found


def _kto_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for node, step in _steps_after_right_prefixes(tree, settings, stats).items():
        yield _Example(
            record={
                "prompt": _continue_prompt(tree, settings, tree.prefix_steps(node)[:-1]),
                "completion": _assistant(step.text),
                "label": bool(step.label),
            },
            question_id=tree.question.id,
            has_error=not step.label,
            step_counts=_step_counts([step], three_way=False),
        )


def _finished_continuation(tree: ReasoningTree, node: int, *, correct: bool) -> list[str] | None:
    """The steps from ``node`` to the end of a finished solution through it whose
    answer is right (``correct``) or wrong: down the tree to a terminal node, or
    a completion sampled on the way; the first found in depth-first order."""
    start = len(tree.path(node)) - 2  # the index of node's own step in a prefix
    stack = [node]
    while stack:
        current = stack.pop()
        data = tree[current]
        steps = tree.prefix_steps(current)[start:]
        if data["terminal"] and data["verdict"] == ("correct" if correct else "incorrect"):
            return steps
        for rollout in data["correct_rollouts" if correct else "incorrect_rollouts"]:
            if rollout.finish_reason != "length" and rollout.steps:
                return [*steps, *rollout.steps]
        stack.extend(reversed(tree.children(current)))
    return None


def _step_dpo_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    # Step-DPO pairs two next steps after the same right prefix: one the labels
    # call right (and that some finished right solution continues), one that is
    # the first error.  Each first error is used once, the right steps in turn.
    question = tree.question
    judged = _steps_after_right_prefixes(tree, settings, stats)
    siblings: dict[tuple[str, ...], list[int]] = {}
    for node in judged:
        siblings.setdefault(tuple(tree.prefix_steps(node)[:-1]), []).append(node)
    for prefix, children in siblings.items():
        chosen = []
        for node in children:
            if judged[node].label:
                continuation = _finished_continuation(tree, node, correct=True)
                if continuation is not None:
                    chosen.append((node, continuation))
        rejected = [node for node in children if not judged[node].label]
        if not chosen:
            continue
        for index, node in enumerate(rejected):
            good, continuation = chosen[index % len(chosen)]
            wrong = _finished_continuation(tree, node, correct=False) or [judged[node].text]
            yield _Example(
                record={
                    "dataset": question.source,
                    "prompt": question.text,
                    "initial_reason_steps": "".join(step + STEP_SEPARATOR for step in prefix),
                    "chosen": judged[good].text,
                    "rejected": judged[node].text,
                    "full_chosen": STEP_SEPARATOR.join(continuation),
                    "full_rejected": STEP_SEPARATOR.join(wrong),
                    "answer": question.reference_answer,
                },
                question_id=question.id,
                has_error=None,
            )


_Builder = Callable[[ReasoningTree, ExportSettings, "Counter[str]"], Iterable[_Example]]

_BUILDERS: dict[str, _Builder] = {
    "tree": _tree_examples,
    "flat": _flat_examples,
    "trl": _trl_examples,
    "math-shepherd": _math_shepherd_examples,
    "prm800k": _prm800k_examples,
    "processbench": _processbench_examples,
    "sft": _sft_examples,
    "sft-trl": _sft_trl_examples,
    "dpo": _dpo_examples,
    "dpo-trl": _dpo_trl_examples,
    "dpo-step": _dpo_step_examples,
    "dpo-step-trl": _dpo_step_trl_examples,
    "kto": _kto_examples,
    "step-dpo": _step_dpo_examples,
}


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")


# -- dedup, split, balance -----------------------------------------------------------


def question_split(question_id: str, settings: ExportSettings) -> SplitName:
    """``"validation"`` or ``"train"``: where the records of ``question_id`` go.

    A stable hash of the question id and ``split_seed`` (not Python's
    ``hash``, which changes between runs), so reruns agree, and every record of
    a question lands on the same side.

    >>> settings = ExportSettings(validation_fraction=0.5)
    >>> question_split("q1", settings) == question_split("q1", settings)
    True
    >>> question_split("q1", ExportSettings())
    'train'
    """
    key = f"{settings.split_seed}\0{question_id}".encode("utf-8", "surrogatepass")
    position = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return "validation" if position < settings.validation_fraction else "train"


def _record_key(record: dict[str, Any]) -> bytes:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).digest()


def _first_in_memory() -> Callable[[bytes], bool]:
    """True the first time a key is met: a set, for exports held in memory anyway."""
    seen: set[bytes] = set()

    def first(key: bytes) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    return first


def check_format_options(format: str, settings: ExportSettings) -> None:
    """Refuse ``settings`` that ``format`` cannot honour, before anything is
    written: an unknown format (``ValueError``), soft labels outside
    ``trl`` and ``math-shepherd`` ([`InputError`][prmsynth.InputError]),
    balance or consensus for a format without labels
    ([`ExportError`][prmsynth.ExportError]).  Every export runs it; a caller
    writing several formats runs it for all of them first.

    >>> check_format_options("dpo-trl", ExportSettings(soft_labels=True))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prmsynth._errors.InputError: soft_labels: format 'dpo-trl' cannot carry float labels; ...
    """
    _check_format(format)
    if settings.soft_labels and format not in _SOFT_LABEL_FORMATS:
        raise InputError(
            "soft_labels",
            f"format {format!r} cannot carry float labels; soft labels are written in "
            f"{' and '.join(_SOFT_LABEL_FORMATS)} only",
        )
    if format in _LABELLED_FORMATS:
        return
    labelled = ", ".join(sorted(_LABELLED_FORMATS))
    for option, wanted in (
        ("balance", settings.balance != "none"),
        ("consensus", settings.consensus),
    ):
        if wanted:
            raise ExportError(
                f"{option}={getattr(settings, option)!r} needs labelled examples; format "
                f"{format!r} has none (labelled formats: {labelled})"
            )


def _examples(
    trees: Iterable[ReasoningTree],
    format: str,
    settings: ExportSettings,
    *,
    split: bool,
    stats: Counter[str],
    first: Callable[[bytes], bool],
) -> Iterator[tuple[str, _Example]]:
    """Build, split and deduplicate the examples of every tree, one at a time:
    ``(part, example)`` in input order, ``part`` being ``"all"`` without ``split``.

    ``first(key)`` says whether a record's hash is met for the first time
    (deduplication runs over every part together).
    """
    check_format_options(format, settings)
    builder = _BUILDERS[format]
    for tree in trees:
        stats["trees"] += 1
        part = question_split(tree.question.id, settings) if split else "all"
        for example in builder(tree, settings, stats):
            stats["examples"] += 1
            if settings.deduplicate and not first(_record_key(example.record)):
                stats["duplicates_removed"] += 1
                continue
            yield part, example


def _sample_bits(generator: random.Random, n: int, k: int) -> bytearray:
    """A bit per position of ``range(n)``, set for the ``k`` positions
    ``generator.sample(range(n), k)`` picks, with the same draws.

    Balancing picks positions, never records, so it needs only counts on a
    first pass; this follows `random.sample`'s two methods draw for draw
    (earlier exports chose with it) but holds 8 bytes per position at most
    instead of a Python int.
    """
    bits = bytearray((n + 7) // 8)
    setsize = 21  # random.sample's choice between a pool and a set of picks
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    if n <= setsize:
        pool = array.array("q", range(n))
        for i in range(k):
            j = generator.randrange(n - i)
            chosen = pool[j]
            bits[chosen >> 3] |= 1 << (chosen & 7)
            pool[j] = pool[n - i - 1]
    else:
        for _ in range(k):
            j = generator.randrange(n)
            while bits[j >> 3] & (1 << (j & 7)):
                j = generator.randrange(n)
            bits[j >> 3] |= 1 << (j & 7)
    return bits


@attrs.define
class _Downsample:
    """Which examples of one part balancing keeps, asked in their order.

    Built from the part's counts of examples with and without an error: the
    larger class is cut at random (``balance_seed`` and the part's name seed
    it) to the size of the smaller.
    """

    keep: dict[bool, bytearray]
    seen: dict[bool, int]

    @classmethod
    def plan(
        cls, with_error: int, without_error: int, settings: ExportSettings, part: str
    ) -> _Downsample:
        size = min(with_error, without_error)
        generator = random.Random(f"{settings.balance_seed}:{part}")
        keep = {True: _sample_bits(generator, with_error, size)}
        keep[False] = _sample_bits(generator, without_error, size)
        return cls(keep=keep, seen={True: 0, False: 0})

    def __call__(self, has_error: bool | None) -> bool:
        kind = bool(has_error)
        position = self.seen[kind]
        self.seen[kind] += 1
        return bool(self.keep[kind][position >> 3] & (1 << (position & 7)))


def export_records(
    trees: Iterable[ReasoningTree],
    format: str,
    settings: ExportSettings | None = None,
    *,
    split: SplitName | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of ``trees`` in ``format``, deduplicated and balanced as ``settings`` say.

    With ``split=None`` every record comes out (balanced as one set, whatever
    ``validation_fraction`` is); with ``"train"`` or ``"validation"`` only the
    records of the questions on that side (balanced within it).  Records are
    not validated here: [`validate_record`][prmsynth.validate_record] does that.
    Records come out as the trees are read, except with ``balance``, which
    holds the records of the part until it has counted them (for many trees,
    [`export_file`][prmsynth.export_file] balances on disk).

    >>> from prmsynth import Question, ReasoningTree, Rollout, Verdict
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> right = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
    >>> wrong = tree.add_steps(tree.root, ["2 + 3 = 6.", "The answer is 6."])
    >>> tree.mark_terminal(right[-1], Verdict(status="correct"))
    >>> tree.mark_terminal(wrong[-1], Verdict(status="incorrect"))
    >>> failed = Rollout(text="So 6.", steps=("So 6.",), verdict=Verdict(status="incorrect"))
    >>> tree.record_rollouts(wrong[0], [failed])  # MC value 0.0 at the wrong step
    >>> for record in export_records([tree], "processbench"):
    ...     print(record["id"], record["steps"], record["label"], record["final_answer_correct"])
    q1-n2 ['2 + 3 = 5.', 'The answer is 5.'] -1 True
    q1-n3-r0 ['2 + 3 = 6.', 'So 6.'] 0 False
    q1-n4 ['2 + 3 = 6.', 'The answer is 6.'] 0 False
    >>> [record["labels"] for record in export_records([tree], "trl")]
    [[True, True], [False, False]]
    """
    settings = settings or ExportSettings()
    if split not in (None, "train", "validation"):
        raise ValueError(f"split must be None, 'train' or 'validation', got {split!r}")
    wanted = split or "all"
    examples = (
        example
        for part, example in _examples(
            trees,
            format,
            settings,
            split=split is not None,
            stats=Counter(),
            first=_first_in_memory(),
        )
        if part == wanted
    )
    if settings.balance == "none":
        for example in examples:
            yield example.record
        return
    # Balancing needs the counts of the whole part before the first record.
    kept = list(examples)
    with_error = sum(1 for example in kept if example.has_error)
    keep = _Downsample.plan(with_error, len(kept) - with_error, settings, wanted)
    for example in kept:
        if keep(example.has_error):
            yield example.record


# -- schemas and validation ----------------------------------------------------------


def _schema_name(format: str) -> str:
    _check_format(format)
    return _SCHEMA_NAMES.get(format, format)


def _read_schema(name: str) -> dict[str, Any]:
    from importlib import resources

    schemas = resources.files("prmsynth.export").joinpath("schemas")
    text = schemas.joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def load_schema(format: str) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of ``format``'s records, as a fresh dict.

    >>> schema = load_schema("trl")
    >>> schema["required"]
    ['prompt', 'completions', 'labels']
    >>> load_schema("dpo-step") == load_schema("dpo")  # same layout, same schema
    True
    """
    return _read_schema(_schema_name(format))


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    # Compiled once per schema: the schemas are read-only package data.
    from jsonschema import Draft202012Validator

    schema = _read_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# -- a quick yes for valid records ---------------------------------------------------
#
# jsonschema walks a tree record at about 0.3 ms a node (12 ms for a typical
# tree), more than everything else an export does.  A schema made only of the
# keywords below compiles into plain type tests that say "surely valid" for
# the common case; anything else (a doubt, an error) goes to jsonschema, which
# decides and writes the messages.  So the quick check may only ever err
# towards "not sure": an instance of an inexact type (a dict subclass, a float
# where an integer is allowed, a NaN) is never surely valid.

_JSON_TYPES = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_EXACT_TYPES = frozenset(t for types in _JSON_TYPES.values() for t in types)
_ENUM_TYPES = frozenset({str, int, type(None)})
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description"})
_Check = Callable[[Any], bool]


class _Unsupported(Exception):
    """A schema keyword (or value) the quick check does not know."""


def _compile(schema: Any, compiled: dict[str, _Check]) -> _Check:
    if not isinstance(schema, dict):
        raise _Unsupported(schema)
    keywords = {k: v for k, v in schema.items() if k not in _ANNOTATIONS}
    # The type test first: it admits exact types only, and rules out the most.
    order = sorted(keywords, key=lambda keyword: keyword != "type")
    checks = [_compile_keyword(keyword, keywords[keyword], compiled) for keyword in order]
    if "type" not in keywords:
        checks.insert(0, lambda instance: type(instance) in _EXACT_TYPES)
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda instance: first(instance) and second(instance)

    def check_all(instance: Any) -> bool:
        for check in checks:
            if not check(instance):
                return False
        return True

    return check_all


def _compile_keyword(keyword: str, value: Any, compiled: dict[str, _Check]) -> _Check:
    # Each keyword applies only to the instances of its type, as in JSON Schema.
    if keyword == "type":
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(name in _JSON_TYPES for name in names):
            raise _Unsupported(value)
        types = frozenset(t for name in names for t in _JSON_TYPES[name])
        return lambda instance: type(instance) in types
    if keyword in ("enum", "const"):
        values = value if keyword == "enum" else [value]
        # Strings, integers and null only: JSON equality of floats and booleans
        # (1.0 equals 1, True does not) is not Python's.
        if not isinstance(values, list) or not all(type(v) in _ENUM_TYPES for v in values):
            raise _Unsupported(value)
        allowed = frozenset(values)
        return lambda instance: type(instance) in _ENUM_TYPES and instance in allowed
    if keyword == "required":
        names = frozenset(value)
        return lambda instance: type(instance) is not dict or names <= instance.keys()
    if keyword == "properties":
        properties = {name: _compile(sub, compiled) for name, sub in value.items()}

        def check_properties(instance: Any) -> bool:
            if type(instance) is not dict:
                return True
            for name, item in instance.items():
                check = properties.get(name)
                if check is not None and not check(item):
                    return False
            return True

        return check_properties
    if keyword == "items":
        item = _compile(value, compiled)
        return lambda instance: type(instance) is not list or all(map(item, instance))
    if keyword in ("minItems", "maxItems"):
        bound = int(value)
        if keyword == "minItems":
            return lambda instance: type(instance) is not list or len(instance) >= bound
        return lambda instance: type(instance) is not list or len(instance) <= bound
    if keyword in ("minLength", "maxLength"):
        bound = int(value)  # JSON Schema counts code points, as len() does
        if keyword == "minLength":
            return lambda instance: type(instance) is not str or len(instance) >= bound
        return lambda instance: type(instance) is not str or len(instance) <= bound
    if keyword in ("minimum", "maximum"):
        if type(value) not in (int, float):
            raise _Unsupported(value)
        # a NaN compares false both ways: not surely valid
        if keyword == "minimum":
            return lambda instance: type(instance) not in (int, float) or instance >= value
        return lambda instance: type(instance) not in (int, float) or instance <= value
    if keyword == "anyOf":
        options = [_compile(sub, compiled) for sub in value]
        return lambda instance: any(option(instance) for option in options)
    if keyword == "$ref":
        prefix = "#/$defs/"
        if not isinstance(value, str) or not value.startswith(prefix):
            raise _Unsupported(value)
        name = value[len(prefix) :]
        if name not in compiled:
            raise _Unsupported(value)
        # looked up when called: a definition may refer to itself (a node's children)
        return lambda instance: compiled[name](instance)
    raise _Unsupported(keyword)


@functools.cache
def _quick_check(name: str) -> _Check | None:
    """A check that says True only for instances schema ``name`` surely
    accepts, or None when the schema uses a keyword it does not know."""
    schema = _read_schema(name)
    definitions = schema.get("$defs", {})
    compiled: dict[str, _Check] = dict.fromkeys(definitions, lambda instance: False)
    try:
        for definition, sub in definitions.items():
            compiled[definition] = _compile(sub, compiled)
        check = _compile(schema, compiled)
    except _Unsupported:
        return None

    def quick(instance: Any) -> bool:
        try:
            return check(instance)
        except RecursionError:
            return False  # very deep nesting: let jsonschema say so

    return quick


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mixed(values: Sequence[Any], kind: type, field: str, what: str) -> Iterator[str]:
    # A record's labels are all hard or all soft: a trainer reads one kind.
    kinds = {isinstance(value, kind) for value in values}
    if len(kinds) > 1:
        yield f"$.{field}: mixes {what} and numbers"


def _trl_checks(record: dict[str, Any]) -> Iterator[str]:
    completions, labels = record["completions"], record["labels"]
    if len(labels) != len(completions):
        yield f"$.labels: {len(labels)} labels for {len(completions)} completions"
    yield from _mixed(labels, bool, "labels", "booleans")
    mc_values = record.get("mc_values")
    if mc_values is not None and len(mc_values) != len(completions):
        yield f"$.mc_values: {len(mc_values)} values for {len(completions)} completions"


def _math_shepherd_checks(record: dict[str, Any]) -> Iterator[str]:
    try:
        _, _, labels = parse_math_shepherd(record)
    except ValueError as error:
        yield f"$.label: {error}"
        return
    value = record.get("value")  # absent from Math-Shepherd's own release
    if value is None:
        return
    if any(not isinstance(item, str) for item in value):  # soft labels: a number per tag
        yield from _mixed(value, str, "value", "marks")
        if len(value) != len(labels):
            yield f"$.value: {len(value)} values for {len(labels)} tagged steps"
    elif value != ["+" if label else "-" for label in labels]:
        yield f"$.value: {value!r} is not the marks of label, in step order"


def _processbench_checks(record: dict[str, Any]) -> Iterator[str]:
    if record["label"] >= len(record["steps"]):
        yield f"$.label: {record['label']} is no step index (there are {len(record['steps'])})"


# What JSON Schema cannot say: lengths that must agree, tags that must match.
_EXTRA_CHECKS: dict[str, Callable[[dict[str, Any]], Iterator[str]]] = {
    "trl": _trl_checks,
    "math-shepherd": _math_shepherd_checks,
    "processbench": _processbench_checks,
}


def validate_record(record: Any, format: str) -> list[str]:
    """Every way ``record`` breaks ``format``'s schema, as ``"$.path: message"`` strings.

    An empty list means the record is valid.  Beyond the schema, a few
    checks JSON Schema cannot express (``trl``: as many labels as
    completions, all booleans or all numbers; ``math-shepherd``: ``label`` is
    ``input`` with each tag replaced, and ``value`` its marks or a number per
    tag; ``processbench``: ``label`` is a step index).

    >>> validate_record({"prompt": "Q", "completions": ["a"], "labels": [True]}, "trl")
    []
    >>> validate_record({"prompt": "Q", "completions": ["a"], "labels": [0.7]}, "trl")  # soft
    []
    >>> validate_record({"prompt": "Q", "completions": ["a"], "labels": [1.5]}, "trl")
    ['$.labels[0]: 1.5 is greater than the maximum of 1']
    """
    name = _schema_name(format)
    quick = _quick_check(name)
    if quick is not None and quick(record):
        messages = []
    else:
        errors = sorted(_validator(name).iter_errors(record), key=lambda error: error.json_path)
        messages = [f"{error.json_path}: {_shorten(error.message)}" for error in errors]
    if not messages and format in _EXTRA_CHECKS:
        messages.extend(_EXTRA_CHECKS[format](record))
    return messages


def validate_file(path: str | os.PathLike, format: str) -> list[str]:
    """Every schema error of a JSONL file, as ``"line N: $.path: message"`` strings.

    A line that is not JSON is an error of its line; blank lines are skipped.
    A file that cannot be read raises [`InputError`][prmsynth.InputError].

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "ok.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"},'
    ...                                      ' {"role": "assistant", "content": "hello"}]}\\n')
    >>> validate_file(folder / "ok.jsonl", "sft")
    []
    >>> _ = (folder / "bad.jsonl").write_text('{"messages": []}\\nnot json\\n')
    >>> for error in validate_file(folder / "bad.jsonl", "sft"):
    ...     print(error)
    line 1: $.messages: [] is too short
    line 2: bad JSON: Expecting value (column 1)
    """
    _check_format(format)
    errors = []
    for line_number, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(f"line {line_number}: bad JSON: {error.msg} (column {error.colno})")
            continue
        errors.extend(
            f"line {line_number}: {message}" for message in validate_record(record, format)
        )
    return errors


# -- reading trees -------------------------------------------------------------------


def read_trees(path: str | os.PathLike) -> Iterator[ReasoningTree]:
    """Load every tree of a ``trees.jsonl`` file, each line checked against the tree schema.

    Bad input raises [`InputError`][prmsynth.InputError] naming the file, the line and
    the field.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trees.jsonl"
    >>> _ = path.write_text('{"question_id": "q1"}\\n')
    >>> list(read_trees(path))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prmsynth._errors.InputError: ...trees.jsonl:1: $: 'question' is a required property
    """
    for line_number, record in iter_appended_jsonl(path):
        problems = validate_record(record, "tree")
        if problems:
            raise InputError(path, problems[0], line=line_number)
        try:
            yield tree_from_dict(record)
        except (TreeInvariantError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(path, f"malformed tree: {error}", line=line_number) from None


# -- files ---------------------------------------------------------------------------


def _split_paths(out_path: Path) -> dict[str, Path]:
    stem = out_path.name[: -len(".jsonl")] if out_path.name.endswith(".jsonl") else out_path.name
    return {
        "train": out_path.with_name(f"{stem}.train.jsonl"),
        "validation": out_path.with_name(f"{stem}.validation.jsonl"),
    }


def manifest_path(out_path: str | os.PathLike) -> Path:
    """Where [`export_file`][prmsynth.export_file] writes the manifest of ``out_path``:
    ``<out>.manifest.json``.

    >>> manifest_path("out/trl.jsonl").name
    'trl.jsonl.manifest.json'
    """
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.name}.manifest.json")


_SHOWN_PROBLEMS = 5


@attrs.define
class _OutFile:
    """One output file as it is written: its records are counted, checked against
    the schema and tallied for the manifest one at a time, never held."""

    path: Path
    format: str
    handle: IO[str]
    first: Callable[[bytes], bool]  # True for a question id not met in this file before
    records: int = 0
    questions: int = 0
    with_error: int = 0
    steps: list[int] = attrs.Factory(lambda: [0, 0, 0])  # positive, neutral, negative
    problems: int = 0
    shown: list[str] = attrs.Factory(list)
    _last_question: str | None = None

    def write(
        self,
        line: str,
        question_id: str,
        has_error: bool | None,
        steps: Sequence[int],
        problems: Sequence[str],
    ) -> None:
        """Write one record's line; ``problems`` are its schema errors."""
        self.records += 1
        for message in problems:
            self.problems += 1
            if len(self.shown) < _SHOWN_PROBLEMS:
                self.shown.append(f"{self.path.name}: record {self.records}: {message}")
        if not self.problems:
            self.handle.write(line)  # after a schema error the files are dropped anyway
        if question_id != self._last_question:  # a question's records come together
            self._last_question = question_id
            self.questions += self.first(question_id.encode("utf-8", "surrogatepass"))
        self.with_error += bool(has_error)
        for index, count in enumerate(steps):
            self.steps[index] += count

    def manifest_entry(self) -> dict[str, Any]:
        label_balance = None
        if self.format in _LABELLED_FORMATS:
            label_balance = {
                "examples_without_error": self.records - self.with_error,
                "examples_with_error": self.with_error,
                "steps_positive": self.steps[0],
                "steps_neutral": self.steps[1],
                "steps_negative": self.steps[2],
            }
        return {
            "path": self.path.name,
            "records": self.records,
            "questions": self.questions,
            "label_balance": label_balance,
        }


def _write_balanced(
    examples: Iterable[tuple[str, _Example]],
    files: dict[str, _OutFile],
    settings: ExportSettings,
    scratch: Path,
    stats: Counter[str],
) -> None:
    """Balance each part in two passes: the examples go to a spool file while
    their classes are counted, then back out through the part's choice."""
    counts = {part: {True: 0, False: 0} for part in files}
    with contextlib.ExitStack() as stack:
        spools = {
            part: stack.enter_context(
                open(scratch / f"{part}.spool", "w+", encoding="utf-8", newline="\n")
            )
            for part in files
        }
        for part, example in examples:
            # Two lines per example: what the manifest needs, then the record itself.
            meta = [
                example.question_id,
                example.has_error,
                example.step_counts,
                validate_record(example.record, files[part].format),
            ]
            spools[part].write(dumps_line(meta) + dumps_line(example.record))
            counts[part][bool(example.has_error)] += 1
        for part, spool in spools.items():
            keep = _Downsample.plan(counts[part][True], counts[part][False], settings, part)
            spool.seek(0)
            for meta_line in spool:
                line = next(spool)
                question_id, has_error, steps, problems = json.loads(meta_line)
                if keep(has_error):
                    files[part].write(line, question_id, has_error, steps, problems)
                else:
                    stats["removed_by_balance"] += 1


_SOURCE_TYPES = "source must be a trees.jsonl path, a list of paths, or ReasoningTree objects"


def _resolve_source(
    source: str | os.PathLike | Iterable[str | os.PathLike] | Iterable[ReasoningTree],
) -> tuple[list[str], Iterator[ReasoningTree]]:
    """The source files (for the manifest) and the trees, read one at a time."""
    items = iter([source] if isinstance(source, (str, os.PathLike)) else source)
    first = next(items, None)
    if isinstance(first, (str, os.PathLike)):
        paths = [first, *items]
        if not all(isinstance(path, (str, os.PathLike)) for path in paths):
            raise TypeError(_SOURCE_TYPES)

        def read() -> Iterator[ReasoningTree]:
            for path in paths:
                yield from read_trees(path)

        return [str(Path(path).resolve()) for path in paths], read()
    if first is None:
        return [], iter(())
    if not isinstance(first, ReasoningTree):
        raise TypeError(_SOURCE_TYPES)

    def given(head: ReasoningTree, rest: Iterator[Any]) -> Iterator[ReasoningTree]:
        # A caller's iterable of trees is read as it is exported, never listed
        # nor held once exported.
        yield head
        del head
        for tree in rest:
            if not isinstance(tree, ReasoningTree):
                raise TypeError(_SOURCE_TYPES)
            yield tree

    return [], given(first, items)


def export_file(
    source: str | os.PathLike | Iterable[str | os.PathLike] | Iterable[ReasoningTree],
    format: str,
    out_path: str | os.PathLike,
    settings: ExportSettings | None = None,
) -> dict[str, Any]:
    """Export trees (``trees.jsonl`` paths, or trees) to ``out_path``; return the manifest.

    Trees are read one at a time, and each record is built, checked against
    ``format``'s schema and written before the next tree is read, so memory
    stays flat however many there are; a schema failure raises
    [`ExportError`][prmsynth.ExportError] and writes nothing.  Each file is
    written to a temporary file in the same folder and renamed once all are
    complete, so a file under its final name is always whole.  What the
    passes must remember (the hashes deduplication compares, and with
    ``balance`` the examples waiting for their class counts) goes to a scratch
    folder beside ``out_path``, removed at the end.  With a
    ``validation_fraction`` the records go to ``<stem>.train.jsonl`` and
    ``<stem>.validation.jsonl`` instead of ``out_path``.  The manifest (counts,
    label balance, settings, source files, prmsynth version) goes to
    ``<out_path>.manifest.json``.  Bad input raises [`InputError`][prmsynth.InputError].

    >>> import tempfile, pathlib
    >>> from prmsynth import Question, ReasoningTree, Verdict
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> tree.mark_terminal(tree.add_steps(tree.root, ["2 + 3 = 5."])[-1], Verdict(status="correct"))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "trl.jsonl"
    >>> manifest = export_file([tree], "trl", out)
    >>> manifest["files"]["all"]["records"], out.read_text().count("\\n")
    (1, 1)
    """
    from prmsynth._version import __version__

    settings = settings or ExportSettings()
    _check_format(format)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise InputError(out_path, f"folder {str(out_path.parent)!r} does not exist")
    if out_path.is_dir():
        raise InputError(out_path, "is a folder, not a file")
    check_format_options(format, settings)
    source_files, trees = _resolve_source(source)
    split = settings.validation_fraction > 0
    targets = _split_paths(out_path) if split else {"all": out_path}
    stats: Counter[str] = Counter()
    # What a killed export left here: its renames finished, its scratch removed.
    clean_leftovers(out_path.parent)
    with contextlib.ExitStack() as stack:
        # Scratch space beside the output (not /tmp, often in memory): what the
        # passes must remember of every record, and the records balancing holds back.
        scratch = stack.enter_context(scratch_folder(out_path))
        records_seen = stack.enter_context(SeenKeys(scratch / "records.sqlite"))
        # Every file, the manifest last, is renamed into place only once all
        # are written, together: the next command sees the old set or the new.
        *handles, manifest_file = stack.enter_context(
            atomic_files([*targets.values(), manifest_path(out_path)])
        )
        files = {
            part: _OutFile(
                path=path,
                format=format,
                handle=handle,
                first=stack.enter_context(SeenKeys(scratch / f"{part}.questions.sqlite")).first,
            )
            for (part, path), handle in zip(targets.items(), handles, strict=True)
        }
        examples = _examples(
            trees, format, settings, split=split, stats=stats, first=records_seen.first
        )
        if settings.balance == "none":
            for part, example in examples:
                files[part].write(
                    dumps_line(example.record),
                    example.question_id,
                    example.has_error,
                    example.step_counts,
                    validate_record(example.record, format),
                )
        else:
            _write_balanced(examples, files, settings, scratch, stats)
        problems = sum(file.problems for file in files.values())
        if problems:
            shown = "; ".join(
                [line for file in files.values() for line in file.shown][:_SHOWN_PROBLEMS]
            )
            more = f" (and {problems - _SHOWN_PROBLEMS} more)" if problems > _SHOWN_PROBLEMS else ""
            raise ExportError(f"{problems} schema errors, nothing written: {shown}{more}")
        written = sum(file.records for file in files.values())
        manifest = {
            "format": format,
            "schema": f"prmsynth/export/schemas/{_schema_name(format)}.schema.json",
            "prmsynth_version": __version__,
            "source_files": source_files,
            "settings": settings.to_dict(),
            "counts": {
                "trees": stats["trees"],
                "examples": stats["examples"],
                "duplicates_removed": stats["duplicates_removed"],
                "removed_by_balance": stats["removed_by_balance"],
                "removed_by_consensus": stats["removed_by_consensus"],
                "removed_without_critique": stats["removed_without_critique"],
                "records_written": written,
                "skipped": {
                    reason: count
                    for reason, count in sorted(stats.items())
                    if reason.startswith(("paths_", "solutions_"))
                },
            },
            "files": {part: file.manifest_entry() for part, file in files.items()},
        }
        manifest_file.write(dumps_json(manifest))
    return manifest
