from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from prmsynth import (
    FORMATS,
    ExportError,
    ExportSettings,
    InputError,
    Question,
    ReasoningTree,
    Rollout,
    SearchResult,
    Verdict,
    dpo_records,
    export_file,
    export_records,
    flat_record,
    load_schema,
    sft_records,
    tree_from_dict,
    tree_to_dict,
    validate_file,
    validate_record,
)
from prmsynth.cli._export import add_parsers, run_export, run_validate
from prmsynth.export._builders import STEP_TAG, Example, math_shepherd_record, parse_math_shepherd
from prmsynth.export._labels import label_path
from prmsynth.export._records import question_split
from prmsynth.export._registry import EXPORT_FORMATS, ExportFormat
from prmsynth.export._serialize import STEP_SEPARATOR, result_to_tree_record
from prmsynth.export._write import manifest_path, read_trees

from ..export_strategies import export_settings, forests, register_format, replace_builder
from ..strategies import trees

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LABELLED_FORMATS = ("trl", "math-shepherd", "prm800k", "processbench", "kto")
JSONL_FORMATS = FORMATS  # every export is JSON Lines


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent (it lives beside the repository)")
    return path


def canonical(record) -> str:
    return json.dumps(record, sort_keys=True)


def has_error(record, format: str) -> bool:
    """The class of a labelled record, read from the record alone."""
    if format == "trl":
        return not all(record["labels"])
    if format == "math-shepherd":
        return not all(parse_math_shepherd(record)[2])
    if format == "prm800k":
        return any(
            completion["rating"] != 1
            for step in record["label"]["steps"]
            for completion in step["completions"]
        )
    if format == "processbench":
        return record["label"] != -1
    if format == "kto":
        return not record["label"]
    raise AssertionError(format)


# -- a small hand-built tree -----------------------------------------------------------


def right(text: str) -> Rollout:
    return Rollout(
        text=text, steps=(text,), verdict=Verdict(status="correct", extracted_answer="14")
    )


def wrong(text: str) -> Rollout:
    return Rollout(
        text=text, steps=(text,), verdict=Verdict(status="incorrect", extracted_answer="20")
    )


def small_tree() -> tuple[ReasoningTree, dict[str, int]]:
    """Three solutions: A right (values .5, never sampled, 1.0), B wrong from its
    first step (0.0, 0.0), C wrong with an unsampled first step (unknown, 0.0)."""
    question = Question(
        id="q1", text="What is 2 + 3 * 4?", reference_answer="14", source="toy.jsonl"
    )
    tree = ReasoningTree(question)
    tree.record_rollouts(tree.root, [right("3 * 4 = 12, so 14."), wrong("5 * 4 = 20.")])
    a1, a2, a3 = tree.add_steps(tree.root, ["3 * 4 = 12.", "2 + 12 = 14.", "The answer is 14."])
    tree.record_rollouts(a1, [right("2 + 12 = 14. So 14."), wrong("2 + 12 = 15. So 15.")])
    tree.mark_terminal(a3, Verdict(status="correct", extracted_answer="14"))
    b1, b2 = tree.add_steps(tree.root, ["2 + 3 = 5.", "5 * 4 = 20, so the answer is 20."])
    tree.record_rollouts(b1, [wrong("5 * 4 = 20."), wrong("The answer is 20.")])
    tree.mark_terminal(b2, Verdict(status="incorrect", extracted_answer="20"))
    c1, c2 = tree.add_steps(tree.root, ["Let x = 3 * 4 + 3.", "So x = 15, the answer is 15."])
    tree.mark_terminal(c2, Verdict(status="incorrect", extracted_answer="15"))
    tree.check_invariants()
    return tree, {"a1": a1, "a2": a2, "a3": a3, "b1": b1, "b2": b2, "c1": c1, "c2": c2}


def records(format: str, **options) -> list[dict]:
    tree, _ = small_tree()
    return list(export_records([tree], format, ExportSettings(**options)))


def test_label_path_follows_the_rule_on_the_small_tree():
    tree, node = small_tree()
    a = label_path(tree, node["a3"])
    assert [(s.mc_value, s.value, s.label, s.rating) for s in a] == [
        (0.5, 0.5, True, 1),
        (None, 1.0, True, 1),  # never sampled: inherits the positive value below it
        (1.0, 1.0, True, 1),
    ]
    b = label_path(tree, node["b2"])
    assert [(s.label, s.rating) for s in b] == [(False, -1), (False, -1)]
    c = label_path(tree, node["c2"])
    assert [s.label for s in c] == [None, False]  # no negative label invented for c1


def test_label_path_three_way_rating_and_after_first_error():
    tree, node = small_tree()
    steps = label_path(
        tree, node["a3"], ExportSettings(positive_threshold=0.5, negative_threshold=0.0)
    )
    # a1 = 0.5 is not above 0.5: the first error, rated 0 (above the negative threshold);
    # everything after it is negative, and rated 0 since no step was rated -1.
    assert [(s.label, s.rating) for s in steps] == [(False, 0), (False, 0), (False, 0)]
    assert [s.value for s in steps] == [0.5, None, 1.0]


