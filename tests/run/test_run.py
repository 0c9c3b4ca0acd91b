"""The main job's output folder: files, resume, budgets, shards (scripted LLM)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth import InputError, OmegaPRM, Question, RunFolder, StorageError, read_tree_file
from prmsynth.run._folder import select_shard

from .test_pipeline import QUESTIONS, scripted_pipeline

INFO = {"model": "fake", "sampling": {"seed": 0}}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(tmp_path, questions=QUESTIONS, **options):
    options.setdefault("run_info", INFO)
    pipeline = options.pop("pipeline", None) or scripted_pipeline()
    return RunFolder(tmp_path).run(pipeline, questions, **options)


def ids_in(path):
    return [row["question_id"] for row in read_jsonl(path)]


def test_run_writes_every_file(tmp_path):
    questions = [*QUESTIONS[:3], Question(id="easy", text="uniform", reference_answer="5")]
    summary = run(tmp_path, questions)
    assert summary["complete"] is True
    assert summary["kept"] == 4 and summary["failed"] == 0
    trees = list(read_tree_file(tmp_path / "trees.jsonl"))
    assert sorted(tree.question.id for tree in trees) == sorted(q.id for q in questions)
    for tree in trees:
        tree.check_invariants()
    assert sorted(ids_in(tmp_path / "flat.jsonl")) == sorted(q.id for q in questions)
    sft = read_jsonl(tmp_path / "sft.jsonl")
    assert all(row["messages"][2]["content"].endswith("\\boxed{5}.") for row in sft)
    dpo = read_jsonl(tmp_path / "dpo.jsonl")
    assert dpo and all(
        row["non_preferred_output"][0]["content"].endswith("\\boxed{7}.") for row in dpo
    )
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["lines_written"]["trees.jsonl"] == 4
    assert written["completions"] == sum(
        r["n_completions"] for r in read_jsonl(tmp_path / "trees.jsonl")
    )
    assert json.loads((tmp_path / "run.json").read_text())["model"] == "fake"


def test_skipped_questions_are_recorded_with_reasons(tmp_path):
    from prmsynth import LLMStepGenerator, Pipeline
    from prmsynth.testing import ScriptedLLM

    from ..search.test_search import BoxedVerifier

    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(lambda r: "The answer is \\boxed{5}.")),
        verifier=BoxedVerifier(),
    )
    summary = run(tmp_path, QUESTIONS[:2], pipeline=pipeline)
    assert summary["skipped_by_reason"] == {"all_correct": 2}
    skipped = read_jsonl(tmp_path / "skipped.jsonl")
    assert [(row["reason"], row["n_correct"], row["n_rollouts"]) for row in skipped] == [
        ("all_correct", 16, 16)
    ] * 2
    assert (tmp_path / "trees.jsonl").read_text() == ""


def test_a_crash_keeps_finished_questions_and_a_rerun_resumes(tmp_path):
    seen = []

    def explode_after_two(result):
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, pipeline=scripted_pipeline(concurrency=1), on_result=explode_after_two)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] is False and "KeyboardInterrupt" in summary["error"]
    assert len(read_jsonl(tmp_path / "trees.jsonl")) == 2

    summary = run(tmp_path)
    assert summary["complete"] is True
    assert summary["questions_resumed"] == 2
    assert sorted(ids_in(tmp_path / "trees.jsonl")) == sorted(q.id for q in QUESTIONS)
    assert sorted(ids_in(tmp_path / "flat.jsonl")) == sorted(q.id for q in QUESTIONS)


def test_a_torn_last_line_is_cut_and_its_question_runs_again(tmp_path):
    run(tmp_path, QUESTIONS[:2])
    trees = tmp_path / "trees.jsonl"
    lines = trees.read_text().splitlines(keepends=True)
    trees.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # a write cut off mid-line
    summary = run(tmp_path, QUESTIONS[:2])
    assert summary["complete"] is True
    assert sorted(ids_in(trees)) == ["0", "1"]
    assert len(read_jsonl(tmp_path / "flat.jsonl")) == 2


def test_other_settings_are_refused_unless_starting_over(tmp_path):
    run(tmp_path, QUESTIONS[:1])
    with pytest.raises(InputError, match=r"other settings \(seed_file_sha256\b.*--overwrite"):
        run(tmp_path, QUESTIONS[:1], run_info={**INFO, "seed_file_sha256": "other"})
    summary = run(
        tmp_path, QUESTIONS[:2], run_info={**INFO, "seed_file_sha256": "other"}, overwrite=True
    )
    assert summary["questions_resumed"] == 0 and summary["kept"] == 2


def test_a_folder_resumed_from_python_with_another_pipeline_is_refused(tmp_path):
    """The run's identity comes from the Pipeline itself, not from what a caller records."""
    import attrs

    from prmsynth import MathShepherd, OmegaPRM, SamplingSettings, SearchSettings, Threshold

    run(tmp_path, QUESTIONS[:1], run_info={})
    base = scripted_pipeline()
    other_pipelines = {
        "pipeline.policy.name": scripted_pipeline(policy=MathShepherd()),
        "pipeline.policy.settings.max_search": scripted_pipeline(
            policy=OmegaPRM(settings=SearchSettings(max_search=9))
        ),
        "pipeline.policy.first_error_rule.name": scripted_pipeline(
            policy=OmegaPRM(first_error_rule=Threshold(num_branches=8))
        ),
        "pipeline.generator.sampling.temperature": scripted_pipeline(
            generator=attrs.evolve(base.generator, sampling=SamplingSettings(temperature=0.2))
        ),
        "pipeline.generator.prefix_mode": scripted_pipeline(
            generator=attrs.evolve(base.generator, prefix_mode="continue")
        ),
    }
    for path, pipeline in other_pipelines.items():
        with pytest.raises(InputError, match=rf"other settings \(.*{path}\b"):
            run(tmp_path, QUESTIONS[:2], run_info={}, pipeline=pipeline)
        pipeline.verifier.close()
    # A setting the policy never reads (OmegaPRM's adaptive rule sizes its own
    # samples) is no part of the run: the folder resumes.
    unused = scripted_pipeline(policy=OmegaPRM(settings=SearchSettings(num_branches=16)))
    summary = run(tmp_path, QUESTIONS[:2], run_info={}, pipeline=unused)
    assert summary["questions_resumed"] == 1 and summary["complete"] is True
    settings = RunFolder(tmp_path).settings()
    assert settings["pipeline"]["policy"]["name"] == "OmegaPRM"
    assert settings["prefix_mode"] == "quote"


