"""Step generation: prompts, step splitting and the LLM-backed generator."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from prmsynth._interfaces import LLM, StepGenerator
from prmsynth._values import LLMResponse, Question, SamplingSettings

StepSplitter = Callable[[str], list[str]]

_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def split_on_blank_lines(text: str) -> list[str]:
    """Split a solution into steps at blank lines (the default splitter).

    >>> split_on_blank_lines("First, 2 + 3 = 5.\\n\\n  \\nSo the answer is 5.\\n")
    ['First, 2 + 3 = 5.', 'So the answer is 5.']
    >>> split_on_blank_lines("   ")
    []
    """
    return [step.strip() for step in _BLANK_LINE.split(text) if step.strip()]


_STEP_MARKER = re.compile(r"(?:^|\n)[ \t#*]*Step\s+\d+\s*[:.)]", re.IGNORECASE)


def split_on_step_markers(text: str) -> list[str]:
    """Split at "Step 1:", "Step 2." ... markers (kept with their step).

    Text before the first marker is a step of its own; without markers the
    text is split on blank lines.

    >>> split_on_step_markers("Step 1: add 2 and 3.\\nStep 2: so 5.\\nThe answer is 5.")
    ['Step 1: add 2 and 3.', 'Step 2: so 5.\\nThe answer is 5.']
    """
    starts = [match.start() for match in _STEP_MARKER.finditer(text)]
    if not starts:
        return split_on_blank_lines(text)
    bounds = [0, *starts, len(text)] if starts[0] > 0 else [*starts, len(text)]
    pieces = (text[start:end].strip() for start, end in itertools.pairwise(bounds))
    return [piece for piece in pieces if piece]


def split_on_lines(text: str) -> list[str]:
    """One step per non-empty line.

    >>> split_on_lines("a\\n\\n b \\nc")
    ['a', 'b', 'c']
    """
    return [line.strip() for line in text.splitlines() if line.strip()]


def count_words(text: str) -> int:
    """The default token counter of [`LengthCappedSplitter`][prmsynth.LengthCappedSplitter]:
    whitespace words."""
    return len(text.split())


@attrs.frozen(kw_only=True)
class LengthCappedSplitter:
    """Wraps a splitter and cuts steps longer than ``max_tokens`` into pieces.

    A model that never leaves a blank line would otherwise give one
    enormous step, and a PRM learns nothing about where inside it things
    went wrong.  Pieces end at sentence ends where possible.
    ``count_tokens`` is whitespace words by default; pass a tokenizer's
    ``lambda text: len(tokenizer.encode(text))`` for true tokens.

    >>> splitter = LengthCappedSplitter(max_tokens=4)
    >>> splitter("One two. Three four five. Six.\\n\\nSeven")
    ['One two.', 'Three four five. Six.', 'Seven']
    """

    base: StepSplitter = split_on_blank_lines
    max_tokens: int = 128
    count_tokens: Callable[[str], int] = count_words

    def __call__(self, text: str) -> list[str]:
        steps: list[str] = []
        for step in self.base(text):
            steps.extend(self._cut(step))
        return steps

    def _cut(self, step: str) -> list[str]:
        if self.count_tokens(step) <= self.max_tokens:
            return [step]
        sentences = re.split(r"(?<=[.!?])\s+|\n", step)
        pieces: list[str] = []
        current = ""
        for sentence in sentences:
            candidate = f"{current} {sentence}".strip()
            if current and self.count_tokens(candidate) > self.max_tokens:
                pieces.append(current)
                current = sentence.strip()
            else:
                current = candidate
        if current:
            pieces.append(current)
        # A single sentence may still be too long: cut it by words.
        result: list[str] = []
        for piece in pieces:
            words = piece.split()
            while self.count_tokens(" ".join(words)) > self.max_tokens and len(words) > 1:
                size = max(1, min(len(words) - 1, self.max_tokens))
                result.append(" ".join(words[:size]))
                words = words[size:]
            if words:
                result.append(" ".join(words))
        return result


DEFAULT_SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step. "
    "Write each step as its own short paragraph, separated by a blank line. "
    "Finish with a last step of the form: The answer is \\boxed{ANSWER}."
)

DEFAULT_CONTINUE_TEMPLATE = (
    "{question}\n\n"
    "Here are the first steps of a solution:\n\n{prefix}\n\n"
    "Continue this solution from the next step. Do not repeat the steps above."
)


def derive_seed(base_seed: int, question_id: str, sample_offset: int) -> int:
    """A per-request seed that depends only on its inputs (stable across runs and processes).

    >>> derive_seed(0, "q1", 4) == derive_seed(0, "q1", 4)
    True
    >>> derive_seed(0, "q1", 4) != derive_seed(0, "q1", 8)
    True
    """
    digest = hashlib.sha256(f"{base_seed}\x00{question_id}\x00{sample_offset}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # a non-negative 31-bit int every backend takes


@attrs.frozen(kw_only=True)
class LLMStepGenerator(StepGenerator):
    """Writes and continues solutions with a chat LLM.

    ``prefix_mode`` says how a partial solution reaches the model:
    ``"user"`` (default, works with every chat API) quotes the steps in the
    user message; ``"assistant"`` sends them as the start of the assistant's
    reply for the model to continue, which only backends that support
    assistant prefill honour (the embedded local model does).

    >>> from prmsynth.testing import ScriptedLLM
    >>> generator = LLMStepGenerator(llm=ScriptedLLM(lambda request: "The answer is 5."))
    >>> generator.split_steps("2 + 3 = 5.\\n\\nThe answer is 5.")
    ['2 + 3 = 5.', 'The answer is 5.']
    """

    llm: LLM
    sampling: SamplingSettings = attrs.field(factory=SamplingSettings)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    continue_template: str = DEFAULT_CONTINUE_TEMPLATE
    prefix_mode: Literal["user", "assistant"] = attrs.field(
        default="user", validator=attrs.validators.in_(("user", "assistant"))
    )
    splitter: StepSplitter = split_on_blank_lines

    @classmethod
    def for_model(
        cls, llm: LLM, model: str | None, *, sampling: SamplingSettings | None = None
    ) -> LLMStepGenerator:
        """A generator for ``llm`` serving the litellm model string ``model``: the
        embedded model (``model`` None or the default) continues a prefilled
        reply; a chat API gets the partial solution quoted in the user message.

        >>> from prmsynth.testing import ScriptedLLM
        >>> LLMStepGenerator.for_model(ScriptedLLM(lambda r: ""), None).prefix_mode
        'assistant'
        """
        from prmsynth.llm._client import DEFAULT_MODEL

        prefix_mode = "assistant" if (model or DEFAULT_MODEL) == DEFAULT_MODEL else "user"
        return cls(llm=llm, sampling=sampling or SamplingSettings(), prefix_mode=prefix_mode)

    def messages(self, question: Question, prefix: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages that ask for a continuation of ``prefix``."""
        messages = [{"role": "system", "content": self.system_prompt}]
        if not prefix:
            messages.append({"role": "user", "content": question.text})
        elif self.prefix_mode == "assistant":
            messages.append({"role": "user", "content": question.text})
            messages.append({"role": "assistant", "content": self.join_steps(prefix) + "\n\n"})
        else:
            content = self.continue_template.format(
                question=question.text, prefix=self.join_steps(prefix)
            )
            messages.append({"role": "user", "content": content})
        return messages

    async def generate(
        self,
        question: Question,
        prefix: Sequence[str],
        *,
        n: int,
        sample_offset: int = 0,
    ) -> LLMResponse:
        sampling = self.sampling
        seed = None
        if sampling.seed is not None:
            seed = derive_seed(sampling.seed, question.id, sample_offset)
        return await self.llm.complete(
            self.messages(question, prefix),
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=seed,
        )

    def split_steps(self, text: str) -> list[str]:
        return self.splitter(text)
