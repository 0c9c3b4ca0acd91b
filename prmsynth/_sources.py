"""Rows from wherever a researcher keeps them.

A source is a JSON file (JSON Lines, one JSON array, or JSON values one after
another), a CSV or TSV file, a Parquet file, a folder written by
``datasets``' ``save_to_disk``, a Hugging Face Hub dataset (``hf:NAME``), or,
from Python, any iterable of mappings (a ``datasets.Dataset``, a list of
dicts).  Every reader streams: a JSON file is decoded a value at a time, a
CSV file a row at a time, a Parquet file a batch at a time and a Hub dataset
with ``datasets``' ``streaming=True``, so a million-row source never sits in
memory at once.  ``datasets`` and ``pyarrow`` (the ``hf`` extra) are imported
only when a source needs them.

Bad input raises [`InputError`][prmsynth.InputError] naming the source and
the line (text files) or the row (tables, counted from 0).
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import attrs

from prmsynth._errors import InputError, not_utf8

#: How a Hub dataset is named on the command line: ``hf:openai/gsm8k``.
HUB_PREFIX = "hf:"
#: What to install for Parquet files, ``datasets`` folders, the Hub and ``push``.
HF_EXTRA = "pip install 'prmsynth[hf]'"

_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_BATCH_ROWS = 1024
_CHUNK_CHARS = 1 << 20
# A bare owner/name that is no file is most likely a Hub dataset without its prefix.
_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
# What save_to_disk writes: one split, or a dict of splits.
_DATASET_FOLDER_MARKERS = ("state.json", "dataset_dict.json")


def import_optional(module: str, source: str, purpose: str) -> ModuleType:
    """Import ``module`` of the ``hf`` extra, or raise an
    [`InputError`][prmsynth.InputError] saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise InputError(source, f"{purpose} needs {package}: {HF_EXTRA}") from None


@attrs.frozen(kw_only=True)
class Row:
    """One record of a source and where it is: the ``line`` of a text file
    or the ``row`` of a table (from 0)."""

    source: str
    record: dict[str, Any]
    line: int | None = None
    row: int | None = None

    @property
    def where(self) -> str:
        """``"line 3"`` or ``"row 2"``, for messages that point back at this row."""
        return f"line {self.line}" if self.line is not None else f"row {self.row}"

    def error(self, message: str, *, field: str | None = None) -> InputError:
        """An [`InputError`][prmsynth.InputError] located at this row."""
        return InputError(self.source, message, line=self.line, row=self.row, field=field)


