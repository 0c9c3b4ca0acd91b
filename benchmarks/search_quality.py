"""How well each first-error rule finds the first wrong step, per completion spent.

A simulated completer with a known truth.  Solutions come with a human-marked
first wrong step (-1 if none): ProcessBench GSM8K (400 solutions; the
development set) and BIG-Bench-Mistake multistep arithmetic (299 solutions;
held out: no default was chosen by looking at it), both in ``../shared/data``.
From a prefix with no wrong step a completion reaches the right answer with
probability ``p_good``, from a prefix that contains the first wrong step with
``p_bad``; the whole solution's value is its real final answer.  Settings:

    A (0.8, 0.02)  B (0.7, 0.05)  C (0.5, 0.1)  D (0.3, 0.03)
    E  each solution draws p_good in [0.3, 0.95] and p_bad in [0, 0.2]

For each setting it prints, per policy and rule, ProcessBench's metric
(accuracy on solutions with an error and on those without, F1 their harmonic
mean) and completions per solution (all, and on solutions of 8+ steps),
averaged over ``--draws`` noise draws with fixed seeds.

    python benchmarks/search_quality.py [--rows N] [--draws 3] [--settings ABCDE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
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
    Threshold,
    Verdict,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETTINGS = {
    "A": (0.8, 0.02),
    "B": (0.7, 0.05),
    "C": (0.5, 0.1),
    "D": (0.3, 0.03),
    "E": None,  # drawn per solution
}
TARGETS = {"A": 0.97, "B": 0.95, "C": 0.85, "D": 0.80, "E": 0.90}


class SimulatedCompleter(StepGenerator):
    """Completions whose success depends only on whether the prefix holds a wrong step."""

    def __init__(self, rates: Callable[[Question], tuple[float, float]], seed: int) -> None:
        self.rates, self.seed = rates, seed

    async def generate(self, question, prefix, *, n, sample_offset=0) -> LLMResponse:
        label = question.metadata["label"]
        p_good, p_bad = self.rates(question)
        probability = p_bad if label != -1 and len(prefix) > label else p_good
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


def load_sets(limit: int | None) -> dict[str, list[dict]]:
    """Rows with ``id``, ``steps``, ``label`` and ``final_answer_correct``, per data set."""
    processbench = SHARED / "processbench" / "gsm8k.json"
    mistake = SHARED / "bigbench_mistake" / "multistep_arithmetic.jsonl"
    if not processbench.is_file():
        sys.exit(f"search_quality: {processbench} is absent (the shared data folder)")
    sets = {"ProcessBench GSM8K (dev)": json.loads(processbench.read_text())}
    if mistake.is_file():
        rows = []
        for number, line in enumerate(mistake.read_text().splitlines()):
            record = json.loads(line)
            index = record["mistake_index"]
            right = str(record["answer"]).strip() == str(record["target"]).strip()
            if index is None and not right:
                # No wrong step, yet a wrong answer (the problem was misread): no
                # Monte Carlo value can call such a solution correct, so it is
                # left out rather than scored against every rule alike.
                continue
            rows.append(
                {
                    "id": f"bbm-{number}",
                    "steps": record["steps"],
                    "label": -1 if index is None else index,
                    "final_answer_correct": right,
                }
            )
        sets["BIG-Bench-Mistake (held out)"] = rows
    return {name: rows[:limit] if limit else rows for name, rows in sets.items()}


async def label_rows(policy, rows: Sequence[dict], generator: StepGenerator) -> list[tuple]:
    verifier = MarkerVerifier()
    results = []
    for row in rows:
        # The solution's own final answer decides the last step's exact value.
        marker = " \\boxed{OK}" if row["final_answer_correct"] else " \\boxed{NO}"
        steps = [*row["steps"][:-1], row["steps"][-1] + marker]
        question = Question(
            id=str(row["id"]), text="", reference_answer="OK", metadata={"label": row["label"]}
        )
        labels = await policy.label(question, steps, generator=generator, verifier=verifier)
        results.append((labels.first_error, labels.n_completions))
    return results


def metrics(rows: Sequence[dict], results: Sequence[tuple]) -> dict[str, float]:
    pairs = list(zip(rows, results, strict=True))
    with_error = [(row, r) for row, r in pairs if row["label"] != -1]
    without = [(row, r) for row, r in pairs if row["label"] == -1]
    error_accuracy = sum(r[0] == row["label"] for row, r in with_error) / max(1, len(with_error))
    correct_accuracy = sum(r[0] == -1 for row, r in without) / max(1, len(without))
    total = error_accuracy + correct_accuracy
    long = [r[1] for row, r in pairs if len(row["steps"]) >= 8]
    return {
        "error_accuracy": error_accuracy,
        "correct_accuracy": correct_accuracy,
        "f1": 2 * error_accuracy * correct_accuracy / total if total else 0.0,
        "completions": sum(r[1] for r in results) / len(results),
        "long_completions": sum(long) / max(1, len(long)),
    }


def policies() -> dict[str, object]:
    return {
        "math-shepherd K=8, mc-zero": MathShepherd(
            settings=SearchSettings(num_branches=8, max_branches=10**9),
            first_error_rule=Threshold(threshold=0.0, num_branches=8),
        ),
        "omegaprm K=8, mc-zero": OmegaPRM(
            settings=SearchSettings(max_branches=10**9),
            first_error_rule=Threshold(threshold=0.0, num_branches=8),
        ),
        "omegaprm, relative (default)": OmegaPRM(settings=SearchSettings(max_branches=10**9)),
    }


def rates_for(setting: str, draw: int) -> Callable[[Question], tuple[float, float]]:
    fixed = SETTINGS[setting]
    if fixed is not None:
        return lambda question: fixed

    def drawn(question: Question) -> tuple[float, float]:
        rng = random.Random(f"E|{draw}|{question.id}")
        return rng.uniform(0.3, 0.95), rng.uniform(0.0, 0.2)

    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--draws", type=int, default=3, help="noise draws (seeds 0 .. N-1)")
    parser.add_argument("--settings", default="ABCDE")
    args = parser.parse_args()
    started = time.perf_counter()
    for set_name, rows in load_sets(args.rows).items():
        n_long = sum(len(row["steps"]) >= 8 for row in rows)
        n_error = sum(row["label"] != -1 for row in rows)
        print(f"\n{set_name}: {len(rows)} solutions, {n_error} with an error, {n_long} of 8+ steps")
        header = (
            f"{'':>3} {'policy, rule':<30} {'acc err':>7} {'acc ok':>7} {'F1':>6} "
            f"{'compl/row':>9} {'8+ steps':>8}"
        )
        print(header)
        print("-" * len(header))
        for setting in args.settings:
            for name, policy in policies().items():
                runs = []
                for draw in range(args.draws):
                    generator = SimulatedCompleter(rates_for(setting, draw), seed=draw)
                    runs.append(metrics(rows, asyncio.run(label_rows(policy, rows, generator))))
                m = {key: statistics.mean(run[key] for run in runs) for key in runs[0]}
                mark = ""
                if "default" in name:
                    ok = m["f1"] >= TARGETS[setting] and m["long_completions"] <= 40
                    mark = "  target met" if ok else "  target NOT met"
                print(
                    f"{setting:>3} {name:<30} {m['error_accuracy']:>7.3f} "
                    f"{m['correct_accuracy']:>7.3f} {m['f1']:>6.3f} {m['completions']:>9.1f} "
                    f"{m['long_completions']:>8.1f}{mark}"
                )
    print(
        f"\n({time.perf_counter() - started:.1f} s; targets: F1 >= {TARGETS} at <= 40 "
        "completions per 8+ step solution)"
    )


if __name__ == "__main__":
    main()
