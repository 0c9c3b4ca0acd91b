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
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from prmsynth._errors import InputError, secrets_in_environment

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
    text = _without_secrets(json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS))
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group(0)):04x}", text) + "\n"


def _without_secrets(text: str) -> str:
    # The last line of defence: a credential from the environment never
    # reaches a file, whatever put it into a record.
    for secret in secrets_in_environment():
        if secret in text:
            text = text.replace(secret, "***")
    return text


def append_line(file: IO[str], record: Any) -> None:
    """Append one JSON line in a single write and push it to disk.

    One ``write`` of the whole line and a flush per record means a crash
    loses at most the line being written, never the records before it.
    """
    file.write(dumps_line(record))
    file.flush()
    os.fsync(file.fileno())


def _create_beside(target: Path) -> tuple[int, str]:
    """Create an empty temporary file beside ``target``: ``(descriptor, name)``.

    Created as ``open()`` creates a file, with mode ``0o666`` less the umask
    applied by the kernel: ``tempfile.mkstemp`` makes owner-only files, and
    reading the umask to fix that up afterwards races with other threads.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)  # no newline translation on Windows
    while True:
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue  # a name another writer holds; draw another


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
            descriptor, name = _create_beside(target)
            temporary.append(name)
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
        handle.write(_without_secrets(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")


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
    [`iter_appended_jsonl`][prmsynth._io.iter_appended_jsonl]); with
    ``repair`` a torn last line is first cut from the file itself
    ([`cut_torn_last_line`][prmsynth._io.cut_torn_last_line]).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trees.jsonl"
    >>> _ = path.write_text('{"a": 1}\\n{"a": 2')
    >>> read_appended_jsonl(path, repair=True), path.read_text()
    ([{'a': 1}], '{"a": 1}\\n')
    """
    path = Path(path)
    if not path.exists():
        return []
    if repair:
        cut_torn_last_line(path)
    return [record for _, record in iter_appended_jsonl(path)]


def cut_torn_last_line(path: str | os.PathLike) -> None:
    """Make an append-only JSONL file end with a whole line, for resuming it:
    a last line a crash cut off is removed, a whole record that only lacks its
    newline gets one.  A missing file is left missing."""
    try:
        file = open(path, "r+b")
    except FileNotFoundError:
        return
    with file:
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


def set_aside_corrupt_lines(path: str | os.PathLike) -> list[str]:
    """Move the corrupt whole lines of an append-only JSONL file into
    ``<name>.corrupt.jsonl`` beside it; returns a description of each.

    A line damaged in the middle of ``trees.jsonl`` (a disk error, a stray
    edit) must not cost the records after it: they stay, the bad line is kept
    aside (as text, with its line number) for inspection, and only its record
    is lost, so a resumed run redoes just that question.  A torn last line is
    left for [`read_appended_jsonl`][prmsynth._io.read_appended_jsonl] to cut.
    """
    path = Path(path)
    if not path.exists():
        return []
    problems: list[tuple[int, str, bytes]] = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip() or not raw.endswith(b"\n"):
                continue
            try:
                json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append((number, "not UTF-8 text", raw))
            except json.JSONDecodeError as error:
                problems.append((number, f"bad JSON: {error.msg}", raw))
    if not problems:
        return []
    aside = path.with_name(path.stem + ".corrupt" + path.suffix)
    with open(aside, "a", encoding="utf-8") as file:
        for number, reason, raw in problems:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            append_line(file, {"file": path.name, "line": number, "reason": reason, "text": text})
    bad = {number for number, _, _ in problems}
    with open(path, "rb") as source, atomic_file(path, binary=True) as target:
        for number, raw in enumerate(source, start=1):
            if number not in bad:
                target.write(raw)
    return [
        f"{path}:{number}: {reason}; set aside in {aside.name}" for number, reason, _ in problems
    ]


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
    ...     [seen.first(key, note=f"line {n}") for n, key in enumerate((b"a", b"b", b"a"), 1)]
    ...     seen.note(b"a")
    [True, True, False]
    'line 1'
    """

    def __init__(self, path: str | os.PathLike) -> None:
        # A scratch file: no journal, no fsync, one transaction never committed.
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=OFF")
        self._connection.execute("PRAGMA synchronous=OFF")
        self._connection.execute(
            "CREATE TABLE seen (key BLOB PRIMARY KEY, note TEXT NOT NULL) WITHOUT ROWID"
        )
        self._connection.execute("BEGIN")

    def first(self, key: bytes, *, note: str = "") -> bool:
        """True the first time ``key`` is met (``note`` is kept with it),
        False every later time."""
        cursor = self._connection.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, note))
        return cursor.rowcount == 1

    def note(self, key: bytes) -> str | None:
        """The ``note`` given when ``key`` was first met (None: never met)."""
        row = self._connection.execute("SELECT note FROM seen WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: The lock file a run (or merge) holds in its folder while it writes there.
LOCK_FILE = ".prmsynth.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive OS lock on ``folder`` (created if missing) for the block.

    Two runs writing one folder would interleave and lose records, so a second
    one is refused with [`InputError`][prmsynth.InputError] naming the holder's
    process id.  The lock is the OS's (``flock``; ``msvcrt.locking`` on
    Windows): it is released when the holder exits, killed or not, so a crash
    never leaves a stale lock behind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    file = open(path, "a+", encoding="utf-8")  # held for the block
    try:
        if not _try_lock(file):
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise InputError(
                folder,
                f"is in use by another prmsynth process (pid {holder}); wait for it to "
                "finish, or choose another --out",
            )
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        yield
    finally:
        file.close()  # closing releases the lock


def _try_lock(file: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            file.seek(0)
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True  # a file system without locks (some network mounts): do not refuse
    return True