def test_trl_records_on_the_small_tree():
    assert records("trl") == [
        {
            "question_id": "q1",
            "prompt": "What is 2 + 3 * 4?",
            "completions": ["3 * 4 = 12.", "2 + 12 = 14.", "The answer is 14."],
            "labels": [True, True, True],
            "mc_values": [0.5, 1.0, 1.0],
        },
        {
            "question_id": "q1",
            "prompt": "What is 2 + 3 * 4?",
            "completions": ["2 + 3 = 5.", "5 * 4 = 20, so the answer is 20."],
            "labels": [False, False],
            "mc_values": [0.0, 0.0],
        },
    ]
    higher = records("trl", positive_threshold=0.5)
    assert [record["labels"] for record in higher] == [[False, False, False], [False, False]]


def test_math_shepherd_records_on_the_small_tree():
    first, second = records("math-shepherd")
    assert first == {
        "question_id": "q1",
        "input": (
            f"What is 2 + 3 * 4? Step 1: 3 * 4 = 12. {STEP_TAG}\n"
            f"Step 2: 2 + 12 = 14. {STEP_TAG}\nStep 3: The answer is 14. {STEP_TAG}"
        ),
        "label": (
            "What is 2 + 3 * 4? Step 1: 3 * 4 = 12. +\n"
            "Step 2: 2 + 12 = 14. +\nStep 3: The answer is 14. +"
        ),
        "value": ["+", "+", "+"],
        "task": "toy.jsonl",
    }
    assert second["label"].endswith(
        "Step 1: 2 + 3 = 5. -\nStep 2: 5 * 4 = 20, so the answer is 20. -"
    )
    assert parse_math_shepherd(second)[2] == [False, False]
    assert second["value"] == ["-", "-"]


def test_math_shepherd_drops_steps_numbered_by_the_model_and_text_with_the_tag():
    tree = ReasoningTree(Question(id="q", text="Q?", reference_answer="1"))
    last = tree.add_steps(tree.root, ["Step 1: one.", "step 2. two."])[-1]
    tree.mark_terminal(last, Verdict(status="correct"))
    (record,) = export_records([tree], "math-shepherd")
    assert record["input"] == f"Q? Step 1: one. {STEP_TAG}\nStep 2: two. {STEP_TAG}"
    tagged = ReasoningTree(Question(id="q", text="Q?", reference_answer="1"))
    leaf = tagged.add_steps(tagged.root, [f"a {STEP_TAG} b"])[-1]
    tagged.mark_terminal(leaf, Verdict(status="correct"))
    assert list(export_records([tagged], "math-shepherd")) == []


def test_math_shepherd_round_trips_the_shared_fixture():
    path = shared_file("formats", "math_shepherd_samples.jsonl")
    fixture = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert fixture
    ours = records("math-shepherd")[0]
    for record in fixture:
        # Math-Shepherd's own release has no value list (ours adds it for OpenRLHF)
        # and no question id
        assert set(record) == set(ours) - {"value", "question_id"}
        assert validate_record(record, "math-shepherd") == []
        problem, steps, labels = parse_math_shepherd(record)
        assert len(steps) == len(labels) == record["input"].count(f" {STEP_TAG}")
        # re-encoding what was read gives the fixture back, character for character
        encoded = math_shepherd_record(problem, steps, labels, task=record["task"])
        assert encoded == {**record, "value": ["+" if label else "-" for label in labels]}


def key_structure(value):
    """The nested key sets of a record (lists by their first item)."""
    if isinstance(value, dict):
        return {key: key_structure(item) for key, item in value.items()}
    if isinstance(value, list):
        return [key_structure(value[0])] if value and isinstance(value[0], dict) else []
    return None


def test_prm800k_records_match_the_shared_fixture_structure():
    path = shared_file("formats", "prm800k_samples.jsonl")
    fixture = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for record in fixture:
        assert validate_record(record, "prm800k") == []
    first, second = records("prm800k")
    # The same keys at every level as the plain PRM800K records (no pre-generated steps).
    plain = next(record for record in fixture if set(record["question"]) == set(first["question"]))
    assert first["question_id"] == "q1"  # a field PRM800K's own records do not have
    assert key_structure(first) == {**key_structure(plain), "question_id": None}
    assert first["question"] == {"problem": "What is 2 + 3 * 4?", "ground_truth_answer": "14"}
    assert [step["completions"][0]["rating"] for step in first["label"]["steps"]] == [1, 1, 1]
    assert [step["chosen_completion"] for step in first["label"]["steps"]] == [0, 0, 0]
    assert first["label"]["finish_reason"] == "solution"
    assert [step["completions"][0]["rating"] for step in second["label"]["steps"]] == [-1, -1]
    assert second["label"]["finish_reason"] == "found_error"
    three_way = records("prm800k", positive_threshold=0.5, negative_threshold=0.0)
    assert [s["completions"][0]["rating"] for s in three_way[0]["label"]["steps"]] == [0, 0, 0]


