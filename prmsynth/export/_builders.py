"""The records of each format, built from one tree at a time, and the checks of a
record that JSON Schema cannot express.  `_registry.py` names each builder's format."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from prmsynth._tree import ReasoningTree
from prmsynth.export._labels import (
    LabelledStep,
    label_path,
    labelled_paths,
    passes_consensus,
    soft_paths,
    steps_after_right_prefixes,
)
from prmsynth.export._serialize import (
    STEP_SEPARATOR,
    dpo_records,
    flat_record,
    full_solutions,
    sft_records,
    tree_to_dict,
)
from prmsynth.export._settings import ExportSettings
from prmsynth.search._generation import DEFAULT_CONTINUE_TEMPLATE

__all__ = [
    "STEP_TAG",
    "Example",
    "dpo_examples",
    "dpo_step_examples",
    "dpo_step_trl_examples",
    "dpo_trl_examples",
    "flat_examples",
    "kto_examples",
    "math_shepherd_checks",
    "math_shepherd_examples",
    "math_shepherd_record",
    "parse_math_shepherd",
    "prm800k_examples",
    "processbench_checks",
    "processbench_examples",
    "sft_examples",
    "sft_trl_examples",
    "step_dpo_examples",
    "tree_examples",
    "trl_checks",
    "trl_examples",
]


STEP_TAG = "ки"
"""Math-Shepherd's step tag: each step of ``input`` ends with ``" ки"``."""

_STEP_MARKER = re.compile(r"^\s*step\s*\d+\s*[:.]\s*", re.IGNORECASE)


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


@attrs.frozen(kw_only=True)
class Example:
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


def _soft_example(
    tree: ReasoningTree,
    record: dict[str, Any],
    steps: list[LabelledStep],
    pieces: list[list[LabelledStep]],
) -> Example:
    # The class and the label balance count the rule's label at each labelled step.
    ends = [piece[-1] for piece in pieces]
    return Example(
        record=record,
        question_id=tree.question.id,
        has_error=not all(step.label for step in steps),
        step_counts=_step_counts(ends, three_way=False),
    )


def trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    if settings.soft_labels:
        for steps, pieces in soft_paths(tree, settings, stats):
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
    for steps in labelled_paths(tree, settings, stats):
        yield Example(
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
) -> Iterator[Example]:
    question = tree.question
    for steps, pieces in soft_paths(tree, settings, stats):
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


