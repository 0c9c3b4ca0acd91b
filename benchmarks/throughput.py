"""Throughput of prmsynth's LLM layer against bare litellm, over real loopback HTTP.

Usage: python benchmarks/throughput.py [--latency 1.0] [--levels 1,16,64,256]
       [--requests-per-slot 3] [--min-requests 5] [--rounds 3]
       [--questions-per-slot 6] [--no-pipeline]

An OpenAI-compatible server (:class:`prmsynth.testing.FakeOpenAIServer`)
runs in its own process on 127.0.0.1 and answers every request after a fixed
``--latency``.  For each concurrency level, the same number of completions
(``N = max(min_requests, requests_per_slot * level)``, one sample per
request) is fetched, in worker processes started for the level, by:

* ``bare``: ``litellm.acompletion`` behind an ``asyncio.Semaphore(level)``;
* ``prmsynth``: ``LiteLLMClient`` with a ``RequestLimiter(max_concurrency=level)``
  (retries armed, cost read, tokens split); bare and prmsynth take
  ``--rounds`` turns each, alternating, in one process, so that both see the
  same warm litellm;
* ``+cache``: the same client behind ``CachedLLM`` with a cold SQLite cache
  (every sample looked up, then written); the rerun from the warm cache is
  timed too (no requests at all);
* ``pipeline``: a ``Pipeline`` (OmegaPRM, an exact-match verifier) whose
  generator calls the real client, ``questions_per_slot * level`` questions
  with ``2 * level`` in flight and the same limiter (at most ``level``
  requests out); then, in the same process, as many bare requests with the
  same ``n`` at the same concurrency, for comparison.  A question's requests
  depend on each other, so near the end of a run fewer than ``level`` are
  out: more questions per slot make that tail a smaller part of the run.

Each worker warms up (imports, connection pool) before its timed part and
reports wall time, process CPU time (all threads: litellm logs in a thread)
and peak RSS.  "own CPU" is prmsynth's CPU per completion beyond bare
litellm's, the difference of two measurements of about 10 ms each, so it is
noisy; the line below the tables measures it directly, with litellm's HTTP
call replaced by a ready response, so that only prmsynth's own code runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))

API_KEY = "sk-benchmark"
MODEL = "openai/fake"
MAX_TOKENS = 64


def prompt(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {index}: what is 2 + 3? Think step by step."}]


def responder(request: Any) -> str:
    """Mixed right and wrong solutions, fixed by prompt, seed and sample index."""
    key = f"{request.prompt}|{request.seed}|{request.sample_index}".encode()
    answer = 5 if hashlib.sha256(key).digest()[0] % 2 else 6
    return f"Step 1: read.\n\nStep 2: add 2 and 3.\n\nThe answer is \\boxed{{{answer}}}."


# ---------------------------------------------------------------------------
# Server process
# ---------------------------------------------------------------------------


def serve(latency: float) -> None:
    from prmsynth.testing import FakeOpenAIServer

    with FakeOpenAIServer(responder=responder, latency=latency, keep_bodies=False) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


# ---------------------------------------------------------------------------
# Worker process: one mode at one concurrency level
# ---------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _timed(job: Any) -> dict[str, float]:
    rss_before = _rss_mb()
    cpu = time.process_time()
    wall = time.perf_counter()
    counts = await job()
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return {
        **counts,
        "wall": wall,
        "cpu": cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _bare_caller(url: str, level: int, n: int = 1) -> Any:
    """``litellm.acompletion`` behind a semaphore, called as prmsynth calls it."""
    from prmsynth.llm._client import import_litellm

    litellm = import_litellm()
    semaphore = asyncio.Semaphore(level)

    async def one(index: int) -> int:
        async with semaphore:
            response = await litellm.acompletion(
                model=MODEL,
                api_base=url,
                api_key=API_KEY,
                messages=prompt(index),
                temperature=0.7,
                top_p=0.95,
                max_tokens=MAX_TOKENS,
                timeout=120,
                num_retries=0,
                max_retries=0,
                **({"n": n} if n != 1 else {}),
            )
            return len(response.choices)

    return one


def _client(url: str, level: int) -> Any:
    from prmsynth.llm._client import LiteLLMClient
    from prmsynth.llm._ratelimit import RequestLimiter

    return LiteLLMClient(
        model=MODEL,
        api_base=url,
        api_key=API_KEY,
        request_timeout=120,
        limiter=RequestLimiter(max_concurrency=level),
    )


async def _pair(url: str, level: int, requests: int, rounds: int) -> dict[str, Any]:
    """Bare litellm and prmsynth's client in turns, in one process, ``rounds`` times each."""
    bare = _bare_caller(url, level)
    client = _client(url, level)

    async def ours(index: int) -> int:
        response = await client.complete(prompt(index), max_tokens=MAX_TOKENS)
        return len(response.completions)

    callers = {"bare": bare, "prmsynth": ours}
    for call in callers.values():  # warm-up: imports, connection pools
        await asyncio.gather(*(call(-1 - index) for index in range(min(level, 16))))
    totals = {name: {"completions": 0, "requests": 0, "wall": 0.0, "cpu": 0.0} for name in callers}
    offset = 0
    for round_number in range(rounds):
        order = list(callers) if round_number % 2 == 0 else list(reversed(callers))
        for name in order:
            call = callers[name]
            start = offset

            async def job(call: Any = call, start: int = start) -> dict[str, int]:
                served = await asyncio.gather(*(call(start + i) for i in range(requests)))
                return {"completions": sum(served), "requests": requests}

            offset += requests
            result = await _timed(job)
            for key in ("completions", "requests", "wall", "cpu"):
                totals[name][key] += result[key]
    return {**totals, "peak_rss_mb": _peak_rss_mb()}


