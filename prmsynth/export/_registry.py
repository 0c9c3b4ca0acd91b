"""The export formats, one entry each: a new format is one `ExportFormat` in
`EXPORT_FORMATS` (with its builder in ``_builders.py`` and its schema file in
``schemas/``).

>>> export_format("dpo-step").schema  # same layout as dpo, same schema
'dpo'
>>> [entry.name for entry in EXPORT_FORMATS if entry.soft_labels]
['trl', 'math-shepherd']
>>> [entry.name for entry in EXPORT_FORMATS if not entry.carries_question_id]
['sft', 'dpo', 'dpo-step']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from types import MappingProxyType
from typing import Any

import attrs

from prmsynth._errors import ExportError, InputError
from prmsynth._tree import ReasoningTree
from prmsynth.export._builders import (
    Example,
    dpo_examples,
    dpo_step_examples,
    dpo_step_trl_examples,
    dpo_trl_examples,
    flat_examples,
    kto_examples,
    math_shepherd_checks,
    math_shepherd_examples,
    prm800k_examples,
    processbench_checks,
    processbench_examples,
    sft_examples,
    sft_trl_examples,
    step_dpo_examples,
    tree_examples,
    trl_checks,
    trl_examples,
)
from prmsynth.export._settings import ExportSettings

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "FORMAT_BY_NAME",
    "ExportFormat",
    "check_format_options",
    "export_format",
]

Builder = Callable[[ReasoningTree, ExportSettings, "Counter[str]"], Iterable[Example]]
"""Makes the examples of one tree: ``build(tree, settings, stats)``, counting what it
leaves out in ``stats``."""

RecordCheck = Callable[[dict[str, Any]], Iterator[str]]
"""What JSON Schema cannot say of a record (lengths that must agree, tags that must
match): one ``"$.path: message"`` per problem, for a record the schema accepts."""


@attrs.frozen(kw_only=True)
class ExportFormat:
    """One export format.

    ``name``: what the API, the CLI and the manifest call it.  ``build``: its
    `Builder`.  ``schema``: the name of its schema file,
    ``prmsynth/export/schemas/<schema>.schema.json`` (formats that share a record
    layout share one; default: ``name``).  ``labelled``: its examples have a class
    (an error in the solution or not), so they can be balanced, kept by
    consensus, and their label balance reported.  ``soft_labels``: its trainers
    read a float label per step (TRL's ``labels``, the ``value`` list OpenRLHF
    reads from a Math-Shepherd record).  ``check``: its `RecordCheck`, if any.
    ``carries_question_id``: each record names its question's id (the seed's
    ``--id-column``) in a top-level ``question_id`` field: ``tree`` and
    ``flat`` in their own layout, the other formats with the field put first
    in each record (after deduplication, so that records alike but for the
    question still count as duplicates).  False for the OpenAI fine-tuning
    layouts (``sft``, ``dpo``, ``dpo-step``), which define no field for it.
    """

    name: str
    build: Builder = attrs.field(eq=False)
    schema: str = attrs.field(default=attrs.Factory(lambda self: self.name, takes_self=True))
    labelled: bool = False
    soft_labels: bool = False
    check: RecordCheck | None = attrs.field(default=None, eq=False)
    carries_question_id: bool = True


EXPORT_FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(name="tree", build=tree_examples),
    ExportFormat(name="flat", build=flat_examples),
    ExportFormat(name="trl", build=trl_examples, labelled=True, soft_labels=True, check=trl_checks),
    ExportFormat(
        name="math-shepherd",
        build=math_shepherd_examples,
        labelled=True,
        soft_labels=True,
        check=math_shepherd_checks,
    ),
    ExportFormat(name="prm800k", build=prm800k_examples, labelled=True),
    ExportFormat(
        name="processbench", build=processbench_examples, labelled=True, check=processbench_checks
    ),
    # OpenAI's fine-tuning layouts: no field of theirs can hold the id (see docs/exports.md).
    ExportFormat(name="sft", build=sft_examples, carries_question_id=False),
    ExportFormat(name="sft-trl", build=sft_trl_examples),
    ExportFormat(name="dpo", build=dpo_examples, carries_question_id=False),
    ExportFormat(name="dpo-trl", build=dpo_trl_examples),
    ExportFormat(name="dpo-step", build=dpo_step_examples, schema="dpo", carries_question_id=False),
    ExportFormat(name="dpo-step-trl", build=dpo_step_trl_examples, schema="dpo-trl"),
    ExportFormat(name="kto", build=kto_examples, labelled=True),
    ExportFormat(name="step-dpo", build=step_dpo_examples),
)
"""Every export format, in the order the CLI and the docs list them."""

FORMAT_BY_NAME: MappingProxyType[str, ExportFormat] = MappingProxyType(
    {entry.name: entry for entry in EXPORT_FORMATS}
)

FORMATS: tuple[str, ...] = tuple(entry.name for entry in EXPORT_FORMATS)
"""The format names [`export_records`][prmsynth.export_records],
[`export_file`][prmsynth.export_file] and [`validate_file`][prmsynth.validate_file] know."""


def export_format(name: str) -> ExportFormat:
    """The format called ``name``; ValueError naming the known ones otherwise.

    >>> export_format("trl").labelled
    True
    >>> export_format("csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown format 'csv'; choose from tree, flat, trl, ...
    """
    entry = FORMAT_BY_NAME.get(name)
    if entry is None:
        raise ValueError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    return entry


def check_format_options(format: str, settings: ExportSettings) -> None:
    """Refuse ``settings`` that ``format`` cannot honour, before anything is
    written: an unknown format (``ValueError``), soft labels where its labels
    are booleans ([`InputError`][prmsynth.InputError]), balance or consensus
    where its examples have no class ([`ExportError`][prmsynth.ExportError]).
    Every export runs it; a caller writing several formats runs it for all of
    them first.

    >>> check_format_options("dpo-trl", ExportSettings(soft_labels=True))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prmsynth._errors.InputError: soft_labels: format 'dpo-trl' cannot carry float labels; ...
    """
    entry = export_format(format)
    if settings.soft_labels and not entry.soft_labels:
        soft = [other.name for other in EXPORT_FORMATS if other.soft_labels]
        raise InputError(
            "soft_labels",
            f"format {format!r} cannot carry float labels; soft labels are written in "
            f"{' and '.join(soft)} only",
        )
    if entry.labelled:
        return
    labelled = ", ".join(sorted(other.name for other in EXPORT_FORMATS if other.labelled))
    for option, wanted in (
        ("balance", settings.balance != "none"),
        ("consensus", settings.consensus),
    ):
        if wanted:
            raise ExportError(
                f"{option}={getattr(settings, option)!r} needs labelled examples; format "
                f"{format!r} has none (labelled formats: {labelled})"
            )
