"""How a partial solution reaches the model: continued as its own reply, or quoted.

Through litellm against the loopback fake server: ``continue`` sends the
prefix as the start of the assistant's reply with the server's continuation
flags, ``quote`` quotes it in a user message, and ``auto`` probes the server
first and falls back to quoting (with one warning) when it restarts instead.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth import LLMStepGenerator, Question, RunFolder
from prmsynth.cli import main
from prmsynth.llm._continuation import (
    PROBE_PREFIX,
    PROBE_QUESTION,
    SERVER_FLAGS,
    continuation_request,
    continuation_route,
    judge_probe_reply,
)
from prmsynth.testing import FakeOpenAIServer, ScriptedLLM

SOLUTION = "2 + 3 = 5.\n\nThe answer is \\boxed{5}."
WRONG = "2 + 3 = 6.\n\nThe answer is \\boxed{6}."


def continues(body) -> bool:
    """Whether a request asks the server to continue its last (assistant) message."""
    messages = body.get("messages") or []
    return (
        bool(messages)
        and messages[-1].get("role") == "assistant"
        and body.get("continue_final_message") is True
        and body.get("add_generation_prompt") is False
    )


def continuing_server(request):
    """A vLLM-like server: continues a started reply, answers a question afresh."""
    if continues(request.body):
        prefix = request.messages[-1]["content"]
        if prefix.startswith("1, 2, 3"):
            return " 13, 14, 15, 16, 17, 18, 19, 20"
        return "The answer is \\boxed{5}."
    if request.messages[-1]["content"] == PROBE_QUESTION:
        return "1, 2, 3, 4, 5, 6, 7"
    # Whole solutions: right and wrong, so that questions are kept.
    return SOLUTION if request.sample_index % 2 == 0 else WRONG


def restarting_server(request):
    """A chat server that ignores a started reply and answers from the beginning."""
    last_user = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
    if last_user == PROBE_QUESTION:
        return "1, 2, 3, 4, 5, 6, 7, 8"
    return SOLUTION if request.sample_index % 2 == 0 else WRONG


@pytest.fixture
def seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "".join(
            json.dumps({"problem": f"What is 2 + 3? (#{i})", "final_answer": "5"}) + "\n"
            for i in range(2)
        )
    )
    return path


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")


def run_argv(seeds, out, server, *extra):
    return [
        "run",
        str(seeds),
        "--out",
        str(out),
        "--model",
        "openai/fake",
        "--api-base",
        server.url,
        "--screen-rollouts",
        "4",
        "--no-cache",
        "--quiet",
        *extra,
    ]


def prefixed_bodies(server):
    """The request bodies that carried a partial solution (not the probe, not whole solutions)."""
    return [
        body
        for body in server.bodies
        if len(body["messages"]) >= 3 or "Here are the first steps" in json.dumps(body)
    ]


def test_continue_mode_sends_the_prefix_as_the_reply_to_continue(tmp_path, seeds):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=continuing_server) as server:
        assert main(run_argv(seeds, out, server, "--prefix-mode", "continue")) == 0
    sent = prefixed_bodies(server)
    assert sent, "no partial solution was sent"
    for body in sent:
        assert continues(body)
        last = body["messages"][-1]
        assert last["content"].startswith("2 + 3 = 6.") and "prefix" not in last
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant"]
        assert "Here are the first steps" not in json.dumps(body)
    settings = RunFolder(out).settings()
    assert settings["prefix_mode"] == "continue"
    assert settings["pipeline"]["generator"]["prefix_mode"] == "continue"


def test_quote_mode_quotes_the_prefix_and_sends_no_probe(tmp_path, seeds):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=continuing_server) as server:
        assert main(run_argv(seeds, out, server, "--prefix-mode", "quote")) == 0
    assert not any(PROBE_PREFIX in json.dumps(body) for body in server.bodies)
    sent = prefixed_bodies(server)
    assert sent
    for body in sent:
        assert body["messages"][-1]["role"] == "user"
        assert "Here are the first steps" in body["messages"][-1]["content"]
        assert "continue_final_message" not in body
    assert RunFolder(out).settings()["prefix_mode"] == "quote"


def test_auto_continues_on_a_server_that_continues(tmp_path, seeds, capsys):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=continuing_server) as server:
        assert main(run_argv(seeds, out, server)) == 0
    assert "warning" not in capsys.readouterr().err
    assert sum(PROBE_PREFIX in json.dumps(body) for body in server.bodies) == 1
    assert all(continues(body) for body in prefixed_bodies(server))
    assert RunFolder(out).settings()["prefix_mode"] == "continue"


def test_auto_falls_back_to_quoting_with_one_warning_when_the_server_restarts(
    tmp_path, seeds, capsys
):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=restarting_server) as server:
        argv = [arg for arg in run_argv(seeds, out, server) if arg != "--quiet"]
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1
    assert "restarted the reply" in err and "quoted" in err
    assert all(not continues(body) for body in prefixed_bodies(server))
    assert RunFolder(out).settings()["prefix_mode"] == "quote"
    assert main(["stats", str(out)]) == 0
    assert "prefix mode" in capsys.readouterr().out


def test_continue_is_refused_before_any_work_when_the_server_restarts(tmp_path, seeds, capsys):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=restarting_server) as server:
        assert main(run_argv(seeds, out, server, "--prefix-mode", "continue")) == 2
    assert "does not continue a started reply" in capsys.readouterr().err
    assert not (out / "run.json").exists()


def test_continue_is_refused_for_an_api_that_cannot_continue(tmp_path):
    generator = LLMStepGenerator(llm=_hosted_openai(), prefix_mode="continue")
    with pytest.raises(ValueError, match="cannot continue a started reply"):
        asyncio.run(generator.resolved())


def _hosted_openai():
    from prmsynth import LiteLLMClient

    return LiteLLMClient(model="openai/gpt-4o-mini")


def test_a_resumed_run_with_another_prefix_mode_is_refused(tmp_path, seeds, capsys):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=continuing_server) as server:
        assert main(run_argv(seeds, out, server, "--prefix-mode", "continue")) == 0
        assert main(run_argv(seeds, out, server, "--prefix-mode", "quote")) == 2
    assert "prefix_mode" in capsys.readouterr().err


def test_label_records_the_prefix_mode_it_used(tmp_path):
    rows = tmp_path / "rows.jsonl"
    row = {"id": "a", "problem": "What is 2 + 3?", "steps": ["2 + 3 = 6.", "So 6."], "answer": "5"}
    rows.write_text(json.dumps(row) + "\n")
    out = tmp_path / "labels.jsonl"
    with FakeOpenAIServer(responder=continuing_server) as server:
        argv = ["label", str(rows), "--out", str(out), "--model", "openai/fake"]
        argv += ["--api-base", server.url, "--no-cache"]
        assert main(argv) == 0
    [labelled] = [json.loads(line) for line in out.read_text().splitlines()]
    assert labelled["prefix_mode"] == "continue"
    assert all(continues(body) for body in prefixed_bodies(server))


# -- each backend's dialect ----------------------------------------------------------------

PREFIX = [
    {"role": "user", "content": "Q"},
    {"role": "assistant", "content": "Step 1.\n\n", "prefix": True},
]


@pytest.mark.parametrize(
    ("model", "api_base", "route"),
    [
        ("hosted_vllm/Qwen/Qwen2.5-Math-7B-Instruct", None, "server-flag"),
        ("openai/served", "http://127.0.0.1:8000/v1", "server-flag"),
        ("ollama_chat/llama3", None, "prefill"),
        ("anthropic/claude-3-5-haiku-latest", None, "prefix-flag"),
        ("mistral/mistral-small-latest", None, "prefix-flag"),
        ("deepseek/deepseek-chat", None, "prefix-flag"),
        ("openai/gpt-4o-mini", None, None),
        ("gemini/gemini-2.0-flash", None, None),
    ],
)
def test_each_backend_is_asked_to_continue_in_its_own_dialect(model, api_base, route):
    assert continuation_route(model, api_base) == route
    if route is None:
        with pytest.raises(ValueError, match="cannot continue"):
            continuation_request(PREFIX, route, model=model)
        return
    sent, extra = continuation_request(PREFIX, route, model=model)
    last = sent[-1]
    assert last["role"] == "assistant" and last["content"].startswith("Step 1.")
    assert ("prefix" in last) == (route == "prefix-flag")  # litellm's own spelling
    assert extra == ({"extra_body": SERVER_FLAGS} if route == "server-flag" else {})
    if model.startswith("anthropic/"):
        assert last["content"] == "Step 1."  # Anthropic refuses trailing whitespace


def test_a_router_continues_only_when_every_deployment_can(tmp_path):
    from prmsynth import RouterLLM

    def router(models):
        config = tmp_path / "router.json"
        deployments = [
            {"model_name": "m", "litellm_params": {"model": model, "api_base": "http://h:1/v1"}}
            for model in models
        ]
        config.write_text(json.dumps(deployments))
        return RouterLLM.from_config(config)

    assert router(["hosted_vllm/a", "openai/b"]).prefix_continuation == "probe"
    assert router(["hosted_vllm/a", "anthropic/c"]).prefix_continuation == "unsupported"


def test_a_scripted_llm_that_says_it_continues_gets_the_prefix_as_its_reply():
    llm = ScriptedLLM(lambda request: "The answer is 5.", prefix_continuation="native")
    generator = asyncio.run(LLMStepGenerator(llm=llm).resolved())
    assert generator.prefix_mode == "continue"
    question = Question(id="q", text="2 + 3?", reference_answer="5")
    asyncio.run(generator.generate(question, ["2 + 3 = 5."], n=1))
    [(messages, _)] = llm.requests
    assert messages[-1] == {"role": "assistant", "content": "2 + 3 = 5.\n\n", "prefix": True}


@given(st.integers(min_value=14, max_value=10**6), st.sampled_from(["", " ", "\n", "Sure: "]))
def test_the_probe_accepts_only_a_reply_that_goes_on_from_13(number, lead):
    assert judge_probe_reply(f"{lead}13, 14, 15").continues
    assert not judge_probe_reply(f"{lead}1, 2, 3, 4").continues
    assert not judge_probe_reply(f"{lead}{number}, {number + 1}").continues


def test_a_passing_overload_during_the_probe_stops_the_run_instead_of_settling_on_quote(
    tmp_path, seeds, capsys
):
    # The check passes, then the probe meets 429s through every attempt.
    faults = [None, "rate_limit", "rate_limit"]
    out = tmp_path / "out"
    with FakeOpenAIServer(
        responder=continuing_server, fault_sequence=faults, retry_after=0.01
    ) as server:
        assert main(run_argv(seeds, out, server, "--max-attempts", "2")) == 2
    assert "the prefix-mode probe got no answer" in capsys.readouterr().err
    assert not (out / "run.json").exists()


def test_a_server_that_refuses_the_continuation_flags_is_quoted(tmp_path, seeds, capsys):
    def refuse_flags(body):
        return "bad_request" if "continue_final_message" in body else None

    out = tmp_path / "out"
    with FakeOpenAIServer(responder=continuing_server, fault_rule=refuse_flags) as server:
        argv = [arg for arg in run_argv(seeds, out, server) if arg != "--quiet"]
        assert main(argv) == 0
    assert "it refused a continued reply" in capsys.readouterr().err
    assert RunFolder(out).settings()["prefix_mode"] == "quote"
