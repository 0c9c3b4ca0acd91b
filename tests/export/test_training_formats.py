"""The formats that load where users train: Math-Shepherd's ``value`` list (OpenRLHF),
ProcessBench's ``generator``, per-step KTO and Step-DPO pairs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prmsynth import (
    ExportSettings,
    LLMStepGenerator,
    Question,
    ReasoningTree,
    Verdict,
    export_records,
    label_path,
    parse_math_shepherd,
    tree_to_dict,
    validate_file,
    validate_record,
)
from prmsynth.cli import main
from prmsynth.export._formats import STEP_TAG, math_shepherd_record
from prmsynth.testing import ScriptedLLM

from ..export_strategies import export_settings
from ..strategies import step_text, trees
from .test_export import right, small_tree, wrong

GENERATOR = LLMStepGenerator(llm=ScriptedLLM(lambda request: ""))  # its prompts, never called


def records(tree: ReasoningTree, format: str, **options) -> list[dict]:
    return list(export_records([tree], format, ExportSettings(**options)))


def kto(prefix: list[str], step: str, label: bool, question: Question) -> dict:
    """A KTO record as the docs describe it: the generator's prompt for the next step."""
    prompt = GENERATOR.messages(question, prefix)
    return {
        "question_id": question.id,
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": step}],
        "label": label,
    }


@st.composite
def labelled_trees(draw) -> ReasoningTree:
    """Random trees where the search also judged some steps (``ReasoningTree.set_label``)."""
    tree = draw(trees())
    steps = sorted(node for node in tree.graph.nodes if node != tree.root)
    if steps:
        for node in draw(st.lists(st.sampled_from(steps), max_size=4)):
            tree.set_label(node, draw(st.booleans()))
    return tree


def judged_steps(tree: ReasoningTree, options: ExportSettings) -> dict[int, bool]:
    """By the labelling rule: each step whose earlier steps are all right, with its label."""
    judged: dict[int, bool] = {}
    for leaf in tree.leaves():
        if leaf == tree.root:
            continue
        for step in label_path(tree, leaf, options):
            if step.label is None:
                break
            # a step is judged the same on every path through it
            assert judged.setdefault(step.node, step.label) == step.label
            if not step.label:
                break
    return judged


# -- math-shepherd: value -----------------------------------------------------------------


@given(
    st.lists(step_text.filter(lambda text: STEP_TAG not in text), min_size=1, max_size=6),
    st.data(),
)
def test_math_shepherd_value_lists_the_label_marks_in_step_order(steps, data):
    labels = data.draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    record = math_shepherd_record("What is 1 + 1?", steps, labels, task="t")
    assert validate_record(record, "math-shepherd") == []
    assert record["value"] == ["+" if label else "-" for label in labels]
    # OpenRLHF labels the tokens of the placeholder, in order, with the value list
    assert record["input"].count(f" {STEP_TAG}") == len(record["value"])
    assert parse_math_shepherd(record)[2] == labels
    assert json.loads(json.dumps(record, ensure_ascii=False)) == record


# -- kto ------------------------------------------------------------------------------------


def test_kto_gives_each_step_up_to_the_first_error_with_the_prompt_that_asks_for_it():
    tree, _ = small_tree()
    question = tree.question
    assert records(tree, "kto") == [
        kto([], "3 * 4 = 12.", True, question),
        kto(["3 * 4 = 12."], "2 + 12 = 14.", True, question),
        kto(["3 * 4 = 12.", "2 + 12 = 14."], "The answer is 14.", True, question),
        kto([], "2 + 3 = 5.", False, question),
        # "5 * 4 = 20, ..." follows the first error: it is wrong only because of it.
        # Path C's first step was never sampled: its label, and so C, is unknown.
    ]
    # a higher threshold makes the first step of A (MC 0.5) a first error
    high = records(tree, "kto", positive_threshold=0.5)
    assert [(record["completion"][0]["content"], record["label"]) for record in high] == [
        ("3 * 4 = 12.", False),
        ("2 + 3 = 5.", False),
    ]


def test_kto_follows_the_search_labels_and_balances_right_and_wrong_steps():
    tree, node = small_tree()
    tree.set_label(node["c1"], False)  # the search found C's first error at its first step
    labels = [record["label"] for record in records(tree, "kto")]
    assert labels == [True, True, True, False, False]
    balanced = records(tree, "kto", balance="downsample")
    assert Counter(record["label"] for record in balanced) == {True: 2, False: 2}
    assert records(tree, "kto", labels="mc") == records(small_tree()[0], "kto")