def test_a_folder_of_unknown_files_is_refused(tmp_path):
    (tmp_path / "trees.jsonl").write_text("")
    with pytest.raises(InputError, match="unknown run"):
        run(tmp_path)


def test_failed_questions_run_again_on_resume(tmp_path):
    from prmsynth import OmegaPRM, SearchPolicy

    class FailOnce(SearchPolicy):
        def __init__(self, fail):
            self.fail = fail

        async def search(self, question, *, generator, verifier):
            if self.fail and question.id == "1":
                raise ConnectionError("backend down")
            return await OmegaPRM().search(question, generator=generator, verifier=verifier)

    summary = run(tmp_path, QUESTIONS[:3], pipeline=scripted_pipeline(policy=FailOnce(True)))
    assert summary["failed"] == 1 and summary["complete"] is False
    assert summary["failures"] == [{"question_id": "1", "reason": "ConnectionError: backend down"}]
    summary = run(tmp_path, QUESTIONS[:3], pipeline=scripted_pipeline(policy=FailOnce(False)))
    assert summary["complete"] is True and summary["failed"] == 0
    assert sorted(ids_in(tmp_path / "trees.jsonl")) == ["0", "1", "2"]
    assert read_jsonl(tmp_path / "skipped.jsonl") == []


def completions_served(pipeline):
    return sum(n for _, n in pipeline.generator.llm.requests)


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("max_completions", [17, 50, 130])
def test_a_completion_budget_is_hard_and_the_rest_runs_on_resume(
    tmp_path, concurrency, max_completions
):
    pipeline = scripted_pipeline(concurrency=concurrency)
    summary = run(tmp_path, pipeline=pipeline, max_completions=max_completions)
    # No request is sent past the budget, whatever runs at once.
    assert completions_served(pipeline) <= max_completions
    assert summary["completions"] == completions_served(pipeline)
    assert summary["stopped_by"] == "max_completions" and summary["complete"] is False
    done = summary["questions_done"]
    assert summary["questions_not_done"] == len(QUESTIONS) - done and summary["failed"] == 0
    assert len(read_jsonl(tmp_path / "trees.jsonl")) == done
    # Resumed with the same budget, what the first run spent counts, the
    # questions it left unfinished included: the folder never goes over.
    again = scripted_pipeline(concurrency=concurrency)
    summary = run(tmp_path, pipeline=again, max_completions=max_completions)
    assert completions_served(pipeline) + completions_served(again) <= max_completions
    assert summary["completions"] == completions_served(pipeline) + completions_served(again)
    summary = run(tmp_path)  # no budget: the questions the budget left unfinished run
    assert summary["complete"] is True and summary["questions_done"] == len(QUESTIONS)
    assert sorted(ids_in(tmp_path / "trees.jsonl")) == sorted(q.id for q in QUESTIONS)


