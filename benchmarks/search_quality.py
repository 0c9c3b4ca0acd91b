"""How well each first-error rule finds the first wrong step, per completion spent.

A simulated completer with a known truth.  Solutions come with a human-marked
first wrong step (-1 if none): ProcessBench GSM8K (400 solutions; the
development set) and BIG-Bench-Mistake multistep arithmetic (299 solutions;
held out: no default was chosen by looking at it), both in ``../shared/data``.
Long competition solutions come from MATH's human solutions (Level 4-5, split
into 10 to 30 steps at sentences, display equations and aligned lines; see
`long_rows`): 300 on a development split and 300 on a held-out split of other
problems with another seed, each with no error, a planted error at a uniform
step, or a "natural-like" one (the first step, or the last quarter), and some
errors whose final answer stays right.
From a prefix with no wrong step a completion reaches the right answer with
probability ``p_good``, from a prefix that contains the first wrong step with
``p_bad``; the whole solution's value is its real final answer.  ``--drift``
adds the held-out long set again under a less tidy completer: ``p_good``
falls by up to a fifth along a clean prefix and ``p_bad`` varies per prefix
in [0, 2 p_bad].  Settings:

    A (0.8, 0.02)  B (0.7, 0.05)  C (0.5, 0.1)  D (0.3, 0.03)
    E  each solution draws p_good in [0.3, 0.95] and p_bad in [0, 0.2]

For each setting it prints, per policy and rule, ProcessBench's metric
(accuracy on solutions with an error and on those without, F1 their harmonic
mean) and completions per solution (all, and on solutions of 8+ steps),
averaged over ``--draws`` noise draws with fixed seeds (``--seed`` on), and the
most any one solution took.

    python benchmarks/search_quality.py [--rows N] [--draws 3] [--seed 0]
        [--settings ABCDE] [--sets long] [--policies default] [--drift]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
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

    def __init__(
        self, rates: Callable[[Question], tuple[float, float]], seed: int, drift: bool = False
    ) -> None:
        self.rates, self.seed, self.drift = rates, seed, drift

    async def generate(self, question, prefix, *, n, sample_offset=0) -> LLMResponse:
        label = question.metadata["label"]
        p_good, p_bad = self.rates(question)
        wrong = label != -1 and len(prefix) > label
        probability = p_bad if wrong else p_good
        if self.drift:  # a less tidy model: success drifts along the solution
            if wrong:
                jitter = random.Random(f"drift|{self.seed}|{question.id}|{len(prefix)}")
                probability = min(1.0, 2 * p_bad * jitter.random())
            else:
                probability = p_good * (1 - 0.2 * len(prefix) / question.metadata["n_steps"])
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


_DISPLAY = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
_INLINE = re.compile(r"\$[^$]*\$|\\\(.*?\\\)", re.S)
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n\s*\n")


def split_solution(solution: str) -> list[str]:
    r"""Steps of a MATH solution: sentences (not inside inline math), display
    equations, and the lines of an ``align``-like environment, each its own step.

    >>> split_solution(r"So $x=1.5$ here. Then \[y=2x+1\] and $z$ is 3.")
    ['So $x=1.5$ here.', 'Then', '\\[y=2x+1\\]', 'and $z$ is 3.']
    """
    pieces: list[str] = []

    def sentences(text: str) -> None:
        masked = _INLINE.sub(lambda match: "\0" * len(match.group()), text)
        start = 0
        for match in _SENTENCE_END.finditer(masked):
            pieces.append(text[start : match.start()])
            start = match.end()
        pieces.append(text[start:])

    start = 0
    for match in _DISPLAY.finditer(solution):
        sentences(solution[start : match.start()])
        if match.group(1):  # an environment: one step per line
            pieces.extend(re.split(r"\\\\\s*\n?", match.group()))
        else:
            pieces.append(match.group())
        start = match.end()
    sentences(solution[start:])
    steps: list[str] = []
    for piece in (piece.strip() for piece in pieces):
        if not piece:
            continue
        if steps and len(re.sub(r"[\W_]", "", piece)) < 3:  # "." or "and" after an equation
            steps[-1] += " " + piece
        else:
            steps.append(piece)
    return steps


def _plant(step: str, rng: random.Random) -> str:
    """The step with one of its numbers changed (or a wrong claim added): a planted error."""
    numbers = list(re.finditer(r"\d+", step))
    if not numbers:
        return step + " (so the two sides are equal)"
    match = rng.choice(numbers)
    wrong = str(int(match.group()) + rng.choice([1, 2, 3]))
    return step[: match.start()] + wrong + step[match.end() :]


def long_rows(split: str, size: int = 300) -> list[dict]:
    """Long competition solutions with a known first error, from MATH's test set.

    MATH's Level 4-5 human solutions that split into 10 to 30 steps (the last
    holding the ``\\boxed`` answer) are shuffled once; the first ``size``
    problems are the ``dev`` split, the next ``size`` the ``heldout`` one,
    each with its own seed.  Per problem: 45% no error (label -1, final answer
    right); otherwise a planted first error (a changed number) at a uniform
    step (60%), at the first step (20%) or in the last quarter (20%, where
    natural errors often sit: a slip in the closing arithmetic).  In 15% of
    them, if the error is not the last step, the final answer stays right (as
    in real data, an error a later step undoes); otherwise it is wrong.
    """
    path = SHARED / "math" / "test.jsonl"
    if not path.is_file():
        return []
    problems = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["level"] not in ("Level 4", "Level 5"):
            continue
        steps = split_solution(record["solution"])
        if 10 <= len(steps) <= 30 and "\\boxed" in steps[-1]:
            problems.append((record["idx"], steps))
    random.Random("math-long-split").shuffle(problems)
    offset = {"dev": 0, "heldout": size}[split]
    rows = []
    for idx, steps in problems[offset : offset + size]:
        rng = random.Random(f"math-long|{split}|{idx}")
        n = len(steps)
        label, right = -1, True
        if rng.random() >= 0.45:
            where = rng.random()
            if where < 0.6:
                label = rng.randrange(n)
            elif where < 0.8:
                label = 0
            else:
                label = rng.randrange(n - max(1, n // 4), n)
            right = label < n - 1 and rng.random() < 0.15
            steps = [*steps[:label], _plant(steps[label], rng), *steps[label + 1 :]]
            if not right:
                steps[-1] = steps[-1].replace("\\boxed{", "\\boxed{2+", 1)
        rows.append(
            {"id": f"math-{idx}", "steps": steps, "label": label, "final_answer_correct": right}
        )
    return rows


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
    for split, name in (("dev", "MATH long (dev)"), ("heldout", "MATH long (held out)")):
        if rows := long_rows(split):
            sets[name] = rows
    return {name: rows[:limit] if limit else rows for name, rows in sets.items()}


async def label_rows(policy, rows: Sequence[dict], generator: StepGenerator) -> list[tuple]:
    verifier = MarkerVerifier()
    results = []
    for row in rows:
        # The solution's own final answer decides the last step's exact value.
        marker = " \\boxed{OK}" if row["final_answer_correct"] else " \\boxed{NO}"
        steps = [*row["steps"][:-1], row["steps"][-1] + marker]
        question = Question(
            id=str(row["id"]),
            text="",
            reference_answer="OK",
            metadata={"label": row["label"], "n_steps": len(row["steps"])},
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
        "max_completions": max(r[1] for r in results),
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
        # The defaults exactly as a user gets them.
        "omegaprm, relative (default)": OmegaPRM(),
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
    parser.add_argument("--draws", type=int, default=3, help="noise draws (seeds S .. S+N-1)")
    parser.add_argument("--seed", type=int, default=0, help="the first draw's seed S")
    parser.add_argument("--settings", default="ABCDE")
    parser.add_argument("--sets", default="", help="only the sets whose name holds this text")
    parser.add_argument("--policies", default="", help="only the policies whose name holds this")
    parser.add_argument(
        "--drift", action="store_true", help="add the held-out long set under a drifting completer"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    sets = [(name, rows, False) for name, rows in load_sets(args.rows).items()]
    if args.drift:
        sets += [(f"{name}, drift", rows, True) for name, rows, _ in sets if "long (held" in name]
    for set_name, rows, drift in sets:
        if args.sets.lower() not in set_name.lower():
            continue
        n_long = sum(len(row["steps"]) >= 8 for row in rows)
        n_error = sum(row["label"] != -1 for row in rows)
        print(f"\n{set_name}: {len(rows)} solutions, {n_error} with an error, {n_long} of 8+ steps")
        header = (
            f"{'':>3} {'policy, rule':<30} {'acc err':>7} {'acc ok':>7} {'F1':>6} "
            f"{'compl/row':>9} {'8+ steps':>8} {'max':>4} {'labels/s':>8}"
        )
        print(header)
        print("-" * len(header))
        for setting in args.settings:
            for name, policy in policies().items():
                if args.policies.lower() not in name.lower():
                    continue
                runs = []
                clock = time.perf_counter()
                for draw in range(args.seed, args.seed + args.draws):
                    generator = SimulatedCompleter(rates_for(setting, draw), seed=draw, drift=drift)
                    runs.append(metrics(rows, asyncio.run(label_rows(policy, rows, generator))))
                speed = len(rows) * args.draws / (time.perf_counter() - clock)
                m = {key: statistics.mean(run[key] for run in runs) for key in runs[0]}
                m["max_completions"] = max(run["max_completions"] for run in runs)
                mark = ""
                if "default" in name:
                    # An average over a handful of long solutions measures nothing.
                    cost_ok = m["long_completions"] <= 40 or n_long < 20
                    ok = m["f1"] >= TARGETS[setting] and cost_ok
                    mark = "  target met" if ok else "  target NOT met"
                print(
                    f"{setting:>3} {name:<30} {m['error_accuracy']:>7.3f} "
                    f"{m['correct_accuracy']:>7.3f} {m['f1']:>6.3f} {m['completions']:>9.1f} "
                    f"{m['long_completions']:>8.1f} {m['max_completions']:>4} {speed:>8.0f}{mark}",
                    flush=True,
                )
    print(
        f"\n({time.perf_counter() - started:.1f} s; targets: F1 >= {TARGETS} at <= 40 "
        "completions per 8+ step solution on average, where a set has 20 or more)"
    )


if __name__ == "__main__":
    main()
