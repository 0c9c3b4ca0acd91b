"""LiteLLMClient through the real litellm, offline: mock responses, a closed loopback port,
and a loopback OpenAI-compatible server (FakeOpenAIServer) that injects faults."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import textwrap
from types import MappingProxyType

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth import (
    LiteLLMClient,
    LLMError,
    Pipeline,
    Question,
    RequestLimiter,
    RetryPolicy,
    SamplingSettings,
    SearchSettings,
)
from prmsynth.llm._client import (
    REFILL_ROUNDS,
    _split_tokens,
    import_litellm,
    is_retryable,
    retry_after_seconds,
)
from prmsynth.testing import FakeOpenAIServer, FaultRates, VirtualClock

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
        initial_backoff=0.01,  # connection refused is retried: keep the retries quick
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
        from prmsynth.llm._client import import_litellm
        import_litellm()
        print(os.environ["LITELLM_LOCAL_MODEL_COST_MAP"])
        """
    )
    environment = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )
    assert run.stdout.strip() == "True", run.stderr


# ---------------------------------------------------------------------------
# Through litellm against a real HTTP server on 127.0.0.1 (FakeOpenAIServer).
# ---------------------------------------------------------------------------

SECRET = "sk-test-secret-0123456789"


def all_litellm_globals(litellm):
    """Module settings a client could be tempted to assign (and callback lists)."""
    names = (
        "api_base",
        "api_key",
        "openai_key",
        "drop_params",
        "set_verbose",
        "num_retries",
        "request_timeout",
        "max_retries",
        "suppress_debug_info",
        "cache",
        "callbacks",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
        "input_callback",
        "disable_aiohttp_transport",
    )
    return {name: repr(getattr(litellm, name, None)) for name in names} | {
        "custom_provider_map": repr(list(litellm.custom_provider_map))
    }


def fake_client(server, **settings):
    # The waits between attempts pass on virtual time: a test never sleeps them.
    retry = {"initial_backoff": 0.01, "max_backoff": 0.05, "sleep": VirtualClock().sleep}
    settings = {
        "model": "openai/fake",
        "api_base": server.url,
        "api_key": SECRET,
        "request_timeout": 1.0,
        **({} if "retry" in settings else retry),
        **settings,
    }
    return LiteLLMClient(**settings)


def run(coroutine):
    return asyncio.run(coroutine)


def test_retries_succeed_after_rate_limits_and_server_errors():
    with FakeOpenAIServer(fault_sequence=["rate_limit", "server_error", "rate_limit"]) as server:
        response = run(fake_client(server).complete(MESSAGES, n=2))
    assert len(response.completions) == 2
    assert server.requests == 4
    assert dict(server.faults_served) == {"rate_limit": 2, "server_error": 1}
    assert response.prompt_tokens > 0 and response.completion_tokens > 0


def test_retry_after_is_honoured_and_capped():
    # The waits are checked on virtual time: exact, whatever the machine's load.
    clock = VirtualClock()
    with FakeOpenAIServer(fault_sequence=["rate_limit"], retry_after=0.4) as server:
        run(fake_client(server, max_backoff=1.0, sleep=clock.sleep).complete(MESSAGES))
    assert clock.slept == [0.4]  # the server's hint beats a shorter jittered backoff
    clock = VirtualClock()
    with FakeOpenAIServer(fault_sequence=["rate_limit"], retry_after=60) as server:
        run(fake_client(server, max_backoff=0.1, sleep=clock.sleep).complete(MESSAGES))
    assert clock.slept == [0.1]  # capped at max_backoff


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    clock = VirtualClock()
    faults = ["server_error"] * 4
    with FakeOpenAIServer(fault_sequence=faults) as server:
        client = fake_client(
            server, initial_backoff=1.0, max_backoff=5.0, max_attempts=5, sleep=clock.sleep
        )
        run(client.complete(MESSAGES))
    assert len(clock.slept) == 4
    for attempt, waited in enumerate(clock.slept, start=1):
        assert 0.0 <= waited <= min(5.0, 2.0 ** (attempt - 1))


def test_a_hang_past_the_timeout_is_retried_then_fails_with_llm_error():
    clock = VirtualClock()
    with FakeOpenAIServer(fault_sequence=["hang"] * 3, hang_seconds=10) as server:
        client = fake_client(server, request_timeout=0.5, max_attempts=3, sleep=clock.sleep)
        with pytest.raises(LLMError) as caught:
            run(client.complete(MESSAGES))
    assert server.requests == 3 and len(clock.slept) == 2  # a wait between attempts
    assert "Timeout" in str(caught.value) and "after 3 attempts" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_hang_then_an_answer_succeeds():
    with FakeOpenAIServer(fault_sequence=["hang"], hang_seconds=10) as server:
        response = run(fake_client(server, request_timeout=0.5).complete(MESSAGES))
    assert [c.finish_reason for c in response.completions] == ["stop"]
    assert server.requests == 2


