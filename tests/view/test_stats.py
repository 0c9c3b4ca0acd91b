"""``prmsynth stats``: the numbers of a run folder, checked against its files."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys

import pytest

from prmsynth import (
    ExportSettings,
    LLMStepGenerator,
    OmegaPRM,
    Pipeline,
    Question,
    SearchPolicy,
    collect_stats,
    export_records,
    format_table,
    read_tree_file,
)
from prmsynth.cli._view import add_parsers, run_stats
from prmsynth.run._folder import run_to_directory
from prmsynth.testing import ScriptedLLM
from prmsynth.view._stats import LABEL_THRESHOLDS, histogram_bin

from ..run.test_pipeline import QUESTIONS
from ..search.test_search import BAD, GOOD, BoxedVerifier, planted_script, solution
from .test_view import write_synthetic_trees

INFO = {"model": "fake", "sampling": {"seed": 0}}


def stats_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="prmsynth")
    add_parsers(parser.add_subparsers(dest="command"))
    return run_stats(parser.parse_args(["stats", *argv]))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class FailsOnQuestion2(SearchPolicy):
    async def search(self, question, *, generator, verifier):
        if question.id == "2":
            raise RuntimeError("backend exploded")
        return await OmegaPRM().search(question, generator=generator, verifier=verifier)


def mixed_pipeline() -> Pipeline:
    """Planted solutions, except that questions about 'easy' are always right."""
    planted = planted_script(GOOD, BAD)

    def script(request):
        if "easy" in request.prompt:
            return solution(GOOD)
        return planted(request)

    return Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(script)),
        verifier=BoxedVerifier(),
        policy=FailsOnQuestion2(),
    )


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A folder with kept, skipped (all correct) and failed questions."""
    folder = tmp_path_factory.mktemp("mixed")
    questions = [
        *QUESTIONS,
        Question(id="e1", text="An easy question", reference_answer="5"),
        Question(id="e2", text="Another easy question", reference_answer="5"),
    ]
    run_to_directory(mixed_pipeline(), questions, folder, run_info=INFO, log=None)
    return folder


def solution_lengths(node, depth=0):
    lengths = [depth] if node["terminal"] and depth else []
    for child in node["children"]:
        lengths += solution_lengths(child, depth + 1)
    return lengths


def step_values(node, root=True):
    values = [] if root else [node["mc_value"]]
    for child in node["children"]:
        values += step_values(child, root=False)
    return values


def label_counts_from_export(trees, threshold):
    records = list(export_records(trees, "trl", ExportSettings(positive_threshold=threshold)))
    positive = sum(sum(record["labels"]) for record in records)
    negative = sum(len(record["labels"]) for record in records) - positive
    with_error = sum(1 for record in records if not all(record["labels"]))
    return positive, negative, with_error, len(records) - with_error


def test_counts_match_the_files(mixed_run):
    stats = collect_stats(mixed_run)
    trees = read_jsonl(mixed_run / "trees.jsonl")
    skipped = read_jsonl(mixed_run / "skipped.jsonl")
    questions = stats["questions"]
    assert questions["kept"] == len(trees) == 4
    assert questions["skipped"] == 2 and questions["skipped_by_reason"] == {"all_correct": 2}
    assert questions["failed"] == 1 and questions["failed_by_reason"] == {"RuntimeError": 1}
    assert questions["done"] == len(trees) + len(skipped) == questions["total"] == 7
    assert stats["complete"] is False  # a failed question makes the run incomplete

    lengths = [n for record in trees for n in solution_lengths(record["reasoning_steps"])]
    steps = stats["steps_per_solution"]
    assert steps["solutions"] == len(lengths)
    assert (steps["min"], steps["max"]) == (min(lengths), max(lengths))
    assert steps["median"] == statistics.median(lengths)
    assert steps["mean"] == pytest.approx(statistics.fmean(lengths), abs=1e-3)

    values = [v for record in trees for v in step_values(record["reasoning_steps"])]
    histogram = stats["mc_histogram"]
    assert histogram["none"] == values.count(None)
    assert histogram["steps"] == len(values)
    assert histogram["counts"][0] == values.count(0.0) > 0
    assert histogram["counts"][-1] == values.count(1.0) > 0
    assert len(histogram["counts"]) == 10 and histogram["edges"][-1] == 1.0

    # incomplete run: tokens and cost are summed from the lines of both files
    tokens = stats["tokens"]
    assert tokens["source"] == "lines"
    lines = trees + skipped
    assert tokens["completions"] == sum(r["n_completions"] for r in lines)
    assert tokens["prompt_tokens"] == sum(r["prompt_tokens"] for r in lines)
    assert tokens["completion_tokens"] == sum(r["completion_tokens"] for r in lines)
    assert tokens["total_tokens"] == tokens["prompt_tokens"] + tokens["completion_tokens"] > 0
    assert tokens["cost_usd"] == pytest.approx(sum(r["cost"] for r in lines))


def test_label_balance_matches_the_trl_export(mixed_run):
    stats = collect_stats(mixed_run)
    trees = list(read_tree_file(mixed_run / "trees.jsonl"))
    for entry, threshold in zip(stats["label_balance"], LABEL_THRESHOLDS, strict=True):
        assert entry["threshold"] == threshold
        positive, negative, with_error, without_error = label_counts_from_export(trees, threshold)
        assert (entry["steps_positive"], entry["steps_negative"]) == (positive, negative)
        assert (entry["paths_with_error"], entry["paths_without_error"]) == (
            with_error,
            without_error,
        )
        assert entry["positive_share"] == pytest.approx(positive / (positive + negative), abs=1e-4)
        assert negative > 0 and positive > 0


