"""Serializers: the tree format, the flat per-step format, SFT and DPO records.

The tree and flat formats keep the seed script's field names
(``reasoning_steps``, ``mc_value``, ``solution_prefix``, ``reward``,
``correctBranches``, ``falseBranches``) so existing readers keep working;
the extra fields (counts, ids, rollouts) sit alongside them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prmsynth._interfaces import SearchResult
from prmsynth._io import iter_appended_jsonl
from prmsynth._tree import ReasoningTree, TreeInvariantError
from prmsynth._values import Question, Rollout

STEP_SEPARATOR = "\n\n"

_NODE_FIELDS = ("mc_value", "n_correct", "n_rollouts", "visits", "terminal", "verdict")


def tree_to_dict(tree: ReasoningTree) -> dict[str, Any]:
    """The nested tree record: the root's ``text`` is the question.

    >>> from prmsynth import Question, ReasoningTree
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> _ = tree.add_steps(tree.root, ["2 + 3 = 5."])
    >>> record = tree_to_dict(tree)
    >>> record["reasoning_steps"]["children"][0]["text"]
    '2 + 3 = 5.'
    >>> tree_from_dict(record) == tree
    True
    """
    question = tree.question
    return {
        "question_id": question.id,
        "question": question.text,
        "final_answer": question.reference_answer,
        "source": question.source,
        "answer_source": question.answer_source,
        "metadata": question.metadata,
        "reasoning_steps": _node_to_dict(tree, tree.root),
    }


def _node_to_dict(tree: ReasoningTree, node: int) -> dict[str, Any]:
    stats = tree.node(node)
    record: dict[str, Any] = {"id": node, "text": stats.text}
    record.update({field: getattr(stats, field) for field in _NODE_FIELDS})
    record["correct_rollouts"] = [rollout.to_dict() for rollout in stats.correct_rollouts]
    record["incorrect_rollouts"] = [rollout.to_dict() for rollout in stats.incorrect_rollouts]
    record["label"] = stats.label
    record["critic_first_error"] = stats.critic_first_error
    record["n_truncated"] = stats.n_truncated
    record["n_unparseable"] = stats.n_unparseable
    record["unusable_rollouts"] = [rollout.to_dict() for rollout in stats.unusable_rollouts]
    record["children"] = [_node_to_dict(tree, child) for child in tree.children(node)]
    return record


def tree_from_dict(record: dict[str, Any]) -> ReasoningTree:
    """Load a tree record back into a [`ReasoningTree`][prmsynth.ReasoningTree] (checked)."""
    try:
        question = Question(
            id=str(record["question_id"]),
            text=record["question"],
            reference_answer=record["final_answer"],
            source=record.get("source", "seed"),
            answer_source=record.get("answer_source", "seed"),
            metadata=record.get("metadata") or {},
        )
        tree = ReasoningTree(question)
        tree.graph.clear()
        stack: list[tuple[dict[str, Any], int | None]] = [(record["reasoning_steps"], None)]
        while stack:
            node_record, parent = stack.pop()
            node = int(node_record["id"])
            if node in tree.graph:
                raise TreeInvariantError(f"node id {node} appears twice")
            tree._add_node(
                node,
                node_record["text"],
                **{field: node_record[field] for field in _NODE_FIELDS},
                correct_rollouts=tuple(
                    Rollout.from_dict(r) for r in node_record["correct_rollouts"]
                ),
                incorrect_rollouts=tuple(
                    Rollout.from_dict(r) for r in node_record["incorrect_rollouts"]
                ),
                # Records written before unusable rollouts were kept apart have none.
                label=node_record.get("label"),
                critic_first_error=node_record.get("critic_first_error"),
                n_truncated=int(node_record.get("n_truncated", 0)),
                n_unparseable=int(node_record.get("n_unparseable", 0)),
                unusable_rollouts=tuple(
                    Rollout.from_dict(r) for r in node_record.get("unusable_rollouts", [])
                ),
            )
            if parent is not None:
                tree.graph.add_edge(parent, node)
            # reversed so that children are added, and so ordered, as written
            stack.extend((child, node) for child in reversed(node_record["children"]))
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, TreeInvariantError):
            raise
        raise TreeInvariantError(f"malformed tree record: {error!r}") from None
    if record["reasoning_steps"].get("id") != tree.root:
        raise TreeInvariantError("the root node must have id 0")
    tree.check_invariants()
    return tree


def result_to_tree_record(result: SearchResult) -> dict[str, Any]:
    """The tree record of a search result, with its status and costs."""
    record = tree_to_dict(result.tree)
    record.update(
        status=result.status,
        reason=result.reason,
        n_completions=result.n_completions,
        n_selections=result.n_selections,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost=result.cost,
    )
    return record


def flat_record(tree: ReasoningTree) -> dict[str, Any]:
    """One record per question with one entry per node (the seed's flat format).

    ``reward`` is the node's MC value, null where nothing was sampled from it;
    ``label`` the first-error rule's judgement of the step (False: the first
    wrong step of a solution, True: a step before it, null: not judged);
    ``critic_first_error`` a critic's first wrong step of the solution that
    ends at this node (an index into its prefix, -1 for none; null where no
    critic read it).
    """
    steps = []
    for node in tree.nodes():
        stats = tree.node(node)
        steps.append(
            {
                "node_id": node,
                "solution_prefix": STEP_SEPARATOR.join(tree.prefix_steps(node)),
                "reward": stats.mc_value,
                "label": stats.label,
                "critic_first_error": stats.critic_first_error,
                "n_correct": stats.n_correct,
                "n_rollouts": stats.n_rollouts,
                "correctBranches": [r.text for r in stats.correct_rollouts],
                "falseBranches": [r.text for r in stats.incorrect_rollouts],
            }
        )
    question = tree.question
    return {
        "question_id": question.id,
        "question": question.text,
        "final_answer": question.reference_answer,
        "reasoning_steps": steps,
    }


def full_solutions(tree: ReasoningTree) -> Iterator[tuple[str, bool]]:
    """Every distinct whole solution seen in the tree (prefix + rollout), with correctness."""
    seen: set[str] = set()
    for node in tree.nodes():
        stats = tree.node(node)
        prefix = tree.prefix_steps(node)
        for rollout in (*stats.correct_rollouts, *stats.incorrect_rollouts):
            if rollout.finish_reason == "length":
                continue  # a cut-off text is no solution to imitate or contrast
            text = STEP_SEPARATOR.join([*prefix, rollout.text]).strip()
            if text and text not in seen:
                seen.add(text)
                yield text, rollout.correct


def sft_records(tree: ReasoningTree, *, system_prompt: str) -> list[dict[str, Any]]:
    """One chat record per distinct correct solution."""
    return [
        {
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": tree.question.text},
                {"role": "assistant", "content": text},
            ]
        }
        for text, correct in full_solutions(tree)
        if correct
    ]


def dpo_records(tree: ReasoningTree, *, system_prompt: str) -> list[dict[str, Any]]:
    """Preference pairs: the i-th correct solution against the i-th incorrect one."""
    solutions = list(full_solutions(tree))
    correct = [text for text, is_correct in solutions if is_correct]
    incorrect = [text for text, is_correct in solutions if not is_correct]
    prompt = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": tree.question.text},
    ]
    return [
        {
            "input": {"messages": prompt},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}],
        }
        for chosen, rejected in zip(correct, incorrect)  # noqa: B905 (pairs run out)
    ]


def read_tree_file(path: str | os.PathLike) -> Iterator[ReasoningTree]:
    """Load every tree of a ``trees.jsonl`` file, even one a run is still
    writing (a bad line raises [`InputError`][prmsynth.InputError] naming it)."""
    for _, record in iter_appended_jsonl(path):
        yield tree_from_dict(record)
