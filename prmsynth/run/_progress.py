"""Progress display: a live line on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    """``seconds`` as ``M:SS``, or ``H:MM:SS`` from an hour on.

    >>> format_duration(75), format_duration(3725.4)
    ('1:15', '1:02:05')
    """
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Shows questions done, elapsed time and an ETA, completions per second,
    tokens, cost and failures.

    The ETA is the questions left at the pace of the questions finished since
    this display started (resumed ones do not count), ``?`` until one has.
    On a terminal the line is redrawn in place (at most every 0.2 s); in a
    log (not a terminal) a plain line is printed at most every ``interval``
    seconds and at the end.  ``stream=None`` shows nothing.  ``detail``, when
    given, adds its note at the end of the line (the Ray workers alive).
    """

    def __init__(
        self,
        *,
        total: int,
        stream: TextIO | None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        detail: Callable[[], str | None] | None = None,
    ) -> None:
        self.total = total
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.detail = detail
        self.live = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.started = clock()
        self.last_shown = float("-inf")
        self.first_completions: int | None = None
        self.first_done: int | None = None

    def _line(self, tally: Any) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        first_completions, first_done = self._baseline(tally)
        rate = (tally.usage.n_completions - first_completions) / elapsed
        finished_here = tally.done - first_done
        left = max(self.total - tally.done, 0)
        if left == 0:
            eta = "0:00"
        elif finished_here > 0:
            eta = format_duration(left * elapsed / finished_here)
        else:
            eta = "?"
        tokens = tally.usage.prompt_tokens + tally.usage.completion_tokens
        width = 20
        filled = int(width * tally.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] {tally.done}/{self.total} questions | {format_duration(elapsed)} elapsed, "
            f"ETA {eta} | {rate:.1f} completions/s | {tokens:,} tokens | ${tally.usage.cost:.4f} | "
            f"{tally.status['failed']} failed"
        ) + self._detail()

    def _detail(self) -> str:
        note = self.detail() if self.detail is not None else None
        return f" | {note}" if note else ""

    def _baseline(self, tally: Any) -> tuple[int, int]:
        # What the folder held when the display started (a resumed run's
        # questions) does not count towards the pace.
        if self.first_completions is None or self.first_done is None:
            self.first_completions, self.first_done = tally.usage.n_completions, tally.done
        return self.first_completions, self.first_done

    def update(self, tally: Any, result: Any = None) -> None:
        self._baseline(tally)
        if self.stream is None:
            return
        now = self.clock()
        if self.live:
            if now - self.last_shown >= 0.2 or tally.done == self.total:
                self.stream.write("\r" + self._line(tally))
                self.stream.flush()
                self.last_shown = now
        elif now - self.last_shown >= self.interval:
            print(self._line(tally), file=self.stream, flush=True)
            self.last_shown = now

    def close(self, tally: Any) -> None:
        if self.stream is None:
            return
        if self.live:
            self.stream.write("\r" + self._line(tally) + "\n")
        else:
            print(self._line(tally), file=self.stream, flush=True)
        self.stream.flush()
