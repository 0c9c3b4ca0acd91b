"""Step generation: prompts, step splitting and the LLM-backed generator."""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from prmsynth._errors import PrefixModeError
from prmsynth._interfaces import LLM, StepGenerator
from prmsynth._values import LLMResponse, Question, SamplingSettings
from prmsynth.llm._cache import llm_identity
from prmsynth.llm._continuation import (
    normalize_prefix_mode,
    prefix_continuation,
    probe_continuation,
)

_logger = logging.getLogger(__name__)

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
class PrefixModeChoice:
    """How a generator will send partial solutions, and why.

    ``mode`` is ``"continue"`` or ``"quote"``; ``fallback`` is the warning to
    show when continuation was asked for (``auto``) but the backend cannot or
    does not continue a started reply, None otherwise.
    """

    mode: str
    fallback: str | None = None


#: What quoting a prefix changes, for the warning of an ``auto`` fallback.
QUOTE_CAVEAT = (
    "partial solutions are quoted in a user message instead (--prefix-mode quote); a chat "
    "model asked that way may re-solve the problem or repair a quoted mistake, so the Monte "
    "Carlo values of wrong steps can come out too high. A server that continues a started "
    "reply (vLLM, SGLang, llama.cpp, Ollama, Anthropic, Mistral, DeepSeek) gives values as "
    "OmegaPRM defines them"
)