@settings(max_examples=60, deadline=None)
@given(labelled_trees(), export_settings(deduplicate=False))
def test_kto_records_are_the_judged_steps_of_the_labelling_rule(tree, options):
    expected = [
        kto(tree.prefix_steps(node)[:-1], tree.node(node).text, label, tree.question)
        for node, label in judged_steps(tree, options).items()
    ]
    got = records(tree, "kto", **options.to_dict())
    key = lambda record: json.dumps(record, sort_keys=True)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected))
    for record in got:
        assert validate_record(record, "kto") == []


# -- step-dpo -------------------------------------------------------------------------------


def branching_tree() -> tuple[ReasoningTree, dict[str, int]]:
    """After a right first step r1: a right step r2 (its solution is right), a step x2
    judged right with no right solution known through it, and two first errors w2, v2."""
    tree = ReasoningTree(Question(id="b", text="What is 2 * 3 + 4?", reference_answer="10"))
    (r1,) = tree.add_steps(tree.root, ["2 * 3 = 6."])
    r2, r3 = tree.add_steps(r1, ["6 + 4 = 10.", "The answer is 10."])
    tree.mark_terminal(r3, Verdict(status="correct", extracted_answer="10"))
    (x2,) = tree.add_steps(r1, ["Add 4."])
    w2, w3 = tree.add_steps(r1, ["6 + 4 = 11.", "The answer is 11."])
    tree.mark_terminal(w3, Verdict(status="incorrect", extracted_answer="11"))
    (v2,) = tree.add_steps(r1, ["6 * 4 = 24."])
    tree.record_rollouts(v2, [wrong("So 24."), wrong("The answer is 24.")])
    for node in (r1, r2, x2):
        tree.set_label(node, True)
    for node in (w2, v2):
        tree.set_label(node, False)
    tree.record_rollouts(r1, [right("6 + 4 = 10. So 10.")])
    tree.check_invariants()
    return tree, {"r1": r1, "r2": r2, "x2": x2, "w2": w2, "v2": v2}


def test_step_dpo_pairs_sibling_steps_after_the_same_right_prefix():
    tree, _ = branching_tree()
    shared = {"question_id": "b", "dataset": "seed", "prompt": "What is 2 * 3 + 4?", "answer": "10"}
    assert records(tree, "step-dpo") == [
        {
            **shared,
            "initial_reason_steps": "2 * 3 = 6.\n\n",
            "chosen": "6 + 4 = 10.",
            "rejected": "6 + 4 = 11.",
            "full_chosen": "6 + 4 = 10.\n\nThe answer is 10.",
            "full_rejected": "6 + 4 = 11.\n\nThe answer is 11.",
        },
        {
            **shared,
            "initial_reason_steps": "2 * 3 = 6.\n\n",
            # x2 ("Add 4.") is judged right, but no right solution through it is known:
            # every first error is paired with r2, the right step that has one
            "chosen": "6 + 4 = 10.",
            "rejected": "6 * 4 = 24.",
            "full_chosen": "6 + 4 = 10.\n\nThe answer is 10.",
            "full_rejected": "6 * 4 = 24.\n\nSo 24.",
        },
    ]
    for record in records(tree, "step-dpo"):
        assert validate_record(record, "step-dpo") == []


def test_step_dpo_pairs_first_steps_with_an_empty_prefix():
    tree, _ = small_tree()
    (pair,) = records(tree, "step-dpo")
    assert pair["initial_reason_steps"] == ""
    assert (pair["chosen"], pair["rejected"]) == ("3 * 4 = 12.", "2 + 3 = 5.")
    # the right step's solution: a completion sampled after it
    assert pair["full_chosen"] == "3 * 4 = 12.\n\n2 + 12 = 14. So 14."
    assert pair["answer"] == "14" and pair["dataset"] == "toy.jsonl"


def correct_solution_through(tree: ReasoningTree, node: int) -> bool:
    """Whether a finished right solution passes through ``node`` (a terminal node
    below it, or a right completion sampled at or below it)."""
    below = [node, *(n for n in tree.nodes() if node in tree.path(n)[:-1])]
    for current in below:
        stats = tree.node(current)
        if stats.terminal and stats.verdict == "correct":
            return True
        if any(r.finish_reason != "length" and r.steps for r in stats.correct_rollouts):
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(labelled_trees(), export_settings(deduplicate=False))
def test_step_dpo_rejects_each_first_error_once_against_a_right_sibling(tree, options):
    judged = judged_steps(tree, options)
    siblings: dict[tuple[str, ...], list[int]] = {}
    for node in judged:
        siblings.setdefault(tuple(tree.prefix_steps(node)[:-1]), []).append(node)
    expected_rejected = Counter()
    choices = {}
    for prefix, nodes in siblings.items():
        good = [n for n in nodes if judged[n] and correct_solution_through(tree, n)]
        if good:
            choices[prefix] = {tree.node(n).text for n in good}
            expected_rejected.update((prefix, tree.node(n).text) for n in nodes if not judged[n])
    got = records(tree, "step-dpo", **options.to_dict())
    seen = Counter()
    for record in got:
        assert validate_record(record, "step-dpo") == []
        initial = record["initial_reason_steps"]
        assert initial == "" or initial.endswith("\n\n")
        prefix = next(p for p in choices if "".join(s + "\n\n" for s in p) == initial)
        assert record["chosen"] in choices[prefix]
        assert record["full_chosen"].startswith(record["chosen"])
        assert record["full_rejected"].startswith(record["rejected"])
        assert record["prompt"] == tree.question.text
        seen[(prefix, record["rejected"])] += 1
    assert seen == expected_rejected


