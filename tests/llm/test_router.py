"""RouterLLM: several loopback servers behind one model name, through litellm.Router."""

from __future__ import annotations

import asyncio
import json

import pytest

from prmsynth import InputError, LLMError, RequestLimiter, RouterLLM
from prmsynth.llm._client import import_litellm
from prmsynth.llm._router import load_router_config
from prmsynth.testing import FakeOpenAIServer, FaultRates

SECRET_A = "sk-router-secret-a"
SECRET_B = "sk-router-secret-b"
FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "request_timeout": 2.0}


def write_yaml_config(path, servers, name="fake-group", settings=()):
    lines = ["model_list:"]
    for server, key in zip(servers, (SECRET_A, SECRET_B), strict=False):
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            "      model: openai/fake",
            f"      api_base: {server.url}",
            f"      api_key: {key}",
        ]
    lines += ["router_settings:", "  routing_strategy: simple-shuffle", "  num_retries: 7"]
    lines += [f"  {setting}" for setting in settings]
    path.write_text("\n".join(lines) + "\n")
    return path


def prompt(index):
    return [{"role": "user", "content": f"What is {index} + 1?"}]


def test_requests_are_spread_over_the_deployments(tmp_path):
    with (
        FakeOpenAIServer(responder=lambda r: "from A") as a,
        FakeOpenAIServer(responder=lambda r: "from B") as b,
    ):
        llm = RouterLLM.from_config(write_yaml_config(tmp_path / "router.yaml", [a, b]), **FAST)

        async def many():
            return await asyncio.gather(*(llm.complete(prompt(i), n=2) for i in range(30)))

        responses = asyncio.run(many())
    texts = {c.text for r in responses for c in r.completions}
    assert texts == {"from A", "from B"}
    assert a.requests + b.requests == 30 and a.requests > 0 and b.requests > 0
    assert all(len(r.completions) == 2 for r in responses)
    assert llm.model == "fake-group"


def test_our_retries_route_around_a_failing_server(tmp_path):
    with (
        FakeOpenAIServer(responder=lambda r: "healthy") as good,
        FakeOpenAIServer(faults=FaultRates(server_error=1.0)) as bad,
    ):
        llm = RouterLLM.from_config(
            write_yaml_config(tmp_path / "router.yaml", [good, bad]), max_attempts=6, **FAST
        )

        async def sequential():
            return [await llm.complete(prompt(i)) for i in range(20)]

        responses = asyncio.run(sequential())
    assert all(r.completions[0].text == "healthy" for r in responses)
    assert good.requests == 20
    assert 0 < bad.requests < 20  # tried, then cooled down by the Router


def test_router_retries_are_ours_alone(tmp_path):
    # The config asks for num_retries: 7; prmsynth overrides it with 0.
    with FakeOpenAIServer(faults=FaultRates(server_error=1.0)) as server:
        llm = RouterLLM.from_config(
            write_yaml_config(tmp_path / "router.yaml", [server]), max_attempts=3, **FAST
        )
        with pytest.raises(LLMError) as caught:
            asyncio.run(llm.complete(prompt(1)))
    assert server.requests == 3
    assert SECRET_A not in str(caught.value)


def test_keys_from_the_environment_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("PRMSYNTH_TEST_ROUTER_KEY", "sk-from-the-environment")
    with FakeOpenAIServer(faults=FaultRates(bad_request=1.0)) as server:
        config = {
            "model_list": [
                {
                    "model_name": "g",
                    "litellm_params": {
                        "model": "openai/fake",
                        "api_base": server.url,
                        "api_key": "os.environ/PRMSYNTH_TEST_ROUTER_KEY",
                    },
                }
            ]
        }
        path = tmp_path / "router.json"
        path.write_text(json.dumps(config))
        llm = RouterLLM.from_config(path, **FAST)
        assert "sk-from-the-environment" in llm.secrets
        assert "sk-from-the-environment" not in repr(llm)
        with pytest.raises(LLMError) as caught:
            asyncio.run(llm.complete(prompt(1)))
    assert "sk-from-the-environment" not in str(caught.value)
    assert server.requests == 1  # a bad request is not retried


def test_limiter_and_faults_through_the_router(tmp_path):
    limiter = RequestLimiter(max_concurrency=3)
    faults = FaultRates(rate_limit=0.1, truncated=0.1, empty_choices=0.05)
    with (
        FakeOpenAIServer(latency=0.02, faults=faults, seed=1) as a,
        FakeOpenAIServer(latency=0.02, faults=faults, seed=2) as b,
    ):
        llm = RouterLLM.from_config(
            write_yaml_config(tmp_path / "router.yaml", [a, b], settings=["cooldown_time: 0.2"]),
            limiter=limiter,
            max_attempts=8,
            **FAST,
        )

        async def many():
            return await asyncio.gather(*(llm.complete(prompt(i), n=2) for i in range(30)))

        responses = asyncio.run(many())
    assert all(len(r.completions) == 2 for r in responses)
    assert a.max_in_flight + b.max_in_flight <= 6 and limiter.max_in_flight <= 3
    assert any(c.finish_reason == "length" for r in responses for c in r.completions)


