"""Every file prmsynth writes gets the mode ``open()`` gives a new file: 0o666 less the umask.

A teammate or a training container on a shared disk must be able to read
what a run, an export or the viewer wrote, as with any file the user makes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest

from prmsynth import FORMATS
from prmsynth.cli import main
from prmsynth.testing import FakeOpenAIServer, FakeRequest

from .conftest import REPO_ROOT

SEEDS = REPO_ROOT / "examples" / "seeds.jsonl"


def responder(request: FakeRequest) -> str:
    """Half the solutions right, half wrong at a planted step; evolver prompts get a question."""
    prompt = request.prompt
    for line in SEEDS.read_text().splitlines():
        seed = json.loads(line)
        if seed["problem"] in prompt:
            answer = str(seed["final_answer"])
            break
    else:
        return "What is 5 plus 8, counted in apples?\n\nThe answer is \\boxed{13}."
    wrong = str(int(answer) + 1)
    if "Here are the first steps" in prompt:
        final = wrong if "BAD" in prompt else answer
        return f"So it is {final}.\n\nThe answer is \\boxed{{{final}}}."
    if request.sample_index % 2 == 0:
        return f"Read it.\n\nWork it out: {answer}.\n\nThe answer is \\boxed{{{answer}}}."
    return f"Read it.\n\nBAD step: {wrong}.\n\nThe answer is \\boxed{{{wrong}}}."


@pytest.fixture
def umask():
    """Restores the process umask the test changes."""
    saved = os.umask(0o022)
    yield
    os.umask(saved)


def write_everything(folder: Path, server: FakeOpenAIServer) -> None:
    """Each command a user runs on one folder: run (two shards), merge, evolve, label,
    verify-answers, every export with and without a split, view and stats."""
    model = ["--model", "openai/fake", "--api-base", server.url]
    (folder / "seeds.jsonl").write_bytes(SEEDS.read_bytes())
    seeds = str(folder / "seeds.jsonl")
    for shard in ("0/2", "1/2"):
        out = str(folder / f"shard{shard[0]}")
        assert main(["run", seeds, "--out", out, *model, "--shard", shard, "--quiet"]) == 0
    out = folder / "out"
    assert main(["merge", str(folder / "shard0"), str(folder / "shard1"), "--out", str(out)]) == 0
    assert main(["evolve", seeds, "--out", str(folder / "evolved.jsonl"), *model, "--quiet"]) == 0
    solutions = folder / "solutions.jsonl"
    row = {"id": "s1", "problem": "What is 6 times 7?", "steps": ["6 * 7 = 42."], "answer": "42"}
    solutions.write_text(json.dumps(row) + "\n")
    assert main(["label", str(solutions), "--out", str(folder / "labelled.jsonl"), *model]) == 0
    responses = folder / "responses.jsonl"
    responses.write_text(json.dumps({"response": "\\boxed{42}", "reference": "42"}) + "\n")
    verify = ["verify-answers", str(responses), "--out", str(folder / "verified.jsonl")]
    assert main([*verify, "--response-field", "response", "--reference-field", "reference"]) == 0
    data = folder / "data"
    data.mkdir()
    trees = str(out / "trees.jsonl")
    for format in FORMATS:
        out_file = str(data / f"{format}.jsonl")
        assert main(["export", trees, "--format", format, "--out", out_file]) == 0
    split = ["--validation-fraction", "0.5", "--out", str(data / "split.jsonl")]
    assert main(["export", trees, "--format", "trl", *split]) == 0
    assert main(["view", trees, "--out", str(folder / "trees.html")]) == 0
    plot = ["--plot", str(folder / "stats.png")] if importlib.util.find_spec("matplotlib") else []
    assert main(["stats", str(out), *plot]) == 0


@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask-022", "umask-002"])
def test_every_file_a_run_export_and_view_write_has_the_mode_open_gives(
    tmp_path, monkeypatch, umask, mask
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local0123456789")
    folder = tmp_path / "work"
    os.umask(mask)
    folder.mkdir()
    with FakeOpenAIServer(responder=responder, keep_bodies=False) as server:
        write_everything(folder, server)
    files = {path: stat.S_IMODE(path.stat().st_mode) for path in folder.rglob("*")}
    names = {path.relative_to(folder).as_posix() for path in files}
    # What the commands wrote is all there (so no writer escaped the check).
    expected = {
        "out/trees.jsonl",
        "out/run.json",
        "out/summary.json",
        "shard0/cache.sqlite",
        "evolved.jsonl",
        "evolved.rejects.jsonl",
        "labelled.jsonl",
        "verified.jsonl",
        "trees.html",
        "data/split.train.jsonl",
        "data/split.jsonl.manifest.json",
        *(f"data/{format}.jsonl" for format in FORMATS),
        *(f"data/{format}.jsonl.manifest.json" for format in FORMATS),
    }
    assert expected <= names
    assert not [name for name in names if name.endswith(".tmp")]
    wrong = {
        path.relative_to(folder).as_posix(): oct(mode)
        for path, mode in files.items()
        if mode != (0o777 if path.is_dir() else 0o666) & ~mask
    }
    assert wrong == {}, f"not {oct(0o666 & ~mask)} (folders {oct(0o777 & ~mask)})"
