"""The critic's second opinion: reading its verdict, storing it beside the
Monte Carlo labels, and consensus filtering in exports, end to end."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth import (
    BackendUnavailable,
    Completion,
    ExportSettings,
    LLMCritic,
    Question,
    ReasoningTree,
    Verdict,
    export_records,
    tree_from_dict,
    tree_to_dict,
)
from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer, ScriptedLLM
from prmsynth.verify._critic import read_critique

from ..run.test_pipeline import QUESTIONS, scripted_pipeline

QUESTION = Question(id="q", text="What is 2 + 3?", reference_answer="5")


@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(-1, n - 1))))
def test_a_boxed_index_in_range_is_read_back(case):
    n_steps, index = case
    reply = f"Paragraph by paragraph... \\boxed{{{index}}}"
    assert read_critique(reply, n_steps).first_error == index


@given(st.integers(1, 30), st.integers(-50, 50))
def test_an_index_outside_the_solution_is_no_verdict(n_steps, index):
    critique = read_critique(f"\\boxed{{{index}}}", n_steps)
    assert critique.has_verdict == (-1 <= index < n_steps)


@pytest.mark.parametrize(
    "reply", ["\\boxed{\\text{2}}", "\\boxed{paragraph_2}", "\\boxed{1} no wait, \\boxed{2}"]
)
def test_the_last_boxed_index_counts_in_its_usual_wrappings(reply):
    assert read_critique(reply, 4).first_error == 2


def test_a_cut_off_or_failed_critique_is_no_verdict_not_an_error():
    def cut_off(request):
        return Completion(text="Paragraph 0 looks \\boxed{0", finish_reason="length")

    def broken(request):
        raise RuntimeError("server fell over")

    for script in (cut_off, broken):
        critique = asyncio.run(LLMCritic(llm=ScriptedLLM(script)).critique(QUESTION, ["a"]))
        assert not critique.has_verdict and critique.reason


def test_a_critic_whose_backend_is_gone_stops_the_run():
    def gone(request):
        raise BackendUnavailable("the model crashed")

    with pytest.raises(BackendUnavailable):
        asyncio.run(LLMCritic(llm=ScriptedLLM(gone)).critique(QUESTION, ["a"]))


def test_the_critic_sees_the_problem_and_numbered_steps():
    llm = ScriptedLLM(lambda request: "\\boxed{-1}")
    asyncio.run(LLMCritic(llm=llm).critique(QUESTION, ["2 + 3 = 5.", "So 5."]))
    [(messages, n)] = llm.requests
    prompt = messages[-1]["content"]
    assert n == 1 and QUESTION.text in prompt
    assert "<paragraph_1>\nSo 5.\n</paragraph_1>" in prompt


def critic_index(steps) -> int:
    """The scripted critic's verdict: the first step with a planted error, except
    that it also (wrongly) flags "stays", so that some solutions disagree."""
    flagged = ("BAD", "wrong", "stays")
    return next((i for i, step in enumerate(steps) if any(f in step for f in flagged)), -1)


def critic_reply(prompt: str) -> str:
    steps = re.findall(r"<paragraph_\d+>\n(.*?)\n</paragraph_\d+>", prompt, re.DOTALL)
    return f"Checking each paragraph. \\boxed{{{critic_index(steps)}}}"


def test_the_pipeline_stores_a_critique_on_every_leaf_and_it_survives_serialization():
    critic = LLMCritic(llm=ScriptedLLM(lambda request: critic_reply(request.last_message)))
    results = scripted_pipeline(critic=critic).run(QUESTIONS[:2])
    for result in results:
        tree = result.tree
        leaves = [leaf for leaf in tree.leaves() if leaf != tree.root]
        assert leaves
        for leaf in leaves:
            assert tree.node(leaf).critic_first_error == critic_index(tree.prefix_steps(leaf))
        assert tree_from_dict(json.loads(json.dumps(tree_to_dict(tree)))) == tree


def two_solution_tree(*, right_critique: int | None, wrong_critique: int | None):
    """One right solution and one whose step 1 the search judged wrong."""
    tree = ReasoningTree(QUESTION)
    a, b, c = tree.add_steps(tree.root, ["2 + 3 = 5.", "5 + 1 = 7.", "The answer is 7."])
    d, e = tree.add_steps(a, ["So the sum is 5.", "The answer is 5."])
    tree.mark_terminal(c, Verdict(status="incorrect"))
    tree.mark_terminal(e, Verdict(status="correct"))
    for node, label in ((a, True), (b, False), (d, True)):
        tree.set_label(node, label)
    tree.set_critique(c, wrong_critique)
    tree.set_critique(e, right_critique)
    return tree


@pytest.mark.parametrize("format", ["trl", "math-shepherd", "prm800k", "processbench"])
def test_consensus_keeps_only_solutions_the_critic_agrees_with(format):
    agreeing = two_solution_tree(right_critique=-1, wrong_critique=1)
    disagreeing = two_solution_tree(right_critique=0, wrong_critique=2)
    unread = two_solution_tree(right_critique=None, wrong_critique=None)

    def export(tree, **options):
        return list(export_records([tree], format, ExportSettings(**options)))

    assert len(export(agreeing, consensus=True)) == 2
    assert export(disagreeing, consensus=True) == []
    assert export(unread, consensus=True) == []
    # without consensus the critique changes nothing
    assert export(disagreeing) == export(agreeing) and len(export(agreeing)) == 2


def test_consensus_needs_a_labelled_format():
    with pytest.raises(ValueError, match="consensus=True needs labelled examples"):
        tree = two_solution_tree(right_critique=-1, wrong_critique=1)
        list(export_records([tree], "sft", ExportSettings(consensus=True)))


# -- end to end through litellm and the command line, against a loopback server --------


def planted_responder(request) -> str:
    prompt = request.prompt
    if "<paragraph_0>" in prompt:
        return critic_reply(prompt)
    if "Here are the first steps" in prompt:
        if "BAD" in prompt:
            return "keep going wrong\n\nThe answer is \\boxed{7}."
        return "keep going right\n\nThe answer is \\boxed{5}."
    good = ["2 + 3 = 5.", "Then 5 stays 5.", "The answer is \\boxed{5}."]
    bad = ["2 + 3 = 5.", "BAD: then 5 becomes 7.", "The answer is \\boxed{7}."]
    return "\n\n".join(good if request.sample_index % 2 == 0 else bad)


def test_run_with_a_judge_model_then_a_consensus_export(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"problem": "What is 2 + 3?", "final_answer": "5"}) + "\n")
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=planted_responder) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/solver", "--quiet"]
        argv += ["--api-base", server.url, "--judge-model", "openai/critic"]
        assert main([*argv, "--judge-api-base", server.url]) == 0, capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["judge"] == {
        "model": "openai/critic",
        "api_base": server.url,
    }
    [tree] = [tree_from_dict(json.loads(line)) for line in open(out / "trees.jsonl")]
    leaves = [leaf for leaf in tree.leaves() if leaf != tree.root]
    assert [tree.node(leaf).critic_first_error for leaf in leaves] == [
        critic_index(tree.prefix_steps(leaf)) for leaf in leaves
    ]

    exported = {}
    for flag in ([], ["--consensus"]):
        target = tmp_path / f"trl{len(flag)}.jsonl"
        argv = ["export", str(out / "trees.jsonl"), "--format", "trl", "--out", str(target)]
        assert main([*argv, "--no-deduplicate", *flag]) == 0
        exported[bool(flag)] = [json.loads(line) for line in target.read_text().splitlines()]
    manifest = json.loads(tmp_path.joinpath("trl1.jsonl.manifest.json").read_text())["counts"]

    def first_false(labels) -> int:
        return next((i for i, label in enumerate(labels) if not label), -1)

    kept = [
        record
        for record in exported[False]
        if first_false(record["labels"]) == critic_index(record["completions"])
    ]
    assert exported[True] == kept and kept
    assert manifest["removed_by_consensus"] > 0  # the critic's mistakes are filtered out
    removed = manifest["removed_by_consensus"] + manifest["removed_without_critique"]
    assert len(exported[True]) + removed == len(exported[False])


def test_label_with_a_judge_model_stores_the_critics_verdict_beside_the_mc_one(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    rows = [
        {"id": "ok", "problem": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "So \\boxed{5}."]},
        {"id": "bad", "problem": "What is 2 + 3?", "steps": ["BAD: 2 + 3 = 7.", "So 7."]},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({**row, "answer": "5"}) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    with FakeOpenAIServer(responder=planted_responder) as server:
        argv = ["label", str(source), "--out", str(out), "--model", "openai/solver"]
        argv += ["--api-base", server.url, "--judge-model", "openai/critic"]
        assert main([*argv, "--judge-api-base", server.url]) == 0
    labelled = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert labelled["ok"]["critic_first_error"] == -1
    assert labelled["bad"]["critic_first_error"] == 0
    for row in labelled.values():
        assert row["critic_model"] == "openai/critic"
        assert row["critic_agrees"] == (row["critic_first_error"] == row["first_error"])
