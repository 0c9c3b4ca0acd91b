"""Run the whole pipeline offline on the scripted fake LLM and print the tree.

The script plants a known first error ("BAD step"), so you can see the binary
search find it: the step's MC value is 0 and its parent's is above 0.

    python examples/scripted_pipeline.py
"""

from __future__ import annotations

from prmsynth import LLMStepGenerator, Pipeline, Question
from prmsynth.testing import ScriptedLLM, ScriptedRequest

GOOD = "Add the numbers: 2 + 3.\n\n2 + 3 = 5.\n\nThe answer is \\boxed{5}."
BAD = "Add the numbers: 2 + 3.\n\nBAD step: 2 + 3 = 6.\n\nThe answer is \\boxed{6}."


def script(request: ScriptedRequest) -> str:
    prompt = request.last_message
    if "Here are the first steps" not in prompt:  # a whole solution: half right, half wrong
        return GOOD if request.sample_index % 2 == 0 else BAD
    if "BAD step" in prompt:
        return "So the total is 6.\n\nThe answer is \\boxed{6}."
    return "2 + 3 = 5.\n\nThe answer is \\boxed{5}."


def main() -> None:
    pipeline = Pipeline(generator=LLMStepGenerator(llm=ScriptedLLM(script)))
    question = Question(id="demo", text="What is 2 + 3?", reference_answer="5")
    [result] = pipeline.run([question])
    pipeline.verifier.close()
    tree = result.tree
    print(f"{result.status}: {result.n_completions} completions, {len(tree)} nodes")
    for node in tree.nodes():
        depth = len(tree.path(node)) - 1
        value = tree.mc_value(node)
        shown = "  -  " if value is None else f"{value:.2f}"
        print(f"{'  ' * depth}[{shown}] {tree.node(node).text[:60]}")


if __name__ == "__main__":
    main()
