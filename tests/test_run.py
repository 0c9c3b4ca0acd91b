"""The main job's output folder, driven by the scripted LLM."""

from __future__ import annotations

import json

import pytest

from prmsynth import Question, read_tree_file
from prmsynth._run import prepare_output_directory, run_to_directory
from prmsynth._seeds import InputError

from .test_pipeline import QUESTIONS, scripted_pipeline


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_every_file(tmp_path):
    questions = [*QUESTIONS[:3], Question(id="easy", text="uniform", reference_answer="5")]
    summary = run_to_directory(
        scripted_pipeline(), questions, tmp_path, run_info={"model": "fake"}, log=None
    )
    assert summary["complete"] is True
    assert summary["kept"] == 4 and summary["failed"] == 0
    trees = list(read_tree_file(tmp_path / "trees.jsonl"))
    assert sorted(tree.question.id for tree in trees) == sorted(q.id for q in questions)
    for tree in trees:
        tree.check_invariants()
    flat = read_jsonl(tmp_path / "flat.jsonl")
    assert {row["question_id"] for row in flat} == {q.id for q in questions}
    sft = read_jsonl(tmp_path / "sft.jsonl")
    assert all(row["messages"][2]["content"].endswith("\\boxed{5}.") for row in sft)
    dpo = read_jsonl(tmp_path / "dpo.jsonl")
    assert dpo and all(
        row["non_preferred_output"][0]["content"].endswith("\\boxed{7}.") for row in dpo
    )
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["lines_written"]["trees.jsonl"] == 4
    assert written["completions"] == sum(
        json.loads(line)["n_completions"]
        for line in (tmp_path / "trees.jsonl").read_text().splitlines()
    )


def test_skipped_questions_are_recorded_with_reasons(tmp_path):
    from prmsynth import LLMStepGenerator, Pipeline
    from prmsynth.testing import ScriptedLLM

    from .test_search import BoxedVerifier

    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(lambda r: "The answer is \\boxed{5}.")),
        verifier=BoxedVerifier(),
    )
    summary = run_to_directory(pipeline, QUESTIONS[:2], tmp_path, run_info={}, log=None)
    assert summary["skipped_by_reason"] == {"all_correct": 2}
    skipped = read_jsonl(tmp_path / "skipped.jsonl")
    assert [(row["reason"], row["n_correct"], row["n_rollouts"]) for row in skipped] == [
        ("all_correct", 16, 16)
    ] * 2
    assert (tmp_path / "trees.jsonl").read_text() == ""


def test_a_crash_keeps_finished_questions_and_marks_the_run_incomplete(tmp_path):
    seen = []

    def explode_after_two(result):
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_to_directory(
            scripted_pipeline(concurrency=1),
            QUESTIONS,
            tmp_path,
            run_info={},
            log=None,
            on_result=explode_after_two,
        )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] is False
    assert "KeyboardInterrupt" in summary["error"]
    assert len(read_jsonl(tmp_path / "trees.jsonl")) == 2  # whole lines, both kept


def test_an_earlier_run_is_not_overwritten_by_accident(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="--overwrite"):
        prepare_output_directory(tmp_path, overwrite=False)
    prepare_output_directory(tmp_path, overwrite=True)
