"""A backend that cannot serve stops a command before its first question."""

from __future__ import annotations

import json
import socket

import pytest

from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer


@pytest.fixture
def seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "".join(
            json.dumps({"problem": f"What is {i} + 1?", "final_answer": str(i + 1)}) + "\n"
            for i in range(3)
        )
    )
    return path


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_missing_local_extra_stops_run_at_once_with_the_install_command(
    seeds, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("prmsynth.llm._local.GGUF_PACKAGE", "no_such_gguf_package")
    out = tmp_path / "out"
    assert main(["run", str(seeds), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("error:") == 1
    assert "pip install 'prmsynth[local]'" in error
    assert "--api-base" in error  # the other way out
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "label", "evolve"])
def test_unreachable_server_stops_every_model_command_before_writing(
    seeds, tmp_path, capsys, monkeypatch, command
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    out = tmp_path / ("out" if command == "run" else "out.jsonl")
    source = seeds
    if command == "label":
        source = tmp_path / "solutions.jsonl"
        row = {"id": "s1", "problem": "What is 1 + 1?", "steps": ["1 + 1 = 2."], "answer": "2"}
        source.write_text(json.dumps(row) + "\n")
    argv = [command, str(source), "--out", str(out), "--model", "openai/fake"]
    argv += ["--api-base", f"http://127.0.0.1:{_closed_port()}/v1", "--max-attempts", "1"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "cannot be reached" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({seeds.name, source.name})


def test_wrong_api_key_stops_run_with_one_message_that_never_shows_the_key(
    seeds, tmp_path, capsys, monkeypatch
):
    wrong = "sk-wrong0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    out = tmp_path / "out"
    with FakeOpenAIServer(api_key="sk-right0123456789abcdef") as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake"]
        status = main([*argv, "--api-base", server.url])
        requests = server.requests
    assert status == 2
    error = capsys.readouterr().err
    assert "refused the API key" in error
    assert wrong not in error
    assert requests <= 2  # one probe (and at most one retry), not one per question
    assert not out.exists()


def test_working_server_passes_the_check_and_the_run_completes(
    seeds, tmp_path, capsys, monkeypatch
):
    key = "sk-right0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)  # as for a real provider
    out = tmp_path / "out"
    with FakeOpenAIServer(api_key=key) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake"]
        status = main([*argv, "--api-base", server.url, "--quiet", "--screen-rollouts", "2"])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["questions_done"] == 3
    # the labelling rule the search used is part of the run's identity
    assert json.loads((out / "run.json").read_text())["first_error_rule"]["name"] == "relative"


def test_overwrite_starts_with_an_empty_cache_of_its_own(seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake", "--quiet"]
        argv += ["--api-base", server.url, "--screen-rollouts", "2"]
        assert main(argv) == 0
        first = server.requests
        assert main([*argv, "--overwrite"]) == 0
        again = server.requests - first
    assert again == first  # every request sent again, none answered from the old cache
