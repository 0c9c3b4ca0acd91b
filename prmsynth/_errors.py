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
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

# Key-shaped tokens a provider may echo back in an error ("Incorrect API key
# provided: sk-...", "Authorization: Bearer ...", Hugging Face "hf_...").
_KEY_PATTERN = re.compile(
    r"(?i)(bearer\s+)[^\s'\",]+|\b(?:sk|pk|rk)-[A-Za-z0-9_\-*]{6,}|\bhf_[A-Za-z0-9]{16,}"
)
# Environment variables that hold credentials, by the names providers use.
_SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_SECRET_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def secrets_in_environment() -> tuple[str, ...]:
    """The values of credential-like environment variables (``OPENAI_API_KEY``,
    ``HF_TOKEN``, ...), longest first; short values are not treated as secrets."""
    # Called for every line written: the cheap suffix test first, and only
    # the few values whose names pass it read from the environment.
    environ = os.environ
    values = {
        value
        for name in environ
        if name.upper().endswith(_SECRET_SUFFIXES)
        and _SECRET_NAME.search(name)
        and len(value := environ[name]) >= 8
    }
    return tuple(sorted(values, key=len, reverse=True))


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without ``secrets``, credential values from the environment and
    key-shaped tokens (``sk-...``, ``Bearer ...``), each replaced by ``***``.

    >>> redact_secrets("Incorrect API key provided: sk-abc123456789. Bearer xyz")
    'Incorrect API key provided: ***. Bearer ***'
    """
    for secret in (*secrets, *secrets_in_environment()):
        if secret and secret in text:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub(lambda match: (match.group(1) or "") + "***", text)


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
