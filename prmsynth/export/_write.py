"""Export files: trees read one at a time, every record checked against its schema
and written before the next tree is read, all files renamed into place together,
with a manifest."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from prmsynth._errors import ExportError, InputError
from prmsynth._io import (
    SeenKeys,
    atomic_files,
    clean_leftovers,
    dumps_json,
    dumps_line,
    iter_appended_jsonl,
    scratch_folder,
)
from prmsynth._tree import ReasoningTree, TreeInvariantError
from prmsynth._version import __version__
from prmsynth.export._builders import Example
from prmsynth.export._records import Downsample, selected_examples
from prmsynth.export._registry import check_format_options, export_format
from prmsynth.export._schema import schema_name, validate_record
from prmsynth.export._serialize import (
    tree_from_dict,
)
from prmsynth.export._settings import ExportSettings

__all__ = ["export_file", "manifest_path", "read_trees"]


def read_trees(path: str | os.PathLike) -> Iterator[ReasoningTree]:
    """Load every tree of a ``trees.jsonl`` file, each line checked against the tree schema.

    Bad input raises [`InputError`][prmsynth.InputError] naming the file, the line and
    the field.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trees.jsonl"
    >>> _ = path.write_text('{"question_id": "q1"}\\n')
    >>> list(read_trees(path))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prmsynth._errors.InputError: ...trees.jsonl:1: $: 'question' is a required property
    """
    for line_number, record in iter_appended_jsonl(path):
        problems = validate_record(record, "tree")
        if problems:
            raise InputError(path, problems[0], line=line_number)
        try:
            yield tree_from_dict(record)
        except (TreeInvariantError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(path, f"malformed tree: {error}", line=line_number) from None


def _split_paths(out_path: Path) -> dict[str, Path]:
    stem = out_path.name[: -len(".jsonl")] if out_path.name.endswith(".jsonl") else out_path.name
    return {
        "train": out_path.with_name(f"{stem}.train.jsonl"),
        "validation": out_path.with_name(f"{stem}.validation.jsonl"),
    }


def manifest_path(out_path: str | os.PathLike) -> Path:
    """Where [`export_file`][prmsynth.export_file] writes the manifest of ``out_path``:
    ``<out>.manifest.json``.

    >>> manifest_path("out/trl.jsonl").name
    'trl.jsonl.manifest.json'
    """
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.name}.manifest.json")


_SHOWN_PROBLEMS = 5


@attrs.define
class _OutFile:
    """One output file as it is written: its records are counted, checked against
    the schema and tallied for the manifest one at a time, never held."""

    path: Path
    format: str
    handle: IO[str]
    first: Callable[[bytes], bool]  # True for a question id not met in this file before
    records: int = 0
    questions: int = 0
    with_error: int = 0
    steps: list[int] = attrs.Factory(lambda: [0, 0, 0])  # positive, neutral, negative
    problems: int = 0
    shown: list[str] = attrs.Factory(list)
    _last_question: str | None = None

    def write(
        self,
        line: str,
        question_id: str,
        has_error: bool | None,
        steps: Sequence[int],
        problems: Sequence[str],
    ) -> None:
        """Write one record's line; ``problems`` are its schema errors."""
        self.records += 1
        for message in problems:
            self.problems += 1
            if len(self.shown) < _SHOWN_PROBLEMS:
                self.shown.append(f"{self.path.name}: record {self.records}: {message}")
        if not self.problems:
            self.handle.write(line)  # after a schema error the files are dropped anyway
        if question_id != self._last_question:  # a question's records come together
            self._last_question = question_id
            self.questions += self.first(question_id.encode("utf-8", "surrogatepass"))
        self.with_error += bool(has_error)
        for index, count in enumerate(steps):
            self.steps[index] += count

    def manifest_entry(self) -> dict[str, Any]:
        label_balance = None
        if export_format(self.format).labelled:
            label_balance = {
                "examples_without_error": self.records - self.with_error,
                "examples_with_error": self.with_error,
                "steps_positive": self.steps[0],
                "steps_neutral": self.steps[1],
                "steps_negative": self.steps[2],
            }
        return {
            "path": self.path.name,
            "records": self.records,
            "questions": self.questions,
            "label_balance": label_balance,
        }