@attrs.frozen(kw_only=True)
class RowSource:
    """A source by name: a path, or ``hf:NAME`` for a Hub dataset (``NAME``
    may also be a local folder of data files ``datasets`` can load).

    ``subset`` (the Hub's name for a dataset configuration), ``split`` and
    ``revision`` choose within a Hub dataset; ``split`` also within a
    ``save_to_disk`` folder of several splits.  Without ``split``, a dataset
    of one split gives that split.

    >>> RowSource(location="hf:openai/gsm8k", subset="main", split="test").describe()
    'hf:openai/gsm8k (subset main, split test)'
    >>> RowSource(location="data/seeds.parquet").kind
    'parquet'
    """

    location: str
    subset: str | None = None
    split: str | None = None
    revision: str | None = None

    @property
    def kind(self) -> str:
        """``"hub"``, ``"datasets-folder"``, ``"parquet"``, ``"csv"`` or ``"json"``."""
        if self.location.startswith(HUB_PREFIX):
            return "hub"
        path = Path(self.location)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return "parquet"
        if suffix in _CSV_DELIMITERS:
            return "csv"
        if path.is_dir():
            return "datasets-folder"
        return "json"

    @property
    def hub_name(self) -> str:
        """The dataset name of a Hub source (what follows ``hf:``)."""
        return self.location[len(HUB_PREFIX) :]

    @property
    def name(self) -> str:
        """The short name questions keep as their ``source``: the file name, or ``hf:NAME``."""
        return self.location if self.kind == "hub" else Path(self.location).name

    def describe(self) -> str:
        """How messages name the source: the path, with the subset and split chosen."""
        chosen = [
            f"{label} {value}"
            for label, value in (
                ("subset", self.subset),
                ("split", self.split),
                ("revision", self.revision),
            )
            if value
        ]
        return f"{self.location} ({', '.join(chosen)})" if chosen else self.location

    def local_path(self) -> Path | None:
        """The file or folder the source reads, None for a dataset on the Hub."""
        if self.kind != "hub":
            return Path(self.location)
        local = Path(self.hub_name)
        return local if local.exists() else None

    def sha256(self) -> str | None:
        """The SHA-256 of the source's bytes (a folder: of its files' names and
        bytes); None for a dataset on the Hub, whose ``revision`` pins it."""
        path = self.local_path()
        if path is None:
            return None
        if not path.exists():
            raise _missing(self.location)
        digest = hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if path.is_dir():
                digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def pinned(self) -> RowSource:
        """This source with the commit its Hub dataset is at now as ``revision``,
        so a rerun reads the same rows; other sources, and a Hub that cannot be
        reached (``datasets`` may still read its cache), come back unchanged."""
        if self.kind != "hub" or self.local_path() is not None:
            return self
        hub = import_optional("huggingface_hub", self.describe(), "reading Hub datasets")
        try:
            sha = hub.HfApi().dataset_info(self.hub_name, revision=self.revision).sha
        except Exception:  # offline, or not found: loading says why, or reads the cache
            return self
        return attrs.evolve(self, revision=sha or self.revision)

    def rows(self, *, required: Sequence[str] = ()) -> Iterator[Row]:
        """Every row, streamed; ``required`` fields must be in each (a table's
        columns are checked before its first row)."""
        kind = self.kind
        for option, value, applies in (
            ("subset", self.subset, ("hub",)),
            ("revision", self.revision, ("hub",)),
            ("split", self.split, ("hub", "datasets-folder")),
        ):
            if value is not None and kind not in applies:
                where = "Hub datasets" + (" and save_to_disk folders" if len(applies) > 1 else "")
                raise InputError(self.location, f"--{option} applies to {where} only")
        readers = {
            "hub": self._hub_rows,
            "datasets-folder": self._folder_rows,
            "parquet": self._parquet_rows,
            "csv": self._csv_rows,
            "json": self._json_rows,
        }
        for row in readers[kind](required):
            for field in required:
                if field not in row.record:
                    raise row.error("missing field", field=field)
            yield row

    def _json_rows(self, required: Sequence[str]) -> Iterator[Row]:
        for line, record in iter_json_objects(self.location):
            yield Row(source=self.location, record=record, line=line)

    def _csv_rows(self, required: Sequence[str]) -> Iterator[Row]:
        delimiter = _CSV_DELIMITERS[Path(self.location).suffix.lower()]
        with _open_text(self.location, newline="") as file:
            reader = csv.reader(file, delimiter=delimiter)
            try:
                header = next(reader, None)
                if header is None:
                    return
                _check_columns(self.location, header, required)
                start = reader.line_num + 1
                for values in reader:
                    if values:  # a blank line
                        if len(values) != len(header):
                            raise InputError(
                                self.location,
                                f"expected {len(header)} values as in the header, "
                                f"got {len(values)}",
                                line=start,
                            )
                        yield Row(
                            source=self.location,
                            record=dict(zip(header, values, strict=True)),
                            line=start,
                        )
                    start = reader.line_num + 1
            except csv.Error as error:
                raise InputError(self.location, f"bad CSV: {error}", line=reader.line_num) from None
            except UnicodeDecodeError:
                raise not_utf8(self.location) from None

    def _parquet_rows(self, required: Sequence[str]) -> Iterator[Row]:
        parquet = import_optional("pyarrow.parquet", self.location, "reading Parquet")
        if not Path(self.location).is_file():
            raise _missing(self.location)
        index = 0
        try:
            file = parquet.ParquetFile(self.location)
            _check_columns(self.location, file.schema_arrow.names, required)
            for batch in file.iter_batches(batch_size=_BATCH_ROWS):
                for record in batch.to_pylist():
                    yield Row(source=self.location, record=record, row=index)
                    index += 1
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            if isinstance(error, InputError):
                raise
            raise InputError(self.location, f"cannot read: {error}", row=index) from None

    def _folder_rows(self, required: Sequence[str]) -> Iterator[Row]:
        folder = Path(self.location)
        if not any((folder / marker).is_file() for marker in _DATASET_FOLDER_MARKERS):
            raise InputError(
                self.location,
                "is a folder but no datasets.save_to_disk folder (no state.json or "
                f"dataset_dict.json); for a folder of data files write {HUB_PREFIX}{self.location}",
            )
        datasets = import_optional("datasets", self.location, "reading a save_to_disk folder")
        try:
            loaded = datasets.load_from_disk(self.location)
        except Exception as error:  # datasets raises many kinds; the message says which
            raise InputError(self.location, f"cannot load: {error}") from None
        yield from dataset_rows(_choose_split(loaded, self), self.describe(), required)

    def _hub_rows(self, required: Sequence[str]) -> Iterator[Row]:
        described = self.describe()
        datasets = import_optional("datasets", described, "reading Hub datasets")
        try:
            loaded = datasets.load_dataset(
                self.hub_name,
                self.subset,
                split=self.split,
                revision=self.revision,
                streaming=True,
            )
        except Exception as error:  # not found, no such subset or split, offline, ...
            raise InputError(described, f"cannot load: {error}") from None
        yield from dataset_rows(_choose_split(loaded, self), described, required)


