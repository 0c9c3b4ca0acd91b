"""SIGKILL each writing command at random moments, resume it, check the invariants.

Against the loopback fake server (``prmsynth.testing.FakeOpenAIServer``, with
injected faults), each command is started, killed with SIGKILL after a random
delay, and run again to the end; after every resume:

- ``run``: every question is in ``trees.jsonl`` or ``skipped.jsonl`` exactly
  once, ``summary.json`` says complete, each derived file has its lines;
- ``label``: one output row per input row, in input order;
- ``evolve``: the output is whole JSON Lines with its rejects file;
- ``export``: the manifest's counts match the data files (checked right after
  the kill, once the next command's clean-up ran, and after the rerun);
- ``merge``: the rerun is accepted and holds every question once;
- every command: no hidden temporary file or scratch folder is left.

    python benchmarks/kill_harness.py --kills 20

prints one row per command: kills, kills that landed mid-work, resumes that
finished, invariant violations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from prmsynth._io import clean_leftovers  # noqa: E402
from prmsynth.testing import FakeOpenAIServer, FaultRates  # noqa: E402

LEFTOVER_SUFFIXES = (".tmp", ".scratch", ".staging", ".commit")


def prmsynth(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": "sk-fake-0123456789", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "prmsynth", *map(str, argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(argv: list[str]) -> tuple[int, str]:
    process = prmsynth(argv)
    _, err = process.communicate(timeout=600)
    return process.returncode, err


def kill_after(argv: list[str], seconds: float) -> bool:
    """Start ``argv``, SIGKILL it after ``seconds``; True when it was still running."""
    process = prmsynth(argv)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def leftovers(folder: Path) -> list[str]:
    return [
        p.name
        for p in folder.iterdir()
        if p.name.startswith(".") and p.name.endswith(LEFTOVER_SUFFIXES)
    ]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_inputs(folder: Path, n: int) -> tuple[Path, Path]:
    seeds, rows = folder / "seeds.jsonl", folder / "label.jsonl"
    with open(seeds, "w") as s, open(rows, "w") as r:
        for i in range(n):
            text = f"What is {i} + 3?"
            s.write(json.dumps({"id": f"q{i}", "problem": text, "final_answer": str(i + 3)}) + "\n")
            steps = [f"{i} + 3 = {i + 3}.", f"The answer is \\boxed{{{i + 3}}}."]
            r.write(
                json.dumps({"id": f"r{i}", "problem": text, "steps": steps, "answer": str(i + 3)})
                + "\n"
            )
    return seeds, rows


def check_run(out: Path, n: int) -> list[str]:
    problems = []
    ids = [r["question_id"] for name in ("trees.jsonl", "skipped.jsonl") for r in jsonl(out / name)]
    if sorted(ids) != sorted(f"q{i}" for i in range(n)):
        problems.append(f"{len(ids)} lines for {len(set(ids))} of {n} questions")
    if not json.loads((out / "summary.json").read_text()).get("complete"):
        problems.append("summary not complete")
    kept = len(jsonl(out / "trees.jsonl"))
    if len(jsonl(out / "flat.jsonl")) != kept:
        problems.append("flat.jsonl does not match trees.jsonl")
    return problems


def check_export(out: Path) -> list[str]:
    manifest_file = out.with_name(out.name + ".manifest.json")
    if not manifest_file.exists():
        return [] if not out.exists() else ["data without a manifest"]
    manifest = json.loads(manifest_file.read_text())
    problems = []
    for entry in manifest["files"].values():
        found = len(jsonl(out.with_name(entry["path"])))
        if found != entry["records"]:
            problems.append(f"{entry['path']}: {found} lines, the manifest says {entry['records']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kills per command")
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    n = args.questions
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="prmsynth-kill-") as scratch,
        FakeOpenAIServer(
            faults=FaultRates(server_error=0.1, rate_limit=0.05), seed=args.seed
        ) as server,
    ):
        base = Path(scratch)
        seeds, label_rows = write_inputs(base, n)
        model = ["--model", "openai/m", "--api-base", server.url, "-q", "--concurrency", "8"]
        # A finished run to export and merge from.
        shard_runs = []
        for shard in range(2):
            out = base / f"shard{shard}"
            code, err = finish(["run", seeds, "--out", out, "--shard", f"{shard}/2", *model])
            assert code == 0, err
            shard_runs.append(out)
        full = base / "full"
        code, err = finish(["run", seeds, "--out", full, *model])
        assert code == 0, err

        def timed(argv: list[str]) -> float:
            started = time.monotonic()
            code, err = finish(argv)
            assert code == 0, err
            return time.monotonic() - started

        commands = {
            "run": lambda k: ["run", seeds, "--out", base / f"run{k}", *model, "--no-cache"],
            "label": lambda k: [
                "label",
                label_rows,
                "--out",
                base / f"label{k}" / "l.jsonl",
                *model,
                "--no-cache",
            ],
            "evolve": lambda k: [
                "evolve",
                seeds,
                "--out",
                base / f"evolve{k}" / "e.jsonl",
                *model,
                "--limit",
                "10",
                "--no-cache",
            ],
            "export": lambda k: [
                "export",
                full / "trees.jsonl",
                "--format",
                "trl",
                "--balance",
                "downsample",
                "--validation-fraction",
                "0.2",
                "--out",
                base / "exports" / "trl.jsonl",
            ],
            "merge": lambda k: ["merge", *shard_runs, "--out", base / f"merge{k}"],
        }
        (base / "exports").mkdir()
        for name, argv_for in commands.items():
            # How long an uninterrupted run takes, so kills land anywhere in it.
            probe = argv_for("probe")
            Path(probe[probe.index("--out") + 1]).parent.mkdir(parents=True, exist_ok=True)
            length = timed(probe)
            landed = finished = violations = 0
            details = []
            for k in range(args.kills):
                argv = argv_for(k)
                out = Path(argv[argv.index("--out") + 1])
                out.parent.mkdir(parents=True, exist_ok=True)
                landed += kill_after(argv, rng.uniform(0.3, 0.3 + length))
                problems = []
                if name == "export":
                    clean_leftovers(out.parent)  # what any next command does first
                    problems += check_export(out)
                code, err = finish(argv)
                finished += code == 0
                if code != 0:
                    problems.append(f"resume exit {code}: {err.strip()[-200:]}")
                folder = out if name in ("run", "merge") else out.parent
                if name == "run":
                    problems += check_run(out, n)
                elif name == "merge":
                    problems += check_run(out, n)[:1]
                elif name == "label":
                    got = [r["id"] for r in jsonl(out)]
                    if got != [f"r{i}" for i in range(n)]:
                        problems.append(f"label rows {len(got)}")
                elif name == "export":
                    problems += check_export(out)
                elif name == "evolve":
                    jsonl(out)
                problems += [f"leftover {x}" for x in leftovers(folder)]
                violations += bool(problems)
                details += problems
            rows.append((name, args.kills, landed, finished, violations, length))
            for problem in details[:5]:
                print(f"  {name}: {problem}", file=sys.stderr)
    header = ("command", "kills", "mid-work", "resumed", "violations", "full s")
    print(f"{header[0]:<8} " + " ".join(f"{h:>10}" for h in header[1:]))
    for name, kills, landed, finished, violations, length in rows:
        counts = " ".join(f"{value:>10}" for value in (kills, landed, finished, violations))
        print(f"{name:<8} {counts} {length:>10.1f}")


if __name__ == "__main__":
    main()
