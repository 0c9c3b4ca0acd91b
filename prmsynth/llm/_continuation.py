"""Continuing a partial reply: which backends can, how each is asked, and the probe.

A step's Monte Carlo value is defined (OmegaPRM, Math-Shepherd) as the chance
that the policy, *continuing its own partial solution*, reaches the answer.
So the step prefix should be the start of the assistant's reply, which the
model continues, not text quoted in a new user message (a chat model asked
"here is a partial solution, continue it" often re-solves the problem or
repairs the quoted mistake, and a wrong step keeps a high value).

A request asks for a continuation the way litellm spells it: its last message
is ``{"role": "assistant", "content": PREFIX, "prefix": True}``.  Each backend
is then asked in its own dialect (`continuation_request`):

* ``prefix-flag``: Anthropic (assistant prefill), Mistral and DeepSeek (their
  ``prefix`` flag); litellm translates the message itself.
* ``server-flag``: vLLM, SGLang and llama.cpp's server (any OpenAI-compatible
  server given by ``--api-base``): the assistant message, with
  ``continue_final_message`` on and ``add_generation_prompt`` off.
* ``prefill``: Ollama and the embedded model: a trailing assistant message is
  continued as it is.

Hosted chat APIs with no such feature (OpenAI, Azure, Gemini, ...) have no
route; they get the prefix quoted.  Whether a server really continues is
checked once before a run by `probe_continuation`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from prmsynth._errors import redact_secrets

#: How a partial solution reaches the model: the names of ``--prefix-mode``.
PrefixMode = Literal["auto", "continue", "quote"]
PREFIX_MODES: tuple[str, ...] = ("auto", "continue", "quote")
#: The first names of the two concrete modes, still accepted.
PREFIX_MODE_ALIASES = {"assistant": "continue", "user": "quote"}

#: How a backend is asked to continue the last assistant message.
ContinuationRoute = Literal["prefix-flag", "server-flag", "prefill"]

#: What an LLM says of itself through ``prefix_continuation``: it continues by
#: construction (``native``), may continue once a probe shows it does
#: (``probe``), or cannot (``unsupported``).
PrefixContinuation = Literal["native", "probe", "unsupported"]

#: litellm providers and how each continues a reply.
_PROVIDER_ROUTES: dict[str, ContinuationRoute] = {
    "anthropic": "prefix-flag",
    "mistral": "prefix-flag",
    "codestral": "prefix-flag",
    "deepseek": "prefix-flag",
    "hosted_vllm": "server-flag",
    "vllm": "server-flag",
    "sglang": "server-flag",
    "llamafile": "server-flag",
    "lm_studio": "server-flag",
    "ollama": "prefill",
    "ollama_chat": "prefill",
}
#: Flags of the ``server-flag`` route (vLLM's and SGLang's chat API).
SERVER_FLAGS = {"continue_final_message": True, "add_generation_prompt": False}


def normalize_prefix_mode(mode: str) -> str:
    """A ``--prefix-mode`` value in its current name (the first names still work).

    >>> normalize_prefix_mode("assistant"), normalize_prefix_mode("quote")
    ('continue', 'quote')
    >>> normalize_prefix_mode("prefill")
    Traceback (most recent call last):
    ...
    ValueError: prefix_mode must be one of auto, continue, quote; got 'prefill'
    """
    name = PREFIX_MODE_ALIASES.get(mode, mode)
    if name not in PREFIX_MODES:
        raise ValueError(f"prefix_mode must be one of {', '.join(PREFIX_MODES)}; got {mode!r}")
    return name


def continuation_route(model: str, api_base: str | None = None) -> ContinuationRoute | None:
    """How the litellm model string ``model`` (served at ``api_base``) continues a
    reply, or None where it cannot.

    An ``openai/`` model at a server of your own (``api_base``) is taken for an
    OpenAI-compatible server (vLLM, SGLang, llama.cpp); OpenAI's own API
    cannot continue a reply.

    >>> continuation_route("hosted_vllm/Qwen/Qwen2.5-Math-7B-Instruct")
    'server-flag'
    >>> continuation_route("openai/qwen", "http://127.0.0.1:8000/v1")
    'server-flag'
    >>> continuation_route("openai/gpt-4o-mini") is None
    True
    >>> continuation_route("anthropic/claude-3-5-haiku-latest"), continuation_route("claude-3-opus")
    ('prefix-flag', 'prefix-flag')
    """
    provider, _, name = model.partition("/")
    if not name:  # a bare name: litellm infers the provider
        return "prefix-flag" if model.startswith("claude") else None
    if provider in _PROVIDER_ROUTES:
        return _PROVIDER_ROUTES[provider]
    if provider in ("openai", "openai_like", "text-completion-openai") and api_base:
        return "server-flag"
    return None


def asks_continuation(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the last message is an assistant prefix to continue."""
    return (
        bool(messages)
        and messages[-1].get("role") == "assistant"
        and bool(messages[-1].get("prefix"))
    )