def test_a_budget_too_small_to_screen_one_question_is_refused_before_any_request(tmp_path):
    pipeline = scripted_pipeline()
    with pytest.raises(InputError, match="below the 16 completions that screening"):
        run(tmp_path, pipeline=pipeline, max_completions=10)
    assert completions_served(pipeline) == 0 and not (tmp_path / "run.json").exists()


def test_a_large_concurrency_costs_tasks_for_the_questions_in_flight_only():
    import asyncio

    pipeline = scripted_pipeline(concurrency=10**6)
    tasks_seen = []

    async def search_two():
        async for _ in pipeline.astream(QUESTIONS[:2]):
            tasks_seen.append(len(asyncio.all_tasks()))

    asyncio.run(search_two())
    pipeline.verifier.close()
    assert len(tasks_seen) == 2 and max(tasks_seen) <= 8


def test_screening_stays_within_max_branches(tmp_path):
    from prmsynth import OmegaPRM, SearchSettings

    settings = SearchSettings(screen_rollouts=16, max_branches=8)
    pipeline = scripted_pipeline(policy=OmegaPRM(settings=settings), concurrency=1)
    run(tmp_path, QUESTIONS[:3], pipeline=pipeline)
    records = read_jsonl(tmp_path / "trees.jsonl") + read_jsonl(tmp_path / "skipped.jsonl")
    assert [record["n_completions"] <= 8 for record in records] == [True] * 3
    assert completions_served(pipeline) <= 3 * 8


@given(st.lists(st.text(min_size=1, max_size=5), unique=True, max_size=40), st.integers(1, 5))
def test_shards_partition_the_questions(ids, count):
    questions = [Question(id=i, text="t", reference_answer="1") for i in ids]
    shards = [select_shard(questions, index, count) for index in range(count)]
    assert sorted(q.id for shard in shards for q in shard) == sorted(ids)


def test_merge_joins_shard_folders(tmp_path):
    for index in range(2):
        run(
            tmp_path / f"s{index}",
            QUESTIONS,
            run_info={**INFO, "shard": f"{index}/2"},
            shard=(index, 2),
        )
    summary = RunFolder(tmp_path / "all").merge([tmp_path / "s0", tmp_path / "s1"])
    assert summary["complete"] is True and summary["kept"] == len(QUESTIONS)
    assert sorted(ids_in(tmp_path / "all" / "trees.jsonl")) == sorted(q.id for q in QUESTIONS)
    assert len(read_jsonl(tmp_path / "all" / "flat.jsonl")) == len(QUESTIONS)
    (tmp_path / "odd").mkdir()
    run(tmp_path / "odd", QUESTIONS[:1], run_info={**INFO, "answer_field": "other"})
    with pytest.raises(InputError, match="other settings"):
        RunFolder(tmp_path / "bad").merge([tmp_path / "s0", tmp_path / "odd"])


