"""LaTeX text that extraction and normalization both read: matching braces, the
``$``/``\\(``/``\\[`` wrappers around an answer, and escape damage to repair."""

from __future__ import annotations

import re

__all__ = ["matching_brace", "repair_escapes", "strip_math_wrappers"]


# LaTeX whose backslash an escape sequence ate: "\frac" written into JSON or a Python
# string unescaped arrives as a form feed and "rac".  Only control characters that
# never occur in text are read so; a tab or carriage return may be one.
_EATEN_BACKSLASH = re.compile(
    r"\x0c(?=rac|box)|\x08(?=oxed|egin|eta|inom)|\x07(?=lpha|pprox)|\x0b(?=ec|ee)"
)
_EATEN_LETTER = {"\x0c": "f", "\x08": "b", "\x07": "a", "\x0b": "v"}
# A doubled backslash before a command name is one backslash escaped twice ("\\le");
# a matrix row break "\\" before an entry is left alone.
_DOUBLED_BACKSLASH = re.compile(
    r"(?<!\\)\\\\(?=(?:[dt]?frac|sqrt|le|leq|ge|geq|neq|ne|in|cup|cap|infty|pi|cdot|times|"
    r"text|mathrm|left|right|boxed|pm|circ|theta|alpha|beta)(?![A-Za-z]))"
)


def repair_escapes(text: str) -> str:
    """Undo escape damage to LaTeX: a control character where an escape ate a
    backslash (a form feed and ``rac`` was ``\\frac``), and a doubled backslash
    before a command name (``\\\\le``).  A matrix row break before an entry stays.

    >>> repair_escapes("\\x0crac{1}{2}")
    '\\\\frac{1}{2}'
    >>> repair_escapes("-2 \\\\\\\\le x \\\\\\\\le 7")
    '-2 \\\\le x \\\\le 7'
    >>> repair_escapes("1 \\\\\\\\ 2")
    '1 \\\\\\\\ 2'
    """
    text = _EATEN_BACKSLASH.sub(lambda match: "\\" + _EATEN_LETTER[match.group(0)], text)
    return _DOUBLED_BACKSLASH.sub(lambda match: "\\", text)


def matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index``, or None."""
    depth = 0
    index = open_index
    length = len(text)
    while index < length:
        character = text[index]
        if character == "\\":
            # An escaped brace (\{ or \}) does not count.
            index += 2
            continue
        if character == "{":
            depth += 1
        elif character == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


# Math delimiters, and quotes (escaped ones too) around a quoted answer.
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ('\\"', '\\"'), ('"', '"'))


def strip_math_wrappers(answer: str) -> str:
    """Remove surrounding ``$``/``\\(``/``\\[`` wrappers, markup and end punctuation."""
    previous = None
    while answer != previous:
        previous = answer
        answer = answer.strip().strip("*").strip()
        answer = answer.rstrip(".,;:").rstrip()
        for opening, closing in _WRAPPERS:
            if (
                answer.startswith(opening)
                and answer.endswith(closing)
                and len(answer) >= len(opening) + len(closing)
            ):
                answer = answer[len(opening) : len(answer) - len(closing)]
                break
        boxed = re.fullmatch(r"\\(?:boxed|fbox)\s*\{(.*)\}", answer, re.DOTALL)
        if boxed and matching_brace(answer, answer.index("{")) == len(answer) - 1:
            answer = boxed.group(1)
    return answer.strip()
