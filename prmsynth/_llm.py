"""The product LLM backend: any litellm model string, called per request.

Options (``api_base``, keys, timeouts) go into each ``litellm.acompletion``
call; nothing here assigns litellm's module globals.  The one exception is
the embedded local model, which litellm can only reach as a registered
custom provider (see :mod:`prmsynth._local`); it is registered the first time
a request names it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import attrs

from prmsynth._values import Completion, LLMResponse

#: The embedded default: SmolLM2-135M-Instruct run in-process by llama.cpp.
DEFAULT_MODEL = "prmsynth/smollm2-135m-instruct"
LOCAL_PROVIDER = "prmsynth"


def import_litellm() -> ModuleType:
    """Import litellm without letting it download its price map.

    ``LITELLM_LOCAL_MODEL_COST_MAP`` must be set before the import; it is set
    only when the user has not set it themselves.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


class LLMError(RuntimeError):
    """An LLM request failed (the message never contains the API key)."""


def _redact(text: str, secret: str | None) -> str:
    if secret and secret in text:
        return text.replace(secret, "***")
    return text


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


@attrs.frozen(kw_only=True)
class LiteLLMClient:
    """An :class:`prmsynth.LLM` backed by ``litellm.acompletion``.

    Any litellm model string works (``openai/gpt-4o-mini``,
    ``hosted_vllm/Qwen/Qwen2.5-Math-7B-Instruct``, ``ollama/llama3``, ...).
    ``options`` are passed to every call (for example ``{"timeout": 60}``).

    >>> client = LiteLLMClient(model="hosted_vllm/my-model", api_base="http://127.0.0.1:8000/v1",
    ...                        api_key="sk-secret")
    >>> "sk-secret" in repr(client)
    False
    """

    model: str = DEFAULT_MODEL
    api_base: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    options: Mapping[str, Any] = attrs.field(factory=dict)

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
        litellm = import_litellm()
        if self.model.startswith(LOCAL_PROVIDER + "/"):
            from prmsynth._local import ensure_registered

            ensure_registered(litellm)
        responses = [
            await self._request(litellm, messages, n, temperature, top_p, max_tokens, seed)
        ]
        served = len(responses[0].completions)
        if served < n:
            # The provider ignored `n`: ask for the rest one sample at a time.
            responses += await asyncio.gather(
                *(
                    self._request(
                        litellm,
                        messages,
                        1,
                        temperature,
                        top_p,
                        max_tokens,
                        None if seed is None else seed + index,
                    )
                    for index in range(served, n)
                )
            )
        return LLMResponse(
            completions=tuple(c for response in responses for c in response.completions)[:n],
            prompt_tokens=sum(response.prompt_tokens for response in responses),
            completion_tokens=sum(response.completion_tokens for response in responses),
        )

    async def _request(
        self,
        litellm: ModuleType,
        messages: Sequence[Mapping[str, str]],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
    ) -> LLMResponse:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            **self.options,
        }
        if n != 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as error:
            message = _redact(f"{type(error).__name__}: {error}", self.api_key)
            raise LLMError(f"{self.model}: {message}") from None
        texts = [(choice.message.content or "") for choice in response.choices]
        usage = getattr(response, "usage", None)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        token_counts = _split_tokens(completion_tokens, texts)
        completions = tuple(
            Completion(text=text, finish_reason=choice.finish_reason, n_tokens=tokens)
            for text, choice, tokens in zip(texts, response.choices, token_counts, strict=True)
        )
        return LLMResponse(
            completions=completions,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
