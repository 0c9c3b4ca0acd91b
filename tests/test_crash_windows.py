"""Every multi-file write is all-or-nothing as the next command sees it: an
export, a merge or a push killed at any point leaves the old files or the
new ones (its renames finished by the next command on the folder), never a
mix, and no temporary file survives the next command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prmsynth import Question, RunFolder, export_file
from prmsynth._io import clean_leftovers
from prmsynth.export._formats import manifest_path

from .run.test_pipeline import scripted_pipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    Question(id=str(i), text=f"Planted question {i}", reference_answer="5") for i in range(8)
]

# Runs ``CALL`` in a process that dies (as SIGKILL would: no cleanup) at
# the N-th call of ``os.replace``, or at the N-th line written.
_DYING = textwrap.dedent(
    """
    import os, sys
    import prmsynth._io as io
    what, n = sys.argv[1], int(sys.argv[2])
    calls = [0]
    def counted(real):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n:
                os._exit(9)
            return real(*args, **kwargs)
        return call
    if what == "rename":
        os.replace = counted(os.replace)
    else:
        io.dumps_line = counted(io.dumps_line)
    from prmsynth import RunFolder, export_file, ExportSettings
    exec(sys.argv[3])
    """
)


def die_during(call: str, what: str, n: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _DYING, what, str(n), call],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    RunFolder(folder).run(scripted_pipeline(), QUESTIONS, run_info={"model": "m"})
    return folder


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def manifest_matches(out: Path) -> bool:
    manifest = json.loads(manifest_path(out).read_text())
    return all(
        lines(out.with_name(entry["path"])) == entry["records"]
        for entry in manifest["files"].values()
    )


def visible_leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.parametrize("renames_done", [0, 1, 2])
def test_an_export_killed_between_its_renames_is_whole_after_the_next_command(
    run_folder, tmp_path, renames_done
):
    out = tmp_path / "trl.jsonl"
    trees = run_folder / "trees.jsonl"
    export_file([next(RunFolder(run_folder).trees())], "trl", out)  # an older, smaller export
    old = out.read_text()
    # Renames: the commit record, the data, the manifest; die before the next one.
    die_during(f"export_file({str(trees)!r}, 'trl', {str(out)!r})", "rename", renames_done + 1)
    clean_leftovers(tmp_path)  # what the next command on the folder does first
    assert manifest_matches(out)
    assert visible_leftovers(tmp_path) == []
    # Before the commit record the old export stands; after it, the new one.
    assert (out.read_text() == old) == (renames_done == 0)


def test_a_killed_export_leaves_nothing_the_next_export_does_not_remove(run_folder, tmp_path):
    out = tmp_path / "trl.jsonl"
    trees = run_folder / "trees.jsonl"
    for line in (1, 5, 9):
        die_during(f"export_file({str(trees)!r}, 'trl', {str(out)!r})", "line", line)
    assert visible_leftovers(tmp_path)  # temporary files and scratch folders
    manifest = export_file(trees, "trl", out)
    assert visible_leftovers(tmp_path) == []
    assert lines(out) == manifest["files"]["all"]["records"]


@pytest.mark.parametrize("renames_done", [0, 1, 4, 7])
def test_a_merge_killed_before_its_summary_is_finished_or_redone_by_a_rerun(
    run_folder, tmp_path, renames_done
):
    merged = tmp_path / "merged"
    call = f"RunFolder({str(merged)!r}).merge([{str(run_folder)!r}])"
    die_during(call, "rename", renames_done + 1)
    summary = RunFolder(merged).merge([run_folder])  # the same merge again: never refused
    assert summary["kept"] == lines(merged / "trees.jsonl")
    assert lines(merged / "trees.jsonl") + lines(merged / "skipped.jsonl") == len(QUESTIONS)
    assert visible_leftovers(merged) == [".prmsynth.lock"]


def test_a_merge_into_a_folder_of_another_run_is_still_refused(run_folder, tmp_path):
    from prmsynth import InputError

    other = tmp_path / "other"
    RunFolder(other).run(scripted_pipeline(), QUESTIONS[:2], run_info={"model": "m"})
    with pytest.raises(InputError, match="already holds a run"):
        RunFolder(other).merge([run_folder])


def test_a_failed_push_dry_run_leaves_its_folder_empty_and_the_retry_works(
    run_folder, tmp_path, monkeypatch
):
    from prmsynth.publish import _push

    folder = tmp_path / "staged"

    def broken_card(*args, **kwargs):
        raise OSError("the card could not be made")

    monkeypatch.setattr(_push, "dataset_card", broken_card)
    with pytest.raises(OSError, match="card"):
        _push.push(run_folder, "me/data", dry_run=True, folder=folder)
    assert not folder.exists()
    assert visible_leftovers(tmp_path) == []
    monkeypatch.undo()
    report = _push.push(run_folder, "me/data", dry_run=True, folder=folder)
    assert (folder / "README.md").exists() and (folder / "trl").is_dir()
    assert report.folder == folder
