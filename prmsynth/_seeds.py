"""Reading seed questions from any source: JSON, CSV, Parquet, a ``datasets``
folder, the Hugging Face Hub, or rows given from Python (see ``_sources``)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prmsynth._errors import InputError
from prmsynth._sources import Row, RowSource, describe_rows, iter_rows
from prmsynth._values import Question

#: The longest question text ``load_questions`` accepts by default (characters).
MAX_QUESTION_CHARS = 20_000

#: Fields of an evolved-questions file (``prmsynth evolve``) kept as metadata.
LINEAGE_FIELDS = (
    "parent_id",
    "root_id",
    "mutation",
    "round",
    "prompt_version",
    "answer_votes",
    "answer_agreement",
    "n_answer_samples",
)


def reference_from_answer(answer: str) -> str:
    """The final answer from a reference: GSM8K's ``... #### 72`` gives ``72``.

    >>> reference_from_answer("She sold 48 + 24 = 72 clips.\\n#### 72")
    '72'
    >>> reference_from_answer(" \\\\frac{1}{4} ")
    '\\\\frac{1}{4}'
    """
    if "####" in answer:
        answer = answer.rsplit("####", 1)[1]
    return answer.strip()


def load_questions(
    source: str | os.PathLike | Iterable[Mapping[str, Any]],
    *,
    question_fields: Sequence[str] = ("problem",),
    answer_field: str = "final_answer",
    limit: int | None = None,
    max_question_chars: int = MAX_QUESTION_CHARS,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
) -> list[Question]:
    """Read seed questions with their reference answers.

    ``source`` is a JSON file (JSON Lines, a JSON array, or JSON objects one
    after another), a ``.csv`` or ``.tsv`` file, a ``.parquet`` file, a folder
    written by ``datasets``' ``save_to_disk``, a Hugging Face Hub dataset
    ``"hf:NAME"`` (with ``subset``, ``split`` and ``revision``), or any
    iterable of mappings (a ``datasets.Dataset``, a list of dicts).  Parquet,
    ``datasets`` folders and the Hub need the ``hf`` extra.  Rows are read as
    a stream, and only the first ``limit`` of them.

    The question text is the value of ``question_fields`` (joined by a blank
    line when several are named); the id is the record's ``id`` or ``idx``
    when present, else its position.  Every record is checked before any is
    returned, so a bad source fails before work starts: a question must be
    text of at most ``max_question_chars`` characters, an answer text or a
    finite number.  A bad record raises [`InputError`][prmsynth.InputError]
    naming the source, its line or row, and the field.

    >>> import tempfile, pathlib
    >>> seed = pathlib.Path(tempfile.mkdtemp()) / "seeds.jsonl"
    >>> _ = seed.write_text('{"idx": 1, "problem": "What is 2 + 3?", "final_answer": "5"}\\n')
    >>> [(q.id, q.text, q.reference_answer) for q in load_questions(seed)]
    [('1', 'What is 2 + 3?', '5')]
    >>> rows = [{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\\n#### 4"}]
    >>> [(q.id, q.reference_answer) for q in load_questions(
    ...     rows, question_fields=["question"], answer_field="answer")]
    [('1', '4')]
    """
    if isinstance(source, (str, os.PathLike)):
        source = RowSource(location=str(source), subset=subset, split=split, revision=revision)
        name = source.name
    else:
        for option, value in (("subset", subset), ("split", split), ("revision", revision)):
            if value is not None:
                raise TypeError(f"{option} applies to a path or hf:NAME, not to rows")
        name = describe_rows(source)
    rows = iter_rows(source, required=[*question_fields, answer_field])
    return list(
        _questions(
            rows,
            name=name,
            question_fields=question_fields,
            answer_field=answer_field,
            limit=limit,
            max_question_chars=max_question_chars,
        )
    )


def _questions(
    rows: Iterator[Row],
    *,
    name: str,
    question_fields: Sequence[str],
    answer_field: str,
    limit: int | None,
    max_question_chars: int,
) -> Iterator[Question]:
    seen_ids: dict[str, str] = {}  # where each id was first: a million ids, not rows
    for index, row in enumerate(rows, start=1):
        if limit is not None and index > limit:
            break
        record = row.record
        parts = [_required_text(row, field) for field in question_fields]
        if sum(map(len, parts)) > max_question_chars:
            raise row.error(
                f"question longer than {max_question_chars:,} characters "
                "(raise the limit with --max-question-chars)"
            )
        answer = reference_from_answer(_required_text(row, answer_field, numbers=True))
        if not answer:
            raise row.error("the answer is empty after '####'", field=answer_field)
        question_id = str(record.get("id", record.get("idx", index)))
        if question_id in seen_ids:
            raise row.error(f"duplicate id {question_id!r} (first on {seen_ids[question_id]})")
        seen_ids[question_id] = row.where
        yield Question(
            id=question_id,
            text="\n\n".join(parts),
            reference_answer=answer,
            # An evolved-questions file keeps its lineage and answer's origin.
            source=str(record.get("source") or name),
            answer_source=str(record.get("answer_source") or "seed"),
            metadata={key: record[key] for key in LINEAGE_FIELDS if key in record},
        )


def seed_source_from_args(args: Any) -> RowSource:
    """The seed source the command line names: ``seed_file`` with ``--subset``,
    ``--split`` and ``--revision``, a Hub dataset pinned to the commit it is at."""
    return RowSource(
        location=str(args.seed_file),
        subset=getattr(args, "subset", None),
        split=getattr(args, "split", None),
        revision=getattr(args, "revision", None),
    ).pinned()


def load_questions_from_args(args: Any, source: RowSource | None = None) -> list[Question]:
    """The seed questions named by the command line's ``seed_file`` (or
    ``source``, from [`seed_source_from_args`][prmsynth._seeds.seed_source_from_args]),
    ``--column-names``, ``--answer-column`` and ``--limit``; at least one."""
    fields = [name.strip() for name in args.column_names.split(",") if name.strip()]
    if not fields:
        raise InputError("--column-names", "names no field")
    source = source or seed_source_from_args(args)
    questions = load_questions(
        source.location,
        subset=source.subset,
        split=source.split,
        revision=source.revision,
        question_fields=fields,
        answer_field=args.answer_column,
        limit=args.limit,
        max_question_chars=getattr(args, "max_question_chars", MAX_QUESTION_CHARS),
    )
    if not questions:
        raise InputError(source.describe(), "holds no questions")
    return questions


def _required_text(row: Row, field: str, *, numbers: bool = False) -> str:
    record = row.record
    if field not in record:
        raise row.error("missing field", field=field)
    value = record[field]
    allowed = (str, int, float) if numbers else (str,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise row.error(f"expected text, got {type(value).__name__}", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise row.error(f"not a finite number: {value}", field=field)
    text = str(value).strip()
    if not text:
        raise row.error("empty value", field=field)
    return text
