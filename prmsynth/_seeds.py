"""Reading seed questions: JSONL, a JSON array, or JSON objects one after another."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prmsynth._errors import InputError
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


def iter_json_records(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """Yield ``(line, value)`` for each JSON value in ``path``.

    Accepts JSON Lines, one JSON array of objects, or objects one after
    another over several lines each (the seed script's format).  ``line`` is
    the 1-based line where the value starts.  Raises [`InputError`][prmsynth.InputError] on a
    missing file or bad JSON, naming the line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read: {error}") from None
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    in_array = text.startswith("[", position)
    if in_array:
        position = _skip_space(text, position + 1)
    while position < len(text):
        if in_array and text[position] == "]":
            position = _skip_space(text, position + 1)
            if position < len(text):
                raise InputError(
                    path, "unexpected text after the JSON array", line=_line_of(text, position)
                )
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise InputError(path, f"invalid JSON: {error.msg}", line=error.lineno) from None
        except RecursionError:
            raise InputError(
                path, "JSON nested too deeply", line=_line_of(text, position)
            ) from None
        yield _line_of(text, position), value
        position = _skip_space(text, end)
        if in_array:
            if text.startswith(",", position):
                position = _skip_space(text, position + 1)
            elif position >= len(text):
                break
            elif not text.startswith("]", position):
                raise InputError(
                    path, "expected ',' or ']' in the JSON array", line=_line_of(text, position)
                )
    if in_array:
        raise InputError(path, "the JSON array is not closed", line=_line_of(text, len(text)))


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n\ufeff":
        position += 1
    return position


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def iter_json_objects(
    path: str | os.PathLike, required: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, object)`` for each JSON object of ``path`` (any layout
    [`load_questions`][prmsynth.load_questions] reads); a value that is not an
    object, or lacks a ``required`` field, raises
    [`InputError`][prmsynth.InputError] naming the file, line and field."""
    for line, record in iter_json_records(path):
        if not isinstance(record, dict):
            raise InputError(
                path, f"expected a JSON object, got {type(record).__name__}", line=line
            )
        for field in required:
            if field not in record:
                raise InputError(path, "missing field", line=line, field=field)
        yield line, record


def load_questions(
    path: str | os.PathLike,
    *,
    question_fields: Sequence[str] = ("problem",),
    answer_field: str = "final_answer",
    limit: int | None = None,
    max_question_chars: int = MAX_QUESTION_CHARS,
) -> list[Question]:
    """Read seed questions with their reference answers.

    The question text is the value of ``question_fields`` (joined by a blank
    line when several are named); the id is the record's ``id`` or ``idx``
    when present, else its position.  Every record is checked before any is
    returned, so a bad file fails before work starts: a question must be text
    of at most ``max_question_chars`` characters, an answer text or a finite
    number.

    >>> import tempfile, pathlib
    >>> seed = pathlib.Path(tempfile.mkdtemp()) / "seeds.jsonl"
    >>> _ = seed.write_text('{"idx": 1, "problem": "What is 2 + 3?", "final_answer": "5"}\\n')
    >>> [(q.id, q.text, q.reference_answer) for q in load_questions(seed)]
    [('1', 'What is 2 + 3?', '5')]
    """
    questions: list[Question] = []
    seen_ids: dict[str, int] = {}
    for index, (line, record) in enumerate(iter_json_objects(path), start=1):
        if limit is not None and len(questions) >= limit:
            break
        parts = [_required_text(record, field, path, line) for field in question_fields]
        if sum(map(len, parts)) > max_question_chars:
            raise InputError(
                path,
                f"question longer than {max_question_chars:,} characters "
                "(raise the limit with --max-question-chars)",
                line=line,
            )
        answer = reference_from_answer(
            _required_text(record, answer_field, path, line, numbers=True)
        )
        if not answer:
            raise InputError(
                path, "the answer is empty after '####'", line=line, field=answer_field
            )
        question_id = str(record.get("id", record.get("idx", index)))
        if question_id in seen_ids:
            raise InputError(
                path,
                f"duplicate id {question_id!r} (first on line {seen_ids[question_id]})",
                line=line,
            )
        seen_ids[question_id] = line
        questions.append(
            Question(
                id=question_id,
                text="\n\n".join(parts),
                reference_answer=answer,
                # An evolved-questions file keeps its lineage and answer's origin.
                source=str(record.get("source") or Path(path).name),
                answer_source=str(record.get("answer_source") or "seed"),
                metadata={key: record[key] for key in LINEAGE_FIELDS if key in record},
            )
        )
    return questions


def load_questions_from_args(args: Any) -> list[Question]:
    """The seed questions named by the command line's ``seed_file``,
    ``--column-names``, ``--answer-column`` and ``--limit``; at least one."""
    fields = [name.strip() for name in args.column_names.split(",") if name.strip()]
    if not fields:
        raise InputError("--column-names", "names no field")
    questions = load_questions(
        args.seed_file,
        question_fields=fields,
        answer_field=args.answer_column,
        limit=args.limit,
        max_question_chars=getattr(args, "max_question_chars", MAX_QUESTION_CHARS),
    )
    if not questions:
        raise InputError(args.seed_file, "holds no questions")
    return questions


def _required_text(
    record: dict, field: str, path: str | os.PathLike, line: int, *, numbers: bool = False
) -> str:
    if field not in record:
        raise InputError(path, "missing field", line=line, field=field)
    value = record[field]
    allowed = (str, int, float) if numbers else (str,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise InputError(path, f"expected text, got {type(value).__name__}", line=line, field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(path, f"not a finite number: {value}", line=line, field=field)
    text = str(value).strip()
    if not text:
        raise InputError(path, "empty value", line=line, field=field)
    return text
