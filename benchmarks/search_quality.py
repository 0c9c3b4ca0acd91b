"""How well each policy recovers the first wrong step, per completion spent.

A simulated completer with a known truth: the ProcessBench GSM8K split
(``../shared/data/processbench/gsm8k.json``) gives, for 400 real solutions, the
human-marked first wrong step (``label``, -1 if none).  From a prefix that
contains no wrong step a completion reaches the right answer with probability
``p_good``; from a prefix with a wrong step, with ``p_bad``.  The final step's
value is the solution's real ``final_answer_correct``.

For each policy, K (completions per estimated prefix) and first-error rule
(``rule``: a step is wrong when its MC value is at most this) it prints the
ProcessBench metric (accuracy on rows with an error, on rows without, and
their harmonic mean F1) and completions spent per row, overall and on
solutions of 8 or more steps.

    python benchmarks/search_quality.py [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from prmsynth import (
    Completion,
    LLMResponse,
    MathShepherd,
    OmegaPRM,
    Question,
    SearchSettings,
    StepGenerator,
    StepVerifier,
    Verdict,
)

DATA = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "processbench"
    / "gsm8k.json"
)


class SimulatedCompleter(StepGenerator):
    """Completions whose success depends only on whether the prefix holds a wrong step."""

    def __init__(self, p_good: float, p_bad: float, seed: int) -> None:
        self.p_good, self.p_bad, self.seed = p_good, p_bad, seed

    async def generate(self, question, prefix, *, n, sample_offset=0) -> LLMResponse:
        label = question.metadata["label"]
        has_error = label != -1 and len(prefix) > label
        probability = self.p_bad if has_error else self.p_good
        rng = random.Random(f"{self.seed}|{question.id}|{len(prefix)}|{sample_offset}")
        completions = tuple(
            Completion(
                text="The answer is \\boxed{%s}." % ("OK" if rng.random() < probability else "NO"),
                finish_reason="stop",
                n_tokens=8,
            )
            for _ in range(n)
        )
        return LLMResponse(completions=completions, completion_tokens=8 * n)

    def split_steps(self, text: str) -> list[str]:
        return [text]


class MarkerVerifier(StepVerifier):
    """Correct when the last ``\\boxed{}`` holds the reference."""

    def verify(self, response, reference, *, finish_reason=None) -> Verdict:
        answer = response.rsplit("\\boxed{", 1)[-1].split("}", 1)[0]
        return Verdict(
            status="correct" if answer == reference else "incorrect", extracted_answer=answer
        )

    async def averify_many(self, responses, reference, *, finish_reasons=None):
        return [self.verify(response, reference) for response in responses]


def load_rows(limit: int | None) -> list[dict]:
    if not DATA.is_file():
        sys.exit(f"search_quality: {DATA} is absent (the shared data folder beside the repo)")
    rows = json.loads(DATA.read_text())
    return rows[:limit] if limit else rows


async def label_rows(
    policy, rows: Sequence[dict], generator: StepGenerator
) -> list[tuple[int, int]]:
    verifier = MarkerVerifier()
    results = []
    for row in rows:
        # The solution's own final answer decides the last step's exact value.
        steps = [
            *row["steps"][:-1],
            row["steps"][-1] + (" \\boxed{OK}" if row["final_answer_correct"] else " \\boxed{NO}"),
        ]
        question = Question(
            id=str(row["id"]),
            text=row["problem"],
            reference_answer="OK",
            metadata={"label": row["label"]},
        )
        labels = await policy.label(question, steps, generator=generator, verifier=verifier)
        results.append((labels.first_error, labels.n_completions))
    return results


def metrics(rows: Sequence[dict], results: Sequence[tuple[int, int]]) -> dict[str, float]:
    with_error = [
        (row, result) for row, result in zip(rows, results, strict=True) if row["label"] != -1
    ]
    without = [
        (row, result) for row, result in zip(rows, results, strict=True) if row["label"] == -1
    ]
    error_accuracy = sum(r[0] == row["label"] for row, r in with_error) / max(1, len(with_error))
    correct_accuracy = sum(r[0] == -1 for row, r in without) / max(1, len(without))
    f1 = (
        2 * error_accuracy * correct_accuracy / (error_accuracy + correct_accuracy)
        if error_accuracy + correct_accuracy
        else 0.0
    )
    long = [result[1] for row, result in zip(rows, results, strict=True) if len(row["steps"]) >= 8]
    return {
        "error_accuracy": error_accuracy,
        "correct_accuracy": correct_accuracy,
        "f1": f1,
        "completions_per_row": sum(r[1] for r in results) / len(results),
        "long_completions_per_row": sum(long) / max(1, len(long)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = load_rows(args.rows)
    n_long = sum(len(row["steps"]) >= 8 for row in rows)
    print(
        f"ProcessBench GSM8K: {len(rows)} solutions, "
        f"{sum(row['label'] != -1 for row in rows)} with an error, {n_long} of 8+ steps\n"
    )
    header = (
        f"{'p_good':>6} {'p_bad':>5} {'rule':>4} {'policy':<13} {'K':>2} {'acc err':>8} "
        f"{'acc ok':>7} "
        f"{'F1':>6} {'compl/row':>9} {'8+ steps':>9}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for p_good, p_bad in ((0.9, 0.0), (0.8, 0.05), (0.6, 0.1)):
        for threshold, k in ((0.0, 4), (0.0, 8), (0.0, 16), (0.3, 8), (0.3, 16)):
            table = {}
            for name, policy_class in (("math-shepherd", MathShepherd), ("omegaprm", OmegaPRM)):
                settings = SearchSettings(
                    num_branches=k, max_branches=10**9, first_error_threshold=threshold
                )
                policy = policy_class(settings=settings)
                generator = SimulatedCompleter(p_good, p_bad, args.seed)
                results = asyncio.run(label_rows(policy, rows, generator))
                table[name] = metrics(rows, results)
                m = table[name]
                print(
                    f"{p_good:>6} {p_bad:>5} {threshold:>4} {name:<13} {k:>2} "
                    f"{m['error_accuracy']:>8.3f} "
                    f"{m['correct_accuracy']:>7.3f} {m['f1']:>6.3f} "
                    f"{m['completions_per_row']:>9.1f} {m['long_completions_per_row']:>9.1f}"
                )
            gap = table["math-shepherd"]["f1"] - table["omegaprm"]["f1"]
            share = table["omegaprm"]["long_completions_per_row"] / max(
                1e-9, table["math-shepherd"]["long_completions_per_row"]
            )
            verdict = "met" if gap <= 0.02 and share <= 0.40 else "NOT met"
            print(
                f"{'':>12} binary search vs per-step: F1 gap {gap:+.3f}, "
                f"8+ step cost {share:.0%} of per-step -> target {verdict}"
            )
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
