from __future__ import annotations

import json

import pytest
from hypothesis import given

from prmsynth import (
    Question,
    ReasoningTree,
    Rollout,
    TreeInvariantError,
    Verdict,
    dpo_records,
    flat_record,
    sft_records,
    tree_from_dict,
    tree_to_dict,
)

from ..strategies import trees


@given(trees())
def test_tree_json_round_trip_is_lossless(tree):
    record = json.loads(json.dumps(tree_to_dict(tree)))
    loaded = tree_from_dict(record)
    assert loaded == tree
    assert tree_to_dict(loaded) == record


@given(trees())
def test_flat_record_has_one_entry_per_node(tree):
    record = flat_record(tree)
    assert len(record["reasoning_steps"]) == len(tree)
    for entry, node in zip(record["reasoning_steps"], tree.nodes()):
        assert entry["reward"] == tree.mc_value(node)
        assert (
            len(entry["correctBranches"]) == tree.node(node).n_correct or tree.node(node).terminal
        )
        assert set(entry) >= {"solution_prefix", "reward", "correctBranches", "falseBranches"}


def test_seed_tree_format_fields():
    tree = ReasoningTree(Question(id="7", text="What is 2 + 3?", reference_answer="5"))
    tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
    record = tree_to_dict(tree)
    assert record["question_id"] == "7"
    assert record["question"] == "What is 2 + 3?"
    assert record["final_answer"] == "5"
    root = record["reasoning_steps"]
    assert root["text"] == "What is 2 + 3?"
    assert root["children"][0]["children"][0]["text"] == "The answer is 5."
    assert {"text", "mc_value", "children"} <= set(root)


def test_malformed_tree_records_are_rejected():
    tree = ReasoningTree(Question(id="7", text="Q", reference_answer="5"))
    tree.add_step(tree.root, "a")
    record = tree_to_dict(tree)
    del record["reasoning_steps"]["children"][0]["mc_value"]
    with pytest.raises(TreeInvariantError):
        tree_from_dict(record)
    record = tree_to_dict(tree)
    record["reasoning_steps"]["children"][0]["n_correct"] = 5
    with pytest.raises(TreeInvariantError):
        tree_from_dict(record)


def _tree_with_solutions() -> ReasoningTree:
    tree = ReasoningTree(Question(id="7", text="What is 2 + 3?", reference_answer="5"))

    def rollout(text, status, finish_reason="stop"):
        return Rollout(
            text=text, steps=(text,), verdict=Verdict(status=status), finish_reason=finish_reason
        )

    tree.record_rollouts(
        tree.root,
        [
            rollout("2 + 3 = 5. \\boxed{5}", "correct"),
            rollout("2 + 3 = 6. \\boxed{6}", "incorrect"),
            rollout("2 + 3 = 6. \\boxed{6}", "incorrect"),  # duplicate text: one record
            rollout("2 + 3 = 5, so the answer is", "unparseable", "length"),  # cut off: none
        ],
    )
    node = tree.add_step(tree.root, "First, add.")
    tree.record_rollouts(node, [rollout("5. \\boxed{5}", "correct")])
    return tree


def test_sft_records_are_distinct_correct_solutions():
    records = sft_records(_tree_with_solutions(), system_prompt="SYS")
    answers = [record["messages"][2]["content"] for record in records]
    assert answers == ["2 + 3 = 5. \\boxed{5}", "First, add.\n\n5. \\boxed{5}"]
    assert [m["role"] for m in records[0]["messages"]] == ["system", "user", "assistant"]
    assert records[0]["messages"][1]["content"] == "What is 2 + 3?"


def test_dpo_records_pair_correct_with_incorrect():
    records = dpo_records(_tree_with_solutions(), system_prompt="SYS")
    assert len(records) == 1
    [record] = records
    assert record["preferred_output"][0]["content"] == "2 + 3 = 5. \\boxed{5}"
    assert record["non_preferred_output"][0]["content"] == "2 + 3 = 6. \\boxed{6}"
    assert record["input"]["messages"][-1] == {"role": "user", "content": "What is 2 + 3?"}
