"""The API reference covers every public name."""

from __future__ import annotations

import prmsynth

from .conftest import REPO_ROOT


def test_every_public_name_is_in_the_api_reference():
    reference = (REPO_ROOT / "docs" / "api.md").read_text()
    missing = [name for name in prmsynth.__all__ if f".{name}\n" not in reference]
    assert missing == []


def test_every_public_name_resolves():
    for name in prmsynth.__all__:
        assert getattr(prmsynth, name) is not None, name
