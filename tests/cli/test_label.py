from __future__ import annotations

import json

import pytest

from prmsynth.cli import main
from prmsynth.search._policies import UNUSABLE_RETRIES

from ..llm.test_local import needs_local_model

ROW = {
    "id": "r1",
    "problem": "What is 2 + 2?",
    "steps": ["2 + 2 = 4.", "The answer is 4."],
    "answer": "4",
}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({k: v for k, v in ROW.items() if k != "steps"}, ":1: field 'steps': missing field"),
        ({**ROW, "steps": []}, "field 'steps': expected a non-empty list"),
        ({**ROW, "steps": ["ok", "  "]}, "field 'steps': expected a non-empty list"),
        ({**ROW, "answer": None}, "field 'answer': expected text or a number"),
        ({**ROW, "answer": "x ####"}, "field 'answer': empty value"),
    ],
)
def test_bad_rows_exit_2_and_write_nothing(tmp_path, capsys, row, expected):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["label", str(source), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert expected in error and str(source) in error
    assert not out.exists()


def test_duplicate_ids_are_rejected(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n")
    assert main(["label", str(source), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert ":2: duplicate id 'r1'" in capsys.readouterr().err


@needs_local_model
@pytest.mark.local_model
def test_label_cli_on_the_embedded_model(tmp_path):
    source = tmp_path / "in.jsonl"
    rows = [ROW, {**ROW, "id": "r2", "steps": ["2 + 2 = 5.", "The answer is 5."]}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    status = main(
        [
            "label",
            str(source),
            "--out",
            str(out),
            "--policy",
            "math-shepherd",
            "--num-branches",
            "2",
            "--max-tokens",
            "48",
            "--seed",
            "3",
        ]
    )
    assert status == 0
    labelled = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in labelled] == ["r1", "r2"]
    for row in labelled:
        assert len(row["step_values"]) == len(row["steps"])
        # K completions for the one non-final prefix, and those without an answer resampled
        assert 2 <= row["n_completions"] <= 2 * (1 + UNUSABLE_RETRIES)
        assert row["first_error"] in (-1, 0, 1)
        assert all(v is None or 0.0 <= v <= 1.0 for v in row["step_values"])
    assert labelled[0]["step_values"][-1] == 1.0  # the correct final answer is exact
    assert labelled[1]["step_values"][-1] == 0.0
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_row_that_fails_becomes_a_failed_row_and_the_others_are_labelled(tmp_path, monkeypatch):
    from prmsynth.testing import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")

    def responder(request):
        if "Poison" in request.prompt:
            raise RuntimeError("no reply for this one")
        return "So the answer is \\boxed{4}."

    source = tmp_path / "in.jsonl"
    rows = [ROW, {**ROW, "id": "r2", "problem": "Poison: what is 2 + 2?"}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    with FakeOpenAIServer(responder=responder) as server:
        argv = ["label", str(source), "--out", str(out), "--model", "openai/fake"]
        status = main([*argv, "--api-base", server.url, "--max-attempts", "1"])
    assert status == 0  # one failed row does not fail the run
    labelled = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert labelled["r1"]["status"] == "labelled" and labelled["r1"]["first_error"] == -1
    failed = labelled["r2"]
    assert failed["status"] == "failed" and failed["reason"]
    assert failed["first_error"] is None and failed["step_values"] == [None, None]


def test_label_takes_the_same_option_names_as_run_and_its_first_names_still_work():
    from prmsynth.cli import build_parser

    parser = build_parser()
    new = parser.parse_args(["label", "in.jsonl", "--out", "o", "--num-branches", "3"])
    old = parser.parse_args(
        [
            "label",
            "in.jsonl",
            "--out",
            "o",
            "--num-completions",
            "3",
            "--max-completions-per-row",
            "9",
        ]
    )
    assert new.num_branches == old.num_branches == 3 and old.max_branches == 9


def test_an_out_path_that_is_a_folder_exits_2_before_any_work(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(ROW) + "\n")
    assert main(["label", str(source), "--out", str(tmp_path)]) == 2
    assert "is a folder; --out names a file" in capsys.readouterr().err


def test_the_summary_counts_a_first_error_at_step_0(tmp_path, capsys, monkeypatch):
    from prmsynth.testing import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    source = tmp_path / "in.jsonl"
    row = {**ROW, "steps": ["2 + 2 = 5.", "The answer is \\boxed{5}."]}
    source.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out.jsonl"
    with FakeOpenAIServer(responder=lambda request: "So the answer is \\boxed{5}.") as server:
        argv = ["label", str(source), "--out", str(out), "--model", "openai/fake"]
        assert main([*argv, "--api-base", server.url, "--first-error-rule", "mc-zero"]) == 0
    [labelled] = map(json.loads, out.read_text().splitlines())
    assert labelled["first_error"] == 0
    assert "1 with a first error" in capsys.readouterr().err


def test_an_id_column_names_the_field_each_row_id_comes_from(tmp_path, capsys, monkeypatch):
    from prmsynth.testing import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    rows = [
        {**{k: v for k, v in ROW.items() if k != "id"}, "unique_id": f"test/algebra/{n}.json"}
        for n in (1, 2)
    ]
    source = tmp_path / "in.jsonl"
    out = tmp_path / "out.jsonl"
    argv = ["label", str(source), "--out", str(out), "--model", "openai/fake"]
    # Rows without an id column are refused, naming the field.
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(argv) == 2
    assert "field 'id': missing field" in capsys.readouterr().err
    source.write_text("".join(json.dumps(row) + "\n" for row in [rows[0], rows[0]]))
    assert main([*argv, "--id-column", "unique_id"]) == 2
    assert ":2: duplicate id 'test/algebra/1.json'" in capsys.readouterr().err
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with FakeOpenAIServer(responder=lambda request: "So the answer is \\boxed{4}.") as server:
        assert main([*argv, "--api-base", server.url, "--id-column", "unique_id"]) == 0
    labelled = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["unique_id"] for row in labelled] == ["test/algebra/1.json", "test/algebra/2.json"]
    assert all(row["status"] == "labelled" for row in labelled)
