"""Extension points: a search policy and a first-error rule of your own.

The policy screens a question, then estimates only the first step of every
incorrect screening solution (a cheap signal of where solutions go wrong): one
class, one method (`expand`).  The rule calls a step wrong when its MC value
falls below half the question's: one class, one method (`first_error`).

    python examples/custom_policy.py
"""

from __future__ import annotations

from prmsynth import (
    Evidence,
    FirstErrorRule,
    LLMStepGenerator,
    MonteCarloPolicy,
    OmegaPRM,
    Pipeline,
    Question,
)
from prmsynth.testing import ScriptedLLM, ScriptedRequest


class FirstStepsOnly(MonteCarloPolicy):
    async def expand(self, run):
        for rollout in run.tree.node(run.tree.root).incorrect_rollouts:
            if rollout.steps:
                first = run.tree.add_step(run.tree.root, rollout.steps[0])
                await run.estimate(first, grow=False)


class HalfOfTheQuestion(FirstErrorRule):
    """Wrong: the first step whose MC value is below half of the question's own."""

    name = "half-of-question"
    num_branches = 4  # completions per prefix (the default samples every prefix once)

    def first_error(self, evidence: Evidence) -> int:
        baseline = evidence.mc_value(-1) or 0.0
        for index in range(evidence.n_steps):
            value = evidence.mc_value(index)
            if value is not None and value < baseline / 2:
                return index
        return -1


def script(request: ScriptedRequest) -> str:
    if "first steps" in request.last_message:  # continuing a prefix
        wrong = "3 + 3" in request.last_message
        return f"So the answer is \\boxed{{{7 if wrong else 6}}}."
    if request.sample_index % 2:
        return "Add 3 + 3 twice.\n\nThe answer is \\boxed{7}."
    return "Add 2 + 4.\n\nThe answer is \\boxed{6}."


def main() -> None:
    question = Question(id="q", text="What is 2 + 4?", reference_answer="6")
    generator = LLMStepGenerator(llm=ScriptedLLM(script))
    pipeline = Pipeline(generator=generator, policy=FirstStepsOnly())
    [result] = pipeline.run([question])
    tree = result.tree
    for node in tree.children(tree.root):
        print(f"{tree.node(node).text!r}: MC {tree.mc_value(node)}")
    print(f"{result.n_completions} completions")
    pipeline.verifier.close()

    pipeline = Pipeline(generator=generator, policy=OmegaPRM(first_error_rule=HalfOfTheQuestion()))
    [result] = pipeline.run([question])
    pipeline.verifier.close()
    wrong = [node for node in result.tree.nodes() if result.tree.node(node).label is False]
    print(
        f"first errors named by {HalfOfTheQuestion.name}:",
        [result.tree.node(n).text for n in wrong],
    )


if __name__ == "__main__":
    main()