def _choose_split(loaded: Any, source: RowSource) -> Any:
    """One split of what ``datasets`` loaded: the one asked for, or the only one."""
    if not isinstance(loaded, Mapping):
        if source.split is not None and source.kind == "datasets-folder":
            raise InputError(source.location, "holds one split, not several: leave out --split")
        return loaded
    splits = list(loaded)
    if source.split is not None:
        if source.split not in loaded:
            raise InputError(
                source.describe(), f"no split {source.split!r} (splits: {', '.join(splits)})"
            )
        return loaded[source.split]
    if len(splits) != 1:
        raise InputError(
            source.describe(), f"has splits {', '.join(splits)}: choose one with --split"
        )
    return loaded[splits[0]]


def dataset_rows(rows: Iterable[Any], source: str, required: Sequence[str] = ()) -> Iterator[Row]:
    """The rows of any iterable of mappings (a ``datasets`` dataset, a list of
    dicts), named ``source`` in messages; a dataset's columns are checked
    before its first row."""
    if isinstance(rows, Mapping):
        raise InputError(
            source, "is a mapping (of splits?); pass one split's rows, e.g. dataset['train']"
        )
    columns = getattr(rows, "column_names", None)
    if isinstance(columns, Sequence) and not isinstance(columns, str):
        _check_columns(source, list(columns), required)
    iterator = iter(rows)
    index = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except InputError:
            raise
        except Exception as error:  # a stream that breaks mid-way (network, decoding)
            raise InputError(
                source, f"cannot read: {type(error).__name__}: {error}", row=index
            ) from None
        if not isinstance(record, Mapping):
            raise InputError(source, f"expected a mapping, got {type(record).__name__}", row=index)
        yield Row(source=source, record=dict(record), row=index)
        index += 1


def describe_rows(rows: Any) -> str:
    """How messages and questions name rows given from Python: a dataset's
    name where it has one, else the type (``list``, ``Dataset``)."""
    info = getattr(rows, "info", None)
    name = getattr(info, "dataset_name", None)
    return str(name) if name else type(rows).__name__


def iter_rows(
    source: str | os.PathLike | RowSource | Iterable[Mapping[str, Any]],
    *,
    required: Sequence[str] = (),
) -> Iterator[Row]:
    """The rows of any source (a path, ``hf:NAME``, a [`RowSource`][prmsynth._sources.RowSource],
    or an iterable of mappings), streamed, each with the ``required`` fields."""
    if isinstance(source, (str, os.PathLike)):
        source = RowSource(location=str(source))
    if isinstance(source, RowSource):
        return source.rows(required=required)
    return dataset_rows(source, describe_rows(source), required)


