"""LiteLLMClient through the real litellm, offline (mock responses, a closed loopback port)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from prmsynth import LiteLLMClient
from prmsynth._llm import LLMError, _split_tokens, import_litellm

MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


def litellm_globals(litellm):
    names = ("api_base", "api_key", "drop_params", "set_verbose", "num_retries", "request_timeout")
    return {name: getattr(litellm, name, None) for name in names} | {
        "custom_provider_map": list(litellm.custom_provider_map)
    }


def test_mock_response_round_trip_and_n_fallback():
    litellm = import_litellm()
    before = litellm_globals(litellm)
    client = LiteLLMClient(
        model="openai/gpt-4o-mini",
        api_key="sk-test",
        options={"mock_response": "The answer is \\boxed{5}."},
    )
    response = asyncio.run(client.complete(MESSAGES, n=3, max_tokens=16, seed=1))
    assert [c.text for c in response.completions] == ["The answer is \\boxed{5}."] * 3
    assert all(c.finish_reason == "stop" for c in response.completions)
    assert litellm_globals(litellm) == before  # nothing global was changed


def test_errors_never_show_the_api_key():
    client = LiteLLMClient(
        model="openai/some-model",
        api_base="http://127.0.0.1:9/v1",  # nothing listens on the discard port
        api_key="sk-very-secret-key",
        options={"num_retries": 0, "timeout": 5, "max_retries": 0},
    )
    with pytest.raises(LLMError) as caught:
        asyncio.run(client.complete(MESSAGES))
    assert "sk-very-secret-key" not in str(caught.value)
    assert "openai/some-model" in str(caught.value)


def test_token_split():
    assert _split_tokens(10, ["abc"]) == [10]
    assert _split_tokens(0, ["a", "b"]) == [None, None]
    assert _split_tokens(30, ["aa", "a"]) == [20, 10]


def test_price_map_download_is_disabled_when_the_user_did_not_choose():
    code = textwrap.dedent(
        """
        import os
        from prmsynth._llm import import_litellm
        import_litellm()
        print(os.environ["LITELLM_LOCAL_MODEL_COST_MAP"])
        """
    )
    environment = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )
    assert run.stdout.strip() == "True", run.stderr
