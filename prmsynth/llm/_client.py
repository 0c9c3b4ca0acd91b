"""The product LLM backend: any litellm model string, called per request.

Options (``api_base``, keys, timeouts) go into each ``litellm.acompletion``
call; nothing here assigns litellm's module globals.  The one exception is
the embedded local model, which litellm can only reach as a registered
custom provider (see `_local`); it is registered the first time
a request names it.

Retries are prmsynth's alone: every call passes ``num_retries=0`` and
``max_retries=0`` so that litellm and the OpenAI SDK do not retry underneath,
and a failed attempt is retried here only when the failure is transient (rate
limits, timeouts, connection errors, 5xx), after an exponential backoff with
full jitter, at most ``max_attempts`` times.  What a provider answers is data,
never a crash: empty ``choices`` are asked for again a bounded number of
times, ``None`` content is empty text, and an answer cut off at the token
limit keeps ``finish_reason="length"`` for the verifier to judge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import attrs

from prmsynth._errors import BackendUnavailable, LLMError, is_secret_name, redact_secrets
from prmsynth._values import Completion, LLMResponse
from prmsynth.llm._continuation import (
    ContinuationRoute,
    PrefixContinuation,
    continuation_request,
    continuation_route,
)
from prmsynth.llm._ratelimit import RequestLimiter, estimate_prompt_tokens
from prmsynth.llm._retry import RetryPolicy, retry_after_seconds  # noqa: F401 (re-exported)

#: The embedded default: SmolLM2-135M-Instruct run in-process by llama.cpp.
DEFAULT_MODEL = "prmsynth/smollm2-135m-instruct"
LOCAL_PROVIDER = "prmsynth"

#: litellm exception classes worth another attempt (looked up by name, so a
#: litellm without one of them still works).
RETRYABLE_ERRORS = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
)

#: How many extra rounds of single-sample requests may refill completions that
#: a provider did not return (it ignored ``n``, or sent empty ``choices``).
REFILL_ROUNDS = 3

_logger = logging.getLogger("prmsynth.llm")


def import_litellm() -> ModuleType:
    """Import litellm without letting it download its price map.

    ``LITELLM_LOCAL_MODEL_COST_MAP`` must be set before the import; it is set
    only when the user has not set it themselves.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def without_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` less every entry whose name says it holds a secret."""
    return {name: value for name, value in options.items() if not is_secret_name(name)}


def backend_failure(error: BaseException) -> BackendUnavailable | None:
    """The [`BackendUnavailable`][prmsynth.BackendUnavailable] behind ``error`` (litellm wraps what
    a provider raises)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BackendUnavailable):
            return current
        original = getattr(current, "original_exception", None)
        pending += [current.__cause__, current.__context__]
        if isinstance(original, BaseException):
            pending.append(original)
    return None


def _redact(text: str, secrets: str | Iterable[str | None] | None) -> str:
    """``text`` without the given secrets, credentials from the environment and
    key-shaped tokens (see `redact_secrets`).

    >>> _redact("Incorrect API key provided: sk-abc123456789. Bearer xyz", None)
    'Incorrect API key provided: ***. Bearer ***'
    """
    if isinstance(secrets, str):
        secrets = (secrets,)
    return redact_secrets(text, secrets or ())


def _split_tokens(total: int, texts: Sequence[str]) -> list[int | None]:
    """Share a request's completion-token total among its choices.

    Backends report usage per request, not per choice; with one choice the
    count is exact, with several it is apportioned by text length.
    """
    if len(texts) == 1:
        return [total]
    if not total:
        return [None] * len(texts)
    lengths = [len(text) or 1 for text in texts]
    whole = sum(lengths)
    return [max(1, round(total * length / whole)) for length in lengths]


def is_retryable(litellm: ModuleType, error: BaseException) -> bool:
    """Whether another attempt may succeed: rate limits, timeouts, connection
    errors and server-side (5xx) failures; never bad requests or bad keys."""
    if isinstance(error, asyncio.TimeoutError):
        return True  # the client's own guard against a provider that ignores its timeout
    classes = tuple(getattr(litellm, name, None) for name in RETRYABLE_ERRORS)
    if isinstance(error, tuple(cls for cls in classes if isinstance(cls, type))):
        return True
    status = getattr(error, "status_code", None)
    api_error = getattr(litellm, "APIError", None)
    return (
        isinstance(api_error, type)
        and isinstance(error, api_error)
        and isinstance(status, int)
        and status >= 500
    )


def _response_cost(litellm: ModuleType, response: Any) -> float:
    """The response's cost in US dollars from litellm's local price map, 0.0 when unknown.

    litellm prices every response while logging it; that figure is reused, and
    ``completion_cost`` (slow, and chatty on stdout for unknown models) is only
    asked when it is missing.
    """
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, Mapping) and "response_cost" in hidden:
        cost = hidden["response_cost"]
    else:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:  # an unpriced model costs "unknown", reported as 0.0
            cost = 0.0
    try:
        value = float(cost or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value > 0.0 else 0.0


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.frozen(kw_only=True)
class RetryingLLM:
    """What every litellm-backed [`LLM`][prmsynth.LLM] shares: retries, limits,
    the ``n`` fallback, accounting.  Subclasses say where a request goes.

    ``retry`` (a [`RetryPolicy`][prmsynth.RetryPolicy]) says how often and after
    which waits a request that failed for a passing reason is tried again, and
    what it waits with.  ``max_attempts``, ``initial_backoff``, ``max_backoff``,
    ``jitter_seed`` (the policy's ``seed``) and ``sleep`` are the older names of
    the policy's fields: given, they override ``retry``'s, and once built the
    client answers them from ``retry``.
    ``request_timeout`` (seconds) goes to litellm as ``timeout`` on every call.
    ``limiter`` bounds concurrency, requests and tokens per minute; share one
    limiter among all clients of a run.

    >>> client = LiteLLMClient(model="openai/x", max_attempts=3)
    >>> client.retry.max_attempts, client.max_attempts, client.max_backoff
    (3, 3, 60.0)
    """

    model: str = DEFAULT_MODEL
    options: Mapping[str, Any] = attrs.field(factory=dict)
    retry: RetryPolicy = attrs.field(
        factory=RetryPolicy, validator=attrs.validators.instance_of(RetryPolicy)
    )
    request_timeout: float | None = attrs.field(
        default=600.0, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    limiter: RequestLimiter | None = attrs.field(default=None, eq=False)
    # The older names of the retry policy's fields: folded into `retry` (then
    # cleared, so that `attrs.evolve(client, retry=...)` is not overridden).
    _max_attempts: int | None = attrs.field(
        default=None, alias="max_attempts", repr=False, eq=False
    )
    _initial_backoff: float | None = attrs.field(
        default=None, alias="initial_backoff", repr=False, eq=False
    )
    _max_backoff: float | None = attrs.field(
        default=None, alias="max_backoff", repr=False, eq=False
    )
    _jitter_seed: int | None = attrs.field(default=None, alias="jitter_seed", repr=False, eq=False)
    _sleep: Callable[[float], Awaitable[Any]] | None = attrs.field(
        default=None, alias="sleep", repr=False, eq=False
    )
    _random: random.Random = attrs.field(init=False, repr=False, eq=False)
    # Remembers that the provider ignores `n`, so later requests fan out at once
    # instead of first waiting for a one-choice answer.
    _provider: dict[str, bool] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        overrides = {
            name: value
            for name, value in (
                ("max_attempts", self._max_attempts),
                ("initial_backoff", self._initial_backoff),
                ("max_backoff", self._max_backoff),
                ("seed", self._jitter_seed),
                ("sleep", self._sleep),
            )
            if value is not None
        }
        if overrides:
            object.__setattr__(self, "retry", attrs.evolve(self.retry, **overrides))
            for name in ("max_attempts", "initial_backoff", "max_backoff", "jitter_seed", "sleep"):
                object.__setattr__(self, "_" + name, None)
        object.__setattr__(self, "_random", random.Random(self.retry.seed))

    @property
    def max_attempts(self) -> int:
        """The tries of one request (``retry.max_attempts``)."""
        return self.retry.max_attempts

    @property
    def initial_backoff(self) -> float:
        """``retry.initial_backoff``."""
        return self.retry.initial_backoff

    @property
    def max_backoff(self) -> float:
        """``retry.max_backoff``."""
        return self.retry.max_backoff

    @property
    def jitter_seed(self) -> int:
        """``retry.seed``."""
        return self.retry.seed

    @property
    def sleep(self) -> Callable[[float], Awaitable[Any]]:
        """How the client waits between attempts (``retry.sleep``)."""
        return self.retry.sleep

    # -- what subclasses provide ---------------------------------------------

    def _send(self, litellm: ModuleType, kwargs: dict[str, Any]) -> Awaitable[Any]:
        raise NotImplementedError

    def _secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an error message."""
        return ()

    def _endpoint_kwargs(self) -> dict[str, Any]:
        return {}

    def _served_by(self) -> dict[str, Any]:
        """What, besides the model string, decides which model answers (no secrets)."""
        return {}

    def _continuation_route(self) -> ContinuationRoute | None:
        """How this backend continues a started reply (see `_continuation`), None if it cannot."""
        return None

    @property
    def prefix_continuation(self) -> PrefixContinuation:
        """Whether a request whose last message is an assistant prefix (``"prefix":
        True``) is continued: ``native`` (the embedded model, by construction),
        ``probe`` (a server whose API can; `probe_continuation` checks that it
        does) or ``unsupported`` (the prefix must be quoted).

        >>> LiteLLMClient(model="hosted_vllm/m", api_base="http://127.0.0.1:8000/v1").prefix_continuation
        'probe'
        >>> LiteLLMClient(model="openai/gpt-4o-mini").prefix_continuation
        'unsupported'
        """
        if self._local:
            return "native"
        return "unsupported" if self._continuation_route() is None else "probe"

    def cache_identity(self) -> str:
        """What a completion cache keys this backend's answers by: the model
        string, plus the server, deployments and call options when there are
        any, so that two servers behind one model name never share answers.
        Secrets (keys, tokens) are left out.

        >>> LiteLLMClient(model="openai/m").cache_identity()
        'openai/m'
        >>> client = LiteLLMClient(model="openai/m", api_base="http://a:8000/v1", api_key="sk-x")
        >>> client.cache_identity()
        'openai/m {"api_base": "http://a:8000/v1"}'
        """
        served = {**self._served_by(), **without_secrets(self.options)}
        if not served:
            return self.model
        return f"{self.model} {json.dumps(served, sort_keys=True, default=str)}"

    @property
    def _local(self) -> bool:
        return self.model.startswith(LOCAL_PROVIDER + "/")

    # -- the LLM protocol ----------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_tokens: int = 512,
        seed: int | None = None,
    ) -> LLMResponse:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        litellm = import_litellm()
        if self._local:
            from prmsynth.llm._local import ensure_registered

            ensure_registered(litellm)
        route = "prefill" if self._local else self._continuation_route()
        sent, continuation = continuation_request(messages, route, model=self.model)
        base: dict[str, Any] = {
            "model": self.model,
            "messages": sent,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "timeout": self.request_timeout,
            # Retries are ours: litellm's and the OpenAI SDK's would multiply them.
            "num_retries": 0,
            "max_retries": 0,
            **self.options,
            **self._endpoint_kwargs(),
        }
        if continuation:
            extra_body = {**(base.get("extra_body") or {}), **continuation["extra_body"]}
            base["extra_body"] = extra_body
        if base["timeout"] is None:
            del base["timeout"]
        completions: list[Completion] = []
        responses: list[LLMResponse] = []
        for round_number in range(1 + REFILL_ROUNDS):
            if len(completions) >= n:
                break
            if round_number == 0 and (n == 1 or not self._provider.get("ignores_n")):
                response = await self._request(litellm, base, n, seed)
                if n > 1 and len(response.completions) == 1:
                    self._provider["ignores_n"] = True
                batch = [response]
            else:
                # The provider sent fewer than asked: the rest one sample at a
                # time, each with its own seed so that seeded samples differ.
                batch = await self._gather(
                    self._request(litellm, base, 1, None if seed is None else seed + index)
                    for index in range(len(completions), n)
                )
            responses += batch
            for response in batch:
                completions += response.completions
        return LLMResponse(
            completions=tuple(completions[:n]),
            prompt_tokens=sum(response.prompt_tokens for response in responses),
            completion_tokens=sum(response.completion_tokens for response in responses),
            cost=sum(response.cost for response in responses),
        )

    @staticmethod
    async def _gather(requests: Iterable[Awaitable[LLMResponse]]) -> list[LLMResponse]:
        # Every request runs to its end before an error is raised, so none is
        # left running unobserved after its question has failed.
        results = await asyncio.gather(*requests, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    # -- one request, retried ----------------------------------------------

    async def _request(
        self, litellm: ModuleType, base: Mapping[str, Any], n: int, seed: int | None
    ) -> LLMResponse:
        kwargs = dict(base)
        if n != 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        limiter = self.limiter
        estimate = 0
        if limiter is not None and limiter.counts_tokens:
            estimate = estimate_prompt_tokens(kwargs["messages"]) + int(kwargs["max_tokens"]) * n
        # The embedded model is deterministic and in-process: retrying cannot help.
        attempts = 1 if self._local else self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            if limiter is not None:
                await limiter.acquire(estimate)
            used: int | None = None
            try:
                response = await self._guarded(litellm, kwargs)
                usage = getattr(response, "usage", None)
                used = int(getattr(usage, "total_tokens", 0) or 0) or None
            except Exception as error:
                fatal = backend_failure(error)
                if fatal is not None:
                    raise fatal from None
                retry = attempt < attempts and self._is_retryable(litellm, error)
                message = _one_line(_redact(f"{type(error).__name__}: {error}", self._secrets()))
                if not retry:
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    transient = self._is_retryable(litellm, error)
                    raise LLMError(f"{self.model}: {message}{tries}", transient=transient) from None
                delay = self._backoff(attempt, error)
                hinted = self.retry.retry_after(error)
                _logger.info(
                    "%s: attempt %d of %d failed, retrying in %.1f s%s: %s",
                    self.model,
                    attempt,
                    attempts,
                    delay,
                    "" if hinted is None else f" (the server asked for {hinted:.1f} s)",
                    message,
                )
            else:
                return self._convert(litellm, response)
            finally:
                if limiter is not None:
                    limiter.release(estimate, used)
            await self.retry.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _guarded(self, litellm: ModuleType, kwargs: dict[str, Any]) -> Any:
        timeout = kwargs.get("timeout")
        if self._local or not isinstance(timeout, (int, float)):
            return await self._send(litellm, kwargs)
        # litellm enforces `timeout` itself; this outer bound only catches a
        # provider path that does not, so it leaves litellm room to go first.
        return await asyncio.wait_for(self._send(litellm, kwargs), timeout + max(1.0, timeout / 4))

    def _is_retryable(self, litellm: ModuleType, error: BaseException) -> bool:
        if self.retry.retry_on is not None:
            return self.retry.retry_on(error)
        return is_retryable(litellm, error)

    def _backoff(self, attempt: int, error: BaseException) -> float:
        return self.retry.backoff(attempt, hinted=self.retry.retry_after(error), rng=self._random)

    def _convert(self, litellm: ModuleType, response: Any) -> LLMResponse:
        """Whatever came back, as data: missing choices are none, missing text is ''."""
        choices = list(getattr(response, "choices", None) or ())
        texts: list[str] = []
        reasons: list[str | None] = []
        for choice in choices:
            content = getattr(getattr(choice, "message", None), "content", None)
            if not isinstance(content, str):
                content = "" if content is None else str(content)
            texts.append(content)
            reason = getattr(choice, "finish_reason", None)
            reasons.append(None if reason is None else str(reason))
        usage = getattr(response, "usage", None)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        token_counts = _split_tokens(completion_tokens, texts) if texts else []
        return LLMResponse(
            completions=tuple(
                Completion(text=text, finish_reason=reason, n_tokens=tokens)
                for text, reason, tokens in zip(texts, reasons, token_counts, strict=True)
            ),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=_response_cost(litellm, response),
        )


@attrs.frozen(kw_only=True)
class LiteLLMClient(RetryingLLM):
    """An [`LLM`][prmsynth.LLM] backed by ``litellm.acompletion``.

    Any litellm model string works (``openai/gpt-4o-mini``,
    ``hosted_vllm/Qwen/Qwen2.5-Math-7B-Instruct``, ``ollama/llama3``, ...).
    ``options`` are passed to every call and win over the client's own
    settings (for example ``{"timeout": 60}``).  Retries, backoff, the
    per-request timeout and the shared [`RequestLimiter`][prmsynth.RequestLimiter]
    are described on `RetryingLLM`; each response's tokens and cost
    (``LLMResponse.cost``, US dollars from litellm's offline price map, 0.0
    for unpriced models) are reported with it.

    >>> client = LiteLLMClient(model="hosted_vllm/my-model", api_base="http://127.0.0.1:8000/v1",
    ...                        api_key="sk-secret")
    >>> "sk-secret" in repr(client)
    False
    >>> LiteLLMClient(model="openai/x", max_attempts=0)
    Traceback (most recent call last):
    ...
    ValueError: 'max_attempts' must be >= 1: 0
    """

    api_base: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)

    def _send(self, litellm: ModuleType, kwargs: dict[str, Any]) -> Awaitable[Any]:
        return litellm.acompletion(**kwargs)

    def _secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    def _served_by(self) -> dict[str, Any]:
        return {"api_base": self.api_base} if self.api_base else {}

    def _continuation_route(self) -> ContinuationRoute | None:
        return continuation_route(self.model, self.api_base)

    def _endpoint_kwargs(self) -> dict[str, Any]:
        endpoint: dict[str, Any] = {}
        if self.api_base is not None:
            endpoint["api_base"] = self.api_base
        if self.api_key is not None:
            endpoint["api_key"] = self.api_key
        return endpoint