def test_processbench_records_on_the_small_tree():
    _, node = small_tree()
    problem = "What is 2 + 3 * 4?"
    b_path = ["2 + 3 = 5."]
    assert records("processbench", generator="Qwen2.5-7B-Instruct") == [
        {
            "question_id": "q1",
            "id": f"q1-n{node['a3']}",
            "generator": "Qwen2.5-7B-Instruct",
            "problem": problem,
            "steps": ["3 * 4 = 12.", "2 + 12 = 14.", "The answer is 14."],
            "label": -1,
            "final_answer_correct": True,
        },
        # failed completions sampled after the first error are finished wrong solutions
        {
            "question_id": "q1",
            "id": f"q1-n{node['b1']}-r0",
            "generator": "Qwen2.5-7B-Instruct",
            "problem": problem,
            "steps": [*b_path, "5 * 4 = 20."],
            "label": 0,
            "final_answer_correct": False,
        },
        {
            "question_id": "q1",
            "id": f"q1-n{node['b1']}-r1",
            "generator": "Qwen2.5-7B-Instruct",
            "problem": problem,
            "steps": [*b_path, "The answer is 20."],
            "label": 0,
            "final_answer_correct": False,
        },
        {
            "question_id": "q1",
            "id": f"q1-n{node['b2']}",
            "generator": "Qwen2.5-7B-Instruct",
            "problem": problem,
            "steps": [*b_path, "5 * 4 = 20, so the answer is 20."],
            "label": 0,
            "final_answer_correct": False,
        },
    ]
    # c2 ends a finished solution too, but its first step was never sampled from:
    # where its first error is, is unknown, so it is left out.
    assert {record["generator"] for record in records("processbench")} == {None}


def test_processbench_schema_accepts_the_shared_benchmark():
    path = shared_file("processbench", "gsm8k.json")
    items = json.loads(path.read_text(encoding="utf-8"))
    ours = records("processbench", generator="Qwen2-7B-Instruct")[0]
    for item in items[:50]:
        assert validate_record(item, "processbench") == []
        # the same fields, generator included; ProcessBench has no question id
        assert set(item) == set(ours) - {"question_id"}
        assert isinstance(item["generator"], str)


def test_chat_formats_on_the_small_tree():
    tree, _ = small_tree()
    system = ExportSettings().system_prompt
    sft = records("sft")
    assert sft == sft_records(tree, system_prompt=system)
    assert len(sft) == 2
    sft_trl = records("sft-trl")
    assert [r["completion"] for r in sft_trl] == [[m["messages"][2]] for m in sft]
    assert sft_trl[0]["prompt"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "What is 2 + 3 * 4?"},
    ]
    dpo = records("dpo")
    assert dpo == dpo_records(tree, system_prompt=system)
    as_trl = [
        {
            "question_id": "q1",
            "prompt": record["input"]["messages"],
            "chosen": record["preferred_output"],
            "rejected": record["non_preferred_output"],
        }
        for record in dpo
    ]
    assert as_trl == records("dpo-trl")
    (step_pair,) = records("dpo-step-trl")
    assert step_pair["chosen"] == [{"role": "assistant", "content": "2 + 12 = 14. So 14."}]
    assert step_pair["rejected"] == [{"role": "assistant", "content": "2 + 12 = 15. So 15."}]
    assert "3 * 4 = 12." in step_pair["prompt"][-1]["content"]
    (seed_layout,) = records("dpo-step")
    assert seed_layout["input"]["messages"] == step_pair["prompt"]
    assert records("sft", system_prompt="Be brief.")[0]["messages"][0]["content"] == "Be brief."


def test_the_run_outputs_validate_against_their_schemas():
    tree, _ = small_tree()
    result = SearchResult(tree=tree, status="kept", n_completions=8)
    assert validate_record(result_to_tree_record(result), "tree") == []
    assert validate_record(flat_record(tree), "flat") == []
    for record in sft_records(tree, system_prompt="S"):
        assert validate_record(record, "sft") == []
    for record in dpo_records(tree, system_prompt="S"):
        assert validate_record(record, "dpo") == []
    broken = flat_record(tree)
    broken["reasoning_steps"][1]["reward"] = "high"
    assert validate_record(broken, "flat") == [
        "$.reasoning_steps[1].reward: 'high' is not of type 'number', 'null'"
    ]


def test_every_schema_is_valid_draft_2020_12_package_data():
    for format in FORMATS:
        schema = load_schema(format)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    schema = load_schema("trl")
    schema["required"].append("mutated")
    assert "mutated" not in load_schema("trl")["required"]  # a fresh copy each time


