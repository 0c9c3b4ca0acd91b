"""The seed's id survives into every export: ``question_id`` in each record of
the formats that carry it, ``QUESTION-n...`` in ProcessBench's ``id``, and the
readers of the exports take records with or without the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prmsynth import (
    FORMATS,
    ExportSettings,
    export_records,
    read_tree_file,
    validate_record,
)
from prmsynth._io import dumps_line
from prmsynth.export._registry import export_format
from prmsynth.export._serialize import tree_to_dict

from .test_export import small_tree

#: The top-level keys of the OpenAI fine-tuning layouts, which define no field for an id.
OPENAI_KEYS = {
    "sft": {"messages"},
    "dpo": {"input", "preferred_output", "non_preferred_output"},
    "dpo-step": {"input", "preferred_output", "non_preferred_output"},
}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def names_its_question(record: dict, problem: str) -> bool:
    """Whether ``record`` holds the text of ``problem`` (as JSON writes it)."""
    return json.dumps(problem, ensure_ascii=False)[1:-1] in json.dumps(record, ensure_ascii=False)


def mixed_responder(request) -> str:
    """The docs' planted solutions, but a right prefix's continuations are right and
    wrong in turn, so that step-level pairs (dpo-step, dpo-step-trl) exist too."""
    from ..test_docs_snippets import ANSWERS, responder

    prompt = request.prompt
    if "Here are the first steps" in prompt and "BAD" not in prompt and request.sample_index % 2:
        answer = next(answer for problem, answer in ANSWERS.items() if problem in prompt)
        wrong = int(answer) + 1
        return f"So the result is {wrong}.\n\nThe answer is \\boxed{{{wrong}}}."
    return responder(request)


def test_the_formats_without_question_id_are_the_openai_layouts_only():
    assert {name for name in FORMATS if not export_format(name).carries_question_id} == set(
        OPENAI_KEYS
    )


def test_a_run_with_an_id_column_names_its_question_in_every_record_of_every_format(
    tmp_path, capsys
):
    from prmsynth.cli import main
    from prmsynth.testing import FakeOpenAIServer

    from ..test_docs_snippets import SEED_FILE

    rows = [json.loads(line) for line in SEED_FILE.read_text().splitlines() if line.strip()][:2]
    # MATH-500's ids are paths; an id field of another name must not win
    ids = ["test/precalculus/807.json", "test/algebra/1.json"]
    seeds = tmp_path / "math500.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({**row, "unique_id": unique_id, "id": n}) + "\n"
            for n, (row, unique_id) in enumerate(zip(rows, ids, strict=True))
        )
    )
    problems = {unique_id: row["problem"] for row, unique_id in zip(rows, ids, strict=True)}
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-ids0123456789")
        with FakeOpenAIServer(responder=mixed_responder, keep_bodies=False) as server:
            argv = ["run", str(seeds), "--out", str(out), "--id-column", "unique_id"]
            argv += ["--model", "openai/fake", "--api-base", server.url, "--quiet"]
            assert main(argv) == 0, capsys.readouterr().err
    kept = {row["question_id"] for row in read_jsonl(out / "trees.jsonl")}
    assert kept == set(ids)
    for format in FORMATS:
        exported = tmp_path / f"{format}.jsonl"
        argv = ["export", str(out / "trees.jsonl"), "--format", format, "--out", str(exported)]
        assert main(argv) == 0, capsys.readouterr().err
        records = read_jsonl(exported)
        assert records, f"{format}: the run gave no records to check"
        for record in records:
            if not export_format(format).carries_question_id:
                assert set(record) == OPENAI_KEYS[format]
                continue
            question_id = record["question_id"]
            assert question_id in kept, format
            assert names_its_question(record, problems[question_id]), format
            if format == "processbench":
                assert record["id"].startswith(f"{question_id}-n")
        if export_format(format).carries_question_id:  # both questions, each by its id
            assert {record["question_id"] for record in records} == set(ids), format


@given(
    question_id=st.text(st.characters(codec="utf-8"), min_size=1).filter(str.strip),
)
@settings(max_examples=25, deadline=None)
def test_any_question_id_comes_back_as_it_was_in_every_format(question_id, tmp_path_factory):
    tree, _ = small_tree()
    written = {**tree_to_dict(tree), "question_id": question_id}
    path = tmp_path_factory.mktemp("ids") / "trees.jsonl"
    path.write_text(dumps_line(written), encoding="utf-8")
    (read,) = read_tree_file(path)
    for format in FORMATS:
        for record in export_records([read], format, ExportSettings(generator="m")):
            # through the file's bytes, as a trainer reads it
            record = json.loads(dumps_line(record))
            assert validate_record(record, format) == []
            if format == "processbench":
                assert record["id"].startswith(f"{question_id}-n")
            if export_format(format).carries_question_id:
                assert record["question_id"] == question_id
                assert next(iter(record)) == "question_id"  # the first column
            else:
                assert "question_id" not in record


@pytest.mark.parametrize("with_id", [True, False])
def test_the_trl_reader_takes_records_with_or_without_question_id(tmp_path, with_id):
    from prmsynth.train._data import read_step_records

    tree, _ = small_tree()
    records = list(export_records([tree], "trl"))
    if not with_id:
        records = [{k: v for k, v in record.items() if k != "question_id"} for record in records]
    path = tmp_path / "trl.jsonl"
    path.write_text("".join(map(dumps_line, records)), encoding="utf-8")
    read = read_step_records(path)
    assert [(r.prompt, r.steps, r.targets) for r in read] == [
        (r["prompt"], tuple(r["completions"]), tuple(float(x) for x in r["labels"]))
        for r in records
    ]


@pytest.mark.parametrize("with_id", [True, False])
def test_evaluate_takes_processbench_records_with_or_without_question_id(tmp_path, capsys, with_id):
    from prmsynth.cli import main

    tree, _ = small_tree()
    records = list(export_records([tree], "processbench"))
    if not with_id:
        records = [{k: v for k, v in record.items() if k != "question_id"} for record in records]
    data = tmp_path / "pb.jsonl"
    data.write_text("".join(map(dumps_line, records)), encoding="utf-8")
    results = tmp_path / "results.json"
    argv = ["evaluate", "outcome", str(data), "--threshold", "0.5", "--out", str(results), "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    written = json.loads(results.read_text())["processbench"]
    assert written["n_error"] + written["n_correct"] == len(records)


@pytest.mark.parametrize("format", [name for name in FORMATS if name not in OPENAI_KEYS])
def test_a_question_id_that_is_not_text_is_refused_naming_the_field(format):
    tree, _ = small_tree()
    record = next(iter(export_records([tree], format, ExportSettings(generator="m"))))
    assert validate_record(record, format) == []
    problems = validate_record({**record, "question_id": 7}, format)
    assert problems and all(problem.startswith("$.question_id") for problem in problems)
    # absent is allowed: the formats' own releases have no such field
    if format not in ("tree", "flat"):
        without = {key: value for key, value in record.items() if key != "question_id"}
        assert validate_record(without, format) == []
