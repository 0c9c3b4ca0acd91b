"""A full or read-only disk: one message naming the path, exit 2 (1 after
work began), no traceback, no hang; a rerun with room finishes the job.

The disks are small tmpfs mounts, which need root (as in CI); elsewhere the
tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prmsynth.testing import FakeOpenAIServer

REPO_ROOT = Path(__file__).resolve().parent.parent
N_QUESTIONS = 40


def _mount(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path, request):
    """A small file system at tmp_path/disk (2 MB, or the size the test's
    ``disk_size`` mark gives), unmounted afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (as in CI)")
    marker = request.node.get_closest_marker("disk_size")
    folder = tmp_path / "disk"
    _mount(folder, marker.args[0] if marker else "2m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(seed=3) as fake:
        yield fake


@pytest.fixture
def seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    with open(path, "w", encoding="utf-8") as file:
        for i in range(N_QUESTIONS):
            # Long questions: each line and cache entry takes room.
            text = f"What is {i} + 3? " + "Think of it step by step. " * 40
            file.write(json.dumps({"id": f"q{i}", "problem": text, "final_answer": str(i + 3)}))
            file.write("\n")
    return path


def prmsynth(*argv, timeout=180):
    """The command line in a process of its own (a hang fails the test)."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-fake-0123456789", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "prmsynth", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


def run_argv(seeds, out, server, *extra):
    return ["run", seeds, "--out", out, "--model", "openai/m", "--api-base", server.url, "-q"]


def assert_one_clean_message(result, path_part):
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot write" in lines[0] and path_part in lines[0], lines[0]


def question_ids(out: Path) -> list[str]:
    ids = []
    for name in ("trees.jsonl", "skipped.jsonl"):
        path = out / name
        if path.exists():
            ids += [json.loads(line)["question_id"] for line in path.read_text().splitlines()]
    return ids


@pytest.mark.parametrize("filled_kb", [0, 1200, 1900])
def test_a_full_disk_stops_the_run_with_one_message_and_a_rerun_completes_it(
    small_disk, seeds, server, filled_kb
):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * filled_kb * 1024)
    out = small_disk / "out"
    result = prmsynth(*run_argv(seeds, out, server))
    assert result.returncode in (1, 2), result.stderr
    assert_one_clean_message(result, str(small_disk))
    # Finished questions were kept whole: every line read back is a question once.
    done = question_ids(out)
    assert len(done) == len(set(done))
    filler.unlink()
    (out / "cache.sqlite").unlink(missing_ok=True)  # the room the cache took, freed too
    for suffix in ("-wal", "-shm"):
        (out / f"cache.sqlite{suffix}").unlink(missing_ok=True)
    again = prmsynth(*run_argv(seeds, out, server), "--no-cache")
    assert again.returncode == 0, again.stderr
    assert sorted(question_ids(out)) == sorted(f"q{i}" for i in range(N_QUESTIONS))
    assert json.loads((out / "summary.json").read_text())["complete"] is True
    assert not [path.name for path in out.iterdir() if path.name.endswith(".tmp")]


def test_a_full_disk_without_the_cache_stops_the_run_too(small_disk, seeds, server):
    (small_disk / "filler").write_bytes(b"\0" * 2010 * 1024)
    result = prmsynth(*run_argv(seeds, small_disk / "out", server), "--no-cache")
    assert result.returncode in (1, 2)
    assert_one_clean_message(result, str(small_disk))
    assert not [p.name for p in (small_disk / "out").glob(".*.tmp")]


@pytest.mark.disk_size("32m")
def test_a_read_only_disk_gives_exit_2_and_one_message_for_every_command(
    small_disk, seeds, server, tmp_path
):
    finished = small_disk / "finished"
    first = prmsynth(*run_argv(seeds, finished, server))
    assert first.returncode == 0, first.stderr
    _read_only(small_disk)
    out_file = small_disk / "trl.jsonl"
    attempts = {
        "a new run": run_argv(seeds, small_disk / "new", server),
        "a finished run resumed": run_argv(seeds, finished, server),
        "merge": ["merge", finished, "--out", small_disk / "merged"],
        "export": ["export", finished / "trees.jsonl", "--format", "trl", "--out", out_file],
    }
    for what, argv in attempts.items():
        result = prmsynth(*argv)
        assert result.returncode == 2, (what, result.stderr)
        assert "Traceback" not in result.stderr, (what, result.stderr)
        assert str(small_disk) in result.stderr, (what, result.stderr)
    # What was committed before stays as it was, readable.
    assert sorted(question_ids(finished)) == sorted(f"q{i}" for i in range(N_QUESTIONS))


@pytest.mark.parametrize("command", ["label", "evolve"])
def test_a_full_disk_stops_label_and_evolve_with_one_message(
    small_disk, seeds, server, tmp_path, command
):
    rows = tmp_path / "rows.jsonl"
    with open(rows, "w", encoding="utf-8") as file:
        for i in range(N_QUESTIONS):
            steps = [f"{i} + 3 = {i + 3}. " + "So it goes. " * 30, f"\\boxed{{{i + 3}}}"]
            row = {"id": f"r{i}", "problem": f"What is {i} + 3?", "steps": steps}
            file.write(json.dumps({**row, "answer": str(i + 3)}) + "\n")
    (small_disk / "filler").write_bytes(b"\0" * 1900 * 1024)
    source = rows if command == "label" else seeds
    argv = [command, source, "--out", small_disk / "out.jsonl", "--model", "openai/m"]
    result = prmsynth(*argv, "--api-base", server.url, "-q")
    assert result.returncode == 1, result.stderr
    assert_one_clean_message(result, str(small_disk))