def test_checks_beyond_the_schema():
    assert validate_record({"prompt": "Q", "completions": ["a", "b"], "labels": [True]}, "trl") == [
        "$.labels: 1 labels for 2 completions"
    ]
    shepherd = {"input": f"Q Step 1: a {STEP_TAG}", "label": "Q Step 1: b +", "task": "t"}
    assert validate_record(shepherd, "math-shepherd") == [
        "$.label: label differs from input before tag 1"
    ]
    shepherd = {**shepherd, "label": "Q Step 1: a +", "value": ["-"]}
    assert validate_record(shepherd, "math-shepherd") == [
        "$.value: ['-'] is not the marks of label, in step order"
    ]
    assert validate_record({**shepherd, "value": ["+"]}, "math-shepherd") == []
    bench = {"id": "x", "problem": "Q", "steps": ["a"], "label": 1, "final_answer_correct": True}
    assert validate_record(bench, "processbench") == ["$.label: 1 is no step index (there are 1)"]
    with pytest.raises(ValueError, match="unknown format"):
        validate_record({}, "alpaca")


def test_settings_are_checked():
    with pytest.raises(ValueError, match="positive_threshold"):
        ExportSettings(positive_threshold=1.0)
    with pytest.raises(ValueError, match="validation_fraction"):
        ExportSettings(validation_fraction=-0.1)
    with pytest.raises(ValueError, match="balance"):
        ExportSettings(balance="upsample")
    tree, _ = small_tree()
    with pytest.raises(ExportError, match="labelled"):
        list(export_records([tree], "sft", ExportSettings(balance="downsample")))


# -- properties -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(trees(), export_settings())
def test_any_tree_exports_to_every_format_and_each_record_validates(tree, export_options):
    for format in FORMATS:
        for record in export_records([tree], format, export_options):
            assert validate_record(record, format) == [], (format, record)


@settings(max_examples=60, deadline=None)
@given(trees(), export_settings())
def test_labels_agree_with_mc_values_and_the_thresholds(tree, export_options):
    positive, negative = export_options.positive_threshold, export_options.negative_threshold
    for leaf in tree.leaves():
        if leaf == tree.root:
            continue
        steps = label_path(tree, leaf, export_options)
        nodes = tree.path(leaf)[1:]
        assert [step.node for step in steps] == nodes
        error_seen = strong_error_seen = False
        for index, step in enumerate(steps):
            own = tree.mc_value(step.node)
            assert step.mc_value == own
            if error_seen:
                assert step.label is False  # after the first error every step is wrong
            elif own is not None:
                assert step.label == (own > positive)
                assert step.value == own
            else:
                later = [tree.mc_value(n) for n in nodes[index + 1 :]]
                below = next((value for value in later if value is not None), None)
                if below is not None and below > positive:
                    assert (step.label, step.value) == (True, below)
                else:
                    assert step.label is None  # never a negative label from no data
            assert (step.rating == 1) == (step.label is True)
            assert (step.rating is None) == (step.label is None)
            if step.label is False:
                expected = strong_error_seen or (step.value is not None and step.value <= negative)
                assert (step.rating == -1) == expected
                error_seen = True
                strong_error_seen = strong_error_seen or step.rating == -1

    # The formats agree with each other, path by path.
    no_dedup = attrs_evolve(export_options, deduplicate=False)
    trl = list(export_records([tree], "trl", no_dedup))
    prm800k = list(export_records([tree], "prm800k", no_dedup))
    assert len(trl) == len(prm800k)
    for trl_record, prm_record in zip(trl, prm800k):
        labels = trl_record["labels"]
        ratings = [step["completions"][0]["rating"] for step in prm_record["label"]["steps"]]
        assert [rating == 1 for rating in ratings] == labels
        assert labels == sorted(labels, reverse=True)  # True... then False...
        for label, value in zip(labels, trl_record["mc_values"]):
            if label:
                assert value is not None and value > positive
        if False in labels:
            first_error = labels.index(False)
            assert trl_record["mc_values"][first_error] <= positive
    texts = [tree.node(node).text for node in tree.nodes()]
    if not any(STEP_TAG in text for text in texts):
        shepherd = list(export_records([tree], "math-shepherd", no_dedup))
        assert [parse_math_shepherd(r)[2] for r in shepherd] == [r["labels"] for r in trl]
    for record in export_records([tree], "processbench", no_dedup):
        *_, node_part, rollout_part = f"-{record['id']}".rsplit("-", 2)
        from_rollout = rollout_part.startswith("r")
        if from_rollout:  # the path to a node, then a failed completion sampled from it
            node = int(node_part[1:])
        else:  # the path to a terminal node
            node = int(rollout_part[1:])
        steps = label_path(tree, node, export_options)
        labels = [step.label for step in steps]
        assert None not in labels
        assert record["steps"][: len(steps)] == [step.text for step in steps]
        assert record["label"] == (labels.index(False) if False in labels else -1)
        if not from_rollout:
            assert record["final_answer_correct"] == (tree.node(node).verdict == "correct")
            assert len(record["steps"]) == len(steps)
        else:
            assert record["label"] != -1 and record["final_answer_correct"] is False
            index = int(rollout_part[1:])
            continuation = tree.node(node).incorrect_rollouts[index].steps
            assert record["steps"][len(steps) :] == list(continuation)


def attrs_evolve(instance, **changes):
    import attrs

    return attrs.evolve(instance, **changes)


