"""Loading a base model with a token-level head, and scoring steps with a trained PRM.

A PRM folder written by ``prmsynth train`` is a plain ``transformers`` model
folder (``AutoModelForTokenClassification.from_pretrained(DIR)`` loads it) with
its tokenizer and ``prmsynth_prm.json``, which says how a solution is laid out
and where and how each step's score is read.  ``torch`` and ``transformers``
are imported inside the functions, never at import time.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from prmsynth._errors import InputError
from prmsynth.train._data import Layout

#: The file beside the model that says how to read its scores.
PRM_CONFIG = "prmsynth_prm.json"

#: ``two-labels``: a token-classification head with labels wrong / right, the
#: step's score is softmax(logits)[1]; ``one-logit``: one output, score sigmoid(logit).
Head = Literal["two-labels", "one-logit"]
HEADS: tuple[str, ...] = ("two-labels", "one-logit")


def require_train_extra() -> None:
    """Raise [`InputError`][prmsynth.InputError] naming the install command when
    the ``train`` extra is missing."""

    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            "prmsynth[train]",
            f"{' and '.join(missing)} not installed: pip install 'prmsynth[train]' "
            "(for CPU only, first: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)",
        )


def resolve_base(base: str | os.PathLike) -> tuple[str, str | None]:
    """``(folder, gguf_file)`` for ``from_pretrained``: a model folder, or a
    ``.gguf`` file (read by ``transformers`` through the ``gguf`` package)."""
    path = Path(base)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(path, "is a folder without config.json: not a transformers model")
        return str(path), None
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_file():
        raise InputError(path, "expected a transformers model folder or a .gguf file")
    raise InputError(path, "no such model folder or .gguf file")


def num_labels(head: Head) -> int:
    return 2 if head == "two-labels" else 1


def load_base(base: str | os.PathLike, head: Head) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the base's weights under a fresh token-level head."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder, gguf_file = resolve_base(base)
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
    if gguf_file:
        try:  # transformers 5 can keep GGUF weights packed, untrainable: unpack them
            from transformers import GgufConfig
        except ImportError:  # transformers 4 always unpacks them
            pass
        else:
            extra["quantization_config"] = GgufConfig(dequantize=True)
    model = AutoModelForTokenClassification.from_pretrained(
        folder,
        num_labels=num_labels(head),
        id2label={0: "wrong", 1: "right"} if head == "two-labels" else {0: "score"},
        label2id={"wrong": 0, "right": 1} if head == "two-labels" else {"score": 0},
        **extra,
    )
    if tokenizer.pad_token_id is None:
        # Padding is masked out; any id will do, and the end-of-text one exists.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def step_logits(logits: Any, head: Head) -> Any:
    """The logit of "this step is right" at each position: l1 - l0 for two labels
    (so softmax's p(right) is its sigmoid), the one logit otherwise."""
    if head == "two-labels":
        return logits[..., 1] - logits[..., 0]
    return logits[..., 0]


def prm_config(layout: Layout, head: Head) -> dict[str, Any]:
    """What ``prmsynth_prm.json`` says."""
    read = "softmax(logits)[1]" if head == "two-labels" else "sigmoid(logits[0])"
    return {
        "format": "prmsynth-prm/1",
        "separator": layout.separator,
        "separator_ids": list(layout.separator_ids),
        "head": head,
        "layout": "the prompt's token ids (with the tokenizer's special tokens), then the "
        "separator's; then each step's token ids (no special tokens), each followed by the "
        "separator's",
        "score": f"{read} at the last token of the separator after each step: "
        "the probability that the step is right",
    }


@attrs.define
class LocalPRM:
    """A PRM folder written by ``prmsynth train``, scoring steps on this machine.

    ``score(problem, steps)`` gives each step's probability of being right.
    """

    model: Any
    tokenizer: Any
    layout: Layout
    head: Head
    max_length: int | None = None
    device: str = "cpu"

    @classmethod
    def load(cls, folder: str | os.PathLike, *, device: str | None = None) -> LocalPRM:
        folder = Path(folder)
        config_path = folder / PRM_CONFIG
        if not config_path.is_file():
            raise InputError(folder, f"no {PRM_CONFIG}: not a PRM written by prmsynth train")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            layout = Layout(
                separator=config["separator"], separator_ids=tuple(config["separator_ids"])
            )
            head = config["head"]
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(config_path, f"unreadable: {error}") from None
        if head not in HEADS:
            raise InputError(config_path, f"unknown head {head!r}", field="head")
        require_train_extra()
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = AutoModelForTokenClassification.from_pretrained(folder).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        limit = getattr(model.config, "max_position_embeddings", None)
        return cls(
            model=model,
            tokenizer=tokenizer,
            layout=layout,
            head=head,
            max_length=limit,
            device=device,
        )

    def score(self, problem: str, steps: Sequence[str], answer: str | None = None) -> list[float]:
        """Each step's probability of being right; steps past the model's
        context get the last score read (they cannot be seen)."""
        return self.score_batch([(problem, steps)])[0]

    def score_batch(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """``score`` for several ``(problem, steps)`` at once, in one padded forward pass
        (padding on the right, masked, so no real token sees it)."""
        import torch

        encoded = [
            self.layout.encode(self.tokenizer, problem, steps, max_length=self.max_length)
            for problem, steps in solutions
        ]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.no_grad():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits
            probabilities = torch.sigmoid(step_logits(logits.float(), self.head)).cpu()
        results = []
        for row, ((_, ends), (_, steps)) in enumerate(zip(encoded, solutions, strict=True)):
            scores = probabilities[row, ends].tolist() if ends else [0.5]
            results.append(scores + [scores[-1]] * (len(steps) - len(scores)))
        return results
