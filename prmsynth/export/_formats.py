"""Training-ready exports: every format a PRM, SFT or DPO trainer reads, each with a schema.

Reasoning trees are the product, but trainers read files.  The export package turns
trees into the record formats the field uses (TRL stepwise supervision,
Math-Shepherd, PRM800K, ProcessBench, chat SFT, TRL SFT, DPO pairs, per-step
KTO, Step-DPO) and
validates every record against a JSON Schema (Draft 2020-12) shipped in
``prmsynth/export/schemas/`` before anything is written.

This module is the package's face: the rest of prmsynth imports exports from here.
Behind it, one concern a module: ``_settings.py`` (the options), ``_labels.py``
(the labelling rule), ``_builders.py`` (each format's records),
``_registry.py`` (one `ExportFormat` entry per format), ``_schema.py`` (schemas and
validation), ``_records.py`` (dedup, split, balance) and ``_write.py`` (the files).

The labelling rule every labelled format shares is told in ``_labels.py`` (see
`label_path`).

>>> from prmsynth import Question, ReasoningTree, Verdict
>>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
>>> first, last = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
>>> tree.mark_terminal(last, Verdict(status="correct"))
>>> [record["labels"] for record in export_records([tree], "trl")]
[[True, True]]
"""

from prmsynth.export._builders import STEP_TAG, math_shepherd_record, parse_math_shepherd
from prmsynth.export._labels import LabelledStep, agrees_with_critic, label_path
from prmsynth.export._records import export_records, question_split
from prmsynth.export._registry import (
    EXPORT_FORMATS,
    FORMATS,
    ExportFormat,
    check_format_options,
    export_format,
)
from prmsynth.export._schema import load_schema, validate_file, validate_record
from prmsynth.export._serialize import STEP_SEPARATOR
from prmsynth.export._settings import ExportSettings, SplitName
from prmsynth.export._write import export_file, manifest_path, read_trees

__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "STEP_SEPARATOR",
    "STEP_TAG",
    "ExportFormat",
    "ExportSettings",
    "LabelledStep",
    "SplitName",
    "agrees_with_critic",
    "check_format_options",
    "export_file",
    "export_format",
    "export_records",
    "label_path",
    "load_schema",
    "manifest_path",
    "math_shepherd_record",
    "parse_math_shepherd",
    "question_split",
    "read_trees",
    "validate_file",
    "validate_record",
]