SLOW_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from prmsynth import LLMStepGenerator, Pipeline, Question
    from prmsynth import RunFolder
    from prmsynth.testing import ScriptedLLM
    sys.path.insert(0, sys.argv[2])
    from tests.search.test_search import BAD, GOOD, BoxedVerifier, planted_script

    script = planted_script(GOOD, BAD)

    class SlowLLM(ScriptedLLM):
        async def complete(self, messages, **options):
            await asyncio.sleep(0.02)
            return await super().complete(messages, **options)

    pipeline = Pipeline(generator=LLMStepGenerator(llm=SlowLLM(script)),
                        verifier=BoxedVerifier(), concurrency=3)
    questions = [Question(id=str(i), text=f"Planted {i}", reference_answer="5") for i in range(30)]
    RunFolder(sys.argv[1]).run(pipeline, questions, run_info={"model": "slow"})
    """
)


def test_a_busy_folder_is_refused_and_a_killed_run_resumes_with_every_question_once(tmp_path):
    from ..conftest import REPO_ROOT

    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN)
    out = tmp_path / "out"
    command = [sys.executable, str(script), str(out), str(REPO_ROOT)]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    trees = out / "trees.jsonl"
    while time.monotonic() < deadline:
        if trees.exists() and trees.read_text().count("\n") >= 8:
            break
        time.sleep(0.05)
    # A second run on the busy folder is refused, and writes nothing there.
    before = trees.read_bytes()
    with pytest.raises(
        InputError, match=f"in use by another prmsynth process \\(pid {process.pid}\\)"
    ):
        run(out, run_info={"model": "slow"})
    assert trees.read_bytes()[: len(before)] == before
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed_at = trees.read_text().count("\n")
    assert 8 <= killed_at < 30, "the run should have been killed mid-way"
    assert json.loads((out / "summary.json").read_text())["complete"] is False

    subprocess.run(command, check=True, timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["questions_resumed"] >= killed_at
    ids = ids_in(trees)
    assert sorted(ids) == sorted(str(i) for i in range(30))  # each question exactly once
    for name in ("trees.jsonl", "flat.jsonl", "sft.jsonl", "dpo.jsonl", "skipped.jsonl"):
        read_jsonl(out / name)  # every line is valid JSON
    assert sorted(ids_in(out / "flat.jsonl")) == sorted(ids)


def test_lines_that_fail_their_schema_are_never_written(tmp_path, monkeypatch):
    import prmsynth.run._folder as run_module

    def reject_sft(record, format):
        return ["messages: too short"] if format == "sft" else []

    monkeypatch.setattr(run_module, "validate_record", reject_sft)
    summary = run(tmp_path, QUESTIONS[:2])
    assert summary["failed"] == 2 and summary["kept"] == 0
    assert all(f["reason"].startswith("schema: sft.jsonl: messages") for f in summary["failures"])
    assert read_jsonl(tmp_path / "trees.jsonl") == [] and read_jsonl(tmp_path / "sft.jsonl") == []


def test_every_line_a_run_writes_validates_against_its_schema(tmp_path):
    from prmsynth import validate_file

    run(tmp_path)
    for name, format in (
        ("trees.jsonl", "tree"),
        ("flat.jsonl", "flat"),
        ("sft.jsonl", "sft"),
        ("dpo.jsonl", "dpo"),
    ):
        assert validate_file(tmp_path / name, format) == [], name


def test_a_corrupt_line_inside_trees_jsonl_is_set_aside_and_only_its_question_redone(tmp_path):
    import io

    run(tmp_path, QUESTIONS[:3])
    trees = tmp_path / "trees.jsonl"
    lines = trees.read_text().splitlines(keepends=True)
    damaged = lines[1][:40] + "\n"  # a damaged line with finished work after it
    lines[1] = damaged
    trees.write_text("".join(lines))
    log = io.StringIO()
    pipeline = scripted_pipeline()
    summary = run(tmp_path, QUESTIONS[:3], pipeline=pipeline, log=log)
    assert summary["complete"] is True and summary["questions_resumed"] == 2
    assert "trees.jsonl:2: bad JSON" in log.getvalue() and "runs again" in log.getvalue()
    assert summary["lines_set_aside"] and "trees.corrupt.jsonl" in summary["lines_set_aside"][0]
    [aside] = read_jsonl(tmp_path / "trees.corrupt.jsonl")
    assert (aside["line"], aside["text"]) == (2, damaged.rstrip("\n"))
    # The records after the damaged line stay; only question "1" was searched again.
    assert sorted(ids_in(trees)) == ["0", "1", "2"]
    for messages, _ in pipeline.generator.llm.requests:
        assert any(QUESTIONS[1].text in message["content"] for message in messages)
    assert [line for line in trees.read_text().splitlines(keepends=True)[:2]] == [
        lines[0],
        lines[2],
    ]


def test_a_question_with_a_lone_surrogate_is_searched_and_written(tmp_path):
    odd = Question(id="odd", text="Planted question \ud800", reference_answer="5")
    summary = run(tmp_path, [odd, *QUESTIONS[:1]])
    assert summary["complete"] is True
    assert {tree.question.text for tree in read_tree_file(tmp_path / "trees.jsonl")} >= {odd.text}


def test_merge_is_complete_only_with_every_shard_present_and_finished(tmp_path):
    for index in range(3):
        folder = tmp_path / f"s{index}"
        run(folder, QUESTIONS, run_info={**INFO, "shard": f"{index}/3"}, shard=(index, 3))
    partial = RunFolder(tmp_path / "two").merge([tmp_path / "s0", tmp_path / "s2"])
    assert partial["complete"] is False and partial["missing_shards"] == ["1/3"]
    summary = json.loads((tmp_path / "s2" / "summary.json").read_text())
    (tmp_path / "s2" / "summary.json").write_text(json.dumps({**summary, "complete": False}))
    unfinished = RunFolder(tmp_path / "all").merge([tmp_path / f"s{i}" for i in range(3)])
    assert unfinished["complete"] is False and unfinished["missing_shards"] == []
    assert unfinished["incomplete_shards"] == [str(tmp_path / "s2")]


def test_a_cost_budget_holds_against_a_priced_model(tmp_path, monkeypatch, capsys):
    from prmsynth.cli import main
    from prmsynth.testing import FakeOpenAIServer

    from ..verify.test_critic import planted_responder

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"problem": f"What is 2 + 3? ({i})", "final_answer": "5"}) + "\n"
            for i in range(30)
        )
    )
    max_cost, concurrency = 0.003, 4
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=planted_responder, keep_bodies=True) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/gpt-4o-mini"]
        argv += ["--api-base", server.url, "--quiet", "--concurrency", str(concurrency)]
        assert main([*argv, "--max-cost", str(max_cost)]) == 0, capsys.readouterr().err
        requested = [int(body.get("n") or 1) for body in server.bodies]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "max_cost" and summary["complete"] is False
    assert 0 < summary["questions_done"] < 30
    # Every completion sent is counted, and the run goes over by at most the
    # requests in flight when the budget ran out (their cost beyond the estimate).
    assert summary["completions"] <= sum(requested)
    per_completion = summary["cost_usd"] / summary["completions"]
    in_flight = concurrency * max(requested) * per_completion * 1.5
    assert max_cost <= summary["cost_usd"] + in_flight
    assert summary["cost_usd"] <= max_cost + in_flight
    assert in_flight < 0.5 * max_cost  # a bound that means something at this budget


def test_a_run_pulls_questions_as_workers_free_up_and_counts_a_one_shot_iterator(tmp_path):
    pulled = []

    def questions():
        for question in QUESTIONS:
            pulled.append(question.id)
            yield question
        for i in range(5, 40):
            pulled.append(str(i))
            yield Question(id=str(i), text=f"Planted question {i}", reference_answer="5")

    ahead = []
    finished = []

    def on_result(result):
        finished.append(result.question.id)
        ahead.append(len(pulled) - len(finished))

    concurrency = 3
    summary = run(
        tmp_path,
        questions(),
        pipeline=scripted_pipeline(concurrency=concurrency),
        on_result=on_result,
    )
    # Read ahead of the results: the questions being searched and the finished
    # results waiting to be written, each at most `concurrency`; the rest stay
    # in the source, however many there are.
    assert max(ahead) <= 2 * concurrency
    assert summary["complete"] is True
    assert summary["questions_total"] == summary["questions_done"] == 40
    assert sorted(ids_in(tmp_path / "trees.jsonl")) == sorted(map(str, range(40)))


def test_a_resumed_run_rebuilds_its_files_from_the_trees_and_keeps_one_tree_per_question(tmp_path):
    run(tmp_path, QUESTIONS[:3])
    trees = tmp_path / "trees.jsonl"
    lines = trees.read_text().splitlines(keepends=True)
    trees.write_text("".join(lines) + lines[0])  # a question written twice (an old bug, an edit)
    (tmp_path / "flat.jsonl").write_text("")  # derived files lost
    summary = run(tmp_path, QUESTIONS[:3])
    assert summary["complete"] is True and summary["questions_resumed"] == 3
    assert summary["kept"] + summary["skipped"] == 3
    assert trees.read_text() == "".join(lines)
    assert sorted(ids_in(tmp_path / "flat.jsonl")) == sorted(ids_in(trees))


def test_the_command_line_counts_its_shard_up_front_and_leaves_no_scratch_file(
    tmp_path, monkeypatch, capsys
):
    import tempfile

    from prmsynth._seeds import shard_of
    from prmsynth.cli import main
    from prmsynth.testing import FakeOpenAIServer

    from ..verify.test_critic import planted_responder

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "problem": f"What is 2 + 3? ({i})", "final_answer": "5"})
            + "\n"
            for i in range(12)
        )
    )
    in_shard = sorted(f"q{i}" for i in range(12) if shard_of(f"q{i}", 2) == 1)
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=planted_responder) as server:
        argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake", "--quiet"]
        argv += ["--api-base", server.url, "--shard", "1/2", "--screen-rollouts", "2"]
        assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions_total"] == summary["questions_done"] == len(in_shard)
    done = ids_in(out / "trees.jsonl") + ids_in(out / "skipped.jsonl")
    assert sorted(done) == in_shard
    assert list(scratch.iterdir()) == []


def test_a_merge_into_a_folder_in_use_is_refused(tmp_path):
    from prmsynth._io import folder_lock

    for index in range(2):
        run(tmp_path / f"s{index}", run_info={**INFO, "shard": f"{index}/2"}, shard=(index, 2))
    with folder_lock(tmp_path / "merged"), pytest.raises(InputError, match="in use by another"):
        RunFolder(tmp_path / "merged").merge([tmp_path / "s0", tmp_path / "s1"])
    summary = RunFolder(tmp_path / "merged").merge([tmp_path / "s0", tmp_path / "s1"])
    assert summary["kept"] + summary["skipped"] == len(QUESTIONS)


def test_spend_no_line_records_survives_a_run_that_stops_at_once(tmp_path):
    first = scripted_pipeline(concurrency=2)
    run(tmp_path, pipeline=first, max_completions=50)

    def broken_source():
        raise RuntimeError("the seed source went away")
        yield  # a generator

    with pytest.raises(RuntimeError, match="went away"):
        run(tmp_path, broken_source())  # no budget, and nothing done
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["completions"] == completions_served(first)
    third = scripted_pipeline(concurrency=2)
    run(tmp_path, pipeline=third, max_completions=50)
    assert completions_served(first) + completions_served(third) <= 50


def test_a_one_shot_iterator_stopped_early_never_counts_below_what_is_done(tmp_path):
    run(tmp_path, QUESTIONS[:3])
    summary = run(tmp_path, iter(QUESTIONS), max_completions=17)
    assert summary["questions_done"] >= 3
    assert summary["questions_total"] >= summary["questions_done"]
    assert summary["questions_not_done"] >= 0 and summary["complete"] is False


class CancelSwallowingPolicy(OmegaPRM):
    """Question "0" is searched; every other one waits, and turns its
    cancellation into an error, as a library's timeout firing at the same
    moment does."""

    async def search(self, question, *, generator, verifier):
        if question.id == "0":
            return await super().search(question, generator=generator, verifier=verifier)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise TimeoutError("the cancellation was lost in a timeout") from None


def test_a_run_whose_writing_fails_ends_even_when_searches_lose_their_cancellation(tmp_path):
    def fail_writing(result):
        raise StorageError(tmp_path / "trees.jsonl", "no space left on device")

    outcome = []

    def start():
        pipeline = scripted_pipeline(policy=CancelSwallowingPolicy(), concurrency=4)
        try:
            run(tmp_path, [*QUESTIONS, *QUESTIONS[1:]], pipeline=pipeline, on_result=fail_writing)
        except StorageError as error:
            outcome.append(error)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the run hung after its writing failed"
    assert [str(error) for error in outcome] == [
        f"{tmp_path / 'trees.jsonl'}: cannot write: no space left on device"
    ]
    # What was committed before the error stays, and the summary says the run is not complete.
    assert ids_in(tmp_path / "trees.jsonl") == ["0"]
    assert RunFolder(tmp_path).summary()["complete"] is False


def test_a_folder_of_the_version_before_the_pipeline_identity_resumes_on_its_own_keys(tmp_path):
    """run.json without "pipeline" (an earlier version): compared on what it recorded."""
    run(tmp_path, QUESTIONS[:1], run_info={"model": "fake"})
    settings = json.loads((tmp_path / "run.json").read_text())
    legacy = {key: value for key, value in settings.items() if key != "pipeline"}
    (tmp_path / "run.json").write_text(json.dumps(legacy))
    summary = run(tmp_path, QUESTIONS[:2], run_info={"model": "fake"})
    assert summary["questions_resumed"] == 1 and summary["complete"] is True

    legacy["search"]["max_search"] = 9
    (tmp_path / "run.json").write_text(json.dumps(legacy))
    with pytest.raises(InputError, match=r"other settings \(search\.max_search\)"):
        run(tmp_path, QUESTIONS[:2], run_info={"model": "fake"})
    # What that version also compared: the server, the judge, the verifier.
    for key, value in (("api_base", "http://other:8000/v1"), ("judge", {"model": "j"})):
        changed = {**json.loads(json.dumps(legacy)), key: value}
        changed["search"]["max_search"] = 4
        (tmp_path / "run.json").write_text(json.dumps(changed))
        with pytest.raises(InputError, match=rf"other settings \({key}\)"):
            run(tmp_path, QUESTIONS[:2], run_info={"model": "fake"})


def test_the_returned_summary_is_the_one_summary_json_holds(tmp_path):
    questions = [*QUESTIONS[:2], Question(id="easy", text="uniform", reference_answer="5")]
    summary = run(tmp_path, questions, max_completions=10_000)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert summary == written
    assert list(summary) == list(written)  # the keys in summary.json's order
    spent = read_jsonl(tmp_path / "trees.jsonl") + read_jsonl(tmp_path / "skipped.jsonl")
    assert summary["completions"] == sum(line["n_completions"] for line in spent)
    assert summary["prompt_tokens"] == sum(line["prompt_tokens"] for line in spent)


def test_a_summary_written_before_the_end_says_incomplete_and_lacks_the_end_keys(
    tmp_path, monkeypatch
):
    from prmsynth.run._folder import RunSummary
    from prmsynth.run._progress import Progress

    seen = []
    original = Progress.update

    def spy(self, tally, result=None):
        if result is not None and not seen:  # the first question is done: the run goes on
            seen.append(json.loads((tmp_path / "summary.json").read_text()))
        return original(self, tally, result)

    monkeypatch.setattr(Progress, "update", spy)
    final = run(tmp_path, QUESTIONS[:2])
    [during] = seen
    assert during["complete"] is False and final["complete"] is True
    end_keys = {"questions_total", "questions_not_done", "stopped_by", "finished_at"}
    assert set(final) - set(during) == {*end_keys, "wall_seconds"}
    # Every field of the typed summary is a key of the file (usage is four of them).
    fields = {field.name for field in attrs.fields(RunSummary)} - {"run_info", "usage"}
    assert fields - {"lines_set_aside", "error"} <= set(final)


def test_an_evolver_with_only_evolve_runs_in_a_folder_as_in_a_pipeline(tmp_path):
    class Doubled:  # duck-typed: no QuestionEvolver base, no evolve_with_report
        async def evolve(self, questions):
            return [*questions, *(attrs.evolve(q, id=q.id + "-again") for q in questions)]

    summary = run(tmp_path, QUESTIONS[:2], pipeline=scripted_pipeline(evolver=Doubled()))
    assert summary["complete"] is True
    assert sorted(ids_in(tmp_path / "trees.jsonl") + ids_in(tmp_path / "skipped.jsonl")) == [
        "0",
        "0-again",
        "1",
        "1-again",
    ]