@attrs.frozen(kw_only=True)
class LLMStepGenerator(StepGenerator):
    """Writes and continues solutions with a chat LLM.

    ``prefix_mode`` says how a partial solution reaches the model:

    * ``"continue"``: the steps are the start of the assistant's reply, which
      the model continues (a trailing assistant message with ``"prefix":
      True``, sent in each backend's dialect; see `prmsynth.llm._continuation`).
      This is the Monte Carlo value as OmegaPRM and Math-Shepherd define it:
      the policy continuing its own partial solution.
    * ``"quote"``: the steps are quoted in the user message
      (``continue_template``), for chat APIs that cannot continue a reply.
    * ``"auto"`` (default): ``continue`` where the LLM can
      (``llm.prefix_continuation``: the embedded model always; a server once
      a probe shows that it continues a started reply), else ``quote`` with a
      warning.  [`Pipeline`][prmsynth.Pipeline] settles it before the first
      question (`resolved`); ``generate`` settles it on first use otherwise.

    The first names, ``"assistant"`` and ``"user"``, still work.

    >>> from prmsynth.testing import ScriptedLLM
    >>> generator = LLMStepGenerator(llm=ScriptedLLM(lambda request: "The answer is 5."))
    >>> generator.split_steps("2 + 3 = 5.\\n\\nThe answer is 5.")
    ['2 + 3 = 5.', 'The answer is 5.']
    >>> LLMStepGenerator(llm=generator.llm, prefix_mode="assistant").prefix_mode
    'continue'
    """

    llm: LLM
    sampling: SamplingSettings = attrs.field(factory=SamplingSettings)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    continue_template: str = DEFAULT_CONTINUE_TEMPLATE
    prefix_mode: str = attrs.field(default="auto", converter=normalize_prefix_mode)
    splitter: StepSplitter = split_on_blank_lines
    # The settled mode of an "auto" generator used without `resolved` (one probe).
    _settled: dict[str, LLMStepGenerator] = attrs.field(
        factory=dict, init=False, repr=False, eq=False
    )

    @classmethod
    def for_model(
        cls,
        llm: LLM,
        model: str | None = None,
        *,
        sampling: SamplingSettings | None = None,
        prefix_mode: str = "auto",
    ) -> LLMStepGenerator:
        """A generator for ``llm`` (``model``, its litellm model string, is no
        longer needed: the LLM says whether it continues a started reply).

        >>> from prmsynth.testing import ScriptedLLM
        >>> LLMStepGenerator.for_model(ScriptedLLM(lambda r: ""), None).prefix_mode
        'auto'
        """
        return cls(llm=llm, sampling=sampling or SamplingSettings(), prefix_mode=prefix_mode)

    async def resolve_prefix_mode(self) -> PrefixModeChoice:
        """The concrete mode this generator's ``prefix_mode`` stands for here.

        ``auto`` probes a server once (`probe_continuation`: a started reply
        must be continued, not restarted) and falls back to ``quote`` with a
        reason; ``continue`` on a backend that cannot continue raises
        [`PrefixModeError`][prmsynth.PrefixModeError].
        """
        if self.prefix_mode == "quote":
            return PrefixModeChoice(mode="quote")
        support = prefix_continuation(self.llm)
        if support == "native":
            return PrefixModeChoice(mode="continue")
        if support == "probe":
            probe = await probe_continuation(getattr(self.llm, "uncached", self.llm))
            if probe.continues:
                return PrefixModeChoice(mode="continue")
            why = f"the model does not continue a started reply: {probe.reason}"
        elif support == "unsupported":
            why = "the model's API cannot continue a started reply"
        else:
            why = (
                f"the LLM ({type(self.llm).__name__}) does not say that it continues a started "
                "reply (its prefix_continuation attribute)"
            )
        if self.prefix_mode == "continue":
            raise PrefixModeError(
                f"prefix mode 'continue': {why}; use 'auto' or 'quote' (--prefix-mode)"
            )
        return PrefixModeChoice(mode="quote", fallback=f"{why}; {QUOTE_CAVEAT}")

    async def resolved(self) -> LLMStepGenerator:
        """This generator with its prefix mode settled (see `resolve_prefix_mode`);
        a fallback from ``auto`` to ``quote`` is logged as a warning."""
        if self.prefix_mode == "continue" and prefix_continuation(self.llm) == "unsupported":
            raise PrefixModeError(
                "prefix mode 'continue': the model's API cannot continue a started reply; "
                "use 'auto' or 'quote' (--prefix-mode)"
            )
        if self.prefix_mode != "auto":
            return self  # an explicit choice; `resolve_prefix_mode` probes it on request
        choice = await self.resolve_prefix_mode()
        if choice.fallback is not None:
            _logger.warning("prefix mode: %s", choice.fallback)
        return attrs.evolve(self, prefix_mode=choice.mode)

    def identity(self) -> dict[str, Any]:
        """What decides this generator's samples, as a run records it: the model
        (its server and options, no secrets), sampling, prefix mode and prompts."""
        identity: dict[str, Any] = {
            "llm": llm_identity(self.llm),
            "sampling": attrs.asdict(self.sampling),
            "prefix_mode": self.prefix_mode,
            "system_prompt": self.system_prompt,
        }
        if self.prefix_mode != "continue":
            identity["continue_template"] = self.continue_template
        return identity

    def messages(self, question: Question, prefix: Sequence[str]) -> list[dict[str, Any]]:
        """The chat messages that ask for a continuation of ``prefix``.

        >>> from prmsynth.testing import ScriptedLLM
        >>> question = Question(id="q", text="2 + 3?", reference_answer="5")
        >>> continuing = LLMStepGenerator(llm=ScriptedLLM(lambda r: ""), prefix_mode="continue")
        >>> continuing.messages(question, ["2 + 3 = 5."])[-1]
        {'role': 'assistant', 'content': '2 + 3 = 5.\\n\\n', 'prefix': True}
        """
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        if not prefix:
            messages.append({"role": "user", "content": question.text})
            return messages
        mode = self.prefix_mode
        if mode == "auto":
            support = prefix_continuation(self.llm)
            if support == "probe":  # only a request to the server can tell
                raise PrefixModeError(
                    "prefix mode 'auto' is not settled yet: use `await generator.resolved()` "
                    "(Pipeline does it before the first question)"
                )
            mode = "continue" if support == "native" else "quote"
        if mode == "continue":
            messages.append({"role": "user", "content": question.text})
            messages.append(
                {"role": "assistant", "content": self.join_steps(prefix) + "\n\n", "prefix": True}
            )
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
        generator = self
        if prefix and self.prefix_mode == "auto":
            if "generator" not in self._settled:
                self._settled["generator"] = await self.resolved()
            generator = self._settled["generator"]
        sampling = self.sampling
        seed = None
        if sampling.seed is not None:
            seed = derive_seed(sampling.seed, question.id, sample_offset)
        return await self.llm.complete(
            generator.messages(question, prefix),
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=seed,
        )

    def split_steps(self, text: str) -> list[str]:
        return self.splitter(text)
