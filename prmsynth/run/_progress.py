"""Progress display: a live line on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import time
from typing import Any, TextIO


class Progress:
    """Shows questions done, completions per second, tokens, cost and failures.

    On a terminal the line is redrawn in place (at most every 0.2 s); in a
    log (not a terminal) a plain line is printed at most every ``interval``
    seconds and at the end.  ``stream=None`` shows nothing.
    """

    def __init__(self, *, total: int, stream: TextIO | None, interval: float = 10.0) -> None:
        self.total = total
        self.stream = stream
        self.interval = interval
        self.live = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.last_shown = float("-inf")
        self.first_completions: int | None = None

    def _line(self, tally: Any) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        if self.first_completions is None:
            self.first_completions = tally.n_completions
        rate = (tally.n_completions - self.first_completions) / elapsed
        tokens = tally.prompt_tokens + tally.completion_tokens
        width = 20
        filled = int(width * tally.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] {tally.done}/{self.total} questions | {rate:.1f} completions/s | "
            f"{tokens:,} tokens | ${tally.cost:.4f} | {tally.status['failed']} failed"
        )

    def update(self, tally: Any, result: Any = None) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
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