@settings(max_examples=40, deadline=None)
@given(trees())
def test_tree_json_round_trips_losslessly_through_the_tree_export(tree):
    (record,) = export_records([tree], "tree")
    loaded = tree_from_dict(json.loads(json.dumps(record)))
    assert loaded == tree
    assert tree_to_dict(loaded) == record


@settings(max_examples=25, deadline=None)
@given(forests(), st.sampled_from(FORMATS))
def test_deduplication_writes_each_distinct_record_once(forest, format):
    everything = list(export_records(forest, format, ExportSettings(deduplicate=False)))
    unique = list(export_records(forest, format, ExportSettings(deduplicate=True)))
    keys = [canonical(record) for record in unique]
    assert len(keys) == len(set(keys))
    assert set(keys) == {canonical(record) for record in everything}
    # the first of each duplicate is kept, in order
    assert keys == list(dict.fromkeys(canonical(record) for record in everything))


@settings(max_examples=25, deadline=None)
@given(forests(max_size=8), st.sampled_from(LABELLED_FORMATS), st.integers(0, 3))
def test_balancing_gives_equal_counts(forest, format, seed):
    options = ExportSettings(balance="downsample", balance_seed=seed)
    balanced = list(export_records(forest, format, options))
    classes = Counter(has_error(record, format) for record in balanced)
    assert classes[True] == classes[False]
    unbalanced = list(export_records(forest, format, ExportSettings()))
    before = Counter(has_error(record, format) for record in unbalanced)
    assert classes[True] == min(before[True], before[False])
    kept = {canonical(record) for record in balanced}
    assert kept <= {canonical(record) for record in unbalanced}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    forests(max_size=8),
    st.sampled_from(["tree", "trl", "processbench", "sft"]),
    st.sampled_from([0.3, 0.5, 0.8]),
    st.integers(0, 5),
)
def test_the_split_never_puts_a_question_on_both_sides(forest, format, fraction, seed):
    options = ExportSettings(validation_fraction=fraction, split_seed=seed, deduplicate=False)
    question_of = {
        "tree": lambda record: record["question_id"],
        "trl": lambda record: record["prompt"].split(":")[0],
        "processbench": lambda record: record["problem"].split(":")[0],
        "sft": lambda record: record["messages"][1]["content"].split(":")[0],
    }[format]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / f"{format}.jsonl"
        manifest = export_file(forest, format, out, options)
        assert not out.exists()
        sides = {}
        for side in ("train", "validation"):
            path = Path(folder) / f"{format}.{side}.jsonl"
            lines = path.read_text(encoding="utf-8").split("\n")[:-1]
            sides[side] = [json.loads(line) for line in lines]
            assert manifest["files"][side]["records"] == len(lines)
            assert validate_file(path, format) == []
    train = {question_of(record) for record in sides["train"]}
    validation = {question_of(record) for record in sides["validation"]}
    assert not train & validation
    for record in sides["validation"]:
        question_id = f"q{question_of(record).split()[-1]}" if format != "tree" else None
        question_id = question_id or question_of(record)
        assert question_split(question_id, options) == "validation"
    everything = list(export_records(forest, format, options))
    assert len(everything) == len(sides["train"]) + len(sides["validation"])


# -- files and manifest -----------------------------------------------------------------


def write_trees(path: Path, forest) -> Path:
    path.write_text("".join(json.dumps(tree_to_dict(tree)) + "\n" for tree in forest))
    return path


def test_export_file_writes_records_and_a_manifest(tmp_path):
    tree, _ = small_tree()
    source = write_trees(tmp_path / "trees.jsonl", [tree, tree])
    out = tmp_path / "trl.jsonl"
    manifest = export_file(source, "trl", out, ExportSettings(balance="downsample"))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # two paths; the second tree's are duplicates; 1 + 1 after balancing
    assert json.loads(manifest_path(out).read_text()) == manifest
    assert manifest["format"] == "trl"
    assert manifest["prmsynth_version"] == __import__("prmsynth").__version__
    assert manifest["source_files"] == [str(source.resolve())]
    assert manifest["settings"]["balance"] == "downsample"
    assert manifest["settings"]["positive_threshold"] == 0.0
    assert manifest["counts"] == {
        "trees": 2,
        "examples": 4,
        "duplicates_removed": 2,
        "removed_by_balance": 0,
        "removed_by_consensus": 0,
        "removed_without_critique": 0,
        "records_written": 2,
        "skipped": {"paths_cut_at_unknown_step": 2, "paths_without_labelled_step": 2},
    }
    assert manifest["files"]["all"] == {
        "path": "trl.jsonl",
        "records": 2,
        "questions": 1,
        "label_balance": {
            "examples_without_error": 1,
            "examples_with_error": 1,
            "steps_positive": 3,
            "steps_neutral": 0,
            "steps_negative": 2,
        },
    }
    assert validate_file(out, "trl") == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_each_format_is_one_registry_entry_with_a_schema_file():
    from importlib import resources

    names = [entry.name for entry in EXPORT_FORMATS]
    assert tuple(names) == FORMATS
    assert len(set(names)) == len(names)
    schemas = resources.files("prmsynth.export").joinpath("schemas")
    for entry in EXPORT_FORMATS:
        assert schemas.joinpath(f"{entry.schema}.schema.json").is_file(), entry.name
    labelled = tuple(entry.name for entry in EXPORT_FORMATS if entry.labelled)
    assert labelled == LABELLED_FORMATS