def _check_columns(source: str, columns: Sequence[str], required: Sequence[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise InputError(source, "the column appears twice", field=column)
        seen.add(column)
    for field in required:
        if field not in seen:
            raise InputError(source, f"no such column (columns: {', '.join(columns)})", field=field)


def _missing(location: str) -> InputError:
    if _HUB_NAME.match(location) and not Path(location).suffix:
        return InputError(
            location, f"no such file; for the Hub dataset write {HUB_PREFIX}{location}"
        )
    return InputError(location, "no such file")


def _open_text(path: str, *, newline: str | None = None) -> IO[str]:
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is no part of the first field.
        return open(path, encoding="utf-8-sig", newline=newline)
    except FileNotFoundError:
        raise _missing(path) from None
    except OSError as error:
        raise InputError(path, f"cannot read: {error}") from None


# -- JSON ----------------------------------------------------------------------------


class _JSONStream:
    """JSON text read in chunks: decodes one value at a time and counts lines
    as it goes, so neither the text nor the line counting grows with the file."""

    def __init__(self, path: str | os.PathLike, file: IO[str]) -> None:
        self.path, self.file = path, file
        self.decoder = json.JSONDecoder()
        self.text = ""
        self.position = 0
        self.eof = False
        self._line = 1  # the line of text[self._counted]
        self._counted = 0

    def _read(self, size: int) -> bool:
        """Append up to ``size`` more characters, dropping what was consumed;
        False at the end of the file."""
        if self.eof:
            return False
        self.line_at(self.position)
        self.text = self.text[self.position :]
        self._counted -= self.position
        self.position = 0
        try:
            data = self.file.read(size)
        except UnicodeDecodeError:
            raise not_utf8(self.path) from None
        if not data:
            self.eof = True
            return False
        self.text += data
        return True

    def line_at(self, position: int) -> int:
        """The line of ``self.text[position]``; counting starts where the last call's did."""
        if position >= self._counted:
            self._line += self.text.count("\n", self._counted, position)
        else:
            self._line -= self.text.count("\n", position, self._counted)
        self._counted = position
        return self._line

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            self.position = _skip_space(self.text, self.position)
            if self.position < len(self.text):
                return self.text[self.position]
            if not self._read(_CHUNK_CHARS):
                return ""

    def decode(self) -> object:
        """The value at the current position (after ``peek``)."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.position)
            except json.JSONDecodeError as error:
                line = self.line_at(self.position) + self.text.count("\n", self.position, error.pos)
                # Maybe the value goes on past the text read so far: read as
                # much again (so a long value costs linear time), then retry.
                if _may_go_on(error) and self._read(max(_CHUNK_CHARS, len(self.text))):
                    continue
                raise InputError(self.path, f"invalid JSON: {error.msg}", line=line) from None
            except RecursionError:
                raise InputError(
                    self.path, "JSON nested too deeply", line=self.line_at(self.position)
                ) from None
            # A number that ends where the text read so far ends may go on.
            if end == len(self.text) and self._read(_CHUNK_CHARS):
                continue
            self.position = end
            return value


def _may_go_on(error: json.JSONDecodeError) -> bool:
    """Whether more text could mend ``error``: it is at the end of the text
    read, or in a string whose end is not read yet.  Any other error is final,
    so a bad line is reported without reading the rest of the file."""
    return error.pos >= len(error.doc) - 16 or error.msg.startswith("Unterminated string")


def iter_json_records(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """Yield ``(line, value)`` for each JSON value in ``path``.

    Accepts JSON Lines, one JSON array of objects, or objects one after
    another over several lines each (the seed script's format).  ``line`` is
    the 1-based line where the value starts.  The file is read in chunks, a
    value at a time.  Raises [`InputError`][prmsynth.InputError] on a missing
    file or bad JSON, naming the line.
    """
    if Path(path).is_dir():
        raise InputError(path, "is a folder, not a file")
    with _open_text(str(path)) as file:
        stream = _JSONStream(path, file)
        in_array = stream.peek() == "["
        if in_array:
            stream.position += 1
        while True:
            next_character = stream.peek()
            if not next_character:
                break
            if in_array and next_character == "]":
                stream.position += 1
                if stream.peek():
                    raise InputError(
                        path,
                        "unexpected text after the JSON array",
                        line=stream.line_at(stream.position),
                    )
                return
            line = stream.line_at(stream.position)
            yield line, stream.decode()
            if in_array:
                next_character = stream.peek()
                if next_character == ",":
                    stream.position += 1
                elif not next_character:
                    break
                elif next_character != "]":
                    raise InputError(
                        path,
                        "expected ',' or ']' in the JSON array",
                        line=stream.line_at(stream.position),
                    )
        if in_array:
            raise InputError(
                path, "the JSON array is not closed", line=stream.line_at(len(stream.text))
            )


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n\ufeff":
        position += 1
    return position


def iter_json_objects(
    path: str | os.PathLike, required: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, object)`` for each JSON object of ``path`` (any layout
    [`iter_json_records`][prmsynth._sources.iter_json_records] reads); a value
    that is not an object, or lacks a ``required`` field, raises
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
