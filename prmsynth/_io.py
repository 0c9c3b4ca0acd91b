"""Files: one JSONL writer (one escaping rule), one reader, one way to write atomically.

Every file prmsynth writes goes through here, so that they all agree:

- A JSON line escapes U+0085, U+2028 and U+2029, which ``str.splitlines()``
  and some editors take for line ends: any reader sees one record per line.
- A file that appears under its final name is complete: it is written
  beside the target and renamed over it.  It gets the permissions of any
  new file (``0o666`` less the umask), not the owner-only mode of a
  temporary file, so teammates on a shared disk can read it.
- An append-only file (``trees.jsonl`` of a run) gets each record in one
  write, flushed to disk; on reading, a torn last line (a crash mid-write)
  is cut off, and a bad line anywhere else is an error of that line,
  never a silent end of the file.
- A pass over a file of any size keeps memory flat: what it must remember
  of every record (a hash, an id) goes to a [`SeenKeys`][prmsynth._io.SeenKeys]
  file, not into a Python set.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from prmsynth._errors import InputError

# Characters that str.splitlines() and some editors take for line ends but JSON
# leaves unescaped: escaped, so that every reader sees one record per line.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps_line(record: Any) -> str:
    """One JSON line, newline included: UTF-8 text, line-break characters escaped,
    and a lone surrogate (``"\\ud800"``, which UTF-8 cannot hold) kept as its
    JSON escape, so one odd character never stops a run.

    >>> dumps_line({"text": "a\\u2028b", "é": 1})
    '{"text": "a\\\\u2028b", "é": 1}\\n'
    >>> dumps_line(["\\ud800"])
    '["\\\\ud800"]\\n'
    """
    text = json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group(0)):04x}", text) + "\n"


def append_line(file: IO[str], record: Any) -> None:
    """Append one JSON line in a single write and push it to disk.

    One ``write`` of the whole line and a flush per record means a crash
    loses at most the line being written, never the records before it.
    """
    file.write(dumps_line(record))
    file.flush()
    os.fsync(file.fileno())


@functools.cache
def _new_file_mode() -> int:
    # The umask can only be read by setting it; /proc shows it without that race.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], *, binary: bool = False) -> Iterator[list[IO]]:
    """Open a temporary file beside each of ``paths``; when the block ends
    without an error, rename them all over their targets, else remove them.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_files([folder / "a.txt", folder / "b.txt"]) as (a, b):
    ...     _ = a.write("one"), b.write("two")
    >>> sorted(path.name for path in folder.iterdir())
    ['a.txt', 'b.txt']
    """
    targets = [Path(path) for path in paths]
    temporary: list[str] = []
    handles: list[IO] = []
    try:
        for target in targets:
            descriptor, name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
            )
            temporary.append(name)
            os.chmod(name, _new_file_mode())
            if binary:
                handles.append(os.fdopen(descriptor, "wb"))
            else:
                handles.append(os.fdopen(descriptor, "w", encoding="utf-8"))
        yield handles
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for name, target in zip(temporary, targets, strict=True):
            os.replace(name, target)
        temporary.clear()
    finally:
        for handle in handles:
            handle.close()
        for name in temporary:
            with contextlib.suppress(OSError):
                os.unlink(name)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, binary: bool = False) -> Iterator[IO]:
    """[`atomic_files`][prmsynth._io.atomic_files] for one file."""
    with atomic_files([path], binary=binary) as (handle,):
        yield handle


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write ``records`` as JSON lines, atomically; returns how many."""
    count = 0
    with atomic_file(path) as handle:
        for record in records:
            handle.write(dumps_line(record))
            count += 1
    return count


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write one indented JSON document, atomically."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


