"""What a command tells its user: logs (-v, -q, --log-file), Ctrl-C, exit status."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from prmsynth import LLMStepGenerator, Pipeline, Question, RequestLimiter
from prmsynth.cli import main
from prmsynth.cli._logging import command_logging
from prmsynth.testing import FakeOpenAIServer, ScriptedLLM, VirtualClock

from ..conftest import REPO_ROOT
from ..run.test_pipeline import scripted_pipeline
from ..search.test_search import BAD, GOOD, BoxedVerifier, planted_script

KEY = "sk-local0123456789abcdef"


def write_seeds(path, count):
    path.write_text(
        "".join(
            json.dumps({"problem": f"What is {i} + 1?", "final_answer": str(i + 1)}) + "\n"
            for i in range(count)
        )
    )
    return path


def run_argv(seeds, out, server, *more):
    model = ["--model", "openai/fake", "--api-base", server.url, "--screen-rollouts", "2"]
    return ["run", str(seeds), "--out", str(out), *model, *more]


def is_probe(body):
    return any("Reply with OK." in str(m.get("content")) for m in body.get("messages", []))


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def test_v_shows_each_retry_with_its_wait_and_reason_and_the_default_does_not(tmp_path, capsys):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 1)
    for verbosity in ([], ["-v"]):
        faults = [None, "rate_limit", "server_error"]  # the check passes, then two faults
        with FakeOpenAIServer(fault_sequence=faults, retry_after=0.01) as server:
            out = tmp_path / f"out{len(verbosity)}"
            assert main(run_argv(seeds, out, server, "--no-cache", *verbosity)) == 0
        error = capsys.readouterr().err
        retries = [line for line in error.splitlines() if "retrying in" in line]
        if verbosity:
            assert len(retries) == 2
            assert "info: openai/fake: attempt 1 of 5 failed, retrying in" in retries[0]
            assert "RateLimitError" in retries[0] and "the server asked for 0.0 s" in retries[0]
            assert "attempt 2 of 5 failed" in retries[1] and "InternalServerError" in retries[1]
        else:
            assert retries == []


def test_failed_questions_are_logged_and_a_mostly_failed_run_exits_1(tmp_path, capsys):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 3)

    def refuse_question_0(body):
        return None if is_probe(body) or "What is 0 + 1?" not in json.dumps(body) else "bad_request"

    with FakeOpenAIServer(fault_rule=refuse_question_0) as server:
        assert main(run_argv(seeds, tmp_path / "a", server, "--quiet")) == 1
        captured = capsys.readouterr()
        # One of three failed: more than the default 0.1.
        assert "prmsynth run: 1 of 3 questions failed, more than --max-failed-fraction 0.1" in (
            captured.err
        )
        assert "most common reasons: 1x LLMError: openai/fake: BadRequestError" in captured.err
        assert "Give Feedback" not in captured.out + captured.err  # litellm's banner
        assert "Traceback" not in captured.err
        # Shown by default (a warning), hidden by -q (errors only).
        argv = run_argv(seeds, tmp_path / "b", server, "--max-failed-fraction", "0.5")
        assert main(argv) == 0
        error = capsys.readouterr().err
        assert "warning: question " in error and "failed: LLMError" in error
        argv = run_argv(seeds, tmp_path / "c", server, "--max-failed-fraction", "0.5", "-q")
        assert main(argv) == 0
        assert capsys.readouterr().err == ""


def test_max_failed_fraction_must_be_a_fraction(tmp_path, capsys):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 1)
    argv = ["run", str(seeds), "--out", str(tmp_path / "o"), "--max-failed-fraction", "1.5"]
    assert main(argv) == 2
    assert (
        "argument --max-failed-fraction: must be a finite number in [0, 1], got '1.5'"
        in capsys.readouterr().err
    )


def test_the_log_file_gets_timestamped_records_from_v_on_without_credentials(tmp_path):
    log_file = tmp_path / "run.log"
    stream = io.StringIO()
    logger = logging.getLogger("prmsynth.test")
    with command_logging(stream, log_file=str(log_file)):
        logger.info("a retry, for the file")
        logger.debug("detail, for -vv only")
        logger.warning("provider said: Incorrect API key provided: %s", KEY)
    text = log_file.read_text()
    assert " INFO prmsynth.test: a retry, for the file" in text
    assert "detail" not in text
    assert "Incorrect API key provided: ***" in text and KEY not in text
    assert stream.getvalue() == "warning: provider said: Incorrect API key provided: ***\n"
    # Everything is put back: no handler left behind.
    logger.warning("after the command")
    assert "after the command" not in log_file.read_text()
    with command_logging(io.StringIO(), verbose=2, log_file=str(log_file)):
        logger.debug("detail at -vv")
    assert "DEBUG prmsynth.test: detail at -vv" in log_file.read_text()


def test_an_unwritable_log_file_exits_2(tmp_path, capsys):
    argv = ["stats", str(tmp_path), "--log-file", str(tmp_path / "no" / "such" / "x.log")]
    assert main(argv) == 2
    assert "--log-file:" in capsys.readouterr().err


def test_a_run_logs_its_outcome_and_failures_to_the_log_file(tmp_path, capsys):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 2)

    def refuse_question_0(body):
        return None if is_probe(body) or "What is 0 + 1?" not in json.dumps(body) else "bad_request"

    log_file = tmp_path / "run.log"
    with FakeOpenAIServer(fault_rule=refuse_question_0) as server:
        argv = run_argv(seeds, tmp_path / "out", server, "-q", "--log-file", str(log_file))
        assert main([*argv, "--max-failed-fraction", "1"]) == 0
    assert capsys.readouterr().err == ""
    text = log_file.read_text()
    assert "WARNING prmsynth.run._pipeline: question " in text
    assert "INFO prmsynth.cli._run: done: 0 kept, 1 skipped" in text
    assert KEY not in text


class SlowLLM:
    """Answers like the scripted LLM, after a pause: a run that seems to hang."""

    def __init__(self, pause):
        self.pause = pause
        self.llm = ScriptedLLM(planted_script(GOOD, BAD))

    async def complete(self, messages, **options):
        await asyncio.sleep(self.pause)
        return await self.llm.complete(messages, **options)


def test_a_stall_logs_the_questions_in_flight(caplog):
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=SlowLLM(pause=0.3)),
        verifier=BoxedVerifier(),
        stall_seconds=0.05,
        concurrency=2,
    )
    questions = [Question(id=f"slow-{i}", text="Planted", reference_answer="5") for i in range(2)]
    with caplog.at_level(logging.WARNING, logger="prmsynth"):
        results = pipeline.run(questions)
    assert len(results) == 2
    stalls = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stall:")]
    assert stalls, "no stall was logged"
    assert "2 being searched: slow-" in stalls[0] and "slow-0" in stalls[0]


def test_a_pipeline_without_a_stall_watch_logs_no_stall(caplog):
    pipeline = scripted_pipeline(stall_seconds=None)
    with caplog.at_level(logging.WARNING, logger="prmsynth"):
        pipeline.run([Question(id="q", text="Planted", reference_answer="5")])
    assert not [r for r in caplog.records if "stall" in r.getMessage()]
    with pytest.raises(ValueError, match="stall_seconds must be > 0 or None"):
        scripted_pipeline(stall_seconds=0)


def test_a_long_rate_limit_wait_is_logged_at_info(caplog):
    clock = VirtualClock()  # time passes at once: the test waits for nothing
    limiter = RequestLimiter(requests_per_minute=6, clock=clock.time, sleep=clock.sleep)

    async def two_requests():
        for _ in range(2):
            await limiter.acquire()
            limiter.release()

    with caplog.at_level(logging.INFO, logger="prmsynth"):
        asyncio.run(two_requests())
    waits = [r for r in caplog.records if r.getMessage().startswith("rate limit:")]
    assert [r.levelno for r in waits] == [logging.INFO]
    assert waits[0].getMessage() == "rate limit: waiting 10.0 s (requests per minute: 6)"


def test_ctrl_c_reports_progress_and_the_resume_command_and_the_folder_resumes(tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 40)
    out = tmp_path / "out"
    with FakeOpenAIServer(latency=0.2) as server:
        argv = run_argv(seeds, out, server, "--concurrency", "1")
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENAI_API_KEY": KEY}
        process = subprocess.Popen(
            [sys.executable, "-m", "prmsynth", *argv],
            env=environment,
            stderr=subprocess.PIPE,
            text=True,
            # A shell starts background jobs with SIGINT ignored; the run needs the default.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        skipped = out / "skipped.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if skipped.exists() and skipped.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, error = process.communicate(timeout=60)
        assert process.returncode == 130, error
        assert "Traceback" not in error
        done = skipped.read_text().count("\n")
        assert 3 <= done < 40, "the run should have been interrupted mid-way"
        assert f"prmsynth run: interrupted: {done}/40 questions done (0 failed)" in error
        assert f"resume with:\n  prmsynth run --config {out / 'config.yaml'}" in error
        summary = json.loads((out / "summary.json").read_text())
        assert summary["complete"] is False and summary["questions_done"] == done

        assert main(["run", "--config", str(out / "config.yaml"), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["questions_resumed"] == done
    ids = [json.loads(line)["question_id"] for line in skipped.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 40  # each question exactly once
