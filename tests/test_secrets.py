"""No credential reaches a file or log prmsynth writes, whatever its source."""

from __future__ import annotations

import io
import json

from prmsynth import OmegaPRM, Question, RunFolder, SearchPolicy
from prmsynth._errors import is_secret_name
from prmsynth._io import dumps_line
from prmsynth.cli import main
from prmsynth.llm._client import without_secrets
from prmsynth.testing import FakeOpenAIServer

from .run.test_pipeline import QUESTIONS, scripted_pipeline

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


def test_an_innocent_variable_named_like_a_secret_changes_nothing_written(tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    RunFolder(plain).run(scripted_pipeline(), QUESTIONS, run_info={"model": "m"})
    # Values too common or too short to be credentials, named like them.
    monkeypatch.setenv("SORT_KEY", "question_id")
    monkeypatch.setenv("CACHE_TOKEN", "true")
    monkeypatch.setenv("LOOKUP_SECRET", "1234567890")
    innocent = tmp_path / "innocent"
    RunFolder(innocent).run(scripted_pipeline(), QUESTIONS, run_info={"model": "m"})
    for name in ("trees.jsonl", "skipped.jsonl", "flat.jsonl", "sft.jsonl", "dpo.jsonl"):
        assert (innocent / name).read_bytes() == (plain / name).read_bytes(), name
    assert "***" not in (innocent / "run.json").read_text()


def test_a_credential_is_taken_out_of_string_values_only_never_out_of_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    line = json.loads(dumps_line({CANARY: f"said {CANARY}", "n": 22, "list": [CANARY]}))
    assert line == {CANARY: "said ***", "n": 22, "list": ["***"]}


def test_one_rule_names_the_options_that_hold_credentials():
    options = {"max_tokens": 8, "api_key": "x", "aws_secret_access_key": "y", "hf-token": "z"}
    assert without_secrets(options) == {"max_tokens": 8}
    assert [is_secret_name(name) for name in ("vertex_credentials", "top_p", "tokens")] == [
        True,
        False,
        False,
    ]


def test_a_password_in_the_api_base_is_never_written_and_the_run_still_resumes(tmp_path):
    info = {"model": "m", "api_base": "http://me:pw-9f8e7d6c@127.0.0.1:8000/v1"}
    RunFolder(tmp_path).run(scripted_pipeline(), QUESTIONS[:2], run_info=info)
    summary = RunFolder(tmp_path).run(scripted_pipeline(), QUESTIONS, run_info=info)
    assert summary["complete"] and summary["questions_resumed"] == 2
    assert RunFolder(tmp_path).settings()["api_base"] == "http://me:***@127.0.0.1:8000/v1"
    assert "pw-9f8e7d6c" not in "".join(p.read_text() for p in tmp_path.glob("*.json*"))


def test_a_password_in_the_api_base_is_not_printed(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"problem": "What is 2 + 3?", "final_answer": "5"}\n')
    argv = ["run", str(seeds), "--out", str(tmp_path / "out"), "--model", "openai/m"]
    argv += ["--api-base", "http://me:pw-9f8e7d6c@127.0.0.1:9/v1", "--max-attempts", "1"]
    assert main(argv) == 2
    assert "pw-9f8e7d6c" not in capsys.readouterr().err