def test_a_new_format_is_one_registry_entry(tmp_path, monkeypatch):
    def toy(tree, settings, stats):
        yield Example(
            record={"prompt": tree.question.text, "completions": ["a"], "labels": [True]},
            question_id=tree.question.id,
            has_error=False,
            step_counts=(1, 0, 0),
        )

    register_format(monkeypatch, ExportFormat(name="toy", build=toy, schema="trl", labelled=True))
    tree, _ = small_tree()
    out = tmp_path / "toy.jsonl"
    manifest = export_file([tree], "toy", out, ExportSettings(balance="downsample"))
    assert manifest["schema"] == "prmsynth/export/schemas/trl.schema.json"
    entry = manifest["files"]["all"]
    assert entry["records"] == 0  # one class only: balancing keeps none
    assert entry["label_balance"] is not None  # a labelled format
    assert load_schema("toy") == load_schema("trl")
    assert validate_record({"prompt": "Q", "completions": ["a"], "labels": [2]}, "toy") != []
    with pytest.raises(InputError, match="soft labels are written in trl and math-shepherd only"):
        export_file([tree], "toy", out, ExportSettings(soft_labels=True))


def test_a_record_that_fails_its_schema_writes_nothing(tmp_path, monkeypatch):
    def broken(tree, settings, stats):
        yield Example(
            record={"prompt": tree.question.text, "completions": ["a"], "labels": [1.5]},
            question_id=tree.question.id,
            has_error=False,
        )

    replace_builder(monkeypatch, "trl", broken)
    tree, _ = small_tree()
    with pytest.raises(ExportError, match=r"labels\[0\]"):
        export_file([tree], "trl", tmp_path / "trl.jsonl")
    assert list(tmp_path.iterdir()) == []


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(forests(max_size=3))
def test_exported_files_validate_and_tree_files_read_back(forest):
    with tempfile.TemporaryDirectory() as folder:
        source = write_trees(Path(folder) / "trees.jsonl", forest)
        assert list(read_trees(source)) == forest
        for format in FORMATS:
            out = Path(folder) / f"{format}.jsonl"
            manifest = export_file(source, format, out)
            assert validate_file(out, format) == []
            assert manifest["files"]["all"]["records"] == out.read_text().count("\n")


# -- soft labels ------------------------------------------------------------------------

SOFT_FORMATS = ("trl", "math-shepherd")


def test_soft_trl_records_hold_the_mc_value_of_each_estimated_step():
    first, second = records("trl", soft_labels=True)
    # a2 was never sampled from: it joins a3, whose value (1.0) labels both
    assert first == {
        "question_id": "q1",
        "prompt": "What is 2 + 3 * 4?",
        "completions": ["3 * 4 = 12.", f"2 + 12 = 14.{STEP_SEPARATOR}The answer is 14."],
        "labels": [0.5, 1.0],
        "mc_values": [0.5, 1.0],
    }
    assert second["labels"] == [0.0, 0.0]
    assert all(type(label) is float for record in (first, second) for label in record["labels"])
    # C (unknown first step) gives no record, as in the hard export
    assert len(records("trl")) == 2


def test_soft_math_shepherd_records_put_the_values_in_value_and_keep_the_marks():
    first, second = records("math-shepherd", soft_labels=True)
    assert first["input"] == (
        f"What is 2 + 3 * 4? Step 1: 3 * 4 = 12. {STEP_TAG}\n"
        f"Step 2: 2 + 12 = 14.{STEP_SEPARATOR}The answer is 14. {STEP_TAG}"
    )
    assert first["value"] == [0.5, 1.0] and second["value"] == [0.0, 0.0]
    problem, steps, marks = parse_math_shepherd(first)
    assert (problem, marks) == ("What is 2 + 3 * 4?", [True, True])
    assert steps == ["3 * 4 = 12.", f"2 + 12 = 14.{STEP_SEPARATOR}The answer is 14."]
    assert parse_math_shepherd(second)[2] == [False, False]


def test_steps_after_the_last_estimated_step_are_left_out_and_paths_without_one_skipped(
    tmp_path,
):
    tree = ReasoningTree(Question(id="q", text="Q?", reference_answer="14"))
    _, s2, s3 = tree.add_steps(tree.root, ["one", "two", "three"])
    tree.record_rollouts(s2, [right("x"), right("y"), wrong("z"), right("w")])
    tree.set_label(s3, False)  # judged by the search, never sampled from
    (record,) = export_records([tree], "trl", ExportSettings(soft_labels=True))
    assert record["completions"] == [f"one{STEP_SEPARATOR}two"]
    assert record["labels"] == [0.75]
    lone = ReasoningTree(Question(id="p", text="P?", reference_answer="1"))
    judged = lone.add_steps(lone.root, ["only"])[0]
    lone.set_label(judged, True)  # a label from the search, no value anywhere
    assert list(export_records([lone], "trl", ExportSettings(soft_labels=True))) == []
    manifest = export_file([lone], "trl", tmp_path / "t.jsonl", ExportSettings(soft_labels=True))
    assert manifest["counts"]["skipped"]["paths_without_estimated_step"] == 1
    assert manifest["settings"]["soft_labels"] is True


