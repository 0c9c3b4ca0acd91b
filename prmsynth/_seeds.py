"""Reading seed questions from any source: JSON, CSV, Parquet, a ``datasets``
folder, the Hugging Face Hub, or rows given from Python (see ``_sources``)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from prmsynth._errors import InputError
from prmsynth._io import SeenKeys, read_jsonl, write_jsonl
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
    id_field: str | None = None,
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
    line when several are named); the id is the value of ``id_field`` when
    named (MATH-500's ``unique_id``, say: every row must have it), else the
    record's ``id`` or ``idx`` when present, else its position.  Every record
    is checked before any is returned, so a bad source fails before work
    starts: a question must be text of at most ``max_question_chars``
    characters, an answer text or a finite number, an id unique.  A bad record raises
    [`InputError`][prmsynth.InputError] naming the source, its line or row,
    and the field.  For more questions than memory holds, use
    [`iter_questions`][prmsynth.iter_questions].

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
    return list(
        iter_questions(
            source,
            question_fields=question_fields,
            answer_field=answer_field,
            id_field=id_field,
            limit=limit,
            max_question_chars=max_question_chars,
            subset=subset,
            split=split,
            revision=revision,
        )
    )


def iter_questions(
    source: str | os.PathLike | Iterable[Mapping[str, Any]],
    *,
    question_fields: Sequence[str] = ("problem",),
    answer_field: str = "final_answer",
    id_field: str | None = None,
    limit: int | None = None,
    max_question_chars: int = MAX_QUESTION_CHARS,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
) -> Iterator[Question]:
    """The seed questions of [`load_questions`][prmsynth.load_questions], one
    at a time, so that a million-row source never sits in memory.

    Each record is checked as it is read, so a bad record raises
    [`InputError`][prmsynth.InputError] when the iteration reaches it, not
    before.  Duplicate ids are found with a scratch file, not a table in memory.
    [`RunFolder.run`][prmsynth.RunFolder.run] takes the iterator as it is: the
    finished questions stay in the folder if a bad record stops the run.

    >>> rows = ({"problem": f"What is {n} + 1?", "final_answer": n + 1} for n in range(3))
    >>> questions = iter_questions(rows)
    >>> [(q.id, q.reference_answer) for q in questions]
    [('1', '1'), ('2', '2'), ('3', '3')]
    """
    if isinstance(source, (str, os.PathLike)):
        source = RowSource(location=str(source), subset=subset, split=split, revision=revision)
        name = source.name
    else:
        for option, value in (("subset", subset), ("split", split), ("revision", revision)):
            if value is not None:
                raise TypeError(f"{option} applies to a path or hf:NAME, not to rows")
        name = describe_rows(source)
    required = [*question_fields, answer_field, *([id_field] if id_field is not None else [])]
    return _questions(
        iter_rows(source, required=required),
        name=name,
        question_fields=question_fields,
        answer_field=answer_field,
        id_field=id_field,
        limit=limit,
        max_question_chars=max_question_chars,
    )


def _questions(
    rows: Iterator[Row],
    *,
    name: str,
    question_fields: Sequence[str],
    answer_field: str,
    id_field: str | None,
    limit: int | None,
    max_question_chars: int,
) -> Iterator[Question]:
    # A million ids in a scratch file, not in memory.
    with (
        tempfile.TemporaryDirectory(prefix="prmsynth-ids-") as scratch,
        SeenKeys(Path(scratch) / "ids.sqlite") as seen_ids,
    ):
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
            question_id = _question_id(row, index, id_field)
            if not seen_ids.first(question_id.encode(), note=row.where):
                first = seen_ids.note(question_id.encode())
                raise row.error(f"duplicate id {question_id!r} (first on {first})")
            yield Question(
                id=question_id,
                text="\n\n".join(parts),
                reference_answer=answer,
                # An evolved-questions file keeps its lineage and answer's origin.
                source=str(record.get("source") or name),
                answer_source=str(record.get("answer_source") or "seed"),
                metadata={key: record[key] for key in LINEAGE_FIELDS if key in record},
            )


@attrs.frozen(kw_only=True)
class QuestionSpool:
    """Seed questions, every one checked, in a scratch JSON Lines file:
    read again from there each time they are iterated, and counted, so that a
    run knows its total without holding the questions in memory."""

    path: Path
    count: int

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Question]:
        for _, record in read_jsonl(self.path):
            yield Question(**record)


@contextlib.contextmanager
def spool_questions(
    source: RowSource,
    *,
    question_fields: Sequence[str] = ("problem",),
    answer_field: str = "final_answer",
    id_field: str | None = None,
    limit: int | None = None,
    max_question_chars: int = MAX_QUESTION_CHARS,
    shard: tuple[int, int] | None = None,
) -> Iterator[QuestionSpool]:
    """The seed questions of ``source`` (as [`iter_questions`][prmsynth.iter_questions]
    reads them), every one checked, in a [`QuestionSpool`][prmsynth._seeds.QuestionSpool];
    at least one.

    Every row is read and checked before the first question is handed out,
    so a bad row stops the caller before any work; the questions (of
    ``shard=(i, n)`` only, when given) wait in a scratch file that is removed
    on leaving the ``with`` block.

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seeds.jsonl"
    >>> _ = path.write_text(json.dumps({"problem": "What is 1 + 1?", "final_answer": 2}))
    >>> with spool_questions(RowSource(location=str(path))) as spool:
    ...     len(spool), [q.reference_answer for q in spool]
    (1, ['2'])
    """
    questions = iter_questions(
        source.location,
        subset=source.subset,
        split=source.split,
        revision=source.revision,
        question_fields=question_fields,
        answer_field=answer_field,
        id_field=id_field,
        limit=limit,
        max_question_chars=max_question_chars,
    )
    with tempfile.TemporaryDirectory(prefix="prmsynth-seeds-") as scratch:
        path = Path(scratch) / "questions.jsonl"
        read = 0

        def kept() -> Iterator[dict[str, Any]]:
            nonlocal read
            for question in questions:
                read += 1
                if shard is None or shard_of(question.id, shard[1]) == shard[0]:
                    yield attrs.asdict(question)

        count = write_jsonl(path, kept())
        if not read:
            raise InputError(source.describe(), "holds no questions")
        yield QuestionSpool(path=path, count=count)


def shard_of(question_id: str, count: int) -> int:
    """The shard (0 .. count - 1) a question belongs to: a stable hash of its id.

    >>> shard_of("q1", 4) == shard_of("q1", 4)
    True
    >>> {shard_of(str(i), 3) for i in range(100)} == {0, 1, 2}
    True
    """
    digest = hashlib.sha256(question_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def _question_id(row: Row, index: int, id_field: str | None = None) -> str:
    """The id of a seed row: its ``id_field`` when one is named (the row must
    have it), else its ``id`` (or ``idx``) field, text or a number, else its
    position (from 1); an object, a list or a flag is refused."""
    record = row.record
    if id_field is not None:
        if record.get(id_field) is None:
            raise row.error("empty id", field=id_field)
        field: str | None = id_field
    else:
        field = next((name for name in ("id", "idx") if record.get(name) is not None), None)
    if field is None:
        return str(index)
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise row.error(f"expected text or a number, got {type(value).__name__}", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise row.error(f"not a finite number: {value}", field=field)
    text = str(value)
    if not text.strip():
        raise row.error("empty id", field=field)
    _check_sendable(row, field, text)
    return text


def _check_sendable(row: Row, field: str, text: str) -> None:
    """Refuse text a request cannot carry: a lone surrogate (``"\\ud800"`` in
    JSON) is no character UTF-8 can encode, so every request holding it would
    fail, on every resume; the row is refused at load instead, located."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise row.error(
            f"holds U+{code:04X} at character {error.start + 1}, a lone surrogate that no "
            "request can carry (fix the escape in the file)",
            field=field,
        ) from None


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
    _check_sendable(row, field, text)
    return text
