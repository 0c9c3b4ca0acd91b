"""Extension point: an LLM backend of your own (no base class: a Protocol).

Anything with an async ``complete`` method returning an LLMResponse works.
This one is a toy rule-based "model" that answers sums; a real one would
call your inference server.

    python examples/custom_llm.py
"""

from __future__ import annotations

import random
import re

from prmsynth import Completion, LLMResponse, LLMStepGenerator, Pipeline, Question


class SloppyAdder:
    """Adds the numbers it sees in the question, and gets it wrong now and then."""

    async def complete(
        self, messages, *, n=1, temperature=0.7, top_p=0.95, max_tokens=512, seed=None
    ):
        rng = random.Random(seed)
        question = next(m["content"] for m in messages if m["role"] == "user")
        numbers = [int(x) for x in re.findall(r"\d+", question.split("Here are")[0])]
        completions = []
        for _ in range(n):
            total = sum(numbers) + (1 if rng.random() < temperature / 2 else 0)
            text = f"Add {' + '.join(map(str, numbers))}.\n\nThe answer is \\boxed{{{total}}}."
            completions.append(
                Completion(text=text, finish_reason="stop", n_tokens=len(text.split()))
            )
        return LLMResponse(completions=tuple(completions))


def main() -> None:
    pipeline = Pipeline(generator=LLMStepGenerator(llm=SloppyAdder()))
    [result] = pipeline.run([Question(id="sum", text="What is 17 + 25?", reference_answer="42")])
    pipeline.verifier.close()
    print(f"{result.status} ({result.reason}): root MC {result.tree.mc_value(0):.2f}")


if __name__ == "__main__":
    main()