def test_malformed_json_is_retried_and_never_escapes_as_another_error():
    with FakeOpenAIServer(fault_sequence=["malformed"]) as server:
        response = run(fake_client(server).complete(MESSAGES))
    assert len(response.completions) == 1 and server.requests == 2
    with FakeOpenAIServer(faults=FaultRates(malformed=1.0)) as server:
        with pytest.raises(LLMError):
            run(fake_client(server, max_attempts=2).complete(MESSAGES))
    assert server.requests == 2


def test_a_bad_request_is_not_retried():
    with FakeOpenAIServer(faults=FaultRates(bad_request=1.0)) as server:
        with pytest.raises(LLMError) as caught:
            run(fake_client(server).complete(MESSAGES))
    assert server.requests == 1
    assert "BadRequestError" in str(caught.value) and SECRET not in str(caught.value)


def test_server_errors_exhaust_the_attempts_without_showing_the_key():
    with FakeOpenAIServer(faults=FaultRates(server_error=1.0)) as server:
        with pytest.raises(LLMError) as caught:
            run(fake_client(server, max_attempts=4).complete(MESSAGES))
    assert server.requests == 4
    assert "InternalServerError" in str(caught.value) and SECRET not in str(caught.value)
    assert "after 4 attempts" in str(caught.value)


def test_empty_choices_are_asked_for_again_a_bounded_number_of_times():
    with FakeOpenAIServer(fault_sequence=["empty_choices"]) as server:
        response = run(fake_client(server).complete(MESSAGES, n=3, seed=10))
    assert len(response.completions) == 3
    assert server.requests == 4  # one empty answer, then the three samples one by one
    assert sorted(body.get("seed") for body in server.bodies[1:]) == [10, 11, 12]
    with FakeOpenAIServer(faults=FaultRates(empty_choices=1.0)) as server:
        response = run(fake_client(server).complete(MESSAGES, n=2))
    assert response.completions == ()  # data, not an exception
    assert server.requests == 1 + REFILL_ROUNDS * 2


def test_truncated_answers_come_back_as_data():
    with FakeOpenAIServer(faults=FaultRates(truncated=1.0)) as server:
        response = run(fake_client(server).complete(MESSAGES, n=2))
    assert [c.finish_reason for c in response.completions] == ["length", "length"]
    assert all(c.text for c in response.completions)
    assert server.requests == 1


def test_null_content_is_empty_text():
    with FakeOpenAIServer(responder=lambda request: None) as server:
        response = run(fake_client(server).complete(MESSAGES))
    assert [c.text for c in response.completions] == [""]


def test_a_provider_that_ignores_n_gets_parallel_single_requests():
    with FakeOpenAIServer(honour_n=False) as server:
        client = fake_client(server)
        first = run(client.complete(MESSAGES, n=4, seed=3))
        assert len(first.completions) == 4 and server.requests == 4
        second = run(client.complete(MESSAGES, n=4, seed=3))
        # Known to ignore n: straight to four single requests.
        assert len(second.completions) == 4 and server.requests == 8
    assert sorted(body.get("seed") for body in server.bodies[4:]) == [3, 4, 5, 6]
    assert all("n" not in body for body in server.bodies[4:])


def test_n_is_one_request_where_the_provider_honours_it():
    with FakeOpenAIServer() as server:
        response = run(fake_client(server).complete(MESSAGES, n=8))
    assert len(response.completions) == 8 and server.requests == 1
    assert server.bodies[0]["n"] == 8


def test_the_concurrency_limit_holds_across_clients_sharing_a_limiter():
    limiter = RequestLimiter(max_concurrency=3)
    with FakeOpenAIServer(latency=0.05) as server:
        one = fake_client(server, limiter=limiter)
        other = fake_client(server, limiter=limiter)

        async def many():
            return await asyncio.gather(
                *(
                    client.complete([{"role": "user", "content": f"q{index}"}])
                    for index in range(12)
                    for client in (one, other)
                )
            )

        responses = run(many())
    assert len(responses) == 24
    assert server.max_in_flight <= 3 and limiter.max_in_flight == 3
    assert limiter.in_flight == 0 and limiter.n_requests == 24


