"""Extension point: a verifier of your own.

Questions whose answer is a word (a day of the week) and a verifier that
accepts any capitalisation and an optional trailing period. Runs offline on
the scripted fake LLM.

    python examples/custom_verifier.py
"""

from __future__ import annotations

from prmsynth import (
    LLMStepGenerator,
    OmegaPRM,
    Pipeline,
    Question,
    SearchSettings,
    StepVerifier,
    Verdict,
)
from prmsynth.testing import ScriptedLLM, ScriptedRequest


class WeekdayVerifier(StepVerifier):
    """Correct when the solution's last word names the reference day."""

    def verify(self, response, reference, *, finish_reason=None):
        if finish_reason == "length":
            return Verdict(status="unparseable", reason="truncated")
        words = response.replace(".", " ").split()
        if not words:
            return Verdict(status="unparseable", reason="empty response")
        answer = words[-1]
        status = "correct" if answer.lower() == reference.lower() else "incorrect"
        return Verdict(status=status, extracted_answer=answer)


def script(request: ScriptedRequest) -> str:
    day = "Wednesday" if request.sample_index % 3 else "Thursday"
    return f"Monday plus two days.\n\nThat is {day}."


def main() -> None:
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(script)),
        verifier=WeekdayVerifier(),
        policy=OmegaPRM(settings=SearchSettings(max_search=1)),
    )
    question = Question(
        id="day", text="Which day is two days after Monday?", reference_answer="wednesday"
    )
    [result] = pipeline.run([question])
    root = result.tree.node(result.tree.root)
    print(
        f"{result.status}: root MC {result.tree.mc_value(0):.2f} "
        f"({root.n_correct}/{root.n_rollouts} screening solutions right)"
    )


if __name__ == "__main__":
    main()
