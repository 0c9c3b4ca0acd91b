from __future__ import annotations

import io

from prmsynth.run._folder import _Tally
from prmsynth.run._progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def tally(done: int, failed: int = 0) -> _Tally:
    counts = _Tally()
    for index in range(done):
        line = {"question_id": str(index), "reason": None, "n_completions": 10}
        line.update(prompt_tokens=5, completion_tokens=20, cost=0.01)
        counts.add(line, status="failed" if index < failed else "kept", verdicts={})
    return counts


def test_terminal_gets_one_line_redrawn_in_place():
    stream = Terminal()
    progress = Progress(total=4, stream=stream, interval=10)
    progress.update(tally(1))
    progress.update(tally(4, failed=1))
    progress.close(tally(4, failed=1))
    text = stream.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n")
    assert "4/4 questions" in text and "1 failed" in text and "$0.0400" in text
    assert "100 tokens" in text


def test_logs_get_plain_periodic_lines():
    stream = io.StringIO()
    progress = Progress(total=10, stream=stream, interval=3600)
    for done in range(1, 6):
        progress.update(tally(done))
    progress.close(tally(5))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the first update, then the closing line; none in between
    assert "\r" not in stream.getvalue()
    assert lines[-1].startswith("[##########..........] 5/10 questions")


def test_quiet_shows_nothing(capsys):
    progress = Progress(total=3, stream=None)
    progress.update(tally(1))
    progress.close(tally(1))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_line_shows_elapsed_time_and_an_eta_from_the_pace_of_this_session():
    now = [0.0]
    stream = io.StringIO()
    # Four questions were done before this session (a resumed run): they set no pace.
    progress = Progress(total=12, stream=stream, interval=0, clock=lambda: now[0])
    progress.update(tally(4))
    now[0] = 60.0
    progress.update(tally(6))  # two questions a minute: six left take three minutes
    now[0] = 3725.0
    progress.close(tally(12))
    lines = stream.getvalue().splitlines()
    assert "4/12 questions | 0:00 elapsed, ETA ? |" in lines[0]
    assert "6/12 questions | 1:00 elapsed, ETA 3:00 |" in lines[1]
    assert "12/12 questions | 1:02:05 elapsed, ETA 0:00 |" in lines[2]
