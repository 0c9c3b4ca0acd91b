"""Hypothesis strategies for the export tests: settings, and forests of distinct questions."""

from __future__ import annotations

from hypothesis import strategies as st

from prmsynth import ExportSettings, ReasoningTree, tree_from_dict, tree_to_dict

from .strategies import trees

thresholds = st.sampled_from([0.0, 0.25, 0.5, 0.75])


@st.composite
def export_settings(draw, **fixed) -> ExportSettings:
    """Settings with thresholds drawn so that negative <= positive; ``fixed`` overrides."""
    positive = draw(thresholds)
    negative = draw(st.sampled_from([value for value in (0.0, 0.25, 0.5) if value <= positive]))
    options = {"positive_threshold": positive, "negative_threshold": negative}
    options.update(fixed)
    return ExportSettings(**options)


def _renamed(tree: ReasoningTree, index: int) -> ReasoningTree:
    # Distinct ids and texts, so that a record's prompt tells its question apart.
    record = tree_to_dict(tree)
    record["question_id"] = f"q{index}"
    record["question"] = f"Question {index}: {record['question']}"
    record["reasoning_steps"]["text"] = record["question"]
    return tree_from_dict(record)


@st.composite
def forests(draw, min_size: int = 1, max_size: int = 6) -> list[ReasoningTree]:
    """Several trees, each with its own question id and question text."""
    drawn = draw(st.lists(trees(), min_size=min_size, max_size=max_size))
    return [_renamed(tree, index) for index, tree in enumerate(drawn)]


def register_format(monkeypatch, entry) -> None:
    """Put ``entry`` into the format registry (replacing one of its name), for one test."""
    from types import MappingProxyType

    from prmsynth.export import _registry

    entries = {**_registry.FORMAT_BY_NAME, entry.name: entry}
    monkeypatch.setattr(_registry, "FORMAT_BY_NAME", MappingProxyType(entries))


def replace_builder(monkeypatch, name: str, build) -> None:
    """Swap the builder of format ``name`` in the format registry, for one test."""
    import attrs

    from prmsynth.export._registry import export_format

    register_format(monkeypatch, attrs.evolve(export_format(name), build=build))
