"""What quoting a partial solution, instead of continuing it, does to the labels.

A step's Monte Carlo value is defined as the chance that the policy,
continuing its own partial solution, reaches the answer.  A chat model that
gets the prefix quoted in a user message ("here are the first steps,
continue") may instead re-solve the problem or repair the quoted mistake.
This benchmark simulates exactly that, through the real
``LLMStepGenerator`` messages and the real search policies:

* a completion continued from a prefix without a wrong step reaches the
  answer with probability ``p_good``, from one that holds the first wrong
  step with ``p_bad`` (the same model as ``search_quality.py``);
* when the prefix arrives quoted, the simulated model ignores it with
  probability ``--resolve-rates`` (re-solves or repairs: it then succeeds
  with ``p_good`` whatever the prefix holds), else it continues faithfully;
* when the prefix arrives as the start of its own reply (``continue``), it
  always continues.

Solutions with human first-error labels come from ProcessBench GSM8K and
BIG-Bench-Mistake in ``../shared/data``.  Printed per mode and re-solve rate:
first-error F1 of the default rule (OmegaPRM, relative) and the mean MC value
of wrong steps (Math-Shepherd, K=8, every prefix estimated), with completions
per solution.

    python benchmarks/prefix_mode.py [--rows 200] [--setting B] [--resolve-rates 0,0.25,0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence

# The simulation's shared pieces (run as a script, this folder is on the path).
from search_quality import SETTINGS, SHARED, MarkerVerifier

from prmsynth import (
    Completion,
    LLMResponse,
    LLMStepGenerator,
    MathShepherd,
    OmegaPRM,
    Question,
    SamplingSettings,
    SearchSettings,
    Threshold,
)
from prmsynth.search._generation import DEFAULT_CONTINUE_TEMPLATE

_QUOTED_START = DEFAULT_CONTINUE_TEMPLATE.split("{prefix}")[0].split("{question}")[1]
_QUOTED_END = DEFAULT_CONTINUE_TEMPLATE.split("{prefix}")[1]


class SimulatedPolicyModel:
    """An LLM whose success depends on the prefix it is shown, and on how it is shown."""

    def __init__(
        self,
        rows: Mapping[str, dict],
        rates: tuple[float, float],
        resolve_rate: float,
        *,
        continues: bool,
    ) -> None:
        self.rows, self.rates, self.resolve_rate = rows, rates, resolve_rate
        # What the generator's "auto" mode asks of an LLM before sending it a prefix.
        self.prefix_continuation = "native" if continues else "unsupported"

    async def complete(
        self, messages, *, n=1, temperature=0.7, top_p=0.95, max_tokens=512, seed=None
    ) -> LLMResponse:
        user = next(m["content"] for m in messages if m["role"] == "user")
        last = messages[-1]
        if last["role"] == "assistant" and last.get("prefix"):
            question_text, prefix, quoted = user, last["content"].rstrip("\n"), False
        elif _QUOTED_START in user:
            question_text, rest = user.split(_QUOTED_START, 1)
            prefix, quoted = rest.split(_QUOTED_END, 1)[0], True
        else:
            question_text, prefix, quoted = user, "", False
        row = self.rows[question_text]
        k = _steps_in(row["steps"], prefix)
        p_good, p_bad = self.rates
        wrong = row["label"] != -1 and k > row["label"]
        # The same draws in both modes: a quoted prefix differs only where it is re-solved.
        rng = random.Random(f"{seed}|{question_text}|{k}")
        resolves = random.Random(f"resolve|{seed}|{question_text}|{k}")
        texts = []
        for _ in range(n):
            ignores_prefix = quoted and resolves.random() < self.resolve_rate
            probability = p_good if (ignores_prefix or not wrong) else p_bad
            answer = "OK" if rng.random() < probability else "NO"
            texts.append(f"The answer is \\boxed{{{answer}}}.")
        return LLMResponse(
            completions=tuple(Completion(text=t, finish_reason="stop", n_tokens=8) for t in texts),
            completion_tokens=8 * n,
        )


def _steps_in(steps: Sequence[str], prefix: str) -> int:
    """How many of ``steps`` the prefix text holds (it is their join)."""
    if not prefix:
        return 0
    for k in range(1, len(steps) + 1):
        if "\n\n".join(steps[:k]) == prefix:
            return k
    raise ValueError(f"a prefix that is no prefix of its solution: {prefix[:60]!r}")


def load_rows(limit: int | None) -> list[dict]:
    processbench = SHARED / "processbench" / "gsm8k.json"
    if not processbench.is_file():
        sys.exit(f"prefix_mode: {processbench} is absent (the shared data folder)")
    rows = []
    for row in json.loads(processbench.read_text()):
        marker = " \\boxed{OK}" if row["final_answer_correct"] else " \\boxed{NO}"
        steps = [step.strip().replace("\\boxed", "\\fbox") for step in row["steps"]]
        steps[-1] += marker  # the solution's own final answer decides its last step
        rows.append(
            {
                "id": str(row["id"]),
                "text": f"[{row['id']}] {row['problem']}",
                "steps": steps,
                "label": row["label"],
            }
        )
    if limit and limit < len(rows):  # an even spread, with and without errors
        rows = [rows[index * len(rows) // limit] for index in range(limit)]
    return rows


async def measure(rows, rates, resolve_rate, mode) -> dict[str, float]:
    model = SimulatedPolicyModel(
        {row["text"]: row for row in rows}, rates, resolve_rate, continues=mode == "continue"
    )
    generator = await LLMStepGenerator(llm=model, sampling=SamplingSettings(seed=0)).resolved()
    assert generator.prefix_mode == mode
    verifier = MarkerVerifier()
    locate = OmegaPRM(settings=SearchSettings(max_branches=10**9))
    every_step = MathShepherd(
        settings=SearchSettings(num_branches=8, max_branches=10**9),
        first_error_rule=Threshold(threshold=0.0, num_branches=8),
    )
    hits_error, n_error, hits_ok, n_ok, spent = 0, 0, 0, 0, 0
    wrong_values, right_values = [], []
    for row in rows:
        question = Question(id=row["id"], text=row["text"], reference_answer="OK")
        labels = await locate.label(question, row["steps"], generator=generator, verifier=verifier)
        spent += labels.n_completions
        if row["label"] == -1:
            n_ok += 1
            hits_ok += labels.first_error == -1
        else:
            n_error += 1
            hits_error += labels.first_error == row["label"]
        values = await every_step.label(
            question, row["steps"], generator=generator, verifier=verifier
        )
        for index, value in enumerate(values.step_values[:-1]):  # the last one is exact
            if value is not None:
                wrong = row["label"] != -1 and index >= row["label"]
                (wrong_values if wrong else right_values).append(value)
    error_accuracy, correct_accuracy = hits_error / max(1, n_error), hits_ok / max(1, n_ok)
    total = error_accuracy + correct_accuracy
    return {
        "f1": 2 * error_accuracy * correct_accuracy / total if total else 0.0,
        "error_accuracy": error_accuracy,
        "correct_accuracy": correct_accuracy,
        "mc_wrong": statistics.fmean(wrong_values) if wrong_values else float("nan"),
        "mc_right": statistics.fmean(right_values) if right_values else float("nan"),
        "completions": spent / len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="use N solutions, evenly spread")
    parser.add_argument("--setting", default="B", choices=[k for k in SETTINGS if SETTINGS[k]])
    parser.add_argument(
        "--resolve-rates",
        default="0,0.25,0.5",
        help="chances that a quoted prefix is re-solved or repaired",
    )
    args = parser.parse_args()
    # The quote rows are asked for on purpose: the fallback warning says nothing new here.
    logging.getLogger("prmsynth").setLevel(logging.ERROR)
    rows = load_rows(args.rows)
    rates = SETTINGS[args.setting]
    resolve_rates = [float(value) for value in args.resolve_rates.split(",")]
    started = time.perf_counter()
    n_error = sum(row["label"] != -1 for row in rows)
    print(
        f"ProcessBench GSM8K: {len(rows)} solutions ({n_error} with an error), setting "
        f"{args.setting} (p_good {rates[0]}, p_bad {rates[1]})"
    )
    header = (
        f"{'prefix mode':<12} {'re-solve':>8} {'F1':>6} {'acc err':>7} {'acc ok':>7} "
        f"{'MC wrong':>8} {'MC right':>8} {'compl/row':>9}"
    )
    print(header)
    print("-" * len(header))
    for mode in ("continue", "quote"):
        for rate in resolve_rates if mode == "quote" else resolve_rates[-1:]:
            result = asyncio.run(measure(rows, rates, rate, mode))
            shown = "-" if mode == "continue" else f"{rate:g}"
            print(
                f"{mode:<12} {shown:>8} {result['f1']:>6.3f} {result['error_accuracy']:>7.3f} "
                f"{result['correct_accuracy']:>7.3f} {result['mc_wrong']:>8.3f} "
                f"{result['mc_right']:>8.3f} {result['completions']:>9.1f}",
                flush=True,
            )
    print(
        f"\n({time.perf_counter() - started:.0f} s; a continued prefix is never re-solved, "
        "so its row does not depend on the re-solve rate)"
    )


if __name__ == "__main__":
    main()