def test_no_litellm_globals_change(tmp_path):
    litellm = import_litellm()
    names = (
        "num_retries",
        "request_timeout",
        "api_base",
        "api_key",
        "callbacks",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
        "set_verbose",
        "drop_params",
    )
    before = {name: repr(getattr(litellm, name, None)) for name in names}
    with FakeOpenAIServer() as server:
        llm = RouterLLM.from_config(write_yaml_config(tmp_path / "r.yaml", [server]), **FAST)
        asyncio.run(llm.complete(prompt(1)))
    assert {name: repr(getattr(litellm, name, None)) for name in names} == before


def test_config_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_router_config(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("model_list: [unclosed\n")
    with pytest.raises(InputError, match="YAML"):
        load_router_config(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="JSON"):
        load_router_config(tmp_path / "bad.json")
    (tmp_path / "nolist.yaml").write_text("router_settings: {}\n")
    with pytest.raises(InputError, match="model_list"):
        load_router_config(tmp_path / "nolist.yaml")
    (tmp_path / "noname.yaml").write_text("model_list:\n  - litellm_params: {model: openai/x}\n")
    with pytest.raises(InputError, match="deployment 1"):
        load_router_config(tmp_path / "noname.yaml")
    two = tmp_path / "two.json"
    two.write_text(
        json.dumps(
            [
                {"model_name": "a", "litellm_params": {"model": "openai/x"}},
                {"model_name": "b", "litellm_params": {"model": "openai/y"}},
            ]
        )
    )
    with pytest.raises(InputError, match="several model names"):
        RouterLLM.from_config(two)
    with pytest.raises(InputError, match="no deployment named"):
        RouterLLM.from_config(two, model="c")
    assert RouterLLM.from_config(two, model="b").model == "b"


def test_all_deployments_cooling_down_is_waited_out(tmp_path):
    # Rate limits at both servers cool both down; the retry waits for the cooldown.  The
    # Router's cooldown runs on real time, so the waits are spent, and recorded to be checked.
    waits = []

    async def recorded_sleep(seconds):
        waits.append(seconds)
        await asyncio.sleep(seconds)

    with (
        FakeOpenAIServer(fault_sequence=["rate_limit"] * 2) as a,
        FakeOpenAIServer(fault_sequence=["rate_limit"] * 2) as b,
    ):
        config = write_yaml_config(
            tmp_path / "router.yaml", [a, b], settings=["cooldown_time: 0.3", "allowed_fails: 0"]
        )
        llm = RouterLLM.from_config(config, max_attempts=12, sleep=recorded_sleep, **FAST)
        response = asyncio.run(llm.complete(prompt(1)))
    assert len(response.completions) == 1
    assert a.requests + b.requests >= 3  # at least one cooldown was waited out
    # The wait that met "no deployments available" lasted the cooldown, not the short backoff.
    assert any(wait >= 0.3 for wait in waits), waits


def test_importing_the_llm_layer_does_not_import_litellm():
    import subprocess
    import sys

    code = (
        "import sys, prmsynth, prmsynth.llm._client, prmsynth.llm._cache, prmsynth.llm._ratelimit, "
        "prmsynth.llm._router, prmsynth.testing; print('litellm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_the_cache_keys_a_router_by_its_deployments_never_by_their_keys(tmp_path):
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        one = RouterLLM.from_config(write_yaml_config(tmp_path / "one.yaml", [a]), **FAST)
        two = RouterLLM.from_config(write_yaml_config(tmp_path / "two.yaml", [b]), **FAST)
    assert one.model == two.model and one.cache_identity() != two.cache_identity()
    assert a.url in one.cache_identity()
    assert not any(secret in one.cache_identity() for secret in one.secrets)


def test_every_credential_named_parameter_of_a_deployment_is_a_secret(tmp_path):
    # One secret-name rule (is_secret_name) decides, not a list of known parameter names.
    config = {
        "model_list": [
            {
                "model_name": "g",
                "litellm_params": {
                    "model": "openai/fake",
                    "api_base": "http://127.0.0.1:9/v1",
                    "azure_ad_token": "tok-0123456789abcdef",
                    "max_tokens": 64,
                },
            }
        ]
    }
    path = tmp_path / "router.json"
    path.write_text(json.dumps(config))
    llm = RouterLLM.from_config(path, **FAST)
    assert llm.secrets == ("tok-0123456789abcdef",)
    assert "tok-0123456789abcdef" not in llm.cache_identity()
    assert "max_tokens" in llm.cache_identity()  # a token count is no credential
