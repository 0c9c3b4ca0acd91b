from __future__ import annotations

import asyncio

from prmsynth import LLMJudgeVerifier
from prmsynth.testing import ScriptedLLM


def judge_by_reference(request):
    # a judge that says CORRECT when the reference appears in the response part of the prompt
    prompt = request.last_message
    reference = prompt.split("Reference answer:\n", 1)[1].split("\n\n", 1)[0]
    response = prompt.split("Response:\n", 1)[1].split("\n\nDoes", 1)[0]
    return "CORRECT" if reference in response else "INCORRECT, it differs"


def test_judge_verdicts_and_prompt():
    llm = ScriptedLLM(judge_by_reference)
    judge = LLMJudgeVerifier(llm=llm)
    assert judge.verify("The capital is Paris.", "Paris").status == "correct"
    assert judge.verify("The capital is Lyon.", "Paris").status == "incorrect"
    messages, n = llm.requests[0]
    assert n == 1 and "Reference answer:\nParis" in messages[0]["content"]


def test_truncated_responses_are_not_sent_to_the_judge():
    llm = ScriptedLLM(judge_by_reference)
    verdicts = asyncio.run(
        LLMJudgeVerifier(llm=llm).averify_many(
            ["Paris", "Par"], "Paris", finish_reasons=["stop", "length"]
        )
    )
    assert [v.status for v in verdicts] == ["correct", "unparseable"]
    assert len(llm.requests) == 1


def test_a_failing_judge_gives_unparseable_not_an_exception():
    def broken(request):
        raise ConnectionError("judge offline")

    verdict = LLMJudgeVerifier(llm=ScriptedLLM(broken)).verify("x", "y")
    assert verdict.status == "unparseable"
    assert "judge offline" in verdict.reason


def test_verify_works_inside_a_running_event_loop():
    judge = LLMJudgeVerifier(llm=ScriptedLLM(lambda request: "correct"))

    async def inside():
        return judge.verify("a", "a")

    assert asyncio.run(inside()).status == "correct"