def continuation_request(
    messages: Sequence[Mapping[str, Any]], route: ContinuationRoute | None, *, model: str = ""
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``messages`` and the extra request arguments that ask ``route`` to continue
    the last assistant message.

    >>> messages = [{"role": "user", "content": "Q"},
    ...             {"role": "assistant", "content": "Step 1.\\n\\n", "prefix": True}]
    >>> sent, extra = continuation_request(messages, "server-flag")
    >>> sent[-1], extra
    ({'role': 'assistant', 'content': 'Step 1.\\n\\n'}, {'extra_body': {'continue_final_message': True, 'add_generation_prompt': False}})
    >>> continuation_request(messages, "prefix-flag", model="anthropic/claude")[0][-1]["content"]
    'Step 1.'
    """  # noqa: E501
    sent = [dict(message) for message in messages]
    if not asks_continuation(sent):
        return sent, {}
    if route is None:
        raise ValueError(
            f"{model or 'this model'} cannot continue a partial reply; "
            "use prefix_mode 'quote' (--prefix-mode quote)"
        )
    last = sent[-1]
    if route == "prefix-flag":
        if model.startswith(("anthropic/", "claude")):
            # Anthropic refuses a final assistant message that ends in whitespace.
            last["content"] = str(last["content"]).rstrip()
        return sent, {}
    del last["prefix"]
    if route == "server-flag":
        return sent, {"extra_body": dict(SERVER_FLAGS)}
    return sent, {}


def prefix_continuation(llm: object) -> PrefixContinuation | None:
    """What ``llm`` says of its ability to continue a reply (its
    ``prefix_continuation`` attribute), None when it says nothing."""
    value = getattr(llm, "prefix_continuation", None)
    return value if value in ("native", "probe", "unsupported") else None


#: The probe: a reply started for the model, which a continuation finishes.
PROBE_QUESTION = "Count from 1 to 20, with the numbers separated by commas. Write nothing else."
PROBE_PREFIX = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
_NEXT_NUMBER = 13
_FIRST_INTEGER = re.compile(r"\d+")


@attrs.frozen(kw_only=True)
class ContinuationProbe:
    """What the probe saw: whether the model continued the started reply, and why not.

    >>> judge_probe_reply(" 13, 14, 15").continues
    True
    >>> judge_probe_reply("1, 2, 3, 4").reason
    'it restarted the reply instead of continuing it (it answered "1, 2, 3, 4")'
    """

    continues: bool
    reason: str | None = None
    reply: str = ""


def _quoted(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge_probe_reply(reply: str) -> ContinuationProbe:
    """A continuation of `PROBE_PREFIX` goes on with 13; a restart begins again at 1."""
    match = _FIRST_INTEGER.search(reply)
    first = int(match.group()) if match else None
    if first == _NEXT_NUMBER:
        return ContinuationProbe(continues=True, reply=reply)
    if first == 1:
        reason = f'it restarted the reply instead of continuing it (it answered "{_quoted(reply)}")'
    else:
        reason = f'it did not continue the started reply (it answered "{_quoted(reply)}")'
    return ContinuationProbe(continues=False, reason=reason, reply=reply)


def probe_messages() -> list[dict[str, Any]]:
    """The probe's request: a question and the start of its answer, to be continued."""
    return [
        {"role": "user", "content": PROBE_QUESTION},
        {"role": "assistant", "content": PROBE_PREFIX, "prefix": True},
    ]


async def probe_continuation(llm: Any) -> ContinuationProbe:
    """Ask ``llm`` to continue a started reply once (greedy, a few tokens) and judge it.

    An error (a server that refuses the continuation flags, say) is a failed
    probe, with the error as its reason; nothing is raised.  Give it the
    uncached client: a cached answer proves nothing about the server.
    """
    try:
        response = await llm.complete(probe_messages(), n=1, temperature=0.0, max_tokens=16, seed=0)
    except Exception as error:  # any refusal means: it cannot continue here
        cause = redact_secrets(f"{type(error).__name__}: {error}")
        return ContinuationProbe(continues=False, reason=f"it refused a continued reply ({cause})")
    reply = response.completions[0].text if response.completions else ""
    return judge_probe_reply(reply)
