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
#: the export package was split into modules, byte for byte.
GOLDEN: dict[str, dict[str, tuple[str, int] | str]] = {
    "default": {
        "tree": ("a6af6545d1ab31f3", 46),
        "flat": ("727295b3d66d9da1", 46),
        "trl": ("12785bf78d98929d", 89),
        "math-shepherd": ("582b89d8bcfb1ba7", 89),
        "prm800k": ("8487eef0b07a9536", 90),
        "processbench": ("cc1af4ca4339a34e", 86),
        "sft": ("1996b759d555274f", 108),
        "sft-trl": ("405abadb18ea6dcc", 108),
        "dpo": ("0ef5ce67b7aa62b2", 64),
        "dpo-trl": ("543c43e720a75b4e", 64),
        "dpo-step": ("7ce9d451173f3f8b", 29),
        "dpo-step-trl": ("4c26bfe7d08fbd24", 29),
        "kto": ("c177694e3d4bf0fa", 185),
        "step-dpo": ("11fd5c8f90142321", 12),
    },
    "balanced-split": {
        "tree": "ExportError",
        "flat": "ExportError",
        "trl": ("57850bf1ae8af8af", 38),
        "math-shepherd": ("ee83c86930dbbf8d", 38),
        "prm800k": ("e82f91a820b9ec64", 38),
        "processbench": ("aa53448654d16cfc", 52),
        "sft": "ExportError",
        "sft-trl": "ExportError",
        "dpo": "ExportError",
        "dpo-trl": "ExportError",
        "dpo-step": "ExportError",
        "dpo-step-trl": "ExportError",
        "kto": ("b1168852b08b166a", 36),
        "step-dpo": "ExportError",
    },
    "mc-thresholds": {
        "tree": ("a6af6545d1ab31f3", 46),
        "flat": ("727295b3d66d9da1", 46),
        "trl": ("5bb5e48f0d02dc76", 80),
        "math-shepherd": ("82aed7f685325bff", 80),
        "prm800k": ("74755eb7d55aa43f", 81),
        "processbench": ("ee7190262880656c", 98),
        "sft": ("1996b759d555274f", 108),
        "sft-trl": ("405abadb18ea6dcc", 108),
        "dpo": ("0ef5ce67b7aa62b2", 64),
        "dpo-trl": ("543c43e720a75b4e", 64),
        "dpo-step": ("7ce9d451173f3f8b", 29),
        "dpo-step-trl": ("4c26bfe7d08fbd24", 29),
        "kto": ("d2cb58c66b14b646", 124),
        "step-dpo": ("572901cad5808d8a", 9),
    },
    "soft": {
        "tree": "InputError",
        "flat": "InputError",
        "trl": ("10f73c5f9e1f21d6", 86),
        "math-shepherd": ("7069a10543eddcb8", 86),
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
