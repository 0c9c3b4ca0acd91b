"""Every error a user of prmsynth can catch, in one place.

- [`InputError`][prmsynth.InputError]: bad input or options, located (file,
  line, field); the command line exits 2 and writes nothing.
- [`LLMError`][prmsynth.LLMError]: a model request failed;
  [`BackendUnavailable`][prmsynth.BackendUnavailable]: the model cannot serve
  at all, so the run stops (finished work stays on disk).
- [`BudgetExhausted`][prmsynth.BudgetExhausted]: a request that would take the
  run past its budget was not sent.
- [`ExportError`][prmsynth.ExportError]: an export could not be made (a record
  failed its schema, or settings that do not fit the format).
- [`TreeInvariantError`][prmsynth.TreeInvariantError]: a reasoning tree, or
  its serialized form, breaks a structural rule.
- [`PublishError`][prmsynth.PublishError]: the Hugging Face Hub refused an
  upload or could not be reached.
- [`StorageError`][prmsynth.StorageError]: a file could not be written (disk
  full, out of inodes, read-only, permission denied): the command stops, and
  what it committed before stays valid.

Credentials never reach a file, a terminal or a log:
[`is_secret_name`][prmsynth._errors.is_secret_name] is the one rule for
which names hold one, [`redact_secrets`][prmsynth._errors.redact_secrets]
takes them out of text and [`scrub_secrets`][prmsynth._errors.scrub_secrets]
out of the string values of a record.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from typing import Any

# Key-shaped tokens a provider may echo back in an error ("Incorrect API key
# provided: sk-...", "Authorization: Bearer ...", Hugging Face "hf_...").
_KEY_PATTERN = re.compile(
    r"(?i)(bearer\s+)[^\s'\",]+|\b(?:sk|pk|rk)-[A-Za-z0-9_\-*]{6,}|\bhf_[A-Za-z0-9]{16,}"
)
# The password of a URL ("https://user:pw@host", as --api-base may hold one).
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s/@:'\"]*:)[^\s/@'\"]+(?=@)")
# The one rule for names that hold credentials: environment variables
# (OPENAI_API_KEY, HF_TOKEN), options (api_key, --hf-token) and litellm
# parameters (aws_secret_access_key, vertex_credentials); not max_tokens.
_SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "credential", "credentials")
_SECRET_WORDS += ("authorization",)
_SECRET_NAME = re.compile(
    r"(?:^|[_\-])(?:api_?key|" + "|".join(_SECRET_WORDS) + r")$", re.IGNORECASE
)
# The same words, for a cheap first test of every environment variable's name.
_SECRET_SUFFIXES = tuple(word.upper() for word in _SECRET_WORDS)
#: The fewest characters a credential from the environment has to be taken for one.
MIN_SECRET_CHARS = 8
# A value of one kind of character only (a word, "question_id", a number) is
# too common to be a credential unless it is long.
_COMMON_VALUE = re.compile(r"[a-z_.\-]+|[A-Z_.\-]+|[0-9_.\-]+")
_LONG_SECRET_CHARS = 24


def is_secret_name(name: str) -> bool:
    """Whether an option, parameter or environment variable named ``name``
    holds a credential.

    >>> [is_secret_name(n) for n in ("OPENAI_API_KEY", "hf_token", "max_tokens", "SORT_KEY")]
    [True, True, False, True]
    """
    return bool(_SECRET_NAME.search(name))


def _looks_secret(value: str) -> bool:
    """Whether a credential-named variable's value is credential-like: long
    enough, and not one kind of character only (``question_id``, ``true``,
    ``1234567890``) unless longer than any word."""
    if len(value) < MIN_SECRET_CHARS:
        return False
    return len(value) >= _LONG_SECRET_CHARS or not _COMMON_VALUE.fullmatch(value)


def secrets_in_environment() -> tuple[str, ...]:
    """The values of credential-like environment variables (``OPENAI_API_KEY``,
    ``HF_TOKEN``, ...), longest first.

    A value too short (under ``MIN_SECRET_CHARS``) or too common to be a
    credential (one kind of character only, such as ``question_id``) is not
    taken for one: ``SORT_KEY=question_id`` must not change data.
    """
    # Called for every line written: the cheap suffix test first, and only
    # the few values whose names pass it read from the environment.
    environ = os.environ
    values = {
        value
        for name in environ
        if name.upper().endswith(_SECRET_SUFFIXES)
        and is_secret_name(name)
        and _looks_secret(value := environ[name])
    }
    return tuple(sorted(values, key=len, reverse=True))


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without ``secrets``, credential values from the environment,
    URL passwords and key-shaped tokens (``sk-...``, ``Bearer ...``), each
    replaced by ``***``: for messages, logs and errors.

    >>> redact_secrets("Incorrect API key provided: sk-abc123456789. Bearer xyz")
    'Incorrect API key provided: ***. Bearer ***'
    >>> redact_secrets("cannot reach http://me:hunter2@example.com/v1")
    'cannot reach http://me:***@example.com/v1'
    """
    text = _without_known_secrets(text, secrets)
    return _KEY_PATTERN.sub(lambda match: (match.group(1) or "") + "***", text)


