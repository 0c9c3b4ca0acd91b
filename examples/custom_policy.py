"""Extension point: a search policy of your own, built on SearchRun.

This policy screens a question, then estimates only the first step of every
incorrect screening solution (a cheap signal of where solutions go wrong).

    python examples/custom_policy.py
"""

from __future__ import annotations

from prmsynth import (
    LLMStepGenerator,
    Pipeline,
    Question,
    ReasoningTree,
    SearchPolicy,
    SearchRun,
    SearchSettings,
)
from prmsynth.testing import ScriptedLLM, ScriptedRequest


class FirstStepsOnly(SearchPolicy):
    def __init__(self, settings: SearchSettings | None = None) -> None:
        self.settings = settings or SearchSettings()

    async def search(self, question, *, generator, verifier):
        run = SearchRun(
            tree=ReasoningTree(question),
            settings=self.settings,
            generator=generator,
            verifier=verifier,
        )
        if (reason := await run.screen()) is not None:
            return run.result("skipped", reason)
        for rollout in run.tree[run.tree.root]["incorrect_rollouts"]:
            if rollout.steps:
                first = run.tree.add_step(run.tree.root, rollout.steps[0])
                await run.estimate(first, grow=False)
        return run.result("kept")


def script(request: ScriptedRequest) -> str:
    if "first steps" in request.last_message:  # continuing a prefix
        wrong = "3 + 3" in request.last_message
        return f"So the answer is \\boxed{{{7 if wrong else 6}}}."
    if request.sample_index % 2:
        return "Add 3 + 3 twice.\n\nThe answer is \\boxed{7}."
    return "Add 2 + 4.\n\nThe answer is \\boxed{6}."


def main() -> None:
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(script)), policy=FirstStepsOnly()
    )
    [result] = pipeline.run([Question(id="q", text="What is 2 + 4?", reference_answer="6")])
    pipeline.verifier.close()
    tree = result.tree
    for node in tree.children(tree.root):
        print(f"{tree[node]['text']!r}: MC {tree.mc_value(node)}")
    print(f"{result.n_completions} completions")


if __name__ == "__main__":
    main()
