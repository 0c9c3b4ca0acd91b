"""The exports of a fixed forest, pinned by digest: a refactor of the export package
must leave every format's bytes as they were.  A deliberate change of a format
updates its digests here (``python -m tests.export.test_export_golden`` prints them)."""

from __future__ import annotations

import hashlib

import pytest

from prmsynth import FORMATS, ExportError, ExportSettings, InputError, export_records
from prmsynth._io import dumps_line

from .test_export_streaming import varied_forest

SETTINGS = {
    "default": {},
    "balanced-split": {"balance": "downsample", "validation_fraction": 0.3, "balance_seed": 5},
    "mc-thresholds": {"labels": "mc", "positive_threshold": 0.5, "negative_threshold": 0.2},
    "soft": {"soft_labels": True},
}
# Fixed here, not taken from the generator's default, which may change on its own.
COMMON = {"system_prompt": "Solve the problem step by step.", "generator": "test-model"}

#: Printed by ``python -m tests.export.test_export_golden``; the digests of the exports before
#: the export package was split into modules, byte for byte, then with ``question_id``
#: put first in the records of every format that carries it (issue 26; without the
#: field, those records hash to the digests before, checked when they changed).
GOLDEN: dict[str, dict[str, tuple[str, int] | str]] = {
    "default": {
        "tree": ("a6af6545d1ab31f3", 46),
        "flat": ("727295b3d66d9da1", 46),
        "trl": ("a59c210216236754", 89),
        "math-shepherd": ("da7ebacceb19f577", 89),
        "prm800k": ("f7220913193025d5", 90),
        "processbench": ("d30070a8c9393532", 86),
        "sft": ("1996b759d555274f", 108),
        "sft-trl": ("47a5091098562448", 108),
        "dpo": ("0ef5ce67b7aa62b2", 64),
        "dpo-trl": ("66ff66fc6b0eccde", 64),
        "dpo-step": ("7ce9d451173f3f8b", 29),
        "dpo-step-trl": ("03492c488327a707", 29),
        "kto": ("9ac77dcb99736d89", 185),
        "step-dpo": ("862af8508aec98b1", 12),
    },
    "balanced-split": {
        "tree": "ExportError",
        "flat": "ExportError",
        "trl": ("ec3edc5d2b8dbbda", 38),
        "math-shepherd": ("87ff3459f255c91f", 38),
        "prm800k": ("388a78c277e66099", 38),
        "processbench": ("d8528462c8488adc", 52),
        "sft": "ExportError",
        "sft-trl": "ExportError",
        "dpo": "ExportError",
        "dpo-trl": "ExportError",
        "dpo-step": "ExportError",
        "dpo-step-trl": "ExportError",
        "kto": ("f6ebbe0cf6bd50dc", 36),
        "step-dpo": "ExportError",
    },
    "mc-thresholds": {
        "tree": ("a6af6545d1ab31f3", 46),
        "flat": ("727295b3d66d9da1", 46),
        "trl": ("35f22532ad7dc4f0", 80),
        "math-shepherd": ("3a246db5f8a69c85", 80),
        "prm800k": ("5e88be1325f0f2f7", 81),
        "processbench": ("699f52621debc6c5", 98),
        "sft": ("1996b759d555274f", 108),
        "sft-trl": ("47a5091098562448", 108),
        "dpo": ("0ef5ce67b7aa62b2", 64),
        "dpo-trl": ("66ff66fc6b0eccde", 64),
        "dpo-step": ("7ce9d451173f3f8b", 29),
        "dpo-step-trl": ("03492c488327a707", 29),
        "kto": ("b7401d10459becd6", 124),
        "step-dpo": ("ce1a7f6dce8845ff", 9),
    },
    "soft": {
        "tree": "InputError",
        "flat": "InputError",
        "trl": ("8f3cdf31e7dfee23", 86),
        "math-shepherd": ("a5fe285d4bf9df45", 86),
        "prm800k": "InputError",
        "processbench": "InputError",
        "sft": "InputError",
        "sft-trl": "InputError",
        "dpo": "InputError",
        "dpo-trl": "InputError",
        "dpo-step": "InputError",
        "dpo-step-trl": "InputError",
        "kto": "InputError",
        "step-dpo": "InputError",
    },
}


def digest(settings_name: str, format: str) -> tuple[str, int] | str:
    """``(sha256 prefix, records)`` of the train side, or the error's type."""
    settings = ExportSettings(**SETTINGS[settings_name], **COMMON)
    split = "train" if settings.validation_fraction else None
    try:
        lines = [
            dumps_line(record)
            for record in export_records(varied_forest(48, seed=3), format, settings, split=split)
        ]
    except (ExportError, InputError) as error:
        return type(error).__name__
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16], len(lines)


def print_digests() -> None:
    for name in SETTINGS:
        print(f"    {name!r}: {{")
        for format in FORMATS:
            print(f"        {format!r}: {digest(name, format)!r},")
        print("    },")


@pytest.mark.parametrize("settings_name", sorted(SETTINGS))
def test_every_format_exports_the_same_bytes_as_before(settings_name):
    found = {format: digest(settings_name, format) for format in FORMATS}
    assert found == GOLDEN[settings_name]


if __name__ == "__main__":
    print_digests()