def _without_known_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in (*secrets, *secrets_in_environment()):
        if secret and secret in text:
            text = text.replace(secret, "***")
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda match: match.group(1) + "***", text)
    return text


def scrub_secrets(value: Any) -> Any:
    """``value`` (a JSON-ready record) with credentials from the environment
    and URL passwords taken out of its string values only: keys, numbers and
    every other part stay as they are, and text merely shaped like a key is
    data, left alone.  What every file prmsynth writes goes through.

    >>> scrub_secrets({"api_base": "http://me:hunter2@host/v1", "n": [1, "x"]})
    {'api_base': 'http://me:***@host/v1', 'n': [1, 'x']}
    """
    if isinstance(value, str):
        return _without_known_secrets(value)
    if isinstance(value, dict):
        return {key: scrub_secrets(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(item) for item in value]
    return value


def may_hold_secret(text: str) -> bool:
    """A quick test of serialized ``text``: False when
    [`scrub_secrets`][prmsynth._errors.scrub_secrets] would change nothing,
    so that the common case skips its walk of the record."""
    if any(secret in text for secret in secrets_in_environment()):
        return True
    return "@" in text and _URL_PASSWORD.search(text) is not None


class InputError(ValueError):
    """Bad input, located: the message names the file (or other source), the
    line of a text file or the row of a table (counted from 0, as
    ``dataset[row]``), and the field.

    >>> str(InputError("seeds.jsonl", "missing field", line=3, field="problem"))
    "seeds.jsonl:3: field 'problem': missing field"
    >>> str(InputError("seeds.parquet", "empty value", row=0, field="problem"))
    "seeds.parquet, row 0: field 'problem': empty value"
    >>> str(InputError("--limit", "must be >= 1, got 0"))
    '--limit: must be >= 1, got 0'
    """

    def __init__(
        self,
        path: str | os.PathLike,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        row: int | None = None,
    ) -> None:
        self.path, self.line, self.field, self.message = str(path), line, field, message
        self.row = row
        location = self.path if line is None else f"{self.path}:{line}"
        if row is not None:
            location = f"{location}, row {row}"
        where = f" field {field!r}:" if field is not None else ""
        super().__init__(f"{location}:{where} {message}")


def not_utf8(path: str | os.PathLike) -> InputError:
    """The [`InputError`][prmsynth.InputError] of a file that is not UTF-8
    text, located at the line and column of its first bad byte (a decoder
    only knows the offset in the chunk it read).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seeds.jsonl"
    >>> _ = path.write_bytes(b'{"a": 1}\\n{"a": "caf\\xe9"}\\n')
    >>> str(not_utf8(path)).replace(str(path), "seeds.jsonl")
    'seeds.jsonl:2: not UTF-8 text: byte 0xe9 at column 11'
    """
    try:
        with open(path, "rb") as file:
            for number, raw in enumerate(file, start=1):
                try:
                    raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    byte = raw[error.start]
                    message = f"not UTF-8 text: byte 0x{byte:02x} at column {error.start + 1}"
                    return InputError(path, message, line=number)
    except OSError as error:
        return InputError(path, f"cannot be read: {error.strerror or error}")
    return InputError(path, "not UTF-8 text")


class LLMError(RuntimeError):
    """An LLM request failed (the message never contains the API key).

    ``transient`` says the last failure was one that passes with time (a rate
    limit, a timeout, a 5xx), so the request failed only because its attempts
    ran out; otherwise the server refused the request itself (a 4xx).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class BackendUnavailable(LLMError):
    """The run's model cannot serve at all: it cannot start, or its process died.

    Unlike a failed request, this stops the whole run (it would fail every
    question the same way); the message names the cause and the fix.
    """


class BudgetExhausted(RuntimeError):
    """A request was not sent: it would take the run past ``max_completions`` or
    ``max_cost``.  The question it belongs to is left unfinished (a resumed run
    with a larger budget searches it again)."""


class ExportError(ValueError):
    """An export could not be made (a record failed its schema, or a bad setting)."""


class PrefixModeError(ValueError):
    """A prefix mode that cannot hold: ``continue`` asked of a backend that does not
    continue a started reply, or ``auto`` used before it was settled."""


class TreeInvariantError(ValueError):
    """A reasoning tree (or its serialized form) breaks a structural rule."""


class PublishError(RuntimeError):
    """The Hugging Face Hub refused an upload or could not be reached (the
    message never contains the token)."""


#: The errno values that mean storage refused a write: the disk or quota is
#: full, inodes ran out, the file system is read-only, permission is denied.
_STORAGE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG")
    if hasattr(errno, name)
)
_DENIED_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EACCES", "EPERM") if hasattr(errno, name)
)
# SQLite's words for the same causes.
_SQLITE_STORAGE = ("database or disk is full", "readonly database", "disk i/o error")
_SQLITE_STORAGE += ("unable to open database file",)


class StorageError(OSError):
    """A file could not be written: the disk (or quota) is full, inodes ran
    out, the file system is read-only or permission is denied.

    It stops the whole command (every later write would fail the same way),
    never one question; what was committed before stays valid, and the same
    command resumes once there is room.  The message names the path and the
    cause; ``after_work`` says whether the command had done work by then (a
    run's first question), which the command line's exit status tells apart
    (1, else 2).

    >>> str(StorageError("out/trees.jsonl", "no space left on device"))
    'out/trees.jsonl: cannot write: no space left on device'
    """

    def __init__(self, path: str | os.PathLike, cause: str, *, after_work: bool = False) -> None:
        self.path, self.cause, self.after_work = str(path), cause, after_work
        super().__init__(f"{self.path}: cannot write: {cause}")

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self) -> tuple[Any, ...]:
        return _storage_error, (self.path, self.cause, self.after_work)


def _storage_error(path: str, cause: str, after_work: bool) -> StorageError:
    return StorageError(path, cause, after_work=after_work)


def storage_error(
    error: BaseException,
    path: str | os.PathLike | None = None,
    *,
    denied: bool = True,
    after_work: bool = False,
) -> StorageError | None:
    """The [`StorageError`][prmsynth.StorageError] ``error`` stands for (an
    ``OSError`` of a full or read-only disk, SQLite's "database or disk is
    full" or "readonly database"), or None for any other error.  ``path``
    names the file when the error does not; ``denied=False`` leaves
    "permission denied" out (an error that may come from reading).

    >>> import errno
    >>> str(storage_error(OSError(errno.ENOSPC, "No space left on device"), "out/a.jsonl"))
    'out/a.jsonl: cannot write: no space left on device'
    >>> storage_error(ValueError("x")) is None
    True
    """
    if isinstance(error, StorageError):
        error.after_work = error.after_work or after_work
        return error
    codes = _STORAGE_ERRNOS if denied else _STORAGE_ERRNOS - _DENIED_ERRNOS
    if isinstance(error, OSError) and error.errno in codes:
        where = error.filename if error.filename is not None else path
        cause = (error.strerror or str(error)).lower()
        return StorageError(where if where is not None else "?", cause, after_work=after_work)
    if type(error).__module__ == "sqlite3" and type(error).__name__ == "OperationalError":
        message = str(error).lower()
        if any(words in message for words in _SQLITE_STORAGE):
            where = path if path is not None else "database"
            return StorageError(where, message, after_work=after_work)
    return None


#: Errors that end a whole run rather than one question: a backend that
#: cannot serve, a disk that cannot take the results.
RUN_FATAL = (BackendUnavailable, StorageError)
