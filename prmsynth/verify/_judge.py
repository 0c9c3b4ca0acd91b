"""An LLM as the judge of answers, for domains without a checkable answer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Sequence

import attrs

from prmsynth._errors import RUN_FATAL
from prmsynth._interfaces import LLM, StepVerifier
from prmsynth._values import Verdict

DEFAULT_JUDGE_PROMPT = (
    "You grade answers. Compare the final answer of the response with the reference answer.\n\n"
    "Reference answer:\n{reference}\n\n"
    "Response:\n{response}\n\n"
    "Does the response's final answer mean the same as the reference answer? "
    "Reply with one word: CORRECT or INCORRECT."
)

_JUDGEMENT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


def read_judgement(reply: str) -> Verdict:
    """Turn a judge's reply into a verdict: its first CORRECT / INCORRECT word.

    >>> read_judgement("CORRECT.").status
    'correct'
    >>> read_judgement("incorrect - the units differ").status
    'incorrect'
    >>> read_judgement("I am not sure").status
    'unparseable'
    """
    match = _JUDGEMENT.search(reply)
    if match is None:
        return Verdict(status="unparseable", reason=f"judge reply has no verdict: {reply[:80]!r}")
    status = "correct" if match.group(1).upper() == "CORRECT" else "incorrect"
    return Verdict(status=status, reason="judged by LLM")


@attrs.frozen(kw_only=True, eq=False)
class LLMJudgeVerifier(StepVerifier):
    """Asks an LLM whether a response's final answer matches the reference.

    For answers no rule can check (proofs, free text).  Slower, costlier and
    less reliable than [`MathAnswerVerifier`][prmsynth.MathAnswerVerifier]; prefer that one
    wherever answers are mathematical.  ``prompt_template`` takes
    ``{response}`` and ``{reference}``.  A truncated completion is
    ``unparseable`` without asking; a failed request is ``unparseable`` with
    the error as reason (never an exception).

    >>> from prmsynth.testing import ScriptedLLM
    >>> judge = LLMJudgeVerifier(llm=ScriptedLLM(lambda request: "CORRECT"))
    >>> judge.verify("Paris is the capital.", "Paris").status
    'correct'
    """

    llm: LLM
    prompt_template: str = DEFAULT_JUDGE_PROMPT
    temperature: float = 0.0
    max_tokens: int = 16

    async def _judge(self, response: str, reference: str, finish_reason: str | None) -> Verdict:
        if finish_reason == "length":
            return Verdict(
                status="unparseable", reason="truncated: the completion hit the token limit"
            )
        prompt = self.prompt_template.format(response=response, reference=reference)
        try:
            reply = await self.llm.complete(
                [{"role": "user", "content": prompt}],
                n=1,
                temperature=self.temperature,
                top_p=1.0,
                max_tokens=self.max_tokens,
            )
            text = reply.completions[0].text if reply.completions else ""
        except RUN_FATAL:  # a backend gone, a disk full
            raise  # the model is gone: every later call would fail too
        except Exception as error:  # a verdict, never an exception
            return Verdict(
                status="unparseable", reason=f"judge failed: {type(error).__name__}: {error}"
            )
        return read_judgement(text)

    async def averify_many(
        self,
        responses: Sequence[str],
        reference: str,
        *,
        finish_reasons: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        reasons = list(finish_reasons) if finish_reasons is not None else [None] * len(responses)
        return list(
            await asyncio.gather(
                *(
                    self._judge(response, reference, reason)
                    for response, reason in zip(responses, reasons, strict=True)
                )
            )
        )

    def verify(self, response: str, reference: str, *, finish_reason: str | None = None) -> Verdict:
        # A fresh event loop in a helper thread: works whether or not the
        # caller is itself inside a running loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
            return executor.submit(
                asyncio.run, self._judge(response, reference, finish_reason)
            ).result()