def test_intermediate_values_give_each_threshold_its_balance(tmp_path):
    write_synthetic_trees(tmp_path / "trees.jsonl", 40)
    stats = collect_stats(tmp_path)
    trees = list(read_tree_file(tmp_path / "trees.jsonl"))
    balances = stats["label_balance"]
    for entry in balances:
        positive, negative, with_error, without_error = label_counts_from_export(
            trees, entry["threshold"]
        )
        assert (entry["steps_positive"], entry["steps_negative"]) == (positive, negative)
        assert (entry["paths_with_error"], entry["paths_without_error"]) == (
            with_error,
            without_error,
        )
    assert [b["steps_positive"] for b in balances] == sorted(
        (b["steps_positive"] for b in balances), reverse=True
    )
    assert balances[0]["steps_positive"] > balances[-1]["steps_positive"]
    values = [tree.mc_value(n) for tree in trees for n in tree.nodes() if n != tree.root]
    expected = [0] * 10
    for value in values:
        if value is not None:
            expected[histogram_bin(value)] += 1
    assert stats["mc_histogram"]["counts"] == expected
    assert sum(expected[1:-1]) > 0  # values strictly between 0 and 1 exist
    assert stats["complete"] is None and stats["questions"]["total"] is None
    assert stats["tokens"]["source"] == "lines"
    assert stats["tokens"]["cost_usd"] == pytest.approx(40 * 0.001)


def test_a_complete_run_takes_tokens_from_its_summary(tmp_path):
    from ..run.test_pipeline import scripted_pipeline

    summary = run_to_directory(
        scripted_pipeline(), QUESTIONS[:3], tmp_path, run_info=INFO, log=None
    )
    stats = collect_stats(tmp_path)
    assert stats["complete"] is True
    tokens = stats["tokens"]
    assert tokens["source"] == "summary.json"
    assert tokens["completions"] == summary.usage.n_completions
    assert tokens["prompt_tokens"] == summary.usage.prompt_tokens
    records = read_jsonl(tmp_path / "trees.jsonl")
    assert tokens["completions"] == sum(r["n_completions"] for r in records)
    assert tokens["completion_tokens"] == sum(r["completion_tokens"] for r in records)


def test_table_shows_every_section(mixed_run, capsys):
    stats = collect_stats(mixed_run)
    table = format_table(stats)
    for heading in (
        "Questions",
        "Steps per solution",
        "MC values of steps",
        "Label balance",
        "Tokens and cost",
    ):
        assert heading in table
    assert re.search(r"^  all_correct +2$", table, re.MULTILINE)
    assert re.search(r"^  RuntimeError +1$", table, re.MULTILINE)
    assert "never sampled" in table and "[0.90, 1.00]" in table
    assert f"{stats['tokens']['prompt_tokens']:,}" in table
    assert stats_cli(str(mixed_run)) == 0
    assert capsys.readouterr().out == table
    assert stats_cli(str(mixed_run), "--json") == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(stats))


def test_plot_writes_a_png(mixed_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "stats.png"
    assert stats_cli(str(mixed_run), "--plot", str(figure)) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["stats.png"]
    assert "figure -> " in capsys.readouterr().err


def test_plot_without_matplotlib_says_what_to_install(mixed_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert stats_cli(str(mixed_run), "--plot", str(tmp_path / "stats.png")) == 2
    captured = capsys.readouterr()
    assert "pip install 'prmsynth[plot]'" in captured.err
    assert captured.out == ""  # checked before any output
    assert not (tmp_path / "stats.png").exists()


def test_bad_folders_exit_2_with_a_clear_message(tmp_path, mixed_run, capsys):
    assert stats_cli(str(tmp_path / "missing")) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("x")
    assert stats_cli(str(tmp_path / "file.txt")) == 2
    assert "is not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert stats_cli(str(empty)) == 2
    assert "not a prmsynth run folder" in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    lines = (mixed_run / "trees.jsonl").read_text().splitlines()
    (broken / "trees.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    assert stats_cli(str(broken)) == 2
    assert "trees.jsonl:2: bad JSON" in capsys.readouterr().err
    (broken / "trees.jsonl").write_text(lines[0] + "\n" + '{"question_id": "x"}\n')
    assert stats_cli(str(broken)) == 2
    assert "trees.jsonl:2: malformed tree record" in capsys.readouterr().err
    (broken / "trees.jsonl").write_text(lines[0] + "\n")
    (broken / "skipped.jsonl").write_text('{"question_id": "y", "status": "odd"}\n')
    assert stats_cli(str(broken)) == 2
    assert "skipped.jsonl:1: field 'status': unknown status 'odd'" in capsys.readouterr().err
    (broken / "skipped.jsonl").unlink()
    (broken / "summary.json").write_text("{not json")
    assert stats_cli(str(broken)) == 2
    assert "summary.json: cannot be read" in capsys.readouterr().err
    (broken / "summary.json").unlink()
    assert stats_cli(str(mixed_run), "--plot", str(tmp_path / "no" / "such.png")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_torn_last_line_is_left_out(tmp_path, mixed_run):
    text = (mixed_run / "trees.jsonl").read_text()
    (tmp_path / "trees.jsonl").write_text(text + text[:40])
    assert collect_stats(tmp_path)["questions"]["kept"] == len(text.splitlines())