@pytest.mark.parametrize("format", [f for f in FORMATS if f not in SOFT_FORMATS])
def test_formats_without_float_labels_refuse_soft_labels(tmp_path, format):
    tree, _ = small_tree()
    with pytest.raises(InputError, match=f"format '{format}' cannot carry float labels"):
        list(export_records([tree], format, ExportSettings(soft_labels=True)))
    with pytest.raises(InputError, match=f"'{format}'"):
        export_file([tree], format, tmp_path / "out.jsonl", ExportSettings(soft_labels=True))
    assert list(tmp_path.iterdir()) == []


def test_the_schemas_take_soft_labels_in_range_and_of_one_kind():
    soft = {"prompt": "Q", "completions": ["a", "b"], "labels": [0.25, 1], "mc_values": [0.25, 1]}
    assert validate_record(soft, "trl") == []
    assert validate_record({**soft, "labels": [0.25, 1.5]}, "trl") == [
        "$.labels[1]: 1.5 is greater than the maximum of 1"
    ]
    assert validate_record({**soft, "labels": [-0.5, 1.0]}, "trl") == [
        "$.labels[0]: -0.5 is less than the minimum of 0"
    ]
    assert validate_record({**soft, "labels": [True, 0.5]}, "trl") == [
        "$.labels: mixes booleans and numbers"
    ]
    shepherd = math_shepherd_record("Q", ["a", "b"], [True, False], task="t")
    assert validate_record({**shepherd, "value": [0.5, 0.0]}, "math-shepherd") == []
    assert validate_record({**shepherd, "value": [0.5]}, "math-shepherd") == [
        "$.value: 1 values for 2 tagged steps"
    ]
    assert validate_record({**shepherd, "value": ["+", 0.0]}, "math-shepherd") == [
        "$.value: mixes marks and numbers"
    ]
    assert validate_record({**shepherd, "value": [0.5, 2]}, "math-shepherd") != []


def matches_tree(tree: ReasoningTree, node: int, completions: list[str], labels: list) -> bool:
    """Whether some path down from ``node`` gives these pieces: each a run of
    steps never sampled from, then one step whose own MC value is its label."""
    if not completions:
        return True
    stack = [(child, []) for child in tree.children(node)]
    while stack:
        current, texts = stack.pop()
        texts = [*texts, tree.node(current).text]
        joined = STEP_SEPARATOR.join(texts)
        if not completions[0].startswith(joined):
            continue
        value = tree.mc_value(current)
        if value is None:
            stack.extend((child, texts) for child in tree.children(current))
        elif joined == completions[0] and value == labels[0]:
            if matches_tree(tree, current, completions[1:], labels[1:]):
                return True
    return False


@settings(max_examples=60, deadline=None)
@given(trees(), export_settings())
def test_every_soft_label_is_the_mc_value_of_its_step_in_the_tree(tree, export_options):
    soft = attrs_evolve(export_options, soft_labels=True, deduplicate=False)
    hard = attrs_evolve(export_options, deduplicate=False)
    trl = list(export_records([tree], "trl", soft))
    for record in trl:
        assert validate_record(record, "trl") == [], record
        assert all(type(label) is float and 0.0 <= label <= 1.0 for label in record["labels"])
        assert record["mc_values"] == record["labels"]
        assert matches_tree(tree, tree.root, record["completions"], record["labels"])
    # the same paths as the hard export, less those without an estimated step
    assert len(trl) <= len(list(export_records([tree], "trl", hard)))
    texts = [tree.node(node).text for node in tree.nodes()]
    if not any(STEP_TAG in text for text in texts):
        shepherd = list(export_records([tree], "math-shepherd", soft))
        assert [record["value"] for record in shepherd] == [record["labels"] for record in trl]
        for record in shepherd:
            assert validate_record(record, "math-shepherd") == [], record


# -- command line -----------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prmsynth")
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_export_and_validate(tmp_path, capsys):
    tree, _ = small_tree()
    source = write_trees(tmp_path / "trees.jsonl", [tree])
    out = tmp_path / "shepherd.jsonl"
    args = parse(["export", str(source), "--format", "math-shepherd", "--out", str(out)])
    assert run_export(args) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert manifest_path(out).is_file()
    assert "shepherd.jsonl (2 records)" in capsys.readouterr().err
    assert run_validate(parse(["validate", str(out), "--format", "math-shepherd"])) == 0
    # the same file is no valid TRL data: exit 1, errors by line
    assert run_validate(parse(["validate", str(out), "--format", "trl"])) == 1
    err = capsys.readouterr().err
    assert f"{out}: line 1: $: 'prompt' is a required property" in err
    assert "line 2:" in err


