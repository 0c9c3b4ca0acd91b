"""The evolved-questions file: what ``prmsynth evolve`` writes and ``prmsynth run`` reads.

One JSON line per question, in the field names ``load_questions`` reads by
default (``id``, ``problem``, ``final_answer``), with ``source``,
``answer_source`` and the lineage and vote fields at the top level, and a
``.rejects.jsonl`` file beside it with one line per rejected candidate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from prmsynth._io import write_jsonl
from prmsynth._seeds import load_questions
from prmsynth._sources import iter_json_records
from prmsynth._values import Question
from prmsynth.evolve._evolver import EvolutionReport, Rejection

#: What a run folder holds when its questions were evolved (and the rejects beside it).
EVOLVED_FILE = "evolved.jsonl"


def question_record(question: Question) -> dict[str, Any]:
    """One output line: what ``load_questions`` reads, then source, answer source and lineage."""
    record: dict[str, Any] = {
        "id": question.id,
        "problem": question.text,
        "final_answer": question.reference_answer,
        "source": question.source,
        "answer_source": question.answer_source,
    }
    for key, value in question.metadata.items():
        record.setdefault(key, value)
    return record


def rejects_path_for(out_path: str | os.PathLike) -> Path:
    """``questions.jsonl`` -> ``questions.rejects.jsonl``, in the same folder."""
    path = Path(out_path)
    return path.with_name(f"{path.stem}.rejects.jsonl")


def write_report(report: EvolutionReport, out_path: str | os.PathLike) -> Path:
    """Write the questions to ``out_path`` and the rejects beside it; returns the rejects path."""
    return write_evolved(out_path, report.questions, report.rejects)


def write_evolved(
    out_path: str | os.PathLike, questions: list[Question], rejects: list[Rejection]
) -> Path:
    """Write ``questions`` to ``out_path`` and ``rejects`` beside it; returns the rejects path."""
    out_path = Path(out_path)
    rejects_path = rejects_path_for(out_path)
    write_jsonl(out_path, (question_record(q) for q in questions))
    write_jsonl(rejects_path, (rejection.to_dict() for rejection in rejects))
    return rejects_path


def load_evolved_questions(path: str | os.PathLike) -> list[Question]:
    """Read a file written by ``prmsynth evolve`` back, with sources, lineage and vote.

    The rows are checked by [`load_questions`][prmsynth.load_questions] (so errors are
    located the same way); ``source``, ``answer_source`` and the other
    fields of each row come back as the question's metadata.
    """
    questions = load_questions(path)
    records = [record for _, record in iter_json_records(path)]
    restored = []
    for question, record in zip(questions, records, strict=True):
        metadata = {
            key: value
            for key, value in record.items()
            if key not in ("id", "idx", "problem", "final_answer", "source", "answer_source")
        }
        restored.append(
            attrs.evolve(
                question,
                source=str(record.get("source", question.source)),
                answer_source=str(record.get("answer_source", question.answer_source)),
                metadata=metadata,
            )
        )
    return restored
