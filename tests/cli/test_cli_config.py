"""``--config FILE``: defaults for any command's options, and a run's own config.yaml."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import yaml

from prmsynth import RunFolder
from prmsynth.cli import build_parser, main
from prmsynth.cli._main import command_parsers
from prmsynth.testing import FakeOpenAIServer

from ..run.test_pipeline import QUESTIONS, scripted_pipeline

COMMANDS = sorted(command_parsers(build_parser()))


def skip_toml_without_a_reader(name):
    if name.endswith(".toml") and sys.version_info < (3, 11):
        if importlib.util.find_spec("tomli") is None:
            pytest.skip("TOML needs Python 3.11 (tomllib) or tomli")


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    pipeline = scripted_pipeline()
    RunFolder(folder).run(pipeline, QUESTIONS[:3], run_info={"model": "m"})
    pipeline.verifier.close()
    return folder / "trees.jsonl"


def write_config(path, config):
    if path.suffix == ".json":
        path.write_text(json.dumps(config))
    elif path.suffix == ".toml":
        lines = [f"{key} = {json.dumps(value)}" for key, value in config.items()]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(yaml.safe_dump(config))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".toml"])
def test_a_config_file_gives_every_option_even_the_required_ones(tmp_path, trees, suffix):
    skip_toml_without_a_reader(suffix)
    out = tmp_path / "trl.jsonl"
    config = {"trees": [str(trees)], "format": "trl", "out": str(out), "deduplicate": False}
    path = write_config(tmp_path / f"export{suffix}", config)
    assert main(["export", "--config", str(path)]) == 0
    assert read_jsonl(out) and {"prompt", "completions", "labels"} <= set(read_jsonl(out)[0])
    manifest = json.loads((tmp_path / "trl.jsonl.manifest.json").read_text())
    assert manifest["settings"]["deduplicate"] is False


def test_flags_on_the_command_line_win_over_the_config(tmp_path, trees):
    out = tmp_path / "ms.jsonl"
    config = {"trees": str(trees), "format": "trl", "out": str(tmp_path / "trl.jsonl")}
    path = write_config(tmp_path / "export.yaml", config)
    argv = ["export", f"--config={path}", "--format", "math-shepherd", "--out", str(out)]
    assert main(argv) == 0
    assert "value" in read_jsonl(out)[0]  # math-shepherd, not trl
    assert not (tmp_path / "trl.jsonl").exists()


def test_keys_may_use_dashes_or_underscores(tmp_path, trees):
    config = {"format": "trl", "out": str(tmp_path / "a.jsonl"), "validation_fraction": 0.5}
    path = write_config(tmp_path / "c.yaml", {**config, "split-seed": 3})
    assert main(["export", str(trees), "--config", str(path)]) == 0
    assert (tmp_path / "a.train.jsonl").exists() and (tmp_path / "a.validation.jsonl").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_key_exits_2_naming_the_file_and_the_key(tmp_path, capsys, command):
    path = write_config(tmp_path / "c.yaml", {"max-brunches": 4})
    assert main([command, "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "'max-brunches'" in error
    assert f"not an option of 'prmsynth {command}'" in error
    assert "Traceback" not in error


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"max-branches": "many"}, "'max-branches': must be a whole number >= 1, got 'many'"),
        ({"max-branches": 2.5}, "'max-branches': must be a whole number >= 1, got '2.5'"),
        ({"rpm": 0}, "'rpm': must be a finite number > 0, got '0'"),
        ({"no-cache": "yes"}, "'no-cache': expected true or false"),
        ({"policy": "greedy"}, "'policy': expected one of omegaprm, math-shepherd, best-of-n"),
        ({"temperature": None}, "'temperature': expected a value, got null"),
        ({"model": ["a", "b"]}, "'model': expected a string or a number"),
        ({"config": "other.yaml"}, "'config': not an option"),
        ({"max-branches": 4, "max_branches": 5}, "the same option as 'max-branches'"),
    ],
)
def test_a_bad_value_exits_2_naming_the_key(tmp_path, capsys, config, expected):
    path = write_config(tmp_path / "run.yaml", config)
    out = tmp_path / "out"
    assert main(["run", "seeds.jsonl", "--out", str(out), "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and expected in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("c.yaml", "format: trl\nout: [unclosed\n", "c.yaml:3: invalid YAML"),
        ("c.json", '{"format": "trl",\n', "c.json:2: invalid JSON"),
        ("c.toml", "format = \n", "c.toml: invalid TOML"),
        ("c.yaml", "- format\n- trl\n", "must hold a mapping"),
        ("c.ini", "format=trl\n", "unknown config format"),
    ],
)
def test_an_unreadable_config_exits_2_naming_the_file(tmp_path, capsys, name, text, expected):
    skip_toml_without_a_reader(name)
    path = tmp_path / name
    path.write_text(text)
    assert main(["export", "t.jsonl", "--config", str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_a_missing_config_exits_2(tmp_path, capsys):
    assert main(["stats", "out", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: cannot read" in capsys.readouterr().err


def test_an_empty_config_changes_nothing(tmp_path, trees):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    out = tmp_path / "trl.jsonl"
    argv = ["export", str(trees), "--format", "trl", "--out", str(out), "--config", str(path)]
    assert main(argv) == 0
    assert read_jsonl(out)


@pytest.fixture
def model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    with FakeOpenAIServer() as server:
        yield server


def run_argv(seeds, out, server):
    return [
        "run",
        str(seeds),
        "--out",
        str(out),
        "--model",
        "openai/fake",
        "--api-base",
        server.url,
        "--screen-rollouts",
        "2",
        "--quiet",
    ]


def test_a_run_writes_its_config_and_the_config_resumes_and_repeats_it(tmp_path, model):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"problem": f"What is {i} + 1?", "final_answer": str(i + 1)}) + "\n"
            for i in range(4)
        )
    )
    out = tmp_path / "out"
    assert main([*run_argv(seeds, out, model), "--limit", "2", "-v"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seed-file"] == str(seeds.resolve()) and config["out"] == str(out.resolve())
    assert config["screen-rollouts"] == 2 and config["limit"] == 2
    assert config["overwrite"] is False
    for reporting in ("verbose", "quiet", "log-file", "config"):
        assert reporting not in config
    # Every option of the command is there, under the name --config reads.
    run_parser = command_parsers(build_parser())["run"]
    options = {a.dest for a in run_parser._actions} - {"help", "verbose", "quiet", "log_file"}
    assert {key.replace("-", "_") for key in config} == options - {"config"}

    settings = json.loads((out / "run.json").read_text())
    # The recorded command says what the run does, not how it reported.
    assert "--limit 2" in settings["command"] and " -v" not in settings["command"]
    requests = model.requests
    # The same folder: resumed (nothing left to do, so no request beyond the check
    # and the prefix-mode probe).
    assert main(["run", "--config", str(out / "config.yaml")]) == 0
    assert json.loads((out / "run.json").read_text()) == settings  # "--config" not in it
    assert model.requests == requests + 2
    # A flag wins: two more questions on the same folder, the same identity.
    assert main(["run", "--config", str(out / "config.yaml"), "--limit", "4", "-q"]) == 0
    assert json.loads((out / "summary.json").read_text())["questions_done"] == 4
    settings = json.loads((out / "run.json").read_text())
    assert settings["limit"] == 4
    # A fresh folder: the same settings in run.json.
    fresh = tmp_path / "fresh"
    assert main(["run", "--config", str(out / "config.yaml"), "--out", str(fresh), "-q"]) == 0
    repeated = json.loads((fresh / "run.json").read_text())
    # The same settings; only the recorded command names the other folder.
    assert repeated.pop("command") == settings.pop("command").replace(str(out), str(fresh))
    assert repeated == settings
    assert yaml.safe_load((fresh / "config.yaml").read_text())["out"] == str(fresh.resolve())


def test_a_folder_refused_for_other_settings_keeps_its_config(tmp_path, model, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"problem": "What is 1 + 1?", "final_answer": "2"}) + "\n")
    out = tmp_path / "out"
    assert main(run_argv(seeds, out, model)) == 0
    before = (out / "config.yaml").read_text()
    assert main([*run_argv(seeds, out, model), "--max-search", "2"]) == 2
    assert "pipeline.policy.settings.max_search" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == before