def test_cli_export_soft_labels_writes_floats_and_records_the_choice(tmp_path, capsys):
    tree, _ = small_tree()
    source = write_trees(tmp_path / "trees.jsonl", [tree])
    out = tmp_path / "soft.jsonl"
    argv = ["export", str(source), "--format", "trl", "--out", str(out), "--soft-labels"]
    assert run_export(parse(argv)) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["labels"] for line in lines] == [[0.5, 1.0], [0.0, 0.0]]
    assert json.loads(manifest_path(out).read_text())["settings"]["soft_labels"] is True
    assert run_validate(parse(["validate", str(out), "--format", "trl"])) == 0
    capsys.readouterr()
    refused = tmp_path / "kto.jsonl"
    argv = ["export", str(source), "--format", "kto", "--out", str(refused), "--soft-labels"]
    assert run_export(parse(argv)) == 2
    assert "format 'kto' cannot carry float labels" in capsys.readouterr().err
    assert not refused.exists() and not manifest_path(refused).exists()


def test_cli_export_with_split_and_options(tmp_path):
    forest = [small_tree()[0]]
    source = write_trees(tmp_path / "trees.jsonl", forest)
    out = tmp_path / "pb.jsonl"
    argv = ["export", str(source), "--format", "processbench", "--out", str(out)]
    argv += ["--validation-fraction", "0.5", "--split-seed", "3", "--no-deduplicate"]
    argv += ["--positive-threshold", "0.25"]
    args = parse(argv)
    assert run_export(args) == 0
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["settings"]["deduplicate"] is False
    assert manifest["settings"]["split_seed"] == 3
    assert (tmp_path / "pb.train.jsonl").is_file() and (tmp_path / "pb.validation.jsonl").is_file()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ('{"question_id": "q1"\n', ":1: bad JSON"),
        ("\n" + json.dumps({"question_id": "q1"}) + "\n", ":2: $: 'question' is a required"),
    ],
)
def test_cli_export_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, content, expected):
    source = tmp_path / "trees.jsonl"
    if content is not None:
        source.write_text(content)
    out = tmp_path / "out" / "trl.jsonl"
    out.parent.mkdir()
    assert run_export(parse(["export", str(source), "--format", "trl", "--out", str(out)])) == 2
    err = capsys.readouterr().err
    assert str(source) in err and expected in err
    assert list(out.parent.iterdir()) == []


def test_cli_export_rejects_a_malformed_tree_by_line(tmp_path, capsys):
    tree, _ = small_tree()
    record = tree_to_dict(tree)
    record["reasoning_steps"]["children"][0]["n_correct"] = 5  # more than n_rollouts
    source = tmp_path / "trees.jsonl"
    source.write_text(json.dumps(tree_to_dict(tree)) + "\n" + json.dumps(record) + "\n")
    out = tmp_path / "trl.jsonl"
    assert run_export(parse(["export", str(source), "--format", "trl", "--out", str(out)])) == 2
    err = capsys.readouterr().err
    assert f"{source}:2: malformed tree" in err
    assert not out.exists() and not manifest_path(out).exists()


def test_cli_bad_settings_and_missing_folder_exit_2(tmp_path, capsys):
    tree, _ = small_tree()
    source = write_trees(tmp_path / "trees.jsonl", [tree])
    argv = ["export", str(source), "--format", "trl", "--out", str(tmp_path / "t.jsonl")]
    assert run_export(parse([*argv, "--negative-threshold", "0.5"])) == 2
    assert "negative_threshold" in capsys.readouterr().err
    assert run_export(parse([*argv, "--balance", "downsample", "--format", "sft"])) == 1
    missing = ["export", str(source), "--format", "trl", "--out", str(tmp_path / "no" / "t.jsonl")]
    assert run_export(parse(missing)) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_validate(parse(["validate", str(tmp_path / "none.jsonl"), "--format", "trl"])) == 2


# -- datasets ---------------------------------------------------------------------------


def test_every_jsonl_export_loads_with_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    tree, _ = small_tree()
    other = tree_from_dict({**tree_to_dict(tree), "question_id": "q2", "question": "Q2?"})
    for format in JSONL_FORMATS:
        out = tmp_path / f"{format}.jsonl"
        manifest = export_file([tree, other], format, out)
        dataset = datasets.load_dataset(
            "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
        )
        assert dataset.num_rows == manifest["files"]["all"]["records"] > 0, format
    trl = datasets.load_dataset(
        "json", data_files=str(tmp_path / "trl.jsonl"), split="train", cache_dir=str(tmp_path / "c")
    )
    assert trl[0]["labels"] == [True, True, True]
    export_file([tree], "trl", tmp_path / "soft.jsonl", ExportSettings(soft_labels=True))
    soft = datasets.load_dataset(
        "json",
        data_files=str(tmp_path / "soft.jsonl"),
        split="train",
        cache_dir=str(tmp_path / "s"),
    )
    assert soft[0]["labels"] == [0.5, 1.0]
