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
- A set of files written together ([`atomic_files`][prmsynth._io.atomic_files])
  appears all at once as far as the next command can tell: a commit record
  is written before the first rename, and a command killed between renames
  has its renames finished by the next command on that folder
  ([`clean_leftovers`][prmsynth._io.clean_leftovers]), which also removes
  the temporary files and scratch folders a killed command left.
- A write the disk refuses (full, out of inodes, read-only, permission
  denied) raises [`StorageError`][prmsynth.StorageError] naming the path.
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
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from prmsynth._errors import (
    InputError,
    may_hold_secret,
    not_utf8,
    scrub_secrets,
    storage_error,
)

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
    text = _dumps_without_secrets(record).translate(_LINE_BREAKS)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group(0)):04x}", text) + "\n"


def _dumps_without_secrets(record: Any, **options: Any) -> str:
    # The last line of defence: a credential from the environment (or a URL's
    # password) never reaches a file, whatever put it into a record.  Only
    # string values are scrubbed, never keys or other data; the walk is paid
    # only when the text may hold one.
    text = json.dumps(record, ensure_ascii=False, **options)
    if may_hold_secret(text):
        text = json.dumps(scrub_secrets(record), ensure_ascii=False, **options)
    return text


def append_line(file: IO[str], record: Any) -> None:
    """Append one JSON line in a single write and push it to disk.

    One ``write`` of the whole line and a flush per record means a crash
    loses at most the line being written, never the records before it.  The
    line goes straight to the OS file, past Python's buffers, so that a disk
    that refuses it leaves nothing buffered to fail again on closing: it
    raises [`StorageError`][prmsynth.StorageError] naming the file, which is
    cut back to the end of its last whole line (what a kill tears is cut on
    resume).
    """
    data = dumps_line(record).encode("utf-8")
    descriptor, start = None, None
    try:
        file.flush()  # anything written to it the buffered way goes first
        descriptor = file.fileno()
        start = os.fstat(descriptor).st_size
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    except OSError as error:
        if start is not None:
            # A part of the line may be on disk: whoever reads the file before
            # a resume must find whole records only.
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, start)
        fatal = storage_error(error, getattr(file, "name", None), after_work=True)
        if fatal is None:
            raise
        raise fatal from None


#: The hidden names prmsynth gives what a command writes before it is
#: complete: ``.<name>.<pid>-<random>.<kind>`` (kind: tmp, scratch, staging,
#: commit).  The process id tells a killed command's leftovers from a
#: running one's.
_LEFTOVER = re.compile(r"^\..+\.(\d+)-[0-9a-f]{12}\.(tmp|scratch|staging|commit)$")


def hidden_name(name: str, kind: str) -> str:
    """A fresh hidden name beside ``name`` for something being written
    (``kind``: tmp, scratch, staging or commit) that
    [`clean_leftovers`][prmsynth._io.clean_leftovers] recognizes.

    >>> bool(_LEFTOVER.match(hidden_name("trl.jsonl", "tmp")))
    True
    """
    return f".{name}.{os.getpid()}-{secrets.token_hex(6)}.{kind}"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: leave its files
    return True


def clean_leftovers(folder: str | os.PathLike) -> list[str]:
    """Finish or remove what a killed command left in ``folder``; returns the
    names handled.

    A commit record (a set of files renamed into place together) has its
    remaining renames done, so the set is whole; then temporary files,
    scratch folders and push staging folders of processes that no longer
    run are removed.  A running command's files are left alone.
    """
    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    handled = []
    leftovers = [(name, _LEFTOVER.match(name)) for name in names]
    leftovers = [(name, m) for name, m in leftovers if m and not _process_alive(int(m.group(1)))]
    # Commits first: they name temporary files that must not be removed before.
    for name, match in sorted(leftovers, key=lambda item: item[1].group(2) != "commit"):
        path = folder / name
        if match.group(2) == "commit":
            _finish_commit(path)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        handled.append(name)
    return handled


