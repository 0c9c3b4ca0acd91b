"""The whole loop on this machine: data from the embedded model -> a trained PRM -> its score.

1. ``prmsynth run`` with the embedded SmolLM2-135M on the first N GSM8K training
   questions (``../shared/data/gsm8k/train.jsonl``);
2. ``prmsynth export`` to the ``trl`` format;
3. ``prmsynth train`` SmolLM2-135M (the same GGUF, under a fresh token-classification
   head) for a bounded time;
4. ``prmsynth evaluate`` on ProcessBench GSM8K (``../shared/data/processbench/gsm8k.json``),
   the trained PRM against the untrained head (the same initial weights, saved before
   any step) and the final-answer-only baseline (``outcome``), on a seeded sample of
   ``--processbench-limit`` rows; all three choose their threshold on the same 20% of
   the sample and are scored on the rest.

Called again with the same ``--work``, the run resumes (finished questions are not
redone) and a trained PRM already there is kept.

Every stage is the command a user runs, in a subprocess, so the same commands with
a bigger N, a served generator (``--model``) and a GPU give the real experiment.
Prints one table per stage's counts and one of the metrics.

    python benchmarks/prm_loop.py [--questions 20] [--train-seconds 300]
        [--processbench-limit 400] [--work DIR] [--model MODEL --api-base URL]
        [--screen-rollouts N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def prmsynth(*args: str) -> float:
    """Run one prmsynth command; its wall time in seconds (a failure stops the loop)."""
    command = [sys.executable, "-m", "prmsynth", *args]
    print("$", " ".join(command[2:]), file=sys.stderr, flush=True)
    start = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - start


def untrained_prm(base: str, out: Path, seed: int) -> None:
    """The base under the head that training starts from (same seed), never trained."""
    from transformers import set_seed

    from prmsynth._io import write_json
    from prmsynth.train._data import Layout
    from prmsynth.train._model import PRM_CONFIG, load_base, prm_config

    set_seed(seed)
    model, tokenizer = load_base(base, "two-labels")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_json(out / PRM_CONFIG, prm_config(Layout.for_tokenizer(tokenizer, "\n"), "two-labels"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20, help="seed questions to run")
    parser.add_argument(
        "--seeds", default=None, help="seed file (default: ../shared/data/gsm8k/train.jsonl)"
    )
    parser.add_argument("--question-field", default="question")
    parser.add_argument("--answer-field", default="answer")
    parser.add_argument("--train-seconds", type=float, default=300)
    parser.add_argument("--processbench-limit", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--work", default=None, help="folder for every file (default: a temp)")
    parser.add_argument("--model", default=None, help="generator (default: the embedded model)")
    parser.add_argument("--api-base", default=None)
    parser.add_argument(
        "--screen-rollouts",
        type=int,
        default=None,
        help="solutions screening a question (default: run's); fewer reach more questions "
        "on a CPU, where a small model solves few",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seeds = Path(args.seeds) if args.seeds else DATA / "gsm8k" / "train.jsonl"
    processbench = DATA / "processbench" / "gsm8k.json"
    for path in (seeds, processbench):
        if not path.is_file():
            sys.exit(f"{path} is absent: this benchmark needs the shared data folder")
    from prmsynth.llm._local import locate_gguf

    base = str(locate_gguf())
    work = Path(args.work or tempfile.mkdtemp(prefix="prm-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    model = ["--model", args.model] if args.model else []
    model += ["--api-base", args.api_base] if args.api_base else []
    if args.screen_rollouts is not None:
        model += ["--screen-rollouts", str(args.screen_rollouts)]
    timings["run"] = prmsynth(
        "run", str(seeds), "--out", str(work / "run"), "--limit", str(args.questions),
        "--column-names", args.question_field, "--answer-column", args.answer_field, "-q",
        *model,
    )  # fmt: skip
    timings["export"] = prmsynth(
        "export", str(work / "run" / "trees.jsonl"), "--format", "trl",
        "--out", str(work / "trl.jsonl"),
    )  # fmt: skip
    records = sum(1 for _ in open(work / "trl.jsonl", encoding="utf-8"))
    if not records:
        # The numbers as they come: no data to train on, the baselines still scored.
        summary = json.loads((work / "run" / "summary.json").read_text())
        print(
            f"the run kept no question with labelled steps ({summary.get('skipped_by_reason')}): "
            "nothing to train; raise --questions or --screen-rollouts, or use a stronger "
            "generator (--model)",
            file=sys.stderr,
        )
    elif (work / "prm" / "prmsynth_train.json").is_file():  # trained by an earlier call
        timings["train"] = 0.0
    else:
        timings["train"] = prmsynth(
            "train", str(work / "trl.jsonl"), "--base", base, "--out", str(work / "prm"),
            "--max-seconds", str(args.train_seconds), "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
            "--max-length", "1024", "--seed", str(args.seed), "--logging-steps", "1",
        )  # fmt: skip
    if not (work / "untrained" / "config.json").is_file():
        untrained_prm(base, work / "untrained", args.seed)
    # A seeded sample: the file lists its wrong solutions first, its right ones after.
    rows = json.loads(processbench.read_text(encoding="utf-8"))
    sample = random.Random(args.seed).sample(rows, min(args.processbench_limit, len(rows)))
    sample_path = work / "processbench-sample.json"
    sample_path.write_text(json.dumps(sample), encoding="utf-8")
    metrics = {}
    judges = [("untrained head", str(work / "untrained")), ("final answer only", "outcome")]
    if records:
        judges.insert(0, ("trained PRM", str(work / "prm")))
    for name, judge in judges:
        out = work / f"evaluate-{judge.replace('/', '_')}.json"
        timings[f"evaluate: {name}"] = prmsynth(
            "evaluate", judge, str(sample_path), "--seed", str(args.seed), "--out", str(out),
            "-q",
        )  # fmt: skip
        metrics[name] = json.loads(out.read_text())["processbench"]

    summary = json.loads((work / "run" / "summary.json").read_text())
    print(f"\nwork folder: {work}; {os.cpu_count()} CPUs\n")
    print("| stage | what | seconds |\n| --- | --- | --- |")
    kept = summary.get("questions", {}).get("kept", summary.get("kept"))
    skipped = summary.get("skipped_by_reason")
    print(
        f"| run | {args.questions} questions, kept {kept}, skipped {skipped}, "
        f"{summary.get('completions')} completions | {timings['run']:.0f} |"
    )
    print(f"| export | {records} trl records | {timings['export']:.0f} |")
    if records:
        trained = json.loads((work / "prm" / "prmsynth_train.json").read_text())
        result = trained["result"]
        print(
            f"| train | {result['steps']} steps, {result['epochs']:.2f} epochs, "
            f"{trained['counts']['train']['steps']} labelled steps, loss "
            f"{result['first_loss']:.3f} -> {result['last_loss']:.3f}, stopped by "
            f"{result['stopped_by']} | {result['seconds']:.0f} |"
        )
    else:
        print("| train | no records: not trained | 0 |")
    for name in metrics:
        print(f"| evaluate | {name} | {timings[f'evaluate: {name}']:.0f} |")
    first = next(iter(metrics.values()))
    print(
        f"\nProcessBench GSM8K, {len(sample)} rows drawn with seed {args.seed}: threshold "
        f"chosen on {first['threshold_chosen_on']}, scored on {first['n_error']} wrong and "
        f"{first['n_correct']} right solutions\n"
    )
    print("| judge | error accuracy | correct accuracy | F1 | threshold |")
    print("| --- | --- | --- | --- | --- |")
    for name, m in metrics.items():
        print(
            f"| {name} | {m['error_accuracy']:.3f} | {m['correct_accuracy']:.3f} | "
            f"{m['f1']:.3f} | {m['threshold']:.3g} |"
        )


if __name__ == "__main__":
    main()