def test_retries_under_faults_at_a_set_rate_never_exceed_the_limit():
    limiter = RequestLimiter(max_concurrency=4)
    faults = FaultRates(rate_limit=0.1, server_error=0.1, malformed=0.05, truncated=0.1)
    with FakeOpenAIServer(latency=0.01, faults=faults, seed=1) as server:
        client = fake_client(server, limiter=limiter, max_attempts=8)

        async def many():
            return await asyncio.gather(
                *(client.complete([{"role": "user", "content": f"q{i}"}], n=2) for i in range(40))
            )

        responses = run(many())
    assert all(len(response.completions) == 2 for response in responses)
    assert server.max_in_flight <= 4
    assert sum(server.faults_served.values()) > 0


def test_cost_comes_from_the_offline_price_map():
    with FakeOpenAIServer() as server:
        priced = run(fake_client(server, model="openai/gpt-4o-mini").complete(MESSAGES, n=2))
        unpriced = run(fake_client(server).complete(MESSAGES))
    assert priced.cost > 0.0
    assert unpriced.cost == 0.0


def test_no_litellm_global_changes_after_calls_with_retries():
    litellm = import_litellm()
    before = all_litellm_globals(litellm)
    with FakeOpenAIServer(
        fault_sequence=["rate_limit", "hang", "malformed"], hang_seconds=5
    ) as server:
        run(fake_client(server, request_timeout=0.5).complete(MESSAGES, n=2))
    assert all_litellm_globals(litellm) == before


def test_retry_classification():
    litellm = import_litellm()
    assert is_retryable(litellm, litellm.RateLimitError("x", llm_provider="openai", model="m"))
    assert is_retryable(litellm, litellm.Timeout("x", model="m", llm_provider="openai"))
    assert is_retryable(litellm, litellm.APIError(502, "x", llm_provider="openai", model="m"))
    assert not is_retryable(litellm, litellm.APIError(418, "x", llm_provider="openai", model="m"))
    assert not is_retryable(litellm, litellm.BadRequestError("x", model="m", llm_provider="openai"))
    assert not is_retryable(litellm, ValueError("not an API error"))


