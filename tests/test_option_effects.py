"""Every option does what it says: a sampling size has one owner, and an option
that changes nothing under the chosen policy is refused, never ignored."""

from __future__ import annotations

import json

import pytest

from prmsynth import RunFolder
from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer


@pytest.fixture
def seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps({"problem": "What is 2 + 3?", "final_answer": "5"}) + "\n")
    return path


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    with FakeOpenAIServer() as fake:
        yield fake


def run(seeds, out, url, *options):
    argv = ["run", str(seeds), "--out", str(out), "--model", "openai/fake", "--api-base", url]
    return main([*argv, "--no-cache", "--quiet", "--prefix-mode", "quote", *options])


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        (
            ["--num-branches", "16"],
            "--num-branches: has no effect with --policy omegaprm and the relative",
        ),
        (["--policy", "best-of-n", "--num-branches", "8"], "--num-branches: has no effect"),
        (["--policy", "best-of-n", "--max-search", "9"], "--max-search: has no effect"),
        (["--policy", "math-shepherd", "--max-search", "9"], "--max-search: has no effect"),
        (["--policy", "best-of-n", "--first-error-rule", "mc-zero"], "--first-error-rule: has no"),
    ],
)
def test_an_option_without_effect_is_refused_before_any_work(
    tmp_path, seeds, options, refused, capsys
):
    # No server: the options are refused before the model is even asked.
    assert run(seeds, tmp_path / "out", "http://127.0.0.1:9/v1", *options) == 2
    assert refused in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "owner"),
    [
        (
            ["--first-error-rule", "mc-zero", "--num-branches", "16"],
            ("first_error_rule", "num_branches"),
        ),
        (
            ["--first-error-threshold", "0.25", "--num-branches", "16"],
            ("first_error_rule", "num_branches"),
        ),
        (["--policy", "math-shepherd", "--num-branches", "16"], ("settings", "num_branches")),
    ],
)
def test_num_branches_sizes_the_sampling_it_owns(tmp_path, seeds, server, options, owner):
    out = tmp_path / "out"
    assert run(seeds, out, server.url, "--screen-rollouts", "2", *options) == 0
    policy = RunFolder(out).settings()["pipeline"]["policy"]
    assert policy[owner[0]][owner[1]] == 16


def test_the_default_values_stay_accepted_where_they_change_nothing(tmp_path, seeds, server):
    # A config.yaml of an earlier version spells out every default.
    out = tmp_path / "out"
    assert run(seeds, out, server.url, "--num-branches", "4", "--screen-rollouts", "2") == 0
    policy = RunFolder(out).settings()["pipeline"]["policy"]
    assert "num_branches" not in policy["settings"]  # the adaptive rule sizes its own samples
