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


def test_the_command_line_reference_is_the_one_the_parsers_give():
    from prmsynth.cli._reference import render_cli_reference

    committed = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == render_cli_reference(), (
        "docs/cli.md is out of date: python -m prmsynth.cli._reference docs/cli.md"
    )


def test_the_command_line_reference_lists_every_option_of_every_command():
    from prmsynth.cli import build_parser
    from prmsynth.cli._main import command_parsers

    page = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, command in command_parsers(build_parser()).items():
        assert f"## prmsynth {name}\n" in page
        for action in command._actions:
            if action.dest == "help":
                continue
            for option in action.option_strings:
                assert f"`{option}" in page, (name, option)
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in page


def test_the_docs_navigation_has_the_reference_and_install_pages():
    nav = (REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "cli.md" in nav and "install.md" in nav