async def _cached(url: str, level: int, requests: int) -> dict[str, Any]:
    from prmsynth.llm._cache import CachedLLM, CompletionCache

    client = _client(url, level)
    with (
        tempfile.TemporaryDirectory() as folder,
        CompletionCache(Path(folder) / "cache.sqlite") as cache,
    ):
        warm_up = CachedLLM(llm=client, cache=cache)
        await asyncio.gather(
            *(
                warm_up.complete(prompt(-1 - i), max_tokens=MAX_TOKENS)
                for i in range(min(level, 16))
            )
        )

        async def run_all() -> dict[str, int]:
            llm = CachedLLM(llm=client, cache=cache)
            responses = await asyncio.gather(
                *(llm.complete(prompt(index), max_tokens=MAX_TOKENS) for index in range(requests))
            )
            return {"completions": sum(len(r.completions) for r in responses), "misses": llm.misses}

        cold = await _timed(run_all)
        warm = await _timed(run_all)
    cold["rerun_wall"], cold["rerun_cpu"], cold["rerun_misses"] = (
        warm["wall"],
        warm["cpu"],
        warm["misses"],
    )
    return cold


async def _pipeline(url: str, level: int, questions_per_slot: int, rounds: int) -> dict[str, Any]:
    from prmsynth import (
        LLMStepGenerator,
        OmegaPRM,
        Pipeline,
        Question,
        SamplingSettings,
        SearchSettings,
    )
    from prmsynth.verify._math import ExactMatchVerifier

    client = _client(url, level)
    counted = {"requests": 0, "completions": 0}

    class Counting:
        async def complete(self, messages: Any, **options: Any) -> Any:
            response = await client.complete(messages, **options)
            counted["requests"] += 1
            counted["completions"] += len(response.completions)
            return response

    settings = SearchSettings(screen_rollouts=4, num_branches=4, max_search=2, max_branches=16)
    pipeline = Pipeline(
        generator=LLMStepGenerator(
            llm=Counting(), sampling=SamplingSettings(seed=0, max_tokens=MAX_TOKENS)
        ),
        verifier=ExactMatchVerifier(),
        policy=OmegaPRM(settings=settings),
        # More questions in flight than request slots, so that the limiter, not
        # a question between two requests, decides how many requests are out.
        concurrency=2 * level,
    )

    def questions(count: int, tag: str) -> list[Any]:
        return [
            Question(id=f"{tag}{i}", text=f"{tag} {i}: what is 2 + 3?", reference_answer="5")
            for i in range(count)
        ]

    await _collect(pipeline, questions(min(level, 8), "warm-up"))
    bare = _bare_caller(url, level, n=settings.num_branches)
    await asyncio.gather(*(bare(-1 - index) for index in range(min(level, 16))))
    # Pipeline and bare requests take turns, ``rounds`` times each; the round
    # with the median ratio is reported, so one noisy turn on a shared machine
    # does not decide the result.
    turns = []
    for round_number in range(rounds):
        counted.update(requests=0, completions=0)
        batch = questions(max(4, questions_per_slot * level), f"r{round_number}-question")

        async def job(batch: list[Any] = batch) -> dict[str, int]:
            results = await _collect(pipeline, batch)
            statuses = [result.status for result in results]
            return {
                **counted,
                "questions": len(results),
                "kept": statuses.count("kept"),
                "failed": statuses.count("failed"),
            }

        result = await _timed(job)
        # The same number of bare requests, with the same n, at the same concurrency.
        start = 1_000_000 * (round_number + 1)

        async def bare_job(count: int = result["requests"], start: int = start) -> dict[str, int]:
            served = await asyncio.gather(*(bare(start + index) for index in range(count)))
            return {"completions": sum(served), "requests": len(served)}

        result["bare"] = await _timed(bare_job)
        result["ratio"] = (result["requests"] / result["wall"]) / (
            result["bare"]["requests"] / result["bare"]["wall"]
        )
        turns.append(result)
    turns.sort(key=lambda turn: turn["ratio"])
    chosen = turns[len(turns) // 2]
    chosen["ratios"] = [turn["ratio"] for turn in turns]
    return chosen


async def _collect(pipeline: Any, questions: list[Any]) -> list[Any]:
    return [result async for result in pipeline.astream(questions)]


def worker(mode: str, url: str, level: int, requests: int, rounds: int) -> None:
    if mode == "pair":
        result = asyncio.run(_pair(url, level, requests, rounds))
    else:
        result = asyncio.run(
            _cached(url, level, requests)
            if mode == "cache"
            else _pipeline(url, level, requests, rounds)
        )
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------
# prmsynth's own CPU per completion, with litellm's HTTP call stubbed out
# ---------------------------------------------------------------------------


def own_overhead(calls: int = 5000) -> dict[str, float]:
    import attrs

    from prmsynth.llm._cache import CachedLLM, CompletionCache
    from prmsynth.llm._client import LiteLLMClient, import_litellm
    from prmsynth.llm._ratelimit import RequestLimiter

    litellm = import_litellm()
    response = litellm.ModelResponse(
        choices=[
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "The answer is \\boxed{5}."},
            }
        ],
        usage=litellm.Usage(prompt_tokens=20, completion_tokens=10, total_tokens=30),
    )
    response._hidden_params = {"response_cost": 0.0}

    @attrs.frozen(kw_only=True)
    class Stubbed(LiteLLMClient):
        def _send(self, litellm: Any, kwargs: dict[str, Any]) -> Any:
            async def ready() -> Any:
                return response

            return ready()

    async def ready_only() -> Any:  # the floor: an awaited coroutine and nothing else
        return response

    client = Stubbed(
        model=MODEL,
        api_base="http://127.0.0.1:9/v1",
        api_key=API_KEY,
        limiter=RequestLimiter(max_concurrency=64, requests_per_minute=1e9, tokens_per_minute=1e12),
    )

    async def measure(make: Any) -> float:
        for index in range(200):
            await make(index)
        cpu = time.process_time()
        await asyncio.gather(*(make(index) for index in range(calls)))
        return (time.process_time() - cpu) / calls * 1e3

    async def run_all() -> dict[str, float]:
        floor = await measure(lambda index: ready_only())
        direct = await measure(lambda index: client.complete(prompt(index)))
        with (
            tempfile.TemporaryDirectory() as folder,
            CompletionCache(Path(folder) / "cache.sqlite") as cache,
        ):
            cached = CachedLLM(llm=client, cache=cache)
            miss = await measure(lambda index: cached.complete(prompt(index)))
            hit = await measure(
                lambda index: CachedLLM(llm=client, cache=cache).complete(prompt(index))
            )
        return {
            "client_ms": direct - floor,
            "cache_miss_ms": miss - floor,
            "cache_hit_ms": hit - floor,
        }

    return asyncio.run(run_all())


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def run_worker(mode: str, url: str, level: int, requests: int, rounds: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", mode, "--url", url]
    command += ["--level", str(level), "--requests", str(requests), "--rounds", str(rounds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"worker {mode} at {level} failed:\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=1.0, help="server latency (s)")
    parser.add_argument("--levels", default="1,16,64,256", help="concurrency levels")
    parser.add_argument("--requests-per-slot", type=int, default=3)
    parser.add_argument("--min-requests", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns each of bare and prmsynth take, alternating"
    )
    parser.add_argument("--no-pipeline", action="store_true", help="skip the Pipeline runs")
    parser.add_argument(
        "--questions-per-slot", type=int, default=6, help="Pipeline questions per request slot"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--level", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.latency)
        return
    if arguments.worker:
        worker(
            arguments.worker, arguments.url, arguments.level, arguments.requests, arguments.rounds
        )
        return

    levels = [int(level) for level in arguments.levels.split(",")]
    modes = ["pair", "cache"] + ([] if arguments.no_pipeline else ["pipeline"])
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(arguments.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError("the server did not start")
        print(
            f"server: 127.0.0.1, latency {arguments.latency} s per request, own process; "
            f"{os.cpu_count()} CPU cores; Python {sys.version.split()[0]}",
            flush=True,
        )
        rows = []
        for level in levels:
            requests = max(arguments.min_requests, arguments.requests_per_slot * level)
            row = {"level": level, "requests": requests}
            for mode in modes:
                size = arguments.questions_per_slot if mode == "pipeline" else requests
                row[mode] = run_worker(mode, url, level, size, arguments.rounds)
                print(f"  done: {mode} at concurrency {level}", file=sys.stderr, flush=True)
            rows.append(row)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=60)
    print_table(rows, modes)
    overhead = own_overhead()
    print(
        "\nprmsynth's own CPU per completion, litellm's HTTP call stubbed out "
        f"(limiter with all three limits on): client {overhead['client_ms']:.3f} ms, "
        f"+cache miss (lookup + threaded write) {overhead['cache_miss_ms']:.3f} ms, "
        f"cache hit {overhead['cache_hit_ms']:.3f} ms"
    )


def _rate(result: dict[str, Any], key: str = "completions") -> float:
    return result[key] / result["wall"]


def print_table(rows: list[dict[str, Any]], modes: list[str]) -> None:
    print()
    print(
        "Completions per second (one sample per request); bare and prmsynth alternate "
        "in one process; CPU is process CPU per completion, all threads"
    )
    header = (
        f"{'conc':>5} {'N':>5} | {'bare c/s':>9} {'prmsynth c/s':>12} {'ratio':>6} | "
        f"{'+cache c/s':>10} {'ratio':>6} {'rerun c/s':>10} | "
        f"{'CPU ms/c bare':>13} {'prmsynth':>8} {'own':>6} | "
        f"{'peak RSS MB pair/cache':>22}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        bare, ours, cached = row["pair"]["bare"], row["pair"]["prmsynth"], row["cache"]
        bare_cpu = bare["cpu"] / bare["completions"] * 1e3
        our_cpu = ours["cpu"] / ours["completions"] * 1e3
        rerun = cached["completions"] / cached["rerun_wall"]
        print(
            f"{row['level']:>5} {row['requests']:>5} | {_rate(bare):>9.1f} {_rate(ours):>12.1f} "
            f"{_rate(ours) / _rate(bare):>6.1%} | {_rate(cached):>10.1f} "
            f"{_rate(cached) / _rate(bare):>6.1%} {rerun:>10.0f} | "
            f"{bare_cpu:>13.2f} {our_cpu:>8.2f} {our_cpu - bare_cpu:>+6.2f} | "
            f"{row['pair']['peak_rss_mb']:>15.0f} / {cached['peak_rss_mb']:>4.0f}"
        )
    if "pipeline" in modes:
        print()
        print(
            "Pipeline (OmegaPRM, exact-match verifier) through the real client, against the "
            "same number of bare requests with the same n, at the same concurrency "
            "(the median of the rounds; all ratios at the end of the row):"
        )
        header = (
            f"{'conc':>5} | {'questions':>9} {'kept':>5} {'failed':>6} | {'requests':>8} "
            f"{'req/s':>7} {'bare req/s':>10} {'ratio':>6} | {'completions/s':>13} | "
            f"{'CPU ms/req':>10} {'bare':>6} | {'peak RSS MB':>11}"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            pipeline = row["pipeline"]
            bare = pipeline["bare"]
            print(
                f"{row['level']:>5} | {pipeline['questions']:>9} {pipeline['kept']:>5} "
                f"{pipeline['failed']:>6} | {pipeline['requests']:>8} "
                f"{_rate(pipeline, 'requests'):>7.1f} {_rate(bare, 'requests'):>10.1f} "
                f"{_rate(pipeline, 'requests') / _rate(bare, 'requests'):>6.1%} | "
                f"{_rate(pipeline):>13.1f} | "
                f"{pipeline['cpu'] / pipeline['requests'] * 1e3:>10.2f} "
                f"{bare['cpu'] / bare['requests'] * 1e3:>6.2f} | "
                f"{pipeline['peak_rss_mb']:>11.0f} | "
                + " ".join(f"{ratio:.1%}" for ratio in pipeline["ratios"])
            )


if __name__ == "__main__":
    main()