# -- through the command line ---------------------------------------------------------------


def run_folder(folder: Path, model: str | None) -> Path:
    """A folder as ``prmsynth run`` leaves it: trees.jsonl and run.json."""
    folder.mkdir()
    trees_file = folder / "trees.jsonl"
    forest = [small_tree()[0], branching_tree()[0]]
    trees_file.write_text("".join(json.dumps(tree_to_dict(tree)) + "\n" for tree in forest))
    if model is not None:
        (folder / "run.json").write_text(json.dumps({"model": model}))
    return trees_file


def export(trees_file: Path, format: str, *extra: str) -> list[dict]:
    out = trees_file.with_name(f"{format}.jsonl")
    assert main(["export", str(trees_file), "--format", format, "--out", str(out), *extra]) == 0
    assert main(["validate", str(out), "--format", format]) == 0
    assert validate_file(out, format) == []
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_cli_processbench_names_the_generator_from_run_json_or_the_option(tmp_path):
    trees_file = run_folder(tmp_path / "out", "hosted_vllm/Qwen/Qwen2.5-7B-Instruct")
    exported = export(trees_file, "processbench")
    assert exported and {record["generator"] for record in exported} == {"Qwen2.5-7B-Instruct"}
    manifest = json.loads((tmp_path / "out" / "processbench.jsonl.manifest.json").read_text())
    assert manifest["settings"]["generator"] == "Qwen2.5-7B-Instruct"
    chosen = export(trees_file, "processbench", "--generator", "my-model")
    assert {record["generator"] for record in chosen} == {"my-model"}
    unknown = export(run_folder(tmp_path / "other", None), "processbench")
    assert {record["generator"] for record in unknown} == {None}


def test_cli_exports_kto_and_step_dpo_and_the_openrlhf_fields(tmp_path):
    trees_file = run_folder(tmp_path / "out", "openai/gpt-4o-mini")
    kto_records = export(trees_file, "kto")
    assert Counter(record["label"] for record in kto_records) == {True: 7, False: 3}
    pairs = export(trees_file, "step-dpo")
    assert [(pair["chosen"], pair["rejected"]) for pair in pairs] == [
        ("3 * 4 = 12.", "2 + 3 = 5."),
        ("6 + 4 = 10.", "6 + 4 = 11."),
        ("6 + 4 = 10.", "6 * 4 = 24."),
    ]
    for record in export(trees_file, "math-shepherd"):
        # OpenRLHF's process reward dataset: one "+" or "-" per placeholder, in order
        assert len(record["value"]) == record["input"].count(STEP_TAG)
        assert set(record["value"]) <= {"+", "-"}


def test_cli_soft_labels_give_openrlhf_a_float_per_placeholder(tmp_path, monkeypatch):
    trees_file = run_folder(tmp_path / "out", "openai/gpt-4o-mini")
    hard = export(trees_file, "math-shepherd")
    soft = export(trees_file, "math-shepherd", "--soft-labels")
    assert soft and len(soft) <= len(hard)
    for record in soft:
        # OpenRLHF 0.5 reads a list whose first item is no string as soft targets
        assert len(record["value"]) == record["input"].count(f" {STEP_TAG}")
        assert all(type(value) is float and 0 <= value <= 1 for value in record["value"])
        marks = parse_math_shepherd(record)[2]  # the rule's marks stay in label
        assert len(marks) == len(record["value"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    dataset = datasets.load_dataset(
        "json",
        data_files=str(trees_file.with_name("math-shepherd.jsonl")),
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    assert dataset[0]["value"] == soft[0]["value"]


def test_the_new_formats_load_with_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    trees_file = run_folder(tmp_path / "out", "openai/gpt-4o-mini")
    for format in ("kto", "step-dpo", "math-shepherd"):
        exported = export(trees_file, format)
        dataset = datasets.load_dataset(
            "json",
            data_files=str(trees_file.with_name(f"{format}.jsonl")),
            split="train",
            cache_dir=str(tmp_path / "cache"),
        )
        assert dataset.num_rows == len(exported)
        assert dataset[0] == exported[0]
