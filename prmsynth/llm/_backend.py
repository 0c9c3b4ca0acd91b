"""Building the run's LLM from its settings: client, limits, router, cache."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import attrs

from prmsynth._interfaces import LLM
from prmsynth.llm._cache import CachedLLM, CompletionCache
from prmsynth.llm._client import (
    DEFAULT_MODEL,
    LOCAL_PROVIDER,
    BackendUnavailable,
    LiteLLMClient,
    LLMError,
    import_litellm,
)
from prmsynth.llm._ratelimit import RequestLimiter
from prmsynth.llm._retry import RetryPolicy

# A rate or a timeout is a finite number above 0.
_POSITIVE = [attrs.validators.gt(0), attrs.validators.lt(math.inf)]


@attrs.frozen(kw_only=True)
class BackendSettings:
    """How the run reaches its model.

    ``concurrency`` bounds the requests in flight across all questions;
    ``requests_per_minute`` / ``tokens_per_minute`` are optional rate limits;
    ``cache_path`` (None for no cache) stores every completion so a rerun or a
    resumed run never pays twice; ``router_config`` spreads one model name
    over several deployments through litellm's Router.
    """

    model: str | None = None
    api_base: str | None = None
    concurrency: int = attrs.field(
        default=16,
        validator=attrs.validators.ge(1),
        metadata={"help": "requests in flight at once (all questions)"},
    )
    requests_per_minute: float | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_POSITIVE),
        metadata={"help": "requests per minute, at most"},
    )
    tokens_per_minute: float | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_POSITIVE),
        metadata={"help": "tokens per minute, at most"},
    )
    request_timeout: float = attrs.field(
        default=600.0,
        validator=_POSITIVE,
        metadata={"help": "seconds before a request is retried"},
    )
    max_attempts: int = attrs.field(
        default=5, validator=attrs.validators.ge(1), metadata={"help": "tries per request"}
    )
    router_config: str | None = attrs.field(
        default=None,
        metadata={
            "help": "litellm Router config (YAML or JSON model_list); --model names its model_name"
        },
    )
    cache_path: Path | None = None


def unpriced_models(settings: BackendSettings) -> list[str]:
    """The models of ``settings`` that litellm knows no price for: their cost
    would count as $0, so a budget in dollars could never bind.

    A router deployment priced in its ``litellm_params`` (``input_cost_per_token``,
    ``output_cost_per_token``) counts as priced; the embedded model never is.
    """

    if settings.router_config:
        from prmsynth.llm._router import load_router_config

        deployments = [
            deployment["litellm_params"]
            for deployment in load_router_config(settings.router_config)["model_list"]
            if settings.model is None or deployment["model_name"] == settings.model
        ]
    else:
        deployments = [{"model": settings.model or DEFAULT_MODEL}]
    litellm = import_litellm()
    unpriced = []
    for params in deployments:
        model = str(params.get("model"))
        if any(_price(params.get(key)) for key in _PRICE_KEYS):
            continue
        if model.startswith(LOCAL_PROVIDER + "/"):
            unpriced.append(model)
            continue
        try:
            info = litellm.get_model_info(model=model)
        except Exception:  # litellm raises for a model it has no entry for
            info = {}
        if not any(_price(info.get(key)) for key in _PRICE_KEYS):
            unpriced.append(model)
    return unpriced


_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")


def _price(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def judge_backend(settings: BackendSettings, model: str, api_base: str | None) -> BackendSettings:
    """The critic's backend: the run's limits and cache file, its own model and server."""
    return attrs.evolve(settings, model=model, api_base=api_base, router_config=None)


def build_llm(settings: BackendSettings, *, cache: Any = None) -> tuple[LLM, str, Any]:
    """The LLM for a run, its model name, and the cache to close at the end (or None).

    ``cache``: an open completion cache to share (a second model of the same
    run) instead of opening ``settings.cache_path``; the caller closes it.
    """

    limiter = RequestLimiter(
        max_concurrency=settings.concurrency,
        requests_per_minute=settings.requests_per_minute,
        tokens_per_minute=settings.tokens_per_minute,
    )
    client_settings: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=settings.max_attempts),
        "request_timeout": settings.request_timeout,
        "limiter": limiter,
    }
    llm: LLM
    if settings.router_config:
        from prmsynth.llm._router import RouterLLM

        llm = RouterLLM.from_config(settings.router_config, model=settings.model, **client_settings)
        model = llm.model
    else:
        model = settings.model or DEFAULT_MODEL
        llm = LiteLLMClient(model=model, api_base=settings.api_base, **client_settings)

    if cache is not None:
        return CachedLLM(llm=llm, cache=cache), model, None
    if settings.cache_path is not None:
        cache = CompletionCache(settings.cache_path)
        llm = CachedLLM(llm=llm, cache=cache)
    return llm, model, cache


#: The one-token request that checks a backend before the first question.
CHECK_PROMPT = "Reply with OK."

#: What a minimal request's failure most likely means, by litellm's error class.
_PROBE_ADVICE = (
    (
        "Missing credentials",
        "no API key is set: set the provider's key variable (for example OPENAI_API_KEY; "
        "a local server that checks no key accepts any value)",
    ),
    (
        "AuthenticationError",
        "the server refused the API key: set the provider's key variable "
        "(for example OPENAI_API_KEY) to a valid key",
    ),
    (
        "PermissionDeniedError",
        "the API key has no access to this model: check the key and --model",
    ),
    (
        "NotFoundError",
        "the server does not know this model or path: check --model and --api-base "
        "(an OpenAI-compatible server's base URL usually ends in /v1)",
    ),
    *(
        (name, "the server cannot be reached: is it running, and is --api-base right?")
        for name in ("APIConnectionError", "Connection error", "Connection refused")
    ),
    ("Timeout", "the server did not answer in time: is it running and not overloaded?"),
    (
        "RateLimitError",
        "the server kept refusing with 429 (rate-limited) through every attempt: wait, lower "
        "--concurrency or --rpm, or raise --max-attempts",
    ),
    *(
        (name, "the server failed (5xx) on every attempt: check its logs, or retry later")
        for name in ("InternalServerError", "ServiceUnavailableError", "BadGatewayError")
    ),
    (
        "BadRequestError",
        "the server rejected a minimal request: check --model (a litellm model string "
        "such as openai/gpt-4o-mini or hosted_vllm/NAME)",
    ),
)


def check_backend(settings: BackendSettings, *, timeout: float = 120.0) -> None:
    """Send one minimal request (one token) and raise if the backend cannot serve.

    Run before the first question, so that a missing package, a model that
    does not load, a wrong key or an unreachable server stop the command at
    once with one message, instead of failing every question one by one.
    The request skips the cache (a cached answer proves nothing) and the
    run's limiter.  Raises [`BackendUnavailable`][prmsynth.BackendUnavailable].
    """

    # The run's own retry policy: a server that rate-limits (429 with
    # Retry-After) or fails for a moment (5xx) is asked again, as the run would.
    client_settings: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=settings.max_attempts),
        "request_timeout": min(settings.request_timeout, timeout),
    }
    llm: LLM
    if settings.router_config:
        from prmsynth.llm._router import RouterLLM

        llm = RouterLLM.from_config(settings.router_config, model=settings.model, **client_settings)
        where = f"the router's model {llm.model!r}"
    else:
        model = settings.model or DEFAULT_MODEL
        if model.startswith(LOCAL_PROVIDER + "/"):
            from prmsynth.llm._local import check_installed

            check_installed()
        llm = LiteLLMClient(model=model, api_base=settings.api_base, **client_settings)
        where = f"{model!r}" + (f" at {settings.api_base}" if settings.api_base else "")
    messages = [{"role": "user", "content": CHECK_PROMPT}]
    try:
        asyncio.run(llm.complete(messages, n=1, max_tokens=1, temperature=0.0, seed=0))
    except BackendUnavailable:
        raise
    except LLMError as error:
        text = str(error)
        advice = next((hint for name, hint in _PROBE_ADVICE if name in text), None)
        advice = advice or "check --model, --api-base and the provider's API key"
        raise BackendUnavailable(
            f"the model {where} cannot serve: {advice}.\n  what it said: {text}"
        ) from None
