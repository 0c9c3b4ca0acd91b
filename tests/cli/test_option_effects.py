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


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--request-timeout", "0"),
        ("--request-timeout", "nan"),
        ("--rpm", "0"),
        ("--rpm", "-1"),
        ("--tpm", "-5"),
        ("--temperature", "nan"),
        ("--top-p", "1.5"),
        ("--max-cost", "nan"),
        ("--max-cost", "-1"),
        ("--max-completions", "0"),
        ("--concurrency", "0"),
        ("--concurrency", "1e20"),
        ("--max-attempts", "0"),
        ("--max-failed-fraction", "inf"),
    ],
)
def test_a_number_out_of_range_is_refused_naming_the_option(tmp_path, seeds, option, value, capsys):
    assert run(seeds, tmp_path / "out", "http://127.0.0.1:9/v1", option, value) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and repr(value) in err
    assert not (tmp_path / "out").exists()


def test_a_number_out_of_range_in_a_config_file_is_refused_naming_the_key(tmp_path, seeds, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("rpm: 0\n")
    argv = ["run", str(seeds), "--out", str(tmp_path / "out"), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "run.yaml" in err and "rpm" in err and "must be a finite number > 0" in err


def test_a_dollar_budget_on_a_model_without_a_price_is_refused(tmp_path, seeds, capsys):
    assert run(seeds, tmp_path / "out", "http://127.0.0.1:9/v1", "--max-cost", "0.0001") == 2
    err = capsys.readouterr().err
    assert "--max-cost: litellm knows no price for openai/fake" in err
    assert "input_cost_per_token" in err and "--max-completions" in err


def test_a_budget_too_small_to_screen_a_question_is_refused(tmp_path, seeds, server, capsys):
    assert run(seeds, tmp_path / "out", server.url, "--max-completions", "7") == 2
    assert "below the 16 completions" in capsys.readouterr().err
    assert not (tmp_path / "out" / "trees.jsonl").exists()


def test_the_start_up_check_waits_out_a_rate_limit_as_the_run_would(tmp_path, seeds, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    with FakeOpenAIServer(fault_sequence=["rate_limit", "rate_limit"], retry_after=0.01) as fake:
        assert run(seeds, tmp_path / "out", fake.url, "--screen-rollouts", "2") == 0
    assert fake.faults_served["rate_limit"] == 2


def test_a_start_up_check_that_stays_rate_limited_says_so(tmp_path, seeds, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    always = FakeOpenAIServer(fault_rule=lambda body: "rate_limit", retry_after=0.01)
    with always as fake:
        assert run(seeds, tmp_path / "out", fake.url, "--max-attempts", "2") == 2
    err = capsys.readouterr().err
    assert "429 (rate-limited)" in err and "--max-attempts" in err


def test_the_parsed_arguments_stop_at_the_command_line_layer(tmp_path, seeds, server):
    # Below cli/ code receives typed settings: every function that is handed the
    # argparse namespace during a whole run, from parsing to the written files,
    # is a function of the command-line layer.
    import argparse
    import sys

    receivers: dict[tuple[str, str], int] = {}

    def profile(frame, event, arg):
        if event != "call" or not frame.f_globals.get("__name__", "").startswith("prmsynth"):
            return
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if any(isinstance(frame.f_locals.get(name), argparse.Namespace) for name in names):
            key = (frame.f_globals["__name__"], code.co_qualname)
            receivers[key] = receivers.get(key, 0) + 1

    sys.setprofile(profile)
    try:
        status = run(seeds, tmp_path / "out", server.url, "--screen-rollouts", "2")
    finally:
        sys.setprofile(None)
    assert status == 0
    assert receivers, "the profile saw no call"
    outside = sorted(module for module, _ in receivers if not module.startswith("prmsynth.cli"))
    assert not outside, f"the parsed arguments reach {outside}"
    # The issue counted 63 such calls in 20 modules; half of that is the bound.
    assert sum(receivers.values()) <= 31, sorted(receivers)


def test_a_folder_of_other_rule_defaults_names_the_rule_that_resumes_it(
    tmp_path, seeds, server, capsys
):
    # A folder started under another version's defaults of the relative rule
    # (max_ratio 0.5, 40 completions, no min_gain) says how to ask for that rule,
    # and asking for it resumes the folder.
    out = tmp_path / "out"
    old_rule = "relative:max_ratio=0.5,min_gain=0,max_completions=40"
    assert (
        run(seeds, out, server.url, "--screen-rollouts", "2", "--first-error-rule", old_rule) == 0
    )
    rule = RunFolder(out).settings()["pipeline"]["policy"]["first_error_rule"]
    assert "min_gain" not in rule  # recorded as the versions before min_gain did
    capsys.readouterr()
    assert run(seeds, out, server.url, "--screen-rollouts", "2") == 2
    assert f"its rule: --first-error-rule {old_rule}" in capsys.readouterr().err
    assert (
        run(seeds, out, server.url, "--screen-rollouts", "2", "--first-error-rule", old_rule) == 0
    )
