"""One run, searched in this process against a local Ray cluster of 1 and 2 workers.

Usage: nice -n 10 python benchmarks/ray_scaling.py [--questions 600] [--burn-ms 2]
       [--latency 0.05] [--concurrency 16] [--cpus 2] [--no-fault]

An OpenAI-compatible server (:class:`prmsynth.testing.FakeOpenAIServer`) runs
in its own process on 127.0.0.1 and answers after ``--latency`` seconds with
planted solutions (half right, half wrong, so every question is kept and
searched).  The same ``--questions`` run (OmegaPRM, 4 screening rollouts, at
most 16 completions a question) goes through the real client (litellm over
HTTP) into a run folder three times:

* ``local``: the default executor, the whole search in this process;
* ``ray 1`` and ``ray 2``: :class:`prmsynth.RayExecutor` with 1 and 2 worker
  actors on one local Ray cluster of ``--cpus`` CPUs (started once, before
  the timed runs; each run's wall time includes starting its workers).

Answer checking is made CPU-heavy: the verifier burns ``--burn-ms`` of CPU
per check (hashing) before an exact-match check, as a heavy symbolic check
would, so that one process's CPU is the limit.  The table gives each run's
completions per second over its whole wall time and after its first 5% of
questions (start-up left out), the ratio to ``local`` (whole runs), and the
CPU this process (the driver) spent per question: for ``local`` all of the
work, for Ray the queue, the budget mirror and the writing of the folder,
which bounds how many questions per second one driver can take.

The fault case (unless ``--no-fault``): the ``ray 2`` run again, with one
worker's process killed (SIGKILL) once a third of the questions are done; it
checks that every question ends exactly once in trees.jsonl or
skipped.jsonl and that the run completes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))

API_KEY = "sk-benchmark"
MODEL = "openai/fake"

from prmsynth import (  # noqa: E402  (after the path is set)
    ExactMatchVerifier,
    LiteLLMClient,
    LLMStepGenerator,
    OmegaPRM,
    Pipeline,
    Question,
    RequestLimiter,
    RunFolder,
    SamplingSettings,
    SearchSettings,
)


def planted(request: Any) -> str:
    """Half the solutions right and half wrong; completions of a prefix follow it."""
    prompt = request.prompt
    if "Here are the first steps" in prompt:
        if "BAD" in prompt:
            return "keep going wrong\n\nThe answer is \\boxed{7}."
        return "keep going right\n\nThe answer is \\boxed{5}."
    good = ["2 + 3 = 5.", "Then 5 stays 5.", "The answer is \\boxed{5}."]
    bad = ["2 + 3 = 5.", "BAD: then 5 becomes 7.", "The answer is \\boxed{7}."]
    return "\n\n".join(good if request.sample_index % 2 == 0 else bad)


def serve(latency: float) -> None:
    from prmsynth.testing import FakeOpenAIServer

    with FakeOpenAIServer(responder=planted, latency=latency, keep_bodies=False) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the benchmark closes the pipe


@attrs.frozen(kw_only=True)
class BurningVerifier(ExactMatchVerifier):
    """An exact-match verifier that first burns ``burn_ms`` of CPU per check."""

    burn_ms: float = 2.0

    def verify(self, response: str, reference: str, *, finish_reason: str | None = None) -> Any:
        deadline = time.process_time() + self.burn_ms / 1000
        digest = response.encode()
        while time.process_time() < deadline:
            digest = hashlib.sha256(digest).digest()
        return super().verify(response, reference, finish_reason=finish_reason)


def pipeline(url: str, args: argparse.Namespace) -> Pipeline:
    llm = LiteLLMClient(
        model=MODEL,
        api_base=url,
        limiter=RequestLimiter(max_concurrency=args.concurrency),
    )
    return Pipeline(
        generator=LLMStepGenerator(llm=llm, sampling=SamplingSettings(max_tokens=64, seed=0)),
        verifier=BurningVerifier(burn_ms=args.burn_ms),
        policy=OmegaPRM(
            settings=SearchSettings(
                screen_rollouts=4, num_branches=4, max_search=3, max_branches=16
            )
        ),
        concurrency=args.concurrency,
        stall_seconds=None,
    )


def run_once(
    name: str, url: str, args: argparse.Namespace, *, executor: Any = None, kill_at: int = 0
) -> dict[str, Any]:
    questions = [
        Question(id=f"q{i}", text=f"What is 2 + 3? ({i})", reference_answer="5")
        for i in range(args.questions)
    ]
    finished: list[tuple[float, int]] = []
    killed: list[int] = []

    def kill_a_worker() -> None:
        import ray

        for entry in ray.util.list_named_actors(all_namespaces=True):
            if "-worker-0." in entry["name"]:
                actor = ray.get_actor(entry["name"], namespace=entry["namespace"])
                pid = ray.get(actor.ready.remote(), timeout=60)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return

    def on_result(result: Any) -> None:
        finished.append((time.monotonic(), result.n_completions))
        if kill_at and len(finished) == kill_at:
            threading.Thread(target=kill_a_worker, daemon=True).start()

    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as folder:
        started, cpu_started = time.monotonic(), time.process_time()
        summary = RunFolder(folder).run(
            pipeline(url, args),
            questions,
            run_info={"model": MODEL, "benchmark": name},
            executor=executor,
            on_result=on_result,
        )
        wall = time.monotonic() - started
        driver_cpu = time.process_time() - cpu_started
        ids = [
            json.loads(line)["question_id"]
            for file in ("trees.jsonl", "skipped.jsonl")
            if (Path(folder) / file).exists()
            for line in (Path(folder) / file).read_text().splitlines()
        ]
    counts = collections.Counter(ids)
    skip = max(1, len(finished) // 20)
    steady_seconds = finished[-1][0] - finished[skip - 1][0] if len(finished) > skip else 0.0
    steady = sum(n for _, n in finished[skip:])
    return {
        "name": name,
        "wall": wall,
        "completions": summary["completions"],
        "rate": summary["completions"] / wall,
        "steady_rate": steady / steady_seconds if steady_seconds > 0 else float("nan"),
        "complete": summary["complete"],
        "kept": summary["kept"],
        "lost": sum(1 for question in questions if question.id not in counts),
        "duplicated": sum(1 for count in counts.values() if count > 1),
        "killed": killed,
        "driver_ms": 1000 * driver_cpu / max(1, len(finished)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=600)
    parser.add_argument("--burn-ms", type=float, default=2.0, help="CPU burnt per answer check")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency (s)")
    parser.add_argument("--concurrency", type=int, default=16, help="per pipeline (per worker)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--no-fault", action="store_true", help="skip the killed-worker run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    os.environ.setdefault("OPENAI_API_KEY", API_KEY)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        rows = []
        print(f"local: {args.questions} questions ...", file=sys.stderr, flush=True)
        rows.append(run_once("local", url, args))

        import ray

        from prmsynth import RayExecutor

        ray.init(
            num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
        for workers in (1, 2):
            print(f"ray {workers}: ...", file=sys.stderr, flush=True)
            rows.append(
                run_once(f"ray {workers}", url, args, executor=RayExecutor(workers=workers))
            )
        if not args.no_fault:
            print("ray 2, one worker killed: ...", file=sys.stderr, flush=True)
            rows.append(
                run_once(
                    "ray 2, 1 killed",
                    url,
                    args,
                    executor=RayExecutor(workers=2),
                    kill_at=args.questions // 3,
                )
            )
        ray.shutdown()
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(
        f"\n{args.questions} questions, {args.burn_ms:g} ms CPU per answer check, server latency "
        f"{args.latency:g} s, concurrency {args.concurrency} per pipeline, "
        f"Ray cluster of {args.cpus} CPUs, {os.cpu_count()} cores on this machine"
    )
    header = (
        f"{'executor':<16} {'wall s':>7} {'completions':>11} {'compl/s':>8} "
        f"{'steady/s':>9} {'ratio':>6} {'driver ms/q':>11} {'complete':>8} {'lost':>5} {'dup':>4}"
    )
    print(header)
    print("-" * len(header))
    base = rows[0]["rate"]
    for row in rows:
        print(
            f"{row['name']:<16} {row['wall']:>7.1f} {row['completions']:>11} "
            f"{row['rate']:>8.1f} {row['steady_rate']:>9.1f} {row['rate'] / base:>6.2f} "
            f"{row['driver_ms']:>11.1f} "
            f"{row['complete']!s:>8} {row['lost']:>5} {row['duplicated']:>4}"
        )
    for row in rows:
        if row["killed"]:
            print(f"{row['name']}: killed worker pid {row['killed'][0]} mid-run")


if __name__ == "__main__":
    main()
