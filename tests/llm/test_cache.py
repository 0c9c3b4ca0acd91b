"""CompletionCache and CachedLLM: reruns cost nothing, concurrent writers are safe."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import attrs
import pytest

from prmsynth import (
    CachedLLM,
    Completion,
    CompletionCache,
    LiteLLMClient,
    LLMResponse,
    LLMStepGenerator,
    OmegaPRM,
    Pipeline,
    Question,
    SamplingSettings,
    SearchSettings,
    tree_to_dict,
)
from prmsynth.llm._cache import request_fingerprint, sample_key
from prmsynth.llm._continuation import PROBE_QUESTION
from prmsynth.testing import FakeOpenAIServer, FaultRates, ScriptedLLM

SECRET = "sk-cache-secret-42"


def prompt(index):
    return [{"role": "user", "content": f"What is {index} + 1?"}]


def fake_client(server, **settings):
    return LiteLLMClient(
        model="openai/fake",
        api_base=server.url,
        api_key=SECRET,
        initial_backoff=0.01,
        max_backoff=0.05,
        request_timeout=2.0,
        **settings,
    )


def numbered(request):
    return f"sample {request.sample_index} seed {request.seed} request {request.request_number}"


def test_a_rerun_costs_zero_requests(tmp_path):
    path = tmp_path / "cache.sqlite"
    with FakeOpenAIServer(responder=numbered) as server:

        async def run_all(llm):
            return await asyncio.gather(
                *(llm.complete(prompt(index), n=3, seed=index) for index in range(6))
            )

        with CompletionCache(path) as cache:
            first = asyncio.run(run_all(CachedLLM(llm=fake_client(server), cache=cache)))
        assert server.requests == 6
        with CompletionCache(path) as cache:
            rerun_llm = CachedLLM(llm=fake_client(server), cache=cache)
            again = asyncio.run(run_all(rerun_llm))
            assert len(cache) == 18
        assert server.requests == 6  # nothing new was asked
    assert [r.completions for r in again] == [r.completions for r in first]
    assert all(r.prompt_tokens == 0 and r.cost == 0.0 for r in again)
    assert (rerun_llm.hits, rerun_llm.misses) == (18, 0)


def test_more_samples_than_cached_asks_only_for_the_missing_ones(tmp_path):
    backend = ScriptedLLM(numbered)
    with CompletionCache(tmp_path / "cache.sqlite") as cache:
        llm = CachedLLM(llm=backend, cache=cache, model="scripted")
        two = asyncio.run(llm.complete(prompt(1), n=2, seed=40))
        five = asyncio.run(llm.complete(prompt(1), n=5, seed=40))
    assert five.completions[:2] == two.completions
    assert len(five.completions) == 5
    assert backend.requests[1][1] == 3  # n = the three missing samples
    # The missing samples 2..4 are asked with seed 40 + 2, like the n fallback would.
    assert five.completions[2].text == "sample 0 seed 42 request 1"


def test_keys_depend_on_every_sampling_parameter_but_not_on_n():
    base = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 16, "seed": 1}
    fingerprint = request_fingerprint("m", prompt(1), **base)
    keys = {sample_key(fingerprint, 0)}
    for change in ({"temperature": 0.8}, {"top_p": 0.9}, {"max_tokens": 17}, {"seed": 2}):
        keys.add(sample_key(request_fingerprint("m", prompt(1), **(base | change)), 0))
    keys.add(sample_key(request_fingerprint("other", prompt(1), **base), 0))
    keys.add(sample_key(request_fingerprint("m", prompt(2), **base), 0))
    keys.add(sample_key(fingerprint, 1))
    assert len(keys) == 8
    # Equal values spelt differently give the same key.
    assert request_fingerprint("m", prompt(1), **(base | {"temperature": 0.7})) == fingerprint


def test_unseeded_repeats_get_fresh_samples_in_a_run_and_the_same_ones_on_rerun(tmp_path):
    path = tmp_path / "cache.sqlite"
    with FakeOpenAIServer(responder=numbered) as server:

        async def repeats(llm):
            return await asyncio.gather(*(llm.complete(prompt(0), n=2) for _ in range(10)))

        with CompletionCache(path) as cache:
            first = asyncio.run(repeats(CachedLLM(llm=fake_client(server), cache=cache)))
            assert len(cache) == 20  # ten identical requests took disjoint sample indices
        texts = sorted(c.text for r in first for c in r.completions)
        assert len(set(texts)) == 20 and server.requests == 10
        with CompletionCache(path) as cache:
            again = asyncio.run(repeats(CachedLLM(llm=fake_client(server), cache=cache)))
        assert server.requests == 10
    assert sorted(c.text for r in again for c in r.completions) == texts


def test_many_concurrent_writers_through_litellm(tmp_path):
    path = tmp_path / "cache.sqlite"
    faults = FaultRates(rate_limit=0.05, empty_choices=0.05, truncated=0.1)
    with FakeOpenAIServer(responder=numbered, faults=faults, seed=3) as server:
        with CompletionCache(path) as cache:
            llm = CachedLLM(llm=fake_client(server, max_attempts=8), cache=cache)

            async def many():
                return await asyncio.gather(
                    *(llm.complete(prompt(index), n=2, seed=index) for index in range(120))
                )

            responses = asyncio.run(many())
            stored = len(cache)
        requests = server.requests
        assert stored == sum(len(r.completions) for r in responses) == 240
        with CompletionCache(path) as cache:
            again = asyncio.run(
                asyncio.wait_for(_gather_all(CachedLLM(llm=fake_client(server), cache=cache)), 30)
            )
        assert server.requests == requests
    assert [r.completions for r in again] == [r.completions for r in responses]
    # Truncated answers are data, cached like any other.
    assert any(c.finish_reason == "length" for r in again for c in r.completions)


async def _gather_all(llm):
    return await asyncio.gather(
        *(llm.complete(prompt(index), n=2, seed=index) for index in range(120))
    )


def test_writers_in_several_threads_and_connections(tmp_path):
    path = tmp_path / "cache.sqlite"
    errors = []

    def writer(number):
        try:
            with CompletionCache(path) as cache:
                for batch in range(20):
                    cache.put_many(
                        "m",
                        [
                            (f"{number}-{batch}-{item}", Completion(text=f"{number}", n_tokens=1))
                            for item in range(10)
                        ],
                    )
                    cache.get_many([f"{number}-{batch}-0"])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with CompletionCache(path) as cache:
        assert len(cache) == 6 * 20 * 10
        assert cache.get_many(["3-4-5"])["3-4-5"].text == "3"


def test_first_write_wins_and_missing_keys_are_absent(tmp_path):
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        cache.put_many("m", [("k", Completion(text="first", finish_reason="stop"))])
        cache.put_many("m", [("k", Completion(text="second"))])
        found = cache.get_many(["k", "absent"])
    assert found == {"k": Completion(text="first", finish_reason="stop")}


def test_no_api_key_is_stored(tmp_path):
    path = tmp_path / "cache.sqlite"
    with FakeOpenAIServer() as server, CompletionCache(path) as cache:
        asyncio.run(CachedLLM(llm=fake_client(server), cache=cache).complete(prompt(1), n=2))
    for file in tmp_path.iterdir():
        assert SECRET.encode() not in file.read_bytes()
    with sqlite3.connect(path) as connection:
        models = {row[0] for row in connection.execute("SELECT model FROM completions")}
    assert models == {f'openai/fake {{"api_base": "{server.url}"}}'}


@attrs.define
class ShortLLM:
    """A backend that returns one completion fewer than asked."""

    calls: list = attrs.Factory(list)

    async def complete(
        self, messages, *, n=1, temperature=0.7, top_p=0.95, max_tokens=512, seed=None
    ):
        self.calls.append(n)
        return LLMResponse(completions=tuple(Completion(text=f"c{i}") for i in range(n - 1)))


def test_a_short_answer_is_stored_and_the_gap_asked_for_next_time(tmp_path):
    backend = ShortLLM()
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        llm = CachedLLM(llm=backend, cache=cache, model="short")
        first = asyncio.run(llm.complete(prompt(1), n=3, seed=0))
        second = asyncio.run(llm.complete(prompt(1), n=3, seed=0))
    assert len(first.completions) == 2
    assert backend.calls == [3, 1]
    assert len(second.completions) == 2  # asked for the one missing sample, got none


def test_a_closed_cache_refuses_to_work(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    cache.close()
    with pytest.raises(RuntimeError):
        cache.get_many(["k"])


def test_a_cached_pipeline_rerun_spends_nothing_and_gives_the_same_trees(tmp_path):
    path = tmp_path / "cache.sqlite"
    questions = [
        Question(id=f"q{index}", text=f"What is {index} + 2?", reference_answer="5")
        for index in range(6)
    ]

    def responder(request):
        right = (request.sample_index + (request.seed or 0)) % 2
        return f"Step one.\n\nStep two.\n\nThe answer is \\boxed{{{5 if right else 4}}}."

    def run_once(server):
        with CompletionCache(path) as cache:
            llm = CachedLLM(llm=fake_client(server), cache=cache)
            pipeline = Pipeline(
                generator=LLMStepGenerator(llm=llm, sampling=SamplingSettings(seed=1)),
                policy=OmegaPRM(settings=SearchSettings(screen_rollouts=4, max_branches=12)),
            )
            try:
                return pipeline.run(questions)
            finally:
                pipeline.verifier.close()

    with FakeOpenAIServer(responder=responder) as server:
        first = run_once(server)
        spent = server.requests
        again = run_once(server)
        # Nothing but the prefix-mode probe, which no cache may answer.
        asked = server.bodies[spent:]
        assert [body["messages"][0]["content"] for body in asked] == [PROBE_QUESTION]
    assert spent > 0
    assert [r.status for r in again] == [r.status for r in first]
    assert "kept" in [r.status for r in first]
    assert [tree_to_dict(r.tree) for r in again] == [tree_to_dict(r.tree) for r in first]


def test_two_servers_behind_one_model_name_never_share_answers(tmp_path):
    path = tmp_path / "cache.sqlite"
    with (
        FakeOpenAIServer(responder=lambda request: "The answer is \\boxed{1}.") as right,
        FakeOpenAIServer(responder=lambda request: "The answer is \\boxed{2}.") as wrong,
        CompletionCache(path) as cache,
    ):
        first = asyncio.run(CachedLLM(llm=fake_client(right), cache=cache).complete(prompt(1)))
        second = asyncio.run(CachedLLM(llm=fake_client(wrong), cache=cache).complete(prompt(1)))
        requests = wrong.requests
    assert requests == 1  # the second server was asked, not answered from the first's cache
    assert first.completions[0].text != second.completions[0].text


def test_call_options_that_change_the_model_key_the_cache_but_secrets_never_do():
    plain = LiteLLMClient(model="openai/m")
    assert plain.cache_identity() == "openai/m"  # caches of earlier runs stay valid
    with_options = LiteLLMClient(model="openai/m", options={"extra_body": {"lora": "ckpt-2"}})
    assert "ckpt-2" in with_options.cache_identity()
    keyed = LiteLLMClient(model="openai/m", options={"api_key": "sk-secret123456789"})
    assert "sk-secret" not in keyed.cache_identity()