def _finish_commit(path: Path) -> None:
    """Do the renames a commit record lists whose temporary file is still there."""
    try:
        renames = json.loads(path.read_text(encoding="utf-8"))["renames"]
    except (OSError, ValueError, KeyError, TypeError):
        renames = []  # unreadable: its files are removed as leftovers
    for source, target in renames:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path.parent / source, path.parent / target)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _create_beside(target: Path) -> tuple[int, str]:
    """Create an empty temporary file beside ``target``: ``(descriptor, name)``.

    Created as ``open()`` creates a file, with mode ``0o666`` less the umask
    applied by the kernel: ``tempfile.mkstemp`` makes owner-only files, and
    reading the umask to fix that up afterwards races with other threads.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)  # no newline translation on Windows
    while True:
        name = str(target.parent / hidden_name(target.name, "tmp"))
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue  # a name another writer holds; draw another
        except OSError as error:
            raise (storage_error(error, target) or error) from None


def _relative(path: str | os.PathLike, folder: Path) -> str:
    path = Path(path)
    return path.name if path.parent == folder else str(path.resolve())


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], *, binary: bool = False) -> Iterator[list[IO]]:
    """Open a temporary file beside each of ``paths``; when the block ends
    without an error, rename them all over their targets, else remove them.

    Several files appear together as far as the next command can tell: a
    commit record listing the renames is written (atomically) before the
    first one, and removed after the last; a command killed in between has
    them finished by [`clean_leftovers`][prmsynth._io.clean_leftovers].  A
    disk that refuses a write raises [`StorageError`][prmsynth.StorageError].

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
            _rename_all(temporary, targets)
            temporary.clear()
        except OSError as error:
            # A write the disk refused, in the block or here (not a file the
            # block failed to read: that is no storage error of these files).
            fatal = storage_error(error, targets[0] if targets else None, denied=False)
            if fatal is None:
                raise
            raise fatal from None
    finally:
        for handle in handles:
            with contextlib.suppress(OSError):
                handle.close()
        for name in temporary:
            with contextlib.suppress(OSError):
                os.unlink(name)


def _rename_all(temporary: Sequence[str], targets: Sequence[Path]) -> None:
    """Rename each temporary file over its target; several under a commit record."""
    if len(targets) == 1:
        os.replace(temporary[0], targets[0])
        return
    folder = targets[0].parent
    record = folder / hidden_name("prmsynth", "commit")
    renames = [
        [_relative(name, folder), _relative(target, folder)]
        for name, target in zip(temporary, targets, strict=True)
    ]
    with atomic_file(record) as handle:
        handle.write(json.dumps({"renames": renames}))
    for name, target in zip(temporary, targets, strict=True):
        os.replace(name, target)
    record.unlink()


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


def dumps_json(data: Any) -> str:
    """One indented JSON document, as [`write_json`][prmsynth._io.write_json]
    writes it (credentials scrubbed from its string values)."""
    return _dumps_without_secrets(data, indent=2) + "\n"


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write one indented JSON document, atomically."""
    with atomic_file(path) as handle:
        handle.write(dumps_json(data))


@contextlib.contextmanager
def scratch_folder(beside: str | os.PathLike) -> Iterator[Path]:
    """A hidden scratch folder beside ``beside`` (not in ``/tmp``, often in
    memory), removed when the block ends; one a killed command left is
    removed by [`clean_leftovers`][prmsynth._io.clean_leftovers]."""
    beside = Path(beside)
    path = beside.parent / hidden_name(beside.name, "scratch")
    try:
        path.mkdir()
    except OSError as error:
        raise (storage_error(error, path) or error) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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
        except UnicodeDecodeError:
            raise not_utf8(path) from None


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
        self.path = Path(path)
        try:
            self._connection = sqlite3.connect(path, isolation_level=None)
            self._connection.execute("PRAGMA journal_mode=OFF")
            self._connection.execute("PRAGMA synchronous=OFF")
            self._connection.execute(
                "CREATE TABLE seen (key BLOB PRIMARY KEY, note TEXT NOT NULL) WITHOUT ROWID"
            )
            self._connection.execute("BEGIN")
        except sqlite3.Error as error:
            raise (storage_error(error, path) or error) from None

    def first(self, key: bytes, *, note: str = "") -> bool:
        """True the first time ``key`` is met (``note`` is kept with it),
        False every later time."""
        try:
            cursor = self._connection.execute(
                "INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, note)
            )
        except sqlite3.Error as error:
            raise (storage_error(error, self.path) or error) from None
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
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+", encoding="utf-8")  # held for the block
    except OSError as error:
        raise (storage_error(error, path) or error) from None
    try:
        if not _try_lock(file):
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise InputError(
                folder,
                f"is in use by another prmsynth process (pid {holder}); wait for it to "
                "finish, or choose another --out",
            )
        try:
            file.seek(0)
            file.truncate()
            file.write(str(os.getpid()))
            file.flush()
        except OSError as error:
            raise (storage_error(error, path) or error) from None
        yield
    finally:
        with contextlib.suppress(OSError):  # a pid a full disk did not take
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