def _write_balanced(
    examples: Iterable[tuple[str, Example]],
    files: dict[str, _OutFile],
    settings: ExportSettings,
    scratch: Path,
    stats: Counter[str],
) -> None:
    """Balance each part in two passes: the examples go to a spool file while
    their classes are counted, then back out through the part's choice."""
    counts = {part: {True: 0, False: 0} for part in files}
    with contextlib.ExitStack() as stack:
        spools = {
            part: stack.enter_context(
                open(scratch / f"{part}.spool", "w+", encoding="utf-8", newline="\n")
            )
            for part in files
        }
        for part, example in examples:
            # Two lines per example: what the manifest needs, then the record itself.
            meta = [
                example.question_id,
                example.has_error,
                example.step_counts,
                validate_record(example.record, files[part].format),
            ]
            spools[part].write(dumps_line(meta) + dumps_line(example.record))
            counts[part][bool(example.has_error)] += 1
        for part, spool in spools.items():
            keep = Downsample.plan(counts[part][True], counts[part][False], settings, part)
            spool.seek(0)
            for meta_line in spool:
                line = next(spool)
                question_id, has_error, steps, problems = json.loads(meta_line)
                if keep(has_error):
                    files[part].write(line, question_id, has_error, steps, problems)
                else:
                    stats["removed_by_balance"] += 1


_SOURCE_TYPES = "source must be a trees.jsonl path, a list of paths, or ReasoningTree objects"


def _resolve_source(
    source: str | os.PathLike | Iterable[str | os.PathLike] | Iterable[ReasoningTree],
) -> tuple[list[str], Iterator[ReasoningTree]]:
    """The source files (for the manifest) and the trees, read one at a time."""
    items = iter([source] if isinstance(source, (str, os.PathLike)) else source)
    first = next(items, None)
    if isinstance(first, (str, os.PathLike)):
        paths = [first, *items]
        if not all(isinstance(path, (str, os.PathLike)) for path in paths):
            raise TypeError(_SOURCE_TYPES)

        def read() -> Iterator[ReasoningTree]:
            for path in paths:
                yield from read_trees(path)

        return [str(Path(path).resolve()) for path in paths], read()
    if first is None:
        return [], iter(())
    if not isinstance(first, ReasoningTree):
        raise TypeError(_SOURCE_TYPES)

    def given(head: ReasoningTree, rest: Iterator[Any]) -> Iterator[ReasoningTree]:
        # A caller's iterable of trees is read as it is exported, never listed
        # nor held once exported.
        yield head
        del head
        for tree in rest:
            if not isinstance(tree, ReasoningTree):
                raise TypeError(_SOURCE_TYPES)
            yield tree

    return [], given(first, items)


