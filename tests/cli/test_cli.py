from __future__ import annotations

import argparse
import errno
import json
import subprocess
import sys
import textwrap

import pytest

from prmsynth import (
    BackendUnavailable,
    ExportError,
    InputError,
    PrefixModeError,
    PublishError,
    StorageError,
)
from prmsynth.cli import build_parser, main
from prmsynth.cli._common import Stopped, reports_errors
from prmsynth.cli._main import command_parsers


def test_help_imports_neither_litellm_nor_llama_cpp_and_opens_no_socket():
    code = textwrap.dedent(
        """
        import socket, sys
        def refuse(*args, **kwargs):
            raise AssertionError("network connection attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import prmsynth
        from prmsynth.cli import main
        try:
            main(["--help"])
        except SystemExit as exit:
            assert exit.code == 0
        for name in ("litellm", "llama_cpp", "math_verify", "sympy", "datasets", "huggingface_hub", "pyarrow"):
            assert name not in sys.modules, name
        print("ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok")


def test_console_entry_point_runs():
    completed = subprocess.run(
        [sys.executable, "-m", "prmsynth", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0
    for option in (
        "--column-names",
        "--answer-column",
        "--num-branches",
        "--max-search",
        "--max-branches",
        "--temperature",
        "--top-p",
        "--api-base",
        "--seed",
        "--limit",
    ):
        assert option in completed.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (
            '{"problem": "p", "final_answer": "1"}\n{"problem": "q"}\n',
            ":2: field 'final_answer': missing field",
        ),
        (
            '{"problem": "p", "final_answer": "1"}\n{"problem": "q", "final_answer": ""}\n',
            ":2: field 'final_answer': empty value",
        ),
        ('{"problem": "p", "final_answer": "1"}\n{broken\n', ":2: invalid JSON"),
    ],
)
def test_bad_input_exits_2_with_a_located_message_and_writes_nothing(
    tmp_path, capsys, content, expected
):
    seed = tmp_path / "seeds.jsonl"
    if content is not None:
        seed.write_text(content)
    out = tmp_path / "out"
    assert main(["run", str(seed), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert str(seed) in error
    assert not out.exists()


def test_bad_option_values_exit_2(tmp_path, capsys):
    seed = tmp_path / "seeds.jsonl"
    seed.write_text(json.dumps({"problem": "p", "final_answer": "1"}) + "\n")
    assert main(["run", str(seed), "--out", str(tmp_path / "o"), "--top-p", "1.5"]) == 2
    assert (
        "argument --top-p: must be a finite number in [0, 1], got '1.5'" in capsys.readouterr().err
    )
    assert main(["run", str(seed), "--out", str(tmp_path / "o"), "--limit", "0"]) == 2


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "run" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "label"])
def test_unknown_first_error_rule_exits_2_naming_the_choices(tmp_path, capsys, command):
    source = tmp_path / "in.jsonl"
    row = {"id": "1", "problem": "p", "final_answer": "1", "steps": ["s"], "answer": "1"}
    source.write_text(json.dumps(row) + "\n")
    out = tmp_path / ("out" if command == "run" else "out.jsonl")
    assert main([command, str(source), "--out", str(out), "--first-error-rule", "median"]) == 2
    error = capsys.readouterr().err
    assert "--first-error-rule" in error and "relative, mc-zero or threshold:X" in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config.json", '{"limit": 3, "limit": 4}'),
        ("config.yaml", "limit: 3\nlimit: 4\n"),
    ],
)
def test_a_config_that_gives_an_option_twice_is_refused(tmp_path, capsys, name, text):
    config = tmp_path / name
    config.write_text(text)
    argv = ["run", "seeds.jsonl", "--out", str(tmp_path / "out"), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "limit" in err and "twice" in err


def test_a_yaml_alias_bomb_in_a_config_is_refused_with_a_short_message(tmp_path, capsys):
    rows = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for name, previous in zip("bcdefgh", "abcdefg"):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    config = tmp_path / "bomb.yaml"
    config.write_text("\n".join(rows) + "\nlimit: *h\n")
    argv = ["run", "seeds.jsonl", "--out", str(tmp_path / "out"), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "aliases expand to more than" in err and len(err) < 500


def test_a_bad_config_value_is_quoted_short(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("limit: [" + ", ".join(["12345"] * 5000) + "]\n")
    argv = ["run", "seeds.jsonl", "--out", str(tmp_path / "out"), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "limit" in err and len(err) < 500


def test_the_log_file_keeps_why_the_start_up_check_failed(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"problem": "What is 2 + 3?", "final_answer": "5"}\n')
    log = tmp_path / "run.log"
    argv = ["run", str(seeds), "--out", str(tmp_path / "out"), "--model", "openai/m"]
    argv += ["--api-base", "http://127.0.0.1:9/v1", "--max-attempts", "1", "--log-file", str(log)]
    assert main(argv) == 2
    printed = capsys.readouterr().err.strip().splitlines()[0]
    assert printed.startswith("prmsynth run: error:")
    assert printed in log.read_text()


# -- one error path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (InputError("seeds.jsonl", "missing field", line=3), 2, "error: seeds.jsonl:3: missing"),
        (PrefixModeError("the model does not continue"), 2, "error: the model does not"),
        (BackendUnavailable("no server at :9"), 2, "error: no server at :9"),
        (ExportError("record 3 breaks its schema"), 1, "error: record 3 breaks"),
        (PublishError("the Hub refused the upload"), 1, "error: the Hub refused"),
        (StorageError("out/t.jsonl", "no space left", after_work=True), 1, "cannot write"),
        (StorageError("out/t.jsonl", "no space left"), 2, "out/t.jsonl: cannot write"),
        (OSError(errno.ENOSPC, "No space left on device", "out/a"), 2, "out/a: cannot write"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.json"), 2, "x.json:"),
        (Stopped(BackendUnavailable("the model died"), "3 rows kept"), 1, "stopped: the model"),
    ],
)
def test_every_error_kind_has_one_exit_status_and_one_message(error, status, message, capsys):
    @reports_errors("demo")
    def handler(args):
        raise error

    assert handler(argparse.Namespace()) == status
    err = capsys.readouterr().err
    assert err.startswith("prmsynth demo: ") and message in err, err
    assert "Traceback" not in err


def test_an_unknown_error_is_a_bug_and_keeps_its_traceback():
    @reports_errors("demo")
    def handler(args):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        handler(argparse.Namespace())


def test_every_command_goes_through_the_one_error_path():
    for name, command in command_parsers(build_parser()).items():
        handler = command.get_default("handler")
        assert getattr(handler, "__wrapped__", None) is not None, name


def test_a_file_that_cannot_be_written_is_one_located_message_and_exit_2(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"response": "The answer is \\boxed{5}.", "reference": "5"}))
    out = tmp_path / "taken"
    out.mkdir()  # a folder where the output file should go
    code = main(
        [
            "verify-answers",
            str(seeds),
            "--response-field",
            "response",
            "--reference-field",
            "reference",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"prmsynth verify-answers: error: {out}: cannot write:"), err