@contextlib.contextmanager
def _open_for_reading(path: str | os.PathLike, mode: str) -> Iterator[IO]:
    """Open ``path``; a file that cannot be opened or decoded raises
    [`InputError`][prmsynth.InputError] naming it."""
    try:
        file = open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a file") from None
    except PermissionError:
        raise InputError(path, "cannot be read: permission denied") from None
    except OSError as error:
        raise InputError(path, f"cannot be read: {error.strerror or error}") from None
    with file:
        try:
            yield file
        except UnicodeDecodeError as error:
            raise InputError(path, f"not UTF-8 text: {error}") from None


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a text file, numbered from 1; a file that cannot
    be read raises [`InputError`][prmsynth.InputError] naming it."""
    with _open_for_reading(path, "r") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each JSON line of a file anyone wrote;
    a line that is not JSON raises [`InputError`][prmsynth.InputError] naming
    the file and line."""
    for number, line in numbered_lines(path):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(path, f"bad JSON: {error.msg}", line=number) from None


def iter_appended_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each line of an append-only JSONL file
    prmsynth writes (a run's ``trees.jsonl``), streamed: safe on a file a
    running (or killed) run is still writing.

    A last line without its newline is kept when it is whole JSON and left
    out when it is not (the line a crash cut off).  A line that is not JSON
    anywhere else raises [`InputError`][prmsynth.InputError]: stopping there
    would drop every finished record after it.
    """
    with _open_for_reading(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                if not raw.endswith(b"\n"):
                    return  # the line being written when the run stopped
                reason = (
                    "not UTF-8 text"
                    if isinstance(error, UnicodeDecodeError)
                    else (f"bad JSON: {error.msg}")
                )
                raise InputError(path, reason, line=number) from None
            yield number, record


def read_appended_jsonl(path: str | os.PathLike, *, repair: bool) -> list[Any]:
    """Every record of an append-only JSONL file (see
    [`iter_appended_jsonl`][prmsynth._io.iter_appended_jsonl]), for resuming it;
    with ``repair`` a torn last line is cut from the file itself.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trees.jsonl"
    >>> _ = path.write_text('{"a": 1}\\n{"a": 2')
    >>> read_appended_jsonl(path, repair=True), path.read_text()
    ([{'a': 1}], '{"a": 1}\\n')
    """
    path = Path(path)
    if not path.exists():
        return []
    records = [record for _, record in iter_appended_jsonl(path)]
    if repair:
        with open(path, "r+b") as file:
            end = _end_of_last_line(file)
            size = file.seek(0, os.SEEK_END)
            if end != size:
                file.seek(end)
                try:
                    json.loads(file.read())
                except ValueError:
                    file.truncate(end)  # a torn line: cut it
                else:
                    file.write(b"\n")  # a whole record that only lacks its newline
    return records


def _end_of_last_line(file: IO[bytes]) -> int:
    """The offset just after the last newline of a binary file (0 when none)."""
    position = file.seek(0, os.SEEK_END)
    while position > 0:
        start = max(0, position - (1 << 16))
        file.seek(start)
        newline = file.read(position - start).rfind(b"\n")
        if newline != -1:
            return start + newline + 1
        position = start
    return 0


class SeenKeys:
    """The keys met so far in one pass, kept in a SQLite file at ``path`` so
    that memory stays flat however many there are; a context manager that
    closes it (the caller removes the file, usually with its scratch folder).

    >>> import tempfile, pathlib
    >>> with SeenKeys(pathlib.Path(tempfile.mkdtemp()) / "seen.sqlite") as seen:
    ...     [seen.first(key) for key in (b"a", b"b", b"a")]
    [True, True, False]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        # A scratch file: no journal, no fsync, one transaction never committed.
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=OFF")
        self._connection.execute("PRAGMA synchronous=OFF")
        self._connection.execute("CREATE TABLE seen (key BLOB PRIMARY KEY) WITHOUT ROWID")
        self._connection.execute("BEGIN")

    def first(self, key: bytes) -> bool:
        """True the first time ``key`` is met, False every later time."""
        cursor = self._connection.execute("INSERT OR IGNORE INTO seen VALUES (?)", (key,))
        return cursor.rowcount == 1

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
