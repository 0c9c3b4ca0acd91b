"""Memory of a long run: resident memory as 10,000 questions finish.

A run streams each finished question to disk and forgets it, so memory must
not grow with the number of finished questions.  The scripted fake LLM
stands in for the backend, so the numbers are prmsynth's own.

    python benchmarks/memory.py [--questions 10000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from prmsynth import ExactMatchVerifier, LLMStepGenerator, Pipeline, Question, RunFolder
from prmsynth.testing import ScriptedLLM


def resident_megabytes() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def script(request) -> str:
    """Half the whole solutions are wrong at step 2; continuations follow their prefix."""
    prompt = request.last_message
    if "Here are the first steps" not in prompt:
        if request.sample_index % 2 == 0:
            return "Read the question.\n\nAdd 2 and 3 to get 5.\n\nThe answer is \\boxed{5}."
        return "Read the question.\n\nBAD: add 2 and 3 to get 6.\n\nThe answer is \\boxed{6}."
    if "BAD" in prompt:
        return "So the total is 6.\n\nThe answer is \\boxed{6}."
    return "So the total is 5.\n\nThe answer is \\boxed{5}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    questions = [
        Question(id=f"q{i}", text=f"What is 2 + 3? (copy {i})", reference_answer="5")
        for i in range(args.questions)
    ]
    pipeline = Pipeline(
        generator=LLMStepGenerator(llm=ScriptedLLM(script)),
        verifier=ExactMatchVerifier(),
        concurrency=args.concurrency,
    )
    marks = {args.questions * k // 10 for k in range(1, 11)}
    rows = []
    started = time.perf_counter()
    done = 0

    def sample(result) -> None:
        nonlocal done
        done += 1
        if done in marks:
            rows.append((done, resident_megabytes(), time.perf_counter() - started))

    baseline = resident_megabytes()
    with tempfile.TemporaryDirectory() as folder:
        # ScriptedLLM keeps every request for assertions; clear it as we go so
        # the numbers are prmsynth's, not the fake's.
        def sample_and_forget(result) -> None:
            pipeline.generator.llm.requests.clear()
            sample(result)

        summary = RunFolder(folder).run(
            pipeline, questions, run_info={"model": "scripted"}, on_result=sample_and_forget
        )
        size = sum(f.stat().st_size for f in Path(folder).iterdir()) / 2**20
    print(
        f"{args.questions} questions, {summary['completions']} completions, "
        f"{size:.0f} MB written, concurrency {args.concurrency}; "
        f"before the run: {baseline:.0f} MB\n"
    )
    print(f"{'finished':>9} {'resident MB':>12} {'seconds':>8}")
    for finished, megabytes, seconds in rows:
        print(f"{finished:>9} {megabytes:>12.1f} {seconds:>8.1f}")
    growth = rows[-1][1] - rows[0][1]
    print(f"\ngrowth from {rows[0][0]} to {rows[-1][0]} finished questions: {growth:+.1f} MB")


if __name__ == "__main__":
    main()