def export_file(
    source: str | os.PathLike | Iterable[str | os.PathLike] | Iterable[ReasoningTree],
    format: str,
    out_path: str | os.PathLike,
    settings: ExportSettings | None = None,
) -> dict[str, Any]:
    """Export trees (``trees.jsonl`` paths, or trees) to ``out_path``; return the manifest.

    Trees are read one at a time, and each record is built, checked against
    ``format``'s schema and written before the next tree is read, so memory
    stays flat however many there are; a schema failure raises
    [`ExportError`][prmsynth.ExportError] and writes nothing.  Each file is
    written to a temporary file in the same folder and renamed once all are
    complete, so a file under its final name is always whole.  What the
    passes must remember (the hashes deduplication compares, and with
    ``balance`` the examples waiting for their class counts) goes to a scratch
    folder beside ``out_path``, removed at the end.  With a
    ``validation_fraction`` the records go to ``<stem>.train.jsonl`` and
    ``<stem>.validation.jsonl`` instead of ``out_path``.  The manifest (counts,
    label balance, settings, source files, prmsynth version) goes to
    ``<out_path>.manifest.json``.  Bad input raises [`InputError`][prmsynth.InputError].

    >>> import tempfile, pathlib
    >>> from prmsynth import Question, ReasoningTree, Verdict
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> tree.mark_terminal(tree.add_steps(tree.root, ["2 + 3 = 5."])[-1], Verdict(status="correct"))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "trl.jsonl"
    >>> manifest = export_file([tree], "trl", out)
    >>> manifest["files"]["all"]["records"], out.read_text().count("\\n")
    (1, 1)
    """
    settings = settings or ExportSettings()
    export_format(format)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise InputError(out_path, f"folder {str(out_path.parent)!r} does not exist")
    if out_path.is_dir():
        raise InputError(out_path, "is a folder, not a file")
    check_format_options(format, settings)
    source_files, trees = _resolve_source(source)
    split = settings.validation_fraction > 0
    targets = _split_paths(out_path) if split else {"all": out_path}
    stats: Counter[str] = Counter()
    # What a killed export left here: its renames finished, its scratch removed.
    clean_leftovers(out_path.parent)
    with contextlib.ExitStack() as stack:
        # Scratch space beside the output (not /tmp, often in memory): what the
        # passes must remember of every record, and the records balancing holds back.
        scratch = stack.enter_context(scratch_folder(out_path))
        records_seen = stack.enter_context(SeenKeys(scratch / "records.sqlite"))
        # Every file, the manifest last, is renamed into place only once all
        # are written, together: the next command sees the old set or the new.
        *handles, manifest_file = stack.enter_context(
            atomic_files([*targets.values(), manifest_path(out_path)])
        )
        files = {
            part: _OutFile(
                path=path,
                format=format,
                handle=handle,
                first=stack.enter_context(SeenKeys(scratch / f"{part}.questions.sqlite")).first,
            )
            for (part, path), handle in zip(targets.items(), handles, strict=True)
        }
        examples = selected_examples(
            trees, format, settings, split=split, stats=stats, first=records_seen.first
        )
        if settings.balance == "none":
            for part, example in examples:
                files[part].write(
                    dumps_line(example.record),
                    example.question_id,
                    example.has_error,
                    example.step_counts,
                    validate_record(example.record, format),
                )
        else:
            _write_balanced(examples, files, settings, scratch, stats)
        problems = sum(file.problems for file in files.values())
        if problems:
            shown = "; ".join(
                [line for file in files.values() for line in file.shown][:_SHOWN_PROBLEMS]
            )
            more = f" (and {problems - _SHOWN_PROBLEMS} more)" if problems > _SHOWN_PROBLEMS else ""
            raise ExportError(f"{problems} schema errors, nothing written: {shown}{more}")
        written = sum(file.records for file in files.values())
        manifest = {
            "format": format,
            "schema": f"prmsynth/export/schemas/{schema_name(format)}.schema.json",
            "prmsynth_version": __version__,
            "source_files": source_files,
            "settings": settings.to_dict(),
            "counts": {
                "trees": stats["trees"],
                "examples": stats["examples"],
                "duplicates_removed": stats["duplicates_removed"],
                "removed_by_balance": stats["removed_by_balance"],
                "removed_by_consensus": stats["removed_by_consensus"],
                "removed_without_critique": stats["removed_without_critique"],
                "records_written": written,
                "skipped": {
                    reason: count
                    for reason, count in sorted(stats.items())
                    if reason.startswith(("paths_", "solutions_"))
                },
            },
            "files": {part: file.manifest_entry() for part, file in files.items()},
        }
        manifest_file.write(dumps_json(manifest))
    return manifest
