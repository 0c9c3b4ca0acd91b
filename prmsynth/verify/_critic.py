"""A critic LLM's second opinion on where a solution first goes wrong.

Monte Carlo labels and a critic err in different ways: rollouts miss an
error that a lucky completion recovers from, a critic misreads arithmetic.
Keeping only the solutions where both name the same first wrong step is
the consensus filtering that Zhang et al. (2025, "The Lessons of Developing
Process Reward Models in Mathematical Reasoning") found to beat Monte Carlo
labels alone.  The critique is stored beside the Monte Carlo labels
(``critic_first_error`` on a tree's leaf node, or a ``label`` row), and an
export with ``consensus`` applies the filter.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import attrs

from prmsynth._errors import RUN_FATAL
from prmsynth._interfaces import LLM, StepCritic
from prmsynth._tree import ReasoningTree
from prmsynth._values import Critique, Question
from prmsynth.llm._cache import llm_identity


@functools.cache
def default_critic_prompt() -> str:
    """The ProcessBench-style critique prompt shipped with prmsynth
    (``{problem}`` and ``{paragraphs}`` placeholders)."""
    prompts = resources.files("prmsynth.verify").joinpath("prompts")
    return prompts.joinpath("critic.txt").read_text(encoding="utf-8")


def number_paragraphs(steps: Sequence[str]) -> str:
    """The steps as numbered, tagged paragraphs, as the critique prompt shows them.

    >>> print(number_paragraphs(["2 + 2 = 4.", "The answer is 4."]))
    <paragraph_0>
    2 + 2 = 4.
    </paragraph_0>
    <BLANKLINE>
    <paragraph_1>
    The answer is 4.
    </paragraph_1>
    """
    return "\n\n".join(
        f"<paragraph_{index}>\n{step}\n</paragraph_{index}>" for index, step in enumerate(steps)
    )


# The index may be wrapped as \boxed{\text{2}} or written "paragraph 2".
_BOXED_INDEX = re.compile(
    r"\\boxed\{\s*(?:\\text\{\s*)?(?:(?:paragraph|step)[\s_]*)?(-?\d+)\s*\}?\s*\}", re.IGNORECASE
)


def read_critique(reply: str, n_steps: int) -> Critique:
    """The critic's verdict in ``reply``: the last ``\\boxed{}`` index.

    An index outside ``-1 .. n_steps - 1`` or no boxed index at all is no
    verdict (``first_error`` None): a critique that cannot be read must not
    pass for agreement or for disagreement.

    >>> read_critique("Paragraph 1 adds wrongly. \\\\boxed{1}", 3).first_error
    1
    >>> read_critique("All steps are right: \\\\boxed{-1}", 3).first_error
    -1
    >>> read_critique("\\\\boxed{7}", 3).reason
    'index 7 is outside -1..2'
    >>> read_critique("I cannot tell.", 3).has_verdict
    False
    """
    matches = _BOXED_INDEX.findall(reply)
    if not matches:
        return Critique(first_error=None, reason=f"no \\boxed{{}} index in {reply[-80:]!r}")
    index = int(matches[-1])
    if not -1 <= index < n_steps:
        return Critique(first_error=None, reason=f"index {index} is outside -1..{n_steps - 1}")
    return Critique(first_error=index)


@attrs.frozen(kw_only=True, eq=False)
class LLMCritic(StepCritic):
    """An LLM that reads the problem and the numbered steps and names the first wrong one.

    ``prompt_template`` takes ``{problem}`` and ``{paragraphs}`` (default:
    `default_critic_prompt`, ProcessBench's critique task).  Greedy
    decoding by default, with room for the critic to reason before it
    answers.  A reply cut off at ``max_tokens``, without a readable index, or
    a failed request gives no verdict; only
    [`BackendUnavailable`][prmsynth.BackendUnavailable] is raised.

    >>> import asyncio
    >>> from prmsynth import Question
    >>> from prmsynth.testing import ScriptedLLM
    >>> critic = LLMCritic(llm=ScriptedLLM(lambda request: "Step 1 is wrong. \\\\boxed{1}"))
    >>> question = Question(id="q", text="What is 2 + 2?", reference_answer="4")
    >>> asyncio.run(critic.critique(question, ["2 + 2 = 4.", "So 5."])).first_error
    1
    """

    llm: LLM
    prompt_template: str = attrs.field(factory=default_critic_prompt)
    temperature: float = 0.0
    max_tokens: int = 2048

    def identity(self) -> dict[str, Any]:
        """What decides the critic's verdicts, as a run records it (the prompt by its hash)."""
        return {
            "llm": llm_identity(self.llm),
            "prompt_sha256": hashlib.sha256(self.prompt_template.encode()).hexdigest(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def prompt(self, question: Question, steps: Sequence[str]) -> str:
        return self.prompt_template.format(
            problem=question.text, paragraphs=number_paragraphs(steps)
        )

    async def critique(self, question: Question, steps: Sequence[str]) -> Critique:
        messages = [{"role": "user", "content": self.prompt(question, steps)}]
        try:
            reply = await self.llm.complete(
                messages,
                n=1,
                temperature=self.temperature,
                top_p=1.0,
                max_tokens=self.max_tokens,
                seed=0,
            )
        except RUN_FATAL:  # a backend gone, a disk full
            raise  # the critic's model is gone: every later call would fail too
        except Exception as error:  # no verdict, never an exception
            return Critique(first_error=None, reason=f"critic failed: {type(error).__name__}")
        if not reply.completions:
            return Critique(first_error=None, reason="the critic returned no completion")
        completion = reply.completions[0]
        if completion.finish_reason == "length":
            return Critique(first_error=None, reason="truncated: the critique hit the token limit")
        return read_critique(completion.text, len(steps))


async def critique_tree(critic: StepCritic, tree: ReasoningTree) -> None:
    """Critique the solution of every root-to-leaf path of ``tree`` and store
    each verdict on its leaf (``critic_first_error``, an index into the path)."""
    leaves = [leaf for leaf in tree.leaves() if leaf != tree.root]
    critiques = await asyncio.gather(
        *(critic.critique(tree.question, tree.prefix_steps(leaf)) for leaf in leaves)
    )
    for leaf, critique in zip(leaves, critiques, strict=True):
        tree.set_critique(leaf, critique.first_error)
