"""``train_prm``: a PRM from a ``trl`` export with plain ``transformers`` (``Trainer``).

The base model gets a token-level head, and the loss is binary cross-entropy
on each step's logit read at the separator after the step (every other token
is ignored): with hard labels that is the two-class cross-entropy of
Math-Shepherd and TRL's PRMTrainer, with soft labels (Monte Carlo values) the
cross-entropy against the value, as Qwen2.5-Math-PRM's soft-label variant.
``Trainer`` brings checkpoints, resuming, mixed precision and multi-GPU
(``accelerate launch``/``torchrun`` run the same command unchanged).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from prmsynth._errors import InputError
from prmsynth._io import write_json
from prmsynth.train._data import (
    IGNORE,
    Layout,
    encode_records,
    read_step_records,
    split_by_prompt,
)
from prmsynth.train._model import (
    HEADS,
    PRM_CONFIG,
    Head,
    load_base,
    prm_config,
    require_train_extra,
    step_logits,
)

#: The provenance file written beside the model.
TRAIN_RECORD = "prmsynth_train.json"


# attrs' own validator; None (no limit) passes where a field allows it.
_positive = attrs.validators.optional(attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class TrainSettings:
    """Options of [`train_prm`][prmsynth.train_prm]; all are written into
    ``prmsynth_train.json``.

    ``max_steps`` (optimizer steps) and ``max_seconds`` stop training before
    ``epochs`` are done; ``bf16`` None uses bfloat16 where the GPU supports
    it.  ``validation_fraction`` holds out that share of the questions (with
    every solution of each) for the evaluation loss after each epoch.

    >>> TrainSettings(epochs=2, learning_rate=1e-5).batch_size
    8
    """

    epochs: float = attrs.field(default=1.0, validator=_positive)
    learning_rate: float = attrs.field(default=2e-5, validator=_positive)
    batch_size: int = attrs.field(default=8, validator=_positive)
    gradient_accumulation: int = attrs.field(default=1, validator=_positive)
    max_length: int = attrs.field(default=1024, validator=_positive)
    validation_fraction: float = 0.0
    seed: int = 0
    bf16: bool | None = None
    max_steps: int | None = attrs.field(default=None, validator=_positive)
    max_seconds: float | None = attrs.field(default=None, validator=_positive)
    separator: str = "\n"
    head: str = attrs.field(default="two-labels", validator=attrs.validators.in_(HEADS))
    logging_steps: int = attrs.field(default=10, validator=_positive)
    save_steps: int = attrs.field(default=500, validator=_positive)
    progress: bool = True

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class TrainReport:
    """What a training run did: its counts, losses and where it stopped."""

    out: Path
    steps: int
    epochs: float
    seconds: float
    stopped_by: str
    first_loss: float | None
    last_loss: float | None
    eval_loss: float | None
    counts: dict[str, Any]
    losses: list[float]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_manifest(export: Path) -> dict[str, Any] | None:
    """The manifest ``prmsynth export`` wrote beside ``export`` (``X.jsonl``'s,
    or for a split file ``X.train.jsonl`` that of ``X.jsonl``), or None."""

    candidates = [export.with_name(export.name + ".manifest.json")]
    for part in (".train", ".validation"):
        if export.stem.endswith(part):
            whole = export.stem[: -len(part)] + export.suffix
            candidates.append(export.with_name(whole + ".manifest.json"))
    for candidate in candidates:
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError:
                return None
    return None


def _collator(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), float(IGNORE), dtype=torch.float)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            mask[row, :n] = 1
            labels[row, :n] = torch.tensor(item["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def _trainer_classes(head: Head, max_seconds: float | None) -> tuple[type, Any]:
    """The ``Trainer`` subclass with the step loss, and the time-limit callback."""
    import torch
    from transformers import Trainer, TrainerCallback

    class StepTrainer(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The step loss is a mean per micro-batch, not scaled by the items of a
            # whole accumulated batch: the Trainer must divide it by the
            # accumulation steps (it does not when it thinks the model takes
            # ``num_items_in_batch``, which a forward with **kwargs seems to).
            self.model_accepts_loss_kwargs = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            targets = inputs.pop("labels")
            outputs = model(**inputs)
            logits = step_logits(outputs.logits.float(), head)
            at_steps = targets != IGNORE
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits[at_steps], targets[at_steps]
            )
            return (loss, outputs) if return_outputs else loss

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.monotonic()
            self.reached = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if max_seconds is not None and time.monotonic() - self.start >= max_seconds:
                self.reached = True
                control.should_training_stop = True
                control.should_save = True  # a checkpoint to resume from

    return StepTrainer, TimeLimit()


#: What a folder's checkpoints were trained on, beside them: a resume must match it.
CHECKPOINT_IDENTITY = "prmsynth_checkpoints.json"


def _training_identity(
    export: Path, base: str | os.PathLike, validation: str | os.PathLike | None, settings: Any
) -> dict[str, Any]:
    """The data, base and options that decide what the checkpoints learn (not how
    long to train: epochs, steps and seconds may grow on resume)."""
    base_path = Path(base)
    chosen = settings.to_dict()
    kept = (
        "learning_rate",
        "batch_size",
        "gradient_accumulation",
        "max_length",
        "validation_fraction",
        "seed",
        "separator",
        "head",
    )
    return {
        "export_sha256": _sha256(Path(export)),
        "validation_sha256": None if validation is None else _sha256(Path(validation)),
        "base": str(base_path.resolve()) if base_path.exists() else str(base),
        "base_sha256": _sha256(base_path) if base_path.is_file() else None,
        **{name: chosen[name] for name in kept},
    }


def _check_checkpoint_identity(
    checkpoints: Path, identity: dict[str, Any], *, resume: bool
) -> None:
    """Refuse a resume whose export, base or options differ from the checkpoints';
    record them for a fresh run."""
    path = checkpoints / CHECKPOINT_IDENTITY
    if resume and path.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(path, f"cannot be read: {error}") from None
        differing = sorted(key for key in identity if recorded.get(key) != identity[key])
        if differing:
            raise InputError(
                checkpoints.parent,
                f"its checkpoints were trained with other settings ({', '.join(differing)}); "
                "resume with the same export, base and options, or choose another --out",
            )
        return
    checkpoints.mkdir(parents=True, exist_ok=True)
    write_json(path, identity)


def train_prm(
    export: str | os.PathLike,
    base: str | os.PathLike,
    out: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    validation: str | os.PathLike | None = None,
    resume: bool = False,
    command: str | None = None,
) -> TrainReport:
    """Train a PRM on a ``trl`` export and save it to ``out``.

    ``base`` is a ``transformers`` model folder or a ``.gguf`` file (such as the
    embedded SmolLM2-135M).  ``validation`` is a second ``trl`` file for the
    evaluation loss (else ``settings.validation_fraction`` of the questions).
    ``out`` gets the model and tokenizer (``AutoModelForTokenClassification
    .from_pretrained(out)`` loads them), ``prmsynth_prm.json`` (how to read the
    scores) and ``prmsynth_train.json`` (the export's manifest, the base, the
    settings, the losses); checkpoints go to ``out/checkpoints`` and
    ``resume`` continues from the latest one.  Bad input raises
    [`InputError`][prmsynth.InputError] before any training.
    """
    settings = settings or TrainSettings()
    export, out = Path(export), Path(out)
    records = read_step_records(export)
    if validation is not None:
        if settings.validation_fraction:
            raise InputError("--validation-file", "give it or --validation-fraction, not both")
        train_records, validation_records = records, read_step_records(validation)
    else:
        train_records, validation_records = split_by_prompt(
            records, settings.validation_fraction, settings.seed
        )
    checkpoints = out / "checkpoints"
    if out.is_file():
        raise InputError(out, "is a file; --out names a folder")
    if resume and not any(checkpoints.glob("checkpoint-*")):
        raise InputError(out, "has no checkpoint to resume from (checkpoints/checkpoint-*)")
    if not resume and (out / TRAIN_RECORD).exists():
        raise InputError(out, f"already holds a trained PRM ({TRAIN_RECORD}); choose another --out")
    require_train_extra()
    _check_checkpoint_identity(
        checkpoints, _training_identity(export, base, validation, settings), resume=resume
    )
    import torch
    import transformers
    from transformers import TrainingArguments, set_seed

    set_seed(settings.seed)
    head: Head = settings.head  # type: ignore[assignment]
    model, tokenizer = load_base(base, head)
    layout = Layout.for_tokenizer(tokenizer, settings.separator)
    limit = getattr(model.config, "max_position_embeddings", None) or settings.max_length
    max_length = min(settings.max_length, limit)
    train_examples, train_counts = encode_records(train_records, tokenizer, layout, max_length)
    eval_examples, eval_counts = encode_records(validation_records, tokenizer, layout, max_length)
    if not train_examples:
        raise InputError(export, f"no record has a step within --max-length {max_length} tokens")

    def rows(examples: list[Any]) -> list[dict[str, Any]]:
        return [{"input_ids": e.input_ids, "labels": e.targets} for e in examples]

    bf16 = settings.bf16
    if bf16 is None:
        bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        learning_rate=settings.learning_rate,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=bf16,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        eval_strategy="epoch" if eval_examples else "no",
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=not settings.progress,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer_class, time_limit = _trainer_classes(head, settings.max_seconds)
    trainer = trainer_class(
        model=model,
        args=arguments,
        train_dataset=rows(train_examples),
        eval_dataset=rows(eval_examples) or None,
        data_collator=_collator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[time_limit],
    )
    if not settings.progress:  # no bar, and no loss lines on stdout either
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.monotonic() - started
    eval_loss = None
    if eval_examples:
        eval_loss = float(trainer.evaluate()["eval_loss"])
    trainer.save_model(str(out))
    history = trainer.state.log_history
    losses = [float(entry["loss"]) for entry in history if "loss" in entry]
    if time_limit.reached:
        stopped_by = "max_seconds"
    elif settings.max_steps and trainer.state.global_step >= settings.max_steps:
        stopped_by = "max_steps"
    else:
        stopped_by = "epochs"
    counts = {
        "train": train_counts,
        "validation": eval_counts,
        "labels": "soft" if any(r.soft for r in records) else "hard",
    }
    report = TrainReport(
        out=out,
        steps=trainer.state.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        seconds=round(seconds, 3),
        stopped_by=stopped_by,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        eval_loss=eval_loss,
        counts=counts,
        losses=losses,
    )
    if trainer.is_world_process_zero():
        from prmsynth._version import __version__

        write_json(out / PRM_CONFIG, prm_config(layout, head))
        base_path = Path(base)
        write_json(
            out / TRAIN_RECORD,
            {
                "prmsynth_version": __version__,
                "command": command,
                "export": {
                    "path": str(export.resolve()),
                    "sha256": _sha256(export),
                    "manifest": export_manifest(export),
                    "validation_file": None if validation is None else str(Path(validation)),
                },
                "base": {
                    "path": str(base_path.resolve()),
                    "sha256": _sha256(base_path) if base_path.is_file() else None,
                },
                "settings": {**settings.to_dict(), "bf16": bf16, "max_length": max_length},
                "resumed": resume,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "device": str(trainer.args.device),
                "world_size": trainer.args.world_size,
                "counts": counts,
                "result": {
                    "steps": report.steps,
                    "epochs": report.epochs,
                    "seconds": report.seconds,
                    "stopped_by": stopped_by,
                    "train_loss": float(result.training_loss),
                    "first_loss": report.first_loss,
                    "last_loss": report.last_loss,
                    "eval_loss": eval_loss,
                },
                "log_history": history,
            },
        )
    return report