def math_shepherd_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    if settings.soft_labels:
        yield from _soft_math_shepherd_examples(tree, settings, stats)
        return
    question = tree.question
    for steps in labelled_paths(tree, settings, stats):
        texts = [_strip_step_marker(step.text) for step in steps]
        if any(STEP_TAG in text for text in [question.text, *texts]):
            # The tag inside the text would be read as one more step's label.
            stats["paths_with_step_tag_in_text"] += 1
            continue
        yield Example(
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


def prm800k_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    question = tree.question
    for steps in labelled_paths(tree, settings, stats):
        last = tree.node(steps[-1].node)
        if any(step.rating == -1 for step in steps):
            finish_reason = "found_error"
        elif last.terminal and len(steps) == len(tree.path(steps[-1].node)) - 1:
            finish_reason = "solution"
        else:
            finish_reason = "give_up"
        yield Example(
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


def processbench_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    # A ProcessBench item is a finished solution with a known first error (or none):
    # the path to a terminal node with every step labelled, or the path to a node
    # after its first error followed by a failed completion sampled from that node
    # (after the first error every step is wrong, so its steps need no label of
    # their own).  Binary search stops at the first error, so the second kind is
    # where most wrong solutions of a tree are.
    question = tree.question
    for node in tree.nodes():
        data = tree.node(node)
        if node == tree.root:
            continue
        steps = label_path(tree, node, settings)
        known = all(step.label is not None for step in steps)
        first_error = next((i for i, step in enumerate(steps) if step.label is False), -1)
        texts = [step.text for step in steps]
        if data.terminal:
            if data.verdict is None:
                stats["solutions_without_verdict"] += 1
            elif not known:
                stats["solutions_with_unknown_step"] += 1
            elif settings.consensus and not passes_consensus(tree, node, steps, stats):
                pass
            else:
                yield Example(
                    record={
                        "id": f"{question.id}-n{node}",
                        "generator": settings.generator,
                        "problem": question.text,
                        "steps": texts,
                        "label": first_error,
                        "final_answer_correct": data.verdict == "correct",
                    },
                    question_id=question.id,
                    has_error=first_error != -1,
                    step_counts=_step_counts(steps, three_way=False),
                )
        if not known or first_error == -1:
            continue  # a failed continuation of a good prefix: its first error is unknown
        if settings.consensus:
            # No critic read the prefix with this continuation.
            stats["removed_without_critique"] += len(data.incorrect_rollouts)
            continue
        for index, rollout in enumerate(data.incorrect_rollouts):
            if rollout.finish_reason == "length" or not rollout.steps:
                continue  # a cut-off text is no finished solution
            yield Example(
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


def tree_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    yield Example(record=tree_to_dict(tree), question_id=tree.question.id, has_error=None)


def flat_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    yield Example(record=flat_record(tree), question_id=tree.question.id, has_error=None)


def sft_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for record in sft_records(tree, system_prompt=settings.system_prompt):
        yield Example(record=record, question_id=tree.question.id, has_error=None)


def sft_trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for text, correct in full_solutions(tree):
        if correct:
            yield Example(
                record={"prompt": _chat_prompt(tree, settings), "completion": _assistant(text)},
                question_id=tree.question.id,
                has_error=None,
            )


def dpo_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for record in dpo_records(tree, system_prompt=settings.system_prompt):
        yield Example(record=record, question_id=tree.question.id, has_error=None)


def dpo_trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    # The same pairs as the seed's format, in TRL's conversational layout.
    for record in dpo_records(tree, system_prompt=settings.system_prompt):
        yield Example(
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
        data = tree.node(node)

        def usable(rollouts: Sequence[Any]) -> list[str]:
            texts: list[str] = []
            for rollout in rollouts:
                text = rollout.text.strip()
                # a cut-off text is no continuation to prefer or reject
                if rollout.finish_reason != "length" and text and text not in texts:
                    texts.append(text)
            return texts

        correct = usable(data.correct_rollouts)
        incorrect = usable(data.incorrect_rollouts)
        if not correct or not incorrect:
            continue
        prompt = _continue_prompt(tree, settings, tree.prefix_steps(node))
        for chosen, rejected in zip(correct, incorrect):  # noqa: B905 (pairs run out)
            yield prompt, chosen, rejected


def dpo_step_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for prompt, chosen, rejected in _step_pairs(tree, settings):
        yield Example(
            record={
                "input": {"messages": prompt},
                "preferred_output": _assistant(chosen),
                "non_preferred_output": _assistant(rejected),
            },
            question_id=tree.question.id,
            has_error=None,
        )


def dpo_step_trl_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for prompt, chosen, rejected in _step_pairs(tree, settings):
        yield Example(
            record={
                "prompt": prompt,
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
            },
            question_id=tree.question.id,
            has_error=None,
        )


def kto_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    for node, step in steps_after_right_prefixes(tree, settings, stats).items():
        yield Example(
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
        data = tree.node(current)
        steps = tree.prefix_steps(current)[start:]
        if data.terminal and data.verdict == ("correct" if correct else "incorrect"):
            return steps
        for rollout in data.correct_rollouts if correct else data.incorrect_rollouts:
            if rollout.finish_reason != "length" and rollout.steps:
                return [*steps, *rollout.steps]
        stack.extend(reversed(tree.children(current)))
    return None


def step_dpo_examples(tree: ReasoningTree, settings: ExportSettings, stats: Counter[str]):
    # Step-DPO pairs two next steps after the same right prefix: one the labels
    # call right (and that some finished right solution continues), one that is
    # the first error.  Each first error is used once, the right steps in turn.
    question = tree.question
    judged = steps_after_right_prefixes(tree, settings, stats)
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
            yield Example(
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


def _mixed(values: Sequence[Any], kind: type, field: str, what: str) -> Iterator[str]:
    # A record's labels are all hard or all soft: a trainer reads one kind.
    kinds = {isinstance(value, kind) for value in values}
    if len(kinds) > 1:
        yield f"$.{field}: mixes {what} and numbers"


def trl_checks(record: dict[str, Any]) -> Iterator[str]:
    completions, labels = record["completions"], record["labels"]
    if len(labels) != len(completions):
        yield f"$.labels: {len(labels)} labels for {len(completions)} completions"
    yield from _mixed(labels, bool, "labels", "booleans")
    mc_values = record.get("mc_values")
    if mc_values is not None and len(mc_values) != len(completions):
        yield f"$.mc_values: {len(mc_values)} values for {len(completions)} completions"


def math_shepherd_checks(record: dict[str, Any]) -> Iterator[str]:
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


def processbench_checks(record: dict[str, Any]) -> Iterator[str]:
    if record["label"] >= len(record["steps"]):
        yield f"$.label: {record['label']} is no step index (there are {len(record['steps'])})"
