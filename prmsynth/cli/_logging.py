"""Where the command line's log records go: ``-v`` / ``-q`` and ``--log-file``.

The library only names its loggers (``logging.getLogger(__name__)``, under
``prmsynth``); the command line, being the application, attaches the
handlers, for the duration of one command.  Warnings (a failed question, a
stall) reach stderr by default; ``-v`` adds what a run waits on (retries with
their wait and reason, rate-limit waits), ``-vv`` debugging detail (a failed
question's traceback); ``-q`` leaves errors only.  ``--log-file`` gets
everything from ``-v`` on (``-vv``: debugging detail too), with timestamps.
Every record is stripped of credentials before it is written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

from prmsynth._errors import redact_secrets

#: The logger every module of the library logs under.
LIBRARY_LOGGER = "prmsynth"
#: ``extra`` of a record for the log file alone (the command printed it to stderr already).
FILE_ONLY = {"prmsynth_file_only": True}


def report_error(message: str) -> None:
    """Print a command's closing error to stderr and keep it in ``--log-file``
    (a run that stops before its first question leaves the reason there too)."""
    logging.getLogger(LIBRARY_LOGGER + ".cli").error(message, extra=FILE_ONLY)
    print(message, file=sys.stderr)


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "prmsynth_file_only", False)


class _RedactingFormatter(logging.Formatter):
    """A formatter whose output (message and traceback) holds no credential."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(super().format(record))


class _ConsoleFormatter(_RedactingFormatter):
    """``warning: message``, as the command line's own messages read."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{record.levelname.lower()}: {text}"


class _ConsoleHandler(logging.StreamHandler):
    """stderr; on a terminal a live progress line is cleared before a record."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.terminal = bool(getattr(stream, "isatty", lambda: False)())

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\r\x1b[K" + text if self.terminal else text


def console_level(verbose: int, quiet: int) -> int:
    """The lowest level shown on stderr: WARNING, less 10 per ``-v``, plus 10 per ``-q``.

    >>> [logging.getLevelName(console_level(v, q)) for v, q in [(0, 0), (1, 0), (2, 0), (0, 1)]]
    ['WARNING', 'INFO', 'DEBUG', 'ERROR']
    """
    return min(max(logging.WARNING - 10 * verbose + 10 * quiet, logging.DEBUG), logging.CRITICAL)


@contextlib.contextmanager
def command_logging(
    stream: TextIO, *, verbose: int = 0, quiet: int = 0, log_file: str | None = None
) -> Iterator[None]:
    """Send log records to ``stream`` (stderr) and ``log_file`` while the block runs.

    The handlers go on the root logger, so warnings of the libraries below
    (litellm, ...) are seen and kept too; the library's own logger is opened
    to the lowest level asked for.  Everything is put back afterwards.
    Raises OSError when ``log_file`` cannot be opened.
    """
    root = logging.getLogger()
    library = logging.getLogger(LIBRARY_LOGGER)
    saved_level = library.level
    shown = console_level(verbose, quiet)
    handlers: list[logging.Handler] = []
    console = _ConsoleHandler(stream)
    console.setLevel(shown)
    console.addFilter(_not_file_only)
    console.setFormatter(_ConsoleFormatter("%(message)s"))
    handlers.append(console)
    kept = shown
    if log_file is not None:
        file_level = logging.DEBUG if verbose >= 2 else logging.INFO
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(file_level)
        file_handler.setFormatter(
            _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handlers.append(file_handler)
        kept = min(kept, file_level)
    library.setLevel(kept)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        library.setLevel(saved_level)