def test_retry_after_in_milliseconds_and_as_a_date():
    class Millis(Exception):
        headers = MappingProxyType({"retry-after-ms": "250"})

    class Dated(Exception):
        headers = MappingProxyType({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    assert retry_after_seconds(Millis()) == 0.25
    assert retry_after_seconds(Dated()) == 0.0  # in the past


def test_backoff_is_full_jitter_from_the_client_seed():
    one = LiteLLMClient(model="openai/x", initial_backoff=1.0, max_backoff=4.0, jitter_seed=5)
    same = LiteLLMClient(model="openai/x", initial_backoff=1.0, max_backoff=4.0, jitter_seed=5)
    delays = [one._backoff(attempt, ValueError()) for attempt in range(1, 8)]
    assert delays == [same._backoff(attempt, ValueError()) for attempt in range(1, 8)]
    assert all(
        0.0 <= delay <= min(4.0, 2.0 ** (attempt - 1)) for attempt, delay in enumerate(delays, 1)
    )


def test_a_retry_policy_without_jitter_waits_the_exponential_ceiling():
    clock = VirtualClock()
    policy = RetryPolicy(
        max_attempts=4, initial_backoff=1.0, max_backoff=3.0, jitter=False, sleep=clock.sleep
    )
    with FakeOpenAIServer(fault_sequence=["server_error"] * 3) as server:
        client = fake_client(server, retry=policy)
        response = run(client.complete(MESSAGES))
    assert len(response.completions) == 1 and server.requests == 4
    assert clock.slept == [1.0, 2.0, 3.0]  # 1, 2, then 4 capped at max_backoff
    assert clock.time() == 6.0


def test_retry_on_decides_which_errors_are_tried_again():
    clock = VirtualClock()
    never = RetryPolicy(retry_on=lambda error: False, sleep=clock.sleep)
    with FakeOpenAIServer(fault_sequence=["server_error"]) as server:
        with pytest.raises(LLMError):
            run(fake_client(server, retry=never).complete(MESSAGES))
    assert server.requests == 1 and clock.slept == []
    always = RetryPolicy(retry_on=lambda error: True, max_attempts=2, sleep=clock.sleep)
    with FakeOpenAIServer(fault_sequence=["bad_request"]) as server:
        run(fake_client(server, retry=always).complete(MESSAGES))
    assert server.requests == 2 and len(clock.slept) == 1  # even a 400, when the policy says so


def test_the_old_retry_fields_are_aliases_of_the_policy():
    client = LiteLLMClient(model="openai/x", max_attempts=3, initial_backoff=0.5, jitter_seed=7)
    assert client.retry == RetryPolicy(max_attempts=3, initial_backoff=0.5, seed=7)
    assert (client.max_attempts, client.initial_backoff, client.jitter_seed) == (3, 0.5, 7)
    assert client.max_backoff == RetryPolicy().max_backoff
    # A new policy replaces the old one whole; an old name still overrides one field.
    assert attrs.evolve(client, retry=RetryPolicy(max_attempts=2)).max_attempts == 2
    assert attrs.evolve(client, max_backoff=9.0).retry == RetryPolicy(
        max_attempts=3, initial_backoff=0.5, max_backoff=9.0, seed=7
    )
    with pytest.raises(ValueError, match="max_attempts"):
        LiteLLMClient(model="openai/x", retry=RetryPolicy(max_attempts=0))


def test_a_dated_retry_after_is_measured_from_the_policy_clock():
    class Dated(Exception):
        headers = MappingProxyType({"Retry-After": "Thu, 01 Jan 1970 00:01:00 GMT"})

    assert RetryPolicy(clock=lambda: 45.0).retry_after(Dated()) == 15.0
    assert RetryPolicy(clock=lambda: 90.0).retry_after(Dated()) == 0.0  # already past


@given(
    attempt=st.integers(min_value=1, max_value=2000),
    initial=st.floats(min_value=0.0, max_value=100.0),
    cap=st.floats(min_value=0.0, max_value=1000.0),
    hinted=st.none() | st.floats(min_value=0.0, max_value=1e6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_backoff_stays_under_its_ceiling_and_repeats_with_its_seed(
    attempt, initial, cap, hinted, seed
):
    policy = RetryPolicy(initial_backoff=initial, max_backoff=cap, seed=seed)
    delay = policy.backoff(attempt, hinted=hinted)
    assert 0.0 <= delay <= cap
    assert delay <= max(policy.ceiling(attempt), min(hinted or 0.0, cap))
    assert policy.ceiling(attempt) <= min(cap, initial * 2.0 ** min(attempt - 1, 1023))
    assert delay == policy.backoff(attempt, hinted=hinted)  # the same seed, the same wait


# -- a whole pipeline run over faults -----------------------------------------


def solution_responder(request):
    """Right or wrong answers, fixed by the prompt, seed and sample, so screening is mixed."""
    digest = hashlib.sha256(f"{request.prompt}|{request.seed}|{request.sample_index}".encode())
    answer = 5 if digest.digest()[0] % 2 else 6
    if digest.digest()[1] % 3 == 0:
        return f"\\boxed{{{answer}}}"
    return f"Step 1: read the question.\n\nStep 2: add.\n\nThe answer is \\boxed{{{answer}}}."


def fail_marked_questions(body):
    prompt = " ".join(str(message.get("content")) for message in body.get("messages", []))
    return "bad_request" if "[always fails]" in prompt else None


def test_pipeline_from_model_over_faults_accounts_for_every_question():
    questions = [
        Question(
            id=f"q{index}",
            text=f"Question {index}: what is 2 + 3?"
            + (" [always fails]" if index in (3, 11) else ""),
            reference_answer="5",
        )
        for index in range(20)
    ]
    faults = FaultRates(
        rate_limit=0.05,
        server_error=0.05,
        hang=0.02,
        malformed=0.03,
        empty_choices=0.03,
        truncated=0.05,
    )
    with FakeOpenAIServer(
        responder=solution_responder,
        faults=faults,
        fault_rule=fail_marked_questions,
        seed=7,
        hang_seconds=10,
    ) as server:
        pipeline = Pipeline.from_model(
            "openai/fake",
            api_base=server.url,
            api_key=SECRET,
            sampling=SamplingSettings(seed=0, max_tokens=64),
            search=SearchSettings(screen_rollouts=4, num_branches=2, max_search=2, max_branches=12),
            llm_options={"timeout": 1.0},
            concurrency=8,
        )
        try:
            results = pipeline.run(questions)
        finally:
            pipeline.verifier.close()
    assert [result.question.id for result in results] == [question.id for question in questions]
    statuses = {result.question.id: result.status for result in results}
    assert statuses["q3"] == statuses["q11"] == "failed"
    for result in results:
        assert result.status in ("kept", "skipped", "failed")
        if result.status == "failed":
            assert "LLMError" in result.reason and SECRET not in result.reason
    assert sum(status == "kept" for status in statuses.values()) >= 5
    assert server.faults_served["bad_request"] >= 2
    assert sum(server.faults_served.values()) > 2
