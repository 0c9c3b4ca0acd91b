"""Step-labelled records: reading a ``trl`` export and turning records into
token ids with one label per step, read at the step's separator.

A record's steps are joined the way Math-Shepherd and Qwen2.5-Math-PRM read
them: the question, then each step followed by the separator; the model's
score of a step is read at the last token of the separator after it.  The
token ids of each piece are joined, never the texts, so the separator is the
same tokens wherever it stands (a tokenizer would merge ``"...5.\\n"`` into
other tokens than ``"\\n"`` alone), and training and scoring see one layout.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from prmsynth._errors import InputError
from prmsynth._io import read_jsonl

#: Where no label is read (the value PyTorch's losses ignore).
IGNORE = -100


@attrs.frozen(kw_only=True)
class StepRecord:
    """One solution: the question, its steps, and each step's target in [0, 1]
    (1 right, 0 wrong; a Monte Carlo value in between when labels are soft)."""

    prompt: str
    steps: tuple[str, ...]
    targets: tuple[float, ...]

    @property
    def soft(self) -> bool:
        """Whether any target lies strictly between 0 and 1."""
        return any(0.0 < target < 1.0 for target in self.targets)


def _target(value: Any) -> float | None:
    """A label as a float in [0, 1]: a bool, or a number in that range (soft MC labels)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1:
        return float(value)
    return None


def read_step_records(path: str | os.PathLike) -> list[StepRecord]:
    """Every record of a ``trl`` export (``prompt``, ``completions``, ``labels``),
    checked first: labels are booleans (hard) or numbers in [0, 1] (soft MC values),
    one per completion.  Bad input raises [`InputError`][prmsynth.InputError]
    naming the file, line and field.

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trl.jsonl"
    >>> row = {"prompt": "2 + 3?", "completions": ["2 + 3 = 5.", "So 5."], "labels": [True, 0.5]}
    >>> _ = path.write_text(json.dumps(row) + "\\n")
    >>> read_step_records(path)[0].targets
    (1.0, 0.5)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    records = []
    for line, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise InputError(path, "expected a JSON object", line=line)
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(path, "expected non-empty text", line=line, field="prompt")
        steps = row.get("completions")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise InputError(
                path, "expected a non-empty list of strings", line=line, field="completions"
            )
        labels = row.get("labels")
        if not isinstance(labels, list) or len(labels) != len(steps):
            raise InputError(
                path,
                f"expected a list of {len(steps)} labels, one per completion",
                line=line,
                field="labels",
            )
        targets = [_target(label) for label in labels]
        if any(target is None for target in targets):
            bad = next(label for label, t in zip(labels, targets, strict=True) if t is None)
            raise InputError(
                path,
                f"expected true/false or a number in [0, 1], got {bad!r}",
                line=line,
                field="labels",
            )
        records.append(
            StepRecord(prompt=prompt, steps=tuple(steps), targets=tuple(targets))  # type: ignore[arg-type]
        )
    if not records:
        raise InputError(path, "no records")
    return records


def split_by_prompt(
    records: Sequence[StepRecord], fraction: float, seed: int
) -> tuple[list[StepRecord], list[StepRecord]]:
    """``(train, validation)``: about ``fraction`` of the questions, drawn with
    ``seed``, go to validation with all their solutions, so no question is on
    both sides.

    >>> records = [StepRecord(prompt=f"q{i % 10}", steps=("s",), targets=(1.0,)) for i in range(40)]
    >>> train, validation = split_by_prompt(records, 0.2, seed=0)
    >>> len(train) + len(validation), {r.prompt for r in train} & {r.prompt for r in validation}
    (40, set())
    """
    if not 0 <= fraction < 1:
        raise InputError("--validation-fraction", f"must be in [0, 1), got {fraction}")
    prompts = sorted({record.prompt for record in records})
    if fraction == 0 or len(prompts) < 2:
        return list(records), []
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: max(1, round(fraction * len(prompts)))])
    train = [record for record in records if record.prompt not in held]
    return train, [record for record in records if record.prompt in held]


@attrs.frozen(kw_only=True)
class Layout:
    """How a solution becomes token ids: the prompt's ids (with the tokenizer's
    special tokens), each step's ids, each followed by ``separator_ids``."""

    separator: str
    separator_ids: tuple[int, ...]

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, separator: str) -> Layout:
        ids = tuple(tokenizer.encode(separator, add_special_tokens=False))
        if not ids:
            raise InputError("--separator", f"{separator!r} encodes to no tokens")
        return cls(separator=separator, separator_ids=ids)

    def encode(
        self,
        tokenizer: Any,
        prompt: str,
        steps: Sequence[str],
        *,
        max_length: int | None = None,
    ) -> tuple[list[int], list[int]]:
        """``(input_ids, ends)``: the ids of the prompt and the steps, and the
        position of each step's separator end (where its score is read).  With
        ``max_length``, the steps that do not fit whole are left out (``ends``
        is then shorter than ``steps``)."""
        ids = list(tokenizer.encode(prompt, add_special_tokens=True)) + list(self.separator_ids)
        ends: list[int] = []
        for step in steps:
            piece = list(tokenizer.encode(step, add_special_tokens=False)) + list(
                self.separator_ids
            )
            if max_length is not None and len(ids) + len(piece) > max_length:
                break
            ids += piece
            ends.append(len(ids) - 1)
        return ids, ends


@attrs.frozen(kw_only=True)
class Encoded:
    """Token ids and one target per id (`IGNORE` where no step ends)."""

    input_ids: list[int]
    targets: list[float]


def encode_records(
    records: Iterable[StepRecord], tokenizer: Any, layout: Layout, max_length: int
) -> tuple[list[Encoded], dict[str, int]]:
    """The training examples of ``records`` and counts: records, steps kept,
    steps cut by ``max_length``, records with no step that fits."""
    examples, counts = [], {"records": 0, "steps": 0, "steps_cut": 0, "records_cut": 0}
    for record in records:
        counts["records"] += 1
        ids, ends = layout.encode(tokenizer, record.prompt, record.steps, max_length=max_length)
        counts["steps_cut"] += len(record.steps) - len(ends)
        if not ends:
            counts["records_cut"] += 1
            continue
        counts["steps"] += len(ends)
        targets = [float(IGNORE)] * len(ids)
        for end, target in zip(ends, record.targets, strict=False):
            targets[end] = target
        examples.append(Encoded(input_ids=ids, targets=targets))
    return examples, counts
