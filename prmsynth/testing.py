"""Test doubles for prmsynth, for this project's tests and for yours.

:class:`ScriptedLLM` satisfies the :class:`prmsynth.LLM` protocol without a
model: a function you write decides every completion, so a test can plant
outcomes (which prefixes succeed, where the first error is) and check that the
search recovers them.

>>> import asyncio
>>> llm = ScriptedLLM(lambda request: f"sample {request.sample_index}")
>>> response = asyncio.run(llm.complete([{"role": "user", "content": "hi"}], n=2))
>>> [completion.text for completion in response.completions]
['sample 0', 'sample 1']
>>> len(llm.requests)
1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs

from prmsynth._values import Completion, LLMResponse

__all__ = ["ScriptedLLM", "ScriptedRequest"]


@attrs.frozen(kw_only=True)
class ScriptedRequest:
    """What the script sees for one sample: the messages and the sample's index.

    ``sample_index`` is the index within the request (0 .. n - 1);
    ``request_number`` counts requests made to this LLM so far.
    """

    messages: tuple[Mapping[str, str], ...]
    sample_index: int
    request_number: int
    seed: int | None
    temperature: float
    max_tokens: int

    @property
    def prompt(self) -> str:
        """All message contents joined, for scripts that look for markers."""
        return "\n\n".join(message["content"] for message in self.messages)

    @property
    def last_message(self) -> str:
        return self.messages[-1]["content"]


Script = Callable[[ScriptedRequest], "str | Completion"]


@attrs.define
class ScriptedLLM:
    """A fake LLM whose completions come from ``script(request)``.

    The script returns the completion text (finish reason ``"stop"``) or a
    :class:`prmsynth.Completion` to control finish reason and token count.
    Token counts default to the number of whitespace-separated words.
    Every request is kept in ``requests`` for assertions.
    """

    script: Script
    requests: list[tuple[tuple[Mapping[str, str], ...], int]] = attrs.field(factory=list)

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
        frozen_messages = tuple(dict(message) for message in messages)
        request_number = len(self.requests)
        self.requests.append((frozen_messages, n))
        completions = []
        for index in range(n):
            result = self.script(
                ScriptedRequest(
                    messages=frozen_messages,
                    sample_index=index,
                    request_number=request_number,
                    seed=seed,
                    temperature=temperature,
                    max_tokens=max_tokens,
                )
            )
            if isinstance(result, str):
                result = Completion(text=result, finish_reason="stop", n_tokens=len(result.split()))
            completions.append(result)
        prompt_tokens = sum(len(message["content"].split()) for message in frozen_messages)
        return LLMResponse(
            completions=tuple(completions),
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(c.n_tokens or 0 for c in completions),
        )

    @property
    def n_completions(self) -> int:
        """Completions served so far."""
        return sum(n for _, n in self.requests)
