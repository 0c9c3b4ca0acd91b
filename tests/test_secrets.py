"""No credential reaches a file or log prmsynth writes, whatever its source."""

from __future__ import annotations

import io
import json

from prmsynth import OmegaPRM, Question, RunFolder, SearchPolicy
from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer

from .test_pipeline import QUESTIONS, scripted_pipeline

CANARY = "canary7f3a9c2e5b1d4f60"  # not key-shaped: only knowing it as a credential finds it
KEY_SHAPED = "sk-proj-0123456789abcdefXYZ"


def leaks_under(folder, *logs):
    texts = [
        path.read_bytes().decode("utf-8", "replace") for path in folder.rglob("*") if path.is_file()
    ]
    return [secret for secret in (CANARY, KEY_SHAPED) if any(secret in t for t in (*texts, *logs))]


class EchoingPolicy(SearchPolicy):
    """A backend error that quotes the credentials, as providers' errors do."""

    async def search(self, question, *, generator, verifier):
        if question.id == "1":
            raise PermissionError(f"Incorrect API key provided: {CANARY} (also {KEY_SHAPED})")
        return await OmegaPRM().search(question, generator=generator, verifier=verifier)


def test_a_key_echoed_in_an_error_reaches_no_output_or_log(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    log = io.StringIO()
    out = tmp_path / "out"
    pipeline = scripted_pipeline(policy=EchoingPolicy())
    summary = RunFolder(out).run(pipeline, QUESTIONS[:3], run_info={"model": "m"}, log=log)
    assert summary["failed"] == 1 and "***" in summary["failures"][0]["reason"]
    assert leaks_under(out, log.getvalue(), json.dumps(summary)) == []


def test_a_refused_key_is_never_printed_or_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"problem": "What is 2 + 3?", "final_answer": "5"}) + "\n")
    with FakeOpenAIServer(api_key="sk-the-right-one-0123456789") as server:
        for command in ("run", "evolve"):
            argv = [command, str(seeds), "--out", str(tmp_path / command), "--quiet"]
            argv += ["--model", "openai/m", "--api-base", server.url]
            assert main(argv) != 0
    captured = capsys.readouterr()
    assert "API key" in captured.err
    assert leaks_under(tmp_path, captured.out, captured.err) == []


def test_record_text_quoting_a_credential_is_written_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    question = Question(id="q", text=f"Planted question {CANARY}", reference_answer="5")
    RunFolder(tmp_path).run(scripted_pipeline(), [question], run_info={"model": "m"})
    assert leaks_under(tmp_path) == []


def test_a_run_with_retries_logged_at_full_verbosity_writes_the_key_nowhere(
    tmp_path, monkeypatch, capsys
):
    from prmsynth.testing import FaultRates

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"problem": "What is 2 + 3?", "final_answer": "5"}) + "\n")
    out, log = tmp_path / "out", tmp_path / "run.log"
    faults = FaultRates(rate_limit=0.2, server_error=0.2)
    with FakeOpenAIServer(api_key=CANARY, faults=faults, seed=2) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/m", "--quiet"]
        argv += ["--api-base", server.url, "--screen-rollouts", "2", "-vv"]
        assert main([*argv, "--log-file", str(log)]) == 0, capsys.readouterr().err
        assert sum(server.faults_served.values()) > 0  # retries happened, and were logged
    captured = capsys.readouterr()
    assert (out / "cache.sqlite").exists() and log.read_text()
    assert leaks_under(tmp_path, captured.out, captured.err) == []
