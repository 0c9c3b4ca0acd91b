from __future__ import annotations

from prmsynth import (
    LLMStepGenerator,
    NoEvolution,
    OmegaPRM,
    Pipeline,
    Question,
    QuestionEvolver,
    SearchPolicy,
    SearchResult,
    SearchSettings,
)
from prmsynth.testing import ScriptedLLM

from ..search.test_search import BAD, GOOD, BoxedVerifier, planted_script

QUESTIONS = [
    Question(id=str(i), text=f"Planted question {i}", reference_answer="5") for i in range(5)
]


def scripted_pipeline(**parts) -> Pipeline:
    parts.setdefault("generator", LLMStepGenerator(llm=ScriptedLLM(planted_script(GOOD, BAD))))
    return Pipeline(verifier=BoxedVerifier(), **parts)


def test_run_returns_results_in_input_order():
    results = scripted_pipeline(concurrency=2).run(QUESTIONS)
    assert [r.question.id for r in results] == [q.id for q in QUESTIONS]
    assert {r.status for r in results} == {"kept"}


def test_a_failing_question_is_recorded_and_the_run_goes_on():
    class Flaky(SearchPolicy):
        async def search(self, question, *, generator, verifier):
            if question.id == "2":
                raise RuntimeError("backend exploded")
            return await OmegaPRM().search(question, generator=generator, verifier=verifier)

    results = scripted_pipeline(policy=Flaky()).run(QUESTIONS)
    failed = [r for r in results if r.status == "failed"]
    assert [(r.question.id, r.reason) for r in failed] == [("2", "RuntimeError: backend exploded")]
    assert sum(r.status == "kept" for r in results) == 4


def test_user_parts_plug_in():
    class Doubler(QuestionEvolver):
        async def evolve(self, questions):
            return [
                *questions,
                *(
                    q.__class__(
                        id=q.id + "-again", text=q.text, reference_answer=q.reference_answer
                    )
                    for q in questions
                ),
            ]

    class CountingPolicy(SearchPolicy):
        def __init__(self):
            self.seen = []

        async def search(self, question, *, generator, verifier):
            self.seen.append(question.id)
            return await OmegaPRM(settings=SearchSettings(max_search=0)).search(
                question, generator=generator, verifier=verifier
            )

    policy = CountingPolicy()
    results = scripted_pipeline(evolver=Doubler(), policy=policy).run(QUESTIONS[:2])
    assert sorted(policy.seen) == ["0", "0-again", "1", "1-again"]
    assert all(isinstance(r, SearchResult) for r in results)
    assert isinstance(scripted_pipeline().evolver, NoEvolution)
