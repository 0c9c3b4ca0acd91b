"""Answer checking: did a completion reach the reference answer?

Every Monte Carlo label counts completions that reached the right answer, so
this check bounds the quality of the whole data set.  It has three
replaceable parts:

* [`extract_answer`][prmsynth.extract_answer] reads the final answer out of a model's text
  (last ``\\boxed{}``, "The answer is ...", GSM8K ``#### N``, ...);
* `MathEquivalence` decides whether two answers are the same: a fast,
  exact path for plain numbers and common LaTeX spellings, then math-verify
  (sympy) for everything else, in a worker process with a hard time bound;
* [`MathAnswerVerifier`][prmsynth.MathAnswerVerifier] ties both together behind the
  [`StepVerifier`][prmsynth.StepVerifier] interface and turns every
  outcome, errors included, into a [`Verdict`][prmsynth.Verdict].

[`ExactMatchVerifier`][prmsynth.ExactMatchVerifier] (normalized strings and numbers, no sympy) and
[`FunctionVerifier`][prmsynth.FunctionVerifier] (any user function) share the same interface.

>>> extract_answer("First 2 + 3 = 5, so the answer is \\\\boxed{5}.")
'5'
>>> normalize_answer("\\\\$1,000")
'1000'
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs

from prmsynth._interfaces import StepVerifier
from prmsynth._values import Verdict

__all__ = [
    "EquivalenceCheckError",
    "ExactMatchVerifier",
    "FunctionVerifier",
    "MathAnswerVerifier",
    "MathEquivalence",
    "answers_equivalent",
    "extract_answer",
    "fast_equivalent",
    "normalize_answer",
]

# Only the tail of a response is searched: final answers sit at the end, and
# a cap keeps the regular expressions fast on runaway generations.
EXTRACTION_WINDOW = 10_000
# Longer extracted answers are rejected before they reach sympy.
MAX_ANSWER_LENGTH = 1_000
# Exponent towers deeper than this (9^{9^{9}}) are rejected before sympy.
MAX_EXPONENT_DEPTH = 2
# Plain numbers with more digits than this skip the exact fast path.
MAX_FAST_DIGITS = 200
# At most this many \boxed commands are tried, last first.
MAX_BOX_CANDIDATES = 20
DEFAULT_TIMEOUT = 2.0
DEFAULT_MEMORY_LIMIT = 2 * 1024**3


# ---------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)\b")
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+(?:final\s+|correct\s+)?answer"
    r"(?:\s+(?:to|for|of)\s+(?:this|the|that|our)\s+(?:problem|question|equation|exercise))?"
    r"\s+is|final\s+answer\s*:)\s*:?",
    re.IGNORECASE,
)
_GSM8K_ANSWER = re.compile(r"####\s*([^\n]+)")
_BOLD = re.compile(r"\*\*([^*\n]+?)\*\*")
_ANSWER_LINE = re.compile(
    r"^\W*(?:final\s+)?answer\s*(?:[:\uff1a]|(?=\$|\\\(|\\\[))\s*(.+)$", re.IGNORECASE
)
# "Answer" and a displayed formula that ends the response: "Answer \[ 9 \]" over lines.
_ANSWER_DISPLAY = re.compile(
    r"(?:^|\n)\W*(?:final\s+)?answer\s*:?\s*(\\\[.+?\\\]|\$\$.+?\$\$)\s*\.?\s*$",
    re.IGNORECASE | re.DOTALL,
)
# A number: thousands-separated or plain digits, decimals, a simple fraction.
# The sign is only taken when no word or closing bracket precedes it, so that
# "3-5" yields "5" and "= -2" yields "-2".
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?:(?<![\w)\]}])-)?\.\d+"
)
_WORD = re.compile(r"[A-Za-z]{3,}")
_LEADING_NUMBER = re.compile(r"\s*\$?\s*(" + _NUMBER.pattern + r")(?![\w^_{])")


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


def _matching_brace(text: str, open_index: int) -> int | None:
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


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of the last complete ``\\boxed{...}`` /
    ``\\fbox{...}`` commands, in text order."""
    found = []
    # Only the last few candidates: an unclosed \boxed{ costs a scan to the end.
    for match in list(_BOX_COMMAND.finditer(text))[-MAX_BOX_CANDIDATES:]:
        rest = text[match.end() :]
        stripped = rest.lstrip(" ")
        if stripped.startswith("{"):
            open_index = match.end() + len(rest) - len(stripped)
            closing = _matching_brace(text, open_index)
            if closing is not None:
                found.append((match.start(), closing + 1, text[open_index + 1 : closing]))
        elif rest.startswith(" ") and stripped:
            # "\boxed 5": the argument is the next token.
            token = re.match(r"[^\s$]*", stripped).group(0)
            end = match.end() + len(rest) - len(stripped) + len(token)
            found.append((match.start(), end, token))
    return found


# What may stand between two boxes that together give one answer: "\boxed{2} and \boxed{6}",
# "\boxed{2}, \boxed{6}", "\boxed{2} \quad \boxed{6}"; symbols, but no relation or period.
_BOX_JOINER = re.compile(
    r"[\s,;$+&|*#~]*(?:(?:\\q?quad|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b)[\s,;$+&|*#~]*)*"
)


# A short link inside one sentence: "\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}".
_AND = re.compile(r"\band\b")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")


def _joins_boxes(between: str) -> bool:
    """Whether two boxes with ``between`` between them state one answer in parts."""
    if _BOX_JOINER.fullmatch(between):
        return True
    return (
        len(between) <= 60
        and _AND.search(between) is not None
        and not _SENTENCE_END.search(between)
        and not _HEDGE.search(between)
    )


def _final_boxed(text: str) -> tuple[str, int] | None:
    """The final boxed answer and where it ends; boxes joined only by ``and``,
    commas or spacing are one answer with several parts (``2, 6``)."""
    boxes = _boxes(text)
    if not boxes:
        return None
    start, end, content = boxes[-1]
    parts = [content]
    for previous_start, previous_end, previous in reversed(boxes[:-1]):
        if not _joins_boxes(text[previous_end:start]):
            break
        parts.insert(0, previous)
        start = previous_start
    parts = [_strip_math_wrappers(part) for part in parts]
    return ", ".join(part for part in parts if part), end


# Math delimiters, and quotes (escaped ones too) around a quoted answer.
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ('\\"', '\\"'), ('"', '"'))


def _strip_math_wrappers(answer: str) -> str:
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
        if boxed and _matching_brace(answer, answer.index("{")) == len(answer) - 1:
            answer = boxed.group(1)
    return answer.strip()


_LISTED_NUMBERS = re.compile(
    rf"\s*(?:{_NUMBER.pattern})(?:\s*,\s*(?:{_NUMBER.pattern}))*,?\s+and\s+(?:{_NUMBER.pattern})\s*"
)


# Words between "is" and the answer that add nothing: "is equal to 36", "a total of $12".
# ("approximately 36" is left as it is: a rounded value states no exact answer.)
_LINKING_WORDS = re.compile(
    r"^(?:(?:equal|equivalent|identical) to|the same as|exactly|precisely|just|simply|"
    r"a total of|in total|altogether)\s+",
    re.IGNORECASE,
)


_COMPUTED_IN_WORDS = re.compile(
    r"\s*\$?(?:" + _NUMBER.pattern + r")\s*"
    r"(?:times|plus|minus|divided\s+by|multiplied\s+by|x|\*|×)\s.*?"
    r"\b(?:equals|equal\s+to|gives(?:\s+us)?|which\s+is)\s+\$?"
    r"(?P<result>" + _NUMBER.pattern + r")(?![.,/]?\d)",
    re.IGNORECASE,
)


def _phrase_answer(rest: str) -> str | None:
    """The answer that follows "The answer is": up to the end of its sentence."""
    rest = rest.lstrip(" \t*")
    line = _LINKING_WORDS.sub("", rest.split("\n", 1)[0].strip())
    if not line:
        return None
    for opening, closing in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if line.startswith(opening):
            end = line.find(closing, len(opening))
            while end > 0 and closing == "$" and line[end - 1] == "\\":
                end = line.find(closing, end + 1)  # \$ is a dollar sign, not the closing $
            if end != -1:
                return line[len(opening) : end]
    # The sentence ends at a period followed by a space (not a decimal point).
    sentence = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    answer = _strip_math_wrappers(sentence)
    listed = answer.replace("$", "")
    if _LISTED_NUMBERS.fullmatch(listed):
        return listed.strip()  # "12 and 13": two answers
    if "\\" not in answer:
        # "3 + 4 = 7 apples": the result is what follows the last "=".
        if "=" in answer:
            result = _LEADING_NUMBER.match(answer.rsplit("=", 1)[1])
            if result:
                return result.group(1)
        if _WORD.search(answer):
            # "7 times 7, which equals 49": a computation in words, and its result.
            computed = _COMPUTED_IN_WORDS.match(answer)
            if computed:
                return computed.group("result")
            # "42, which is 6 times 7" / "$1,250 per month": the number the
            # phrase opens with; "that she has 5 apples": the last number.
            leading = _LEADING_NUMBER.match(answer)
            if leading:
                return leading.group(1)
            numbers = _NUMBER.findall(answer)
            if numbers and len(_WORD.findall(answer)) >= 3:
                return numbers[-1]
    return answer or None


# Words that take back or withhold an answer: a sentence holding one commits to nothing.
_HEDGE = re.compile(
    r"\?|\b(?:not|no|never|isn't|aren't|wasn't|doesn't|cannot|can't|wait|hmm|reconsider|"
    r"maybe|perhaps|might|could (?:it|this|that) be|unless|if|whether|check|suppose|assume|"
    r"mistake|wrong)\b",
    re.IGNORECASE,
)
_PERCENT_WORD = re.compile(r"(?<=[\d$])\s*(?:percent|per cent|pct)\.?\s*$", re.IGNORECASE)
# What may trail the answer and says nothing: chat-template tokens, a sign-off.
_SIGN_OFF = re.compile(
    r"(?:<\|[a-z_]+\|>\w*|</s>|I hope (?:it|this) is correct\.?)$", re.IGNORECASE
)
# A concluding sentence: "Therefore, the area is X", "Thus $x = 3$", "So the total is X".
_CONCLUSION = re.compile(
    r"^(?:therefore|thus|hence|so|consequently|finally|in conclusion|in total|altogether|"
    r"in summary|to summarize|in all|all in all|overall|as a result|"
    r"this gives|we get|we find|we conclude that)\b[,:]?\s*",
    re.IGNORECASE,
)
_COPULA = re.compile(r"\s(?:is|are|equals|was|be)\s|=|:\s", re.IGNORECASE)
# A formula in $...$, $$...$$, \(...\) or \[...\]; an escaped dollar (\$5) is text.
# A body never runs past the next opener or closer, so an unclosed "\(" costs a
# scan to the next delimiter, not to the end of the text (linear, not quadratic).
_MATH_SPAN = re.compile(
    r"\$\$([^$]+?)\$\$|(?<!\\)\$([^$]+?)(?<!\\)\$"
    r"|\\\(((?:(?!\\[()]).)+?)\\\)|\\\[((?:(?!\\[\[\]]).)+?)\\\]",
    re.DOTALL,
)
# Prose words (3+ letters) outside LaTeX commands and math spans.
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _sentences(line: str) -> list[str]:
    """The sentences of one line (a period ends one only when a space or the end follows)."""
    # A sentence may end inside a closing $ or $$: "... \\geq 2.$$ Therefore, ..."
    parts = re.split(r"(?:(?<=[.!?])|(?<=[.!?]\$)|(?<=[.!?]\$\$))\s+(?=[A-Z\\$])", line.strip())
    return [part.strip() for part in parts if part.strip()]


def _outside_math(text: str) -> str:
    return _MATH_SPAN.sub(" ", text)


# ", which is odd" / ", since 17 = 8 + 9": a clause that comments on the answer
# already stated ("which equals 42" and "2 hours, which is 120 minutes" state a
# value, and stay).
_COMMENT_CLAUSE = re.compile(
    r",\s*(?:(?:which|that)\s+(?:is|are|was|means)(?!\s+(?:\\?\$\s*)?-?[\d.])"
    r"|since|because|as\s+(?:it|this|that))\b",
    re.IGNORECASE,
)


def _main_clause(sentence: str) -> str:
    """``sentence`` without a trailing clause that comments on its answer, outside formulas:
    "the total is 17, which is the sum of 8 and 9" states 17."""
    for comment in _COMMENT_CLAUSE.finditer(sentence):
        main = sentence[: comment.start()]
        if len(re.findall(r"(?<!\\)\$", main)) % 2 == 0:  # not \$
            # "... is proportional to its diameter, which is $45\pi$": the
            # clause holds the only answer, and stays.
            return main if re.search(r"\d|\$", main) else sentence
    return sentence


# "..., but some of these are counted twice": the working goes on after the value (a
# "but" clause with a value of its own states it: "..., but the perimeter is 24").
_GOES_ON_BUT = re.compile(r",\s*but\b(?![^$\d]*[$\d])", re.IGNORECASE)


def _concluding_answer(sentence: str) -> str | None:
    """The answer a concluding sentence commits to, or None."""
    opening = _CONCLUSION.match(sentence)
    if not opening or _HEDGE.search(_outside_math(sentence)) or _GOES_ON_BUT.search(sentence):
        return None
    rest = _main_clause(sentence[opening.end() :])
    matches = list(_MATH_SPAN.finditer(rest))
    if matches:
        return _stated_formula(rest, matches)
    copulas = list(_COPULA.finditer(rest))
    if copulas:
        stated = _phrase_answer(rest[copulas[-1].end() :])
        if (
            stated is not None
            and re.search(r"\d|\\", stated)
            and copulas[-1].group(0).strip() != "be"
        ):
            return stated  # "a = 3 and b = 4, so a + b is 7"; not "to be 600 inches"
        # "Thus 31 - 17 = 14 years since he was born": the result of the
        # computation, not what a later "was" says of something else.
        equals = rest.rfind("=")
        result = _LEADING_NUMBER.match(rest[equals + 1 :]) if equals != -1 else None
        return result.group(1) if result else stated
    # "So she has 5 apples left": a conclusion with one number commits to it.
    numbers = _NUMBER.findall(rest)
    return numbers[0] if len(numbers) == 1 else None


# "18 possible values for $n$": a count, its noun, and a formula that qualifies it.
_QUALIFIER = re.compile(
    r"\s+(?:[A-Za-z][\w'-]*\s+){1,4}(?:for|of|in|on|to|from|with|by|when|where|such\s+that|"
    r"than|over|at|among|between)\s*",
    re.IGNORECASE,
)


_QUALIFYING_CLAUSE = re.compile(
    r"\s*,?\s*(?:when|whenever|where|such\s+that|for\s+which|provided)\b", re.IGNORECASE
)
# What may stand between a subject's formula and its "is": a few words, no relative clause.
_SUBJECT_TAIL = re.compile(
    r"\s*(?:(?!(?:that|which|who|where|when|if)\b)[A-Za-z][\w'-]*\s+){0,4}", re.IGNORECASE
)


def _has_variable(formula: str) -> bool:
    return bool(re.search(r"[A-Za-z]", re.sub(r"\\text\{[^{}]*\}|\\[A-Za-z]+", "", formula)))


def _formula(match: re.Match) -> str:
    return next(group for group in match.groups() if group)


def _stated_formula(rest: str, matches: list[re.Match]) -> str | None:
    """The formula a concluding sentence states, from the formulas ``matches`` in ``rest``.

    "Thus $x = 3$" / "the volume is \\(\\frac{4\\pi}{3}\\) cubic units": the last
    formula.  When a subject in words holds every formula and an "is" follows them,
    the answer is what the "is" states: "the degree of the polynomial
    \\((x^6+1)(x^9+1)\\) is 15".  A formula with a variable that qualifies a counted
    noun is not the answer: "\\(18\\) possible values for \\(n\\)".
    """
    masked = _MATH_SPAN.sub(lambda match: " " * len(match.group(0)), rest)
    copulas = [
        copula
        for copula in _COPULA.finditer(masked)
        if copula.group(0).strip().lower() in ("is", "are", "was", "equals", "=")
    ]
    for copula in copulas:
        # "the remainder is $3$ when $n$ is divided by $7$": a clause right after the
        # stated value qualifies it.
        stated = next((match for match in matches if match.start() >= copula.end()), None)
        if stated is None or masked[copula.end() : stated.start()].strip():
            continue
        clause = _QUALIFYING_CLAUSE.match(masked, stated.end())
        if clause:
            matches = [match for match in matches if match.start() < clause.start()]
            copulas = [copula for copula in copulas if copula.start() < clause.start()]
            break
    if (
        copulas
        and copulas[-1].start() >= matches[-1].end()
        and _PROSE_WORD.search(masked[: matches[0].start()])
        and _SUBJECT_TAIL.fullmatch(masked[matches[-1].end() : copulas[-1].start()])
        and not re.search(r"[,.;:()]", masked[matches[0].start() : copulas[-1].start()])
    ):
        stated = _phrase_answer(rest[copulas[-1].end() :])
        if stated is not None and re.search(r"\d", stated):
            return stated
    while (
        len(matches) > 1
        and _QUALIFIER.fullmatch(masked[matches[-2].end() : matches[-1].start()])
        and _has_variable(_formula(matches[-1]))
        and not _has_variable(_formula(matches[-2]))
    ):
        matches = matches[:-1]
    return _strip_math_wrappers(_formula(matches[-1])) or None


# A count or total stated: "there are 50 whole numbers left", "we get $7$ solutions",
# "giving us a total of \(2 + 1 = 3\) possible values for \(n\)".  The quantity is a
# formula or a number (perhaps a computation, "7 - 3 + 1 = 5"), and a noun follows it.
_COUNT = re.compile(
    r"\b(?P<verb>there\s+(?:are|is|were|was|will\s+be|would\s+be|must\s+be|remain)"
    r"(?:\s+(?:now|thus|then|therefore|still))?"
    r"|we\s+(?:get|have|find|obtain|count|end\s+up\s+with)"
    r"|(?:(?:this|which|that|it)\s+)?(?:gives|yields|leaves|makes)(?:\s+us)?"
    r"|giving(?:\s+us)?|leaving(?:\s+us)?|yielding|leading\s+to|resulting\s+in|making|for"
    r"|[a-z]+(?=\s+(?:a|the)\s+total\s+of\b))\s+"
    r"(?P<modifiers>(?:(?:a|the)\s+total\s+of|at\s+(?:least|most)|(?:no\s+)?more\s+than|"
    r"fewer\s+than|less\s+than|up\s+to|about|approximately|around|nearly|almost|roughly|"
    r"over|under|exactly|only|just|precisely)\s+)*"
    r"(?P<quantity>(?<!\\)\$[^$:]{1,80}(?<![\\.,;])\$|\\\((?:(?!\\[()]).){1,80}?(?<![.,;])\\\)"
    r"|" + _NUMBER.pattern + r"(?:\s*[-+*/×x]\s*" + _NUMBER.pattern + r")*"
    r"(?:\s*=\s*" + _NUMBER.pattern + r")?(?![\w.,/]))"
    r"(?P<noun>\s*(?:\\text\{[^{}]*\}|[A-Za-z][\w'-]*)"
    r"(?:[ \t]+(?!(?:that|which|who|whose|where|when|if|so|but|and|or|is|are|was|were)\b)"
    r"[A-Za-z][\w'-]*){0,5})?",
    re.IGNORECASE,
)
# What shows a count is a result: it totals ("a total of", "in all", "left") or is computed.
_TOTAL_WORD = re.compile(
    r"\b(?:total|in\s+all|altogether|left|remain(?:ing|s)?|overall|combined|all\s+together)\b",
    re.IGNORECASE,
)
_CONCLUDING_WORD = re.compile(
    r"\b(?:so|thus|therefore|hence|consequently|finally|in\s+summary|to\s+summarize|"
    r"in\s+conclusion|as\s+a\s+result|overall|in\s+total|in\s+all|in\s+the\s+end|"
    r"(?:we|one)\s+(?:can\s+)?(?:see|find|conclude|get)|it\s+follows|"
    r"(?:this|which|that)\s+means)\b",
    re.IGNORECASE,
)
# Work still to do with what is counted: "50 numbers to check", "3 cases to consider";
# "12 ways to divide them" counts ways of doing something, but "12 ways to check" is work.
_WORK_LEFT = re.compile(
    r"^\s*(?:(?!(?:are|is|were|was|needed|required|used|necessary)\b)[A-Za-z][\w'-]*\s+){1,4}"
    r"to\s+(?:(?:check|consider|test|try|examine|verify|evaluate|explore|look|analy[sz]e|handle|"
    r"investigate|inspect|process|rule|eliminate)\b"
    r"|(?<!ways to )(?<!possibilities to )(?<!choices to )(?<!options to )(?<!methods to )"
    r"(?:count|find|compute|calculate|determine|remove|subtract|add|go|do|cover|solve|work|sum|"
    r"multiply|divide)\b)",
    re.IGNORECASE,
)
# Nouns that set up an enumeration: "there are 3 cases: ..." divides the work.
_SETUP_NOUN = re.compile(
    r"^\W*(?:\w+\s+)?(?:cases?|subcases?|steps?|parts?|scenarios?|possibilities|options|"
    r"situations|types|kinds|stages|conditions)\b",
    re.IGNORECASE,
)
# A statement after the count: "There are 36 outcomes, so the probability is $\frac{1}{6}$" ...
_LATER_CONCLUSION = re.compile(
    r"\b(?:so|thus|hence|therefore|which\s+means|which\s+gives)\b", re.IGNORECASE
)
# ... or states something of its own before any relative clause ("... that are prime" is none).
_LATER_STATEMENT = re.compile(
    r"=|\b(?:is|are|was|were|equals)\b|\b(?:will|would|must|should|can)\s+be\b", re.IGNORECASE
)
_RELATIVE = re.compile(
    r"\b(?:that|which|who|whose|whom|where|such\s+that|for\s+which|in\s+which)\b", re.IGNORECASE
)
_NAMING = re.compile(_RELATIVE.pattern + r"|\bnamely\b|:", re.IGNORECASE)
# A word that opens no noun phrase: "gives $5$ so that ...".
_FUNCTION_WORD = re.compile(
    r"\s*(?:and|or|so|that|which|is|are|was|were|as|to|of(?!\s+(?:these|those|them)\b)|in|for|"
    r"when|if|then|but|with|by|"
    r"since|because)\b",
    re.IGNORECASE,
)
# A bound is no count: "at least 5 ways".
_BOUND = re.compile(
    r"\b(?:at\s+(?:least|most)|more|fewer|less|up\s+to|about|approximately|around|nearly|"
    r"almost|roughly|over|under)\b",
    re.IGNORECASE,
)
# A count the question gave: "The problem states there are 54 red candies."
_GIVEN = re.compile(
    r"\b(?:(?:problem|question)\s+(?:states|says|tells\s+us)|we\s+are\s+(?:told|given)|"
    r"given\s+that)\b",
    re.IGNORECASE,
)
# A premise that a comma closes before the count: "If there are 80 legs, there will be ...".
_PREMISE_THEN = re.compile(r"\b(?:if|suppose|assume)\b[^,]*,", re.IGNORECASE)
# A count that is a premise: "If there were 10 girls, ...", "when there are 10 guests".
_PREMISE = re.compile(
    r"\b(?:if|suppose|supposing|assume|assuming|when|whenever|since|because|given|as|once|"
    r"until|unless)\s*(?:that\s+)?$",
    re.IGNORECASE,
)


def _counted_answer(sentence: str) -> tuple[bool, str | None]:
    """ "After removing the multiples of 3, there are 50 whole numbers left.": the
    count a last sentence states, as ``(True, answer)``; ``(True, None)`` when it
    states a count that commits to nothing, and ``(False, None)`` when it states none.

    A count commits when the sentence concludes ("So there are \\(12\\) ways"), totals
    ("a total of $2 + 1 = 3$ values", "50 numbers left"), computes it ("There are
    $7 - 3 + 1 = 5$ integers", "there are 15 oranges - 12 oranges = 3 oranges left") or
    is a result by its verb ("we get 7 solutions", "giving 4 circles").  It commits to
    nothing under doubt ("are there 50?", "there are 12 ways if ..."), under a
    condition ("if n is odd, there are 5"), as a bound ("at least 5"), with work left
    ("50 numbers to check", "we need to find how many"), as an enumeration's set-up
    ("there are 3 cases: ...") or when the working goes on ("..., but").  A count that
    is itself a premise ("If there were 10 girls, ...") is no statement of one.
    """
    clause = _main_clause(sentence)
    counts = [
        match
        for match in _COUNT.finditer(clause)
        if _counts(match) and not _PREMISE.search(clause[: match.start()])
    ]
    if not counts:
        return False, None
    count = counts[-1]
    head, tail = clause[: count.start()], clause[count.end() :]
    noun = count.group("noun") or ""
    quantity = _strip_math_wrappers(count.group("quantity"))
    computed = "=" in quantity
    if not computed and "=" in _outside_math(tail):
        # "there are 6 girls + 12 boys = 18 kids": a computation with its units, read as one.
        return False, None
    stated = _outside_math(count.group(0))
    after = _outside_math(sentence[count.end() :])  # comment clauses too
    relative = _RELATIVE.search(after)
    # "... $3$ solutions: $x = 0$, ...", "namely $f(x) = 0$", "such that $x = 1$": the
    # formulas name or qualify what is counted, and compute nothing after it (a displayed
    # one does: "a total of $100: \[150 - 100 = 50\]").
    masked = _MATH_SPAN.sub(lambda match: " " * len(match.group(0)), sentence)
    named = _NAMING.search(masked, count.end())
    end = named.start() if named else len(sentence)
    if (
        _LATER_CONCLUSION.search(after)
        or _LATER_STATEMENT.search(after[: relative.start()] if relative else after)
        or any(
            "=" in _formula(match) and (match.start() < end or match.group(0)[:2] in ("\\[", "$$"))
            for match in _MATH_SPAN.finditer(sentence, count.end())
        )
    ):
        return False, None  # "There are 36 outcomes, so the probability is ...": not the result
    doubts = {word.lower() for word in _DOUBT.findall(_outside_math(head))}
    if (
        _DOUBT.search(stated + after)
        or _GOAL.search(stated + after)
        or _NOT_A_RESULT.search(stated + after)
        or _NOT_A_RESULT.match(_outside_math(clause))
        or _GIVEN.search(_outside_math(head))
        or _BOUND.search(count.group("modifiers") or "")
        or _WORK_LEFT.match(_outside_math(noun + tail))
        or re.search(r"\bbut\b|^\s*(?:,\s*)?(?:then|and\s+then|next)\b", after, re.IGNORECASE)
        # "If there are 80 legs, there will be 80/2 = 40 pairs": a premise, then the result.
        or (doubts and not (computed and _PREMISE_THEN.search(head)))
        or (tail.lstrip().startswith(":") and _SETUP_NOUN.match(noun))
    ):
        return True, None
    verb = count.group("verb").lower()
    if not (
        computed
        or "total" in (count.group("modifiers") or "").lower()
        or _TOTAL_WORD.search(_outside_math(noun) + " " + after)
        or _CONCLUDING_WORD.search(head)
        or not verb.startswith(("there", "we have", "for"))
    ):
        return False, None  # "There are 31 days in May.": a premise restated, perhaps
    # "\(2 + 1 = 3\)": the result of the computation.
    return True, _meaningful(quantity.rsplit("=", 1)[-1].strip())


def _counts(match: re.Match) -> bool:
    """Whether a `_COUNT` match counts something: a noun follows a quantity that is a
    number or a formula with no variable of its own ("$4\\cdot 4 = 16$", not "$x$")."""
    total = "total" in (match.group("modifiers") or "").lower()
    if match.group("verb").lower() == "for" and not total:
        return False  # "for $n$": only "for a total of" counts
    noun = match.group("noun")
    rest = match.string[match.end() :]
    quantity = _strip_math_wrappers(match.group("quantity"))
    # "for a total of $24 + 150 = 174$." and "$18 \text{ integers}$" need no noun after.
    if not (
        noun
        or (total and not rest.strip(" ."))
        or re.search(r"\\text\{\s*[A-Za-z][^{}]*\}$", quantity)
    ):
        return False
    if (
        noun
        and _FUNCTION_WORD.match(noun)
        and not re.search(r"total|least|most|than", match.group("modifiers") or "")
    ):
        return False  # "gives $x = 5$ so that ...": no noun counted
    return not _has_variable(quantity)


# ", so the perimeter is 36 inches": a conclusion that ends the last sentence.
_CONCLUDING_CLAUSE = re.compile(
    r",\s+(?=(?:so|thus|hence|therefore)\b(?!\s+that\b))", re.IGNORECASE
)


# What is still to be done: "so we need to find $w$", "so let's compute".
_GOAL = re.compile(
    r"\b(?:need|needs|have|has)\s+to\b|\bto\s+find\b|\blet(?:'s|\s+us)\b|\bwe\s+will\b",
    re.IGNORECASE,
)


def _concluding_clause(sentence: str) -> str | None:
    """The answer of a concluding clause at the end of a sentence ("We multiply
    the side by 6, so the perimeter is 36 inches"), when the sentence does not hedge."""
    clauses = _CONCLUDING_CLAUSE.split(sentence)
    if len(clauses) < 2 or _HEDGE.search(_outside_math(sentence)):
        return None
    clause = clauses[-1]
    if _GOAL.search(clause) or not (_COPULA.search(clause) or _MATH_SPAN.search(clause)):
        return None  # "so we need to find $w$", "so it has one divisor other than 1"
    return _concluding_answer(clause)


def _answer_line(line: str) -> str | None:
    """A last line that is nothing but the answer (a formula or a number), or None."""
    # "28 percent" / "$28$ pct": the word is the percent sign.
    line = _PERCENT_WORD.sub("\\%", line)
    stripped = _strip_math_wrappers(line)
    if not stripped or _HEDGE.search(_outside_math(line)):
        return None
    if _BOX_COMMAND.search(line) or stripped.count("{") != stripped.count("}"):
        return None  # a box that did not close, or a stray brace: no answer
    spans = list(_MATH_SPAN.finditer(line.strip().rstrip(".")))
    if len(spans) > 1:
        return None  # "$a$ $b$": two formulas, no one answer
    if spans and spans[0].group(0) == line.strip().rstrip("."):
        return stripped  # all of it set as math ($odd$): the writer's answer, words and all
    if "=" in stripped and not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", stripped)):
        # "6 * 7 = 42" as the last line: the computation's result is the answer.
        return stripped.rsplit("=", 1)[1].strip() or None
    if _PROSE_WORD.search(_outside_math(line)) or _PROSE_WORD.search(
        re.sub(r"\\[A-Za-z]+\s*\{[^{}]*\}|\\[A-Za-z]+", " ", stripped)
    ):
        return None
    return stripped


# A dollar sign that opens or closes no formula: "$400 + $60 = $460".
_DOLLAR = re.compile(r"(?<!\\)\$")


def _without_currency_signs(text: str) -> str:
    """``text`` with the dollar signs of amounts of money removed, line by line.

    On a line where every ``$`` is followed by a digit and none follows a
    character that could end a formula (``$400 + $60 = $460``), the signs are
    prices, not formula delimiters; read as delimiters they would pair up
    across the amounts and turn ``$460`` into a formula ``400 + ``.  A line
    with any real formula (``$4$``, ``$x = 3$``) is left as it is.

    >>> _without_currency_signs("Thus she gets a total of $400 + $60 = $460.")
    'Thus she gets a total of 400 + 60 = 460.'
    >>> _without_currency_signs("So $4$ and $x = 3$.")
    'So $4$ and $x = 3$.'
    """
    if "$" not in text:
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        signs = [match.start() for match in _DOLLAR.finditer(line)]
        if signs and all(
            line[position + 1 : position + 2].isdigit()
            and not (position > 0 and (line[position - 1].isalnum() or line[position - 1] in "})"))
            for position in signs
        ):
            lines[index] = _DOLLAR.sub("", line)
    return "\n".join(lines)


def extract_answer(text: str) -> str | None:
    """Read the final answer a response commits to, or None when it commits to none.

    In order of preference: the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested
    braces are matched by a scan), the last "The answer is X" / "Final Answer:
    X" / "the final answer is X", the GSM8K marker ``#### X``, a bold
    ``**X**`` or an ``Answer: X`` on the last line, a count the last sentence
    states ("there are 50 whole numbers left", "giving us a total of \\(2 + 1 =
    3\\) possible values for \\(n\\)": the result), a concluding sentence
    ("Therefore/Thus/So ... is X"; "the degree of \\((x^2+1)(x^3+1)\\) is 5" states
    5, not the subject's formula), a last line that is nothing but the
    answer, and a plain last sentence that restates the one number the
    working's last "=" computed ("... = 54 miles. Elvis is 54 miles east of
    his house."), or a last sentence that computes the result itself ("She
    makes 9 * 2 = $18 every day.").  A number buried in prose is no answer,
    and neither is a sentence that hedges or rejects ("could it be 4?", "4
    is not a solution") or a count that commits to nothing ("there are 50
    numbers to check", "at least 5 ways", "there are 3 cases: ..."): such a
    response is ``unparseable``, never scored against the reference.
    Surrounding ``$...$`` and trailing periods are removed.  Only the last
    10,000 characters are read.

    >>> extract_answer("so \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_answer("The answer is $42$. I hope it is correct.")
    '42'
    >>> extract_answer("She pays 3 * 24 = 72 dollars.\\n#### 72")
    '72'
    >>> extract_answer("Thus, the domain is \\\\(\\\\left(-\\\\infty, 2\\\\right]\\\\).")
    '\\\\left(-\\\\infty, 2\\\\right]'
    >>> extract_answer("Adding them up:\\n\\n$\\\\frac{10}{9}$")
    '\\\\frac{10}{9}'
    >>> extract_answer("6*7 = 42. Hmm, wait, let me reconsider.") is None
    True
    >>> extract_answer("So a = 3 and b = 4 is not a solution.") is None
    True
    >>> extract_answer("After removing them, there are 50 whole numbers left.")
    '50'
    >>> extract_answer("There are 50 numbers to check.") is None
    True
    """
    if not isinstance(text, str):
        return None
    text = _without_currency_signs(repair_escapes(text[-EXTRACTION_WINDOW:])).rstrip()
    for _ in range(8):  # a few trailing tokens at most; anchored at the end, so cheap
        sign_off = _SIGN_OFF.search(text, max(0, len(text) - 64))
        if sign_off is None:
            break
        text = text[: sign_off.start()].rstrip()

    phrases = list(_ANSWER_PHRASE.finditer(text))
    boxed = _final_boxed(text)
    if boxed is not None:
        answer, boxed_end = boxed
        # A "final answer" stated after the last box overrides a box in the working.
        later = [m for m in phrases if m.start() >= boxed_end and "final" in m.group(0).lower()]
        if later:
            stated = _phrase_answer(text[later[-1].end() :])
            if _meaningful(stated):
                return stated
        if answer:
            return answer

    for match in reversed(phrases[-MAX_BOX_CANDIDATES:]):
        line = text[match.start() :].split("\n", 1)[0]
        if _HEDGE.search(_outside_math(_first_sentence(line))):
            continue  # "the answer is not 4"
        answer = _stated_answer(line[match.end() - match.start() :])
        if answer:
            return answer

    gsm8k = list(_GSM8K_ANSWER.finditer(text))
    if gsm8k:
        answer = _strip_math_wrappers(gsm8k[-1].group(1))
        if answer:
            return answer

    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last_line = lines[-1]
    display = _ANSWER_DISPLAY.search(text)
    if display:
        return _meaningful(_strip_math_wrappers(display.group(1)))
    answer_line = _ANSWER_LINE.match(last_line)
    if answer_line:
        answer = _stated_answer(answer_line.group(1))
        if answer:
            return answer
    bold = [
        match.group(1)
        for match in _BOLD.finditer(last_line)
        if any(character.isdigit() for character in match.group(1))
    ]
    if bold:
        answer = _phrase_answer(bold[-1])
        if answer:
            return answer
    sentences = _sentences(last_line)
    if sentences:
        counted, answer = _counted_answer(sentences[-1])
        if counted:
            return _meaningful(answer)  # a count stated, committed to or not
        answer = (
            _concluding_answer(sentences[-1])
            or _concluding_clause(sentences[-1])
            or _declared_answer(sentences[-1])
            or _corrected_answer(sentences[-1])
        )
        if _meaningful(answer):
            return answer
    answer = _meaningful(_answer_line(last_line))
    if answer is None and sentences:
        working = text[: text.rfind(sentences[-1])]
        answer = _restated_result(sentences[-1], working) or _final_computation(sentences[-1])
    return answer


# Doubt (unlike a plain rejection) withdraws a whole sentence: "maybe it's 12".
_DOUBT = re.compile(
    r"\?|\b(?:wait|hmm|reconsider|maybe|perhaps|might|could|unless|if|whether|check|"
    r"suppose|assume|mistake|wrong)\b",
    re.IGNORECASE,
)
# A number as prose states an amount: 12, \$1,\!250.50, 1,000.99.
_MONEY = rf"(?:\\?\$\s*)?(?:-?\d{{1,3}}(?:,(?:\\!)?\s*\d{{3}})+(?:\.\d+)?|{_NUMBER.pattern})"
# "It's not 10, it's 12 dollars" / "not 10 but rather 1,000.99€": a rejection corrected.
_CORRECTION = re.compile(
    rf"\b(?:not|isn't|isn’t)\s+(?:{_MONEY}|\S+?)\s*[,;]?\s*(?:but\s+)?"
    r"(?:it's|it’s|it\s+is|which\s+is|that's|that\s+is|rather|instead)\s*,?\s*"
    rf"(?P<value>{_MONEY})\s*(?:[€$£¥%]|[A-Za-z]+[²³]?)?\s*[.!]?$",
    re.IGNORECASE,
)


def _corrected_answer(sentence: str) -> str | None:
    """The value a last sentence corrects a rejected one to ("it's not 10, it's 12"), or None."""
    if _DOUBT.search(_outside_math(sentence)):
        return None
    correction = _CORRECTION.search(sentence)
    return correction.group("value") if correction else None


# The result of the working's last computation: "= 54", "= \\$1,\\!250 \\text{...}".
_LAST_RESULT = re.compile(r"=\s*(?P<number>" + _MONEY + r")(?![.,/]?\d)")
_AMOUNT = re.compile(_MONEY + r"(?![.,/]?\d)")


def _restated_result(sentence: str, working: str) -> str | None:
    """ "Elvis is 54 miles east of his house.": a plain last sentence that states
    one number, the result of the working's last computation, without a hedge;
    or a concluding one ("So, after 3 years, he has 120 dollars.") that states
    that result among other numbers.

    The number must be what the last "=" before it computed, so a sentence that
    only repeats a number of the question ("The table lists 5 rows.") or of an
    earlier step commits to nothing.
    """
    prose = _outside_math(sentence)
    if (
        "=" in sentence
        or sentence.endswith(":")
        or _HEDGE.search(prose)
        or _no_result(prose)
        or _GOES_ON_BUT.search(prose)
    ):
        return None
    results = list(_LAST_RESULT.finditer(working[-2000:]))
    if not results or "=" in working[results[-1].end() :]:
        return None
    result = _plain_amount(results[-1].group("number"))
    amounts = _AMOUNT.findall(sentence)
    stating = [amount for amount in amounts if _plain_amount(amount) == result]
    if not stating or (len(amounts) > 1 and not _CONCLUSION.match(sentence)):
        return None
    return _without_currency(stating[-1])


# Doubt about a computation's result ("= 42. Hmm, wait", "might be"); "if" and
# "not" are left out: "If each costs $4, then 4 * 4 = $16" restates the question,
# "120 - 80 = 40 girls are not in the club" describes the amount.
_COMPUTATION_DOUBT = re.compile(
    r"\?|\b(?:hmm|reconsider|maybe|perhaps|might|could\s+(?:be|it|this|that)|mistake|wrong|"
    r"check|whether)\b"
    r"|\bwait\s*[,!.]|^\W*wait\b|\bnot\s+(?:a|an|the)?\s*(?:solution|answer|correct|right|valid|"
    r"possible)\b",
    re.IGNORECASE,
)
# A reason clause: "skip 4 because 10 - 4 = 6" computes why, not what.
_REASON = re.compile(r"\b(?:because|since)\b", re.IGNORECASE)
# The working goes on after the result: "= 7, then we add the rest".
_GOES_ON = re.compile(r"^\W*(?:then|next|and\s+then|after\s+that|now)\b", re.IGNORECASE)


# A last sentence that is no statement of a result: a value rejected ("we
# discard 7", "which is impossible"), a check ("Verify: 7 + 5 = 12"), a step
# the working goes on from ("First, ...", "Next we need to find ...", "Let's compute ...").
_NOT_A_RESULT = re.compile(
    r"\b(?:discard(?:ed|s)?|extraneous|impossible|reject(?:ed|s)?|invalid|verify|verifying|"
    r"verification|checking)\b|^\W*(?:first|step\s+\d+)\b",
    re.IGNORECASE,
)
# A premise, not a result: "If x = 5", "Suppose ...", "Let's try n = 3".
_SETUP = re.compile(r"\W*(?:if|suppose|assume|assuming|let(?:'s)?|try|say)\b", re.IGNORECASE)


def _no_result(prose: str) -> bool:
    return bool(_NOT_A_RESULT.search(prose) or _GOAL.search(prose))


def _final_computation(sentence: str) -> str | None:
    """ "She makes 9 * 2 = 18 dollars every day.": the last sentence of a
    response that computes a result and says what it is, without doubt; the
    result is what its last "=" gives.

    A computation in a reason clause counts only when the sentence states its
    result before the reason ("He makes money in year 13 because 12 + 1 =
    13"); "He can skip 4 classes because 10 - 4 = 6" commits to nothing.  A
    leading "Since ..." is a premise, and the computation after it counts.
    """
    prose = _outside_math(sentence)
    # A goal before the computation is what it fulfils ("to find her salary: ... = 57,500").
    if (
        _COMPUTATION_DOUBT.search(prose)
        or _MATH_SPAN.search(sentence)
        or _NOT_A_RESULT.search(prose)
    ):
        return None
    setup = _SETUP.match(sentence)
    if setup and not re.search(r",|\bthen\b", sentence[: sentence.rfind("=")]):
        return None  # "Suppose x = 5.", "Let's try n = 3.": no result yet
    sentence = re.sub(r"(?<=\d)\s+equals\s", " = ", sentence)  # "20 times .25 equals 5"
    equals = sentence.rfind("=")
    if equals == -1:
        return None
    result = _AMOUNT.match(sentence[equals + 1 :].lstrip())
    if result is None:
        return None
    after = sentence[equals + 1 :].lstrip()[result.end() :]
    if _NUMBER.search(after) or _GOES_ON.search(after) or _GOAL.search(after):
        return None
    if len(_WORD.findall(after)) > 12:
        return None
    answer = _without_currency(result.group(0))
    reason = _REASON.search(sentence, 1)  # not a leading "Since ...,"
    if reason is not None and reason.start() < equals:
        stated = [_plain_amount(amount) for amount in _AMOUNT.findall(sentence[: reason.start()])]
        if _plain_amount(answer) not in stated:
            return None
    return answer


def _without_currency(amount: str) -> str:
    """An amount as the answer: the currency sign is no part of it."""
    return re.sub(r"^\\?\$\s*", "", amount.strip())


def _plain_amount(amount: str) -> str:
    return re.sub(r"\\?\$|\\!|\s", "", amount)


def _declared_answer(sentence: str) -> str | None:
    """ "The identity matrix is $M$." / "Here is a zero matrix: $M$": a last
    sentence that ends by declaring one formula, without a hedge."""
    sentence = sentence.rstrip(" .")
    spans = list(_MATH_SPAN.finditer(sentence))
    if not spans or spans[-1].end() != len(sentence) or _HEDGE.search(_outside_math(sentence)):
        return None
    # Formulas blanked out (same length): an "=" inside one is no copula of the sentence.
    masked = _MATH_SPAN.sub(lambda match: " " * len(match.group(0)), sentence)
    copulas = list(_COPULA.finditer(masked[: spans[-1].start()] + " "))
    if not copulas or masked[copulas[-1].end() : spans[-1].start()].strip():
        return None  # words between the "is" and the formula: not a plain declaration
    return _strip_math_wrappers(next(g for g in spans[-1].groups() if g)) or None


def _first_sentence(line: str) -> str:
    """Up to the first period that ends a sentence (not a decimal point)."""
    return re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]


def _stated_answer(rest: str) -> str | None:
    """The answer stated after "The answer is" / "Final Answer:": the phrase's
    first sentence, or in "Final Answer: The largest $n$ is 34" what its last
    "is" states."""
    line = rest.lstrip(" \t*").split("\n", 1)[0]
    sentence = _first_sentence(line)
    prose = _outside_math(sentence)
    opens_with_answer = _LEADING_NUMBER.match(sentence) or sentence.lstrip().startswith(
        ("$", "\\(", "\\[", "\\boxed")
    )
    if not opens_with_answer and _COPULA.search(prose) and _PROSE_WORD.search(prose):
        return _meaningful(_phrase_answer(_outside_math_tail(_main_clause(sentence))))
    return _meaningful(_phrase_answer(rest))


def _meaningful(answer: str | None) -> str | None:
    """``answer`` unless it is only delimiters or punctuation (``$``, ``\\]``)."""
    if answer is None or not re.search(
        r"[A-Za-z0-9]", answer.replace("\\]", "").replace("\\)", "")
    ):
        return None
    return answer


def _outside_math_tail(stated: str) -> str:
    """What follows the last "is" / "=" of a stated answer, outside any formula."""
    for copula in reversed(list(_COPULA.finditer(stated))):
        if (
            not _MATH_SPAN.search(stated[: copula.start()] + "$")
            or stated[: copula.start()].count("$") % 2 == 0
        ):
            return stated[copula.end() :]
    return stated


# ---------------------------------------------------------------------------
# Normalization and the exact fast path
# ---------------------------------------------------------------------------

_REMOVED_TOKENS = (
    (re.compile(r"\\[dt]frac\b"), r"\\frac"),
    (re.compile(r"\\left\s*(?=[(\[{|.]|\\[{|])"), ""),
    (re.compile(r"\\left\b"), ""),
    (re.compile(r"\\right\s*(?=[)\]}|.]|\\[}|])"), ""),
    (re.compile(r"\\right\b"), ""),
    # Thousands written 1,\!234,\!500 or 1\,000: the thin spaces go, the digits join.
    (re.compile(r",\\!\s*(?=\d{3})"), ","),
    (re.compile(r"\\!"), ""),
    (re.compile(r"(?<=\d)\\,(?=\d{3}(?!\d))"), ""),
    # Spacing commands; the row break \\ of a matrix is kept.
    (re.compile(r"(?<!\\)\\[,;:]|(?<!\\)\\ |~"), " "),
    (re.compile(r"\\displaystyle\b"), ""),
    (re.compile(r"!="), r"\\neq "),
    # Degrees: 90^\circ, 90^{\circ}, 90°.
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ\b|\\circ\b|°|\\degree\b"), ""),
    (re.compile(r"\\%|%"), ""),
    (re.compile(r"\\\$|\$"), ""),
    # A backslash before a digit is a mangled dollar sign (\15 for \$15).
    (re.compile(r"(?<!\\)\\(?=\d)"), ""),
    (re.compile(r"\{,\}"), ","),
    # "12 \text{ and } 13" / "12 and 13": two answers, a list.
    (re.compile(r"\s*,?\s*\\(?:text|mbox)\{\s*,?\s*and\s*\}\s*"), ","),
    (re.compile(r"(?<=[\d})\]])\s*,?\s+and\s+(?=[-\d\\(\[])"), ","),
    # A single upright letter (\mathrm{i}, \mathrm{e}) is just that letter.
    (re.compile(r"\\(?:mathrm|textrm|text)\{([A-Za-z])\}"), r"\1"),
)
# Unit words: a leading space or two letters, so that 4\mathrm{i} keeps its i.
_UNIT_WORDS = r"(?:\s+[A-Za-z]|[A-Za-z]{2})[A-Za-z\s./\-]*"
# A value followed by a \text{...} unit: "40 \text{ cubic inches}", "5\mbox{ cm}^2".
_TRAILING_TEXT_UNIT = re.compile(
    r"^(?P<value>.*?\S)\s*\\(?:text|mbox|mathrm|textrm|textnormal|textbf|mathit)\s*"
    r"\{" + _UNIT_WORDS + r"\}(?:\s*\^\s*(?:\d|\{\d\}))?$",
    re.DOTALL,
)
# A plain number followed by plain unit words: "10 hours", "20.16 Mb/h".
_TRAILING_PLAIN_UNIT = re.compile(
    r"^(?P<value>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)\s+[A-Za-z]{2}[A-Za-z\s./\-]*(?:\^\d)?$"
)
_WHOLE_TEXT = re.compile(
    r"^\\(?:text|mbox|mathrm|textrm|textnormal|textbf|mathbf|mathit)\s*\{(?P<inner>.*)\}$",
    re.DOTALL,
)
_BASED_NUMERAL = re.compile(r"(?P<digits>[0-9][0-9A-Za-z]*)_\{?(?P<base>\d{1,2})\}?")
_CHOICE_LETTER = re.compile(r"^\(?\s*(?P<letter>[A-Z])\s*\)?$")
_RELATIONS = ("<", ">", "\\le", "\\ge", "\\ne", "\\approx", "\\equiv")
_LONE_VARIABLE = re.compile(r"^(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)$")
_LONE_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_COMMAND_BEFORE_LETTER = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z0-9])")
_INTEGER = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)")
_SLASH_ENTRY = re.compile(r"(?<![\w}])(?P<top>\d+)/(?P<bottom>\d+)(?![\w{])")
_SLASH_FRACTION = re.compile(r"(?P<sign>[-+]?)\(?(?P<top>\d+)\)?/\(?(?P<bottom>\d+)\)?")
_LATEX_FRACTION = re.compile(
    r"(?P<sign>[-+]?)\\frac(?:\{(?P<top>[-+]?\d+(?:\.\d+)?)\}|(?P<top_digit>\d))"
    r"(?:\{(?P<bottom>[-+]?\d+(?:\.\d+)?)\}|(?P<bottom_digit>\d))"
)


def _unwrap_text(answer: str) -> str:
    """``\\text{A,D}`` -> ``A,D`` when the whole answer is one text group."""
    whole = _WHOLE_TEXT.match(answer)
    if whole and _matching_brace(answer, answer.index("{")) == len(answer) - 1:
        return whole.group("inner").strip()
    return answer


def _drop_units(answer: str) -> str:
    """Drop unit words trailing a value (``40 \\text{ cubic inches}`` -> ``40``)."""
    for _ in range(3):
        trailing = _TRAILING_TEXT_UNIT.match(answer)
        if not trailing:
            break
        value = trailing.group("value")
        if value.endswith(("\\", "{", "=", "+", "-", "(", ",")):
            break
        answer = value.strip()
    plain = _TRAILING_PLAIN_UNIT.match(answer)
    if plain:
        answer = plain.group("value")
    return answer


def _top_level_parts(answer: str) -> list[str]:
    """``answer`` split at the commas outside any bracket."""
    parts, depth, start = [], 0, 0
    for index, character in enumerate(answer):
        if character in "([{":
            depth += 1
        elif character in ")]}":
            depth -= 1
        elif character == "," and depth == 0:
            parts.append(answer[start:index])
            start = index + 1
    parts.append(answer[start:])
    return parts


_MEMBER = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*\\in\s*(?P<set>[(\[\\].*)$", re.DOTALL)


def _right_hand_side(answer: str) -> str:
    """``x = 5`` -> ``5`` when one side of a single equation is a lone variable;
    ``y_1 = 2x, y_2 = 3x`` -> ``2x, 3x`` when every part of a list is such an equation."""
    if answer.count("=") > 1 and "," in answer:
        parts = _top_level_parts(answer)
        if len(parts) == 1:
            return answer  # "\gcd(12,54) = 6 = 2 \cdot 3": the commas are inside brackets
        sides = [_right_hand_side(part) for part in parts]
        if all("=" not in side for side in sides):
            return ", ".join(sides)
        return answer
    member = _MEMBER.match(answer)
    if member:
        return member.group("set")  # x \in [-2, 7]
    if answer.count("=") != 1 or any(symbol in answer for symbol in _RELATIONS):
        return answer
    left, right = (side.strip() for side in answer.split("="))
    if _LONE_VARIABLE.match(left) and right:
        return right
    if _LONE_VARIABLE.match(right) and left:
        return left
    return answer


_LESS = r"<=|=<|<|\\lt\b|\\leq?(?:slant)?\b|≤"
_GREATER = r">=|=>|>|\\gt\b|\\geq?(?:slant)?\b|≥"
_VARIABLE = r"[A-Za-z](?:_\{?\w+\}?)?"
_CHAINED_LESS = re.compile(
    rf"^(?P<low>[^<>=]+?)\s*(?P<left>{_LESS})\s*{_VARIABLE}\s*(?P<right>{_LESS})\s*(?P<high>[^<>=]+)$"
)
_CHAINED_GREATER = re.compile(
    rf"^(?P<high>[^<>=]+?)\s*(?P<right>{_GREATER})\s*{_VARIABLE}\s*(?P<left>{_GREATER})\s*"
    r"(?P<low>[^<>=]+)$"
)
_ONE_SIDED = re.compile(
    rf"^(?:{_VARIABLE}\s*(?:(?P<above>{_GREATER})|(?P<below>{_LESS}))\s*(?P<bound>[^<>=]+)"
    rf"|(?P<bound_first>[^<>=]+?)\s*(?:(?P<below_first>{_GREATER})|(?P<above_first>{_LESS}))\s*"
    rf"{_VARIABLE})$"
)


def _strict(relation: str) -> bool:
    return relation in ("<", ">", "\\lt", "\\gt")


def _interval_of_inequality(answer: str) -> str:
    """``-2 \\le x \\le 7`` -> ``[-2,7]``, ``x > 3`` -> ``(3,\\infty)``: an inequality on
    one variable is the interval it describes; anything else is returned unchanged."""
    chained = _CHAINED_LESS.match(answer) or _CHAINED_GREATER.match(answer)
    if chained:
        low, high = chained.group("low").strip(), chained.group("high").strip()
        if _LONE_VARIABLE.match(low) or _LONE_VARIABLE.match(high):
            return answer
        opening = "(" if _strict(chained.group("left")) else "["
        closing = ")" if _strict(chained.group("right")) else "]"
        return f"{opening}{low},{high}{closing}"
    one_sided = _ONE_SIDED.match(answer)
    if not one_sided:
        return answer
    bound = (one_sided.group("bound") or one_sided.group("bound_first")).strip()
    if _LONE_VARIABLE.match(bound):
        return answer  # "a < b": no side is the bound
    relation = next(
        group
        for group in (
            one_sided.group("above"),
            one_sided.group("below"),
            one_sided.group("below_first"),
            one_sided.group("above_first"),
        )
        if group
    )
    strict = _strict(relation)
    if one_sided.group("above") or one_sided.group("above_first"):
        return ("(" if strict else "[") + bound + ",\\infty)"
    return "(-\\infty," + bound + (")" if strict else "]")


def _collapse_spaces(answer: str) -> str:
    """Remove whitespace, except where it ends a command (``\\pi r`` keeps its space)."""
    answer = _COMMAND_BEFORE_LETTER.sub(lambda match: match.group(1) + "\0", answer)
    answer = re.sub(r"\s+", "", answer)
    return answer.replace("\0", " ")


def normalize_answer(answer: str) -> str:
    """A canonical spelling of an answer, for string comparison.

    Removes ``$`` and ``\\$``, ``\\%``, degrees, ``\\left``/``\\right``,
    thin spaces, thousands separators, unit words trailing a value, a
    ``\\text{}`` wrapping the whole answer, parentheses around a single
    choice letter and a lone variable on one side of an equation;
    ``\\dfrac``/``\\tfrac`` become ``\\frac``.  Whitespace is removed except
    after a command.

    >>> normalize_answer("40 \\\\text{ cubic inches}")
    '40'
    >>> normalize_answer("\\\\left( 3, \\\\dfrac{\\\\pi}{2} \\\\right)")
    '(3,\\\\frac{\\\\pi}{2})'
    >>> normalize_answer("x = 5")
    '5'
    >>> normalize_answer("(B)")
    'B'
    """
    answer = _strip_math_wrappers(answer)
    answer = _unwrap_text(answer)
    for pattern, replacement in _REMOVED_TOKENS:
        answer = pattern.sub(replacement, answer)
    answer = answer.strip()
    answer = _drop_units(answer)
    answer = _unwrap_text(answer)
    answer = _right_hand_side(answer)
    answer = _drop_units(answer)
    # Thousands separators are only taken out before spaces are, so that the
    # list "2, 345" is not read as 2345.
    # Only a lone number has thousands separators: in (1,100) or {2,345} the comma
    # separates entries.
    if _LONE_THOUSANDS.fullmatch(answer.strip()):
        answer = answer.replace(",", "")
    answer = _collapse_spaces(answer.strip())
    if "\\begin{" in answer:
        # Matrix entries: -2/5 and -\frac{2}{5} are one spelling.
        answer = _SLASH_ENTRY.sub(r"\\frac{\g<top>}{\g<bottom>}", answer)
    choice = _CHOICE_LETTER.match(answer)
    if choice:
        return choice.group("letter")
    if (
        answer.startswith("{")
        and answer.endswith("}")
        and _matching_brace(answer, 0) == len(answer) - 1
    ):
        answer = answer[1:-1]
    return answer


def _as_fraction(answer: str) -> Fraction | None:
    """The exact value of a normalized plain number (int, decimal, simple fraction)."""
    if len(answer) > MAX_FAST_DIGITS:
        return None
    try:
        if _INTEGER.fullmatch(answer) or _DECIMAL.fullmatch(answer):
            return Fraction(answer)
        slash = _SLASH_FRACTION.fullmatch(answer)
        if slash:
            value = Fraction(int(slash.group("top")), int(slash.group("bottom")))
            return -value if slash.group("sign") == "-" else value
        latex = _LATEX_FRACTION.fullmatch(answer)
        if latex:
            top = Fraction(latex.group("top") or latex.group("top_digit"))
            bottom = Fraction(latex.group("bottom") or latex.group("bottom_digit"))
            value = top / bottom
            return -value if latex.group("sign") == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _is_words(answer: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z ]+", answer))


def _compare_bases(left: str, right: str) -> bool | None:
    """Compare numerals written in a base (``52_8``); None when neither is one.

    sympy reads the subscript as an index and would call ``52_8`` and
    ``52_9`` equal.  Two based numerals agree when their digits and bases
    do; a plain numeral agrees with a based one when the digits do (MATH
    answers often drop the subscript).
    """
    left_match = _BASED_NUMERAL.fullmatch(left)
    right_match = _BASED_NUMERAL.fullmatch(right)
    if left_match is None and right_match is None:
        return None
    if left_match is not None and right_match is not None:
        return _numeral_digits(left_match.group("digits")) == _numeral_digits(
            right_match.group("digits")
        ) and int(left_match.group("base")) == int(right_match.group("base"))
    based, other = (left_match, right) if left_match is not None else (right_match, left)
    if re.fullmatch(r"[0-9A-Za-z]+", other):
        return _numeral_digits(based.group("digits")) == _numeral_digits(other)
    return None


def _numeral_digits(digits: str) -> str:
    return digits.lstrip("0").lower() or "0"


def fast_equivalent(extracted: str, reference: str) -> bool | None:
    """Decide equivalence without sympy when that is certain, else None.

    True when the normalized spellings agree (see `normalize_answer`);
    True or False when both are plain numbers (compared exactly, so
    ``0.5 == 1/2 == \\frac{1}{2}``, except that a decimal may stand for a
    value it correctly rounds, see below) or numerals in a base
    (``2516_8``); None when only a symbolic check can tell.

    A decimal in the answer matches a reference number it correctly rounds
    (to the places it writes, with at least two significant digits) only
    when rounding was unavoidable: the reference is a fraction with no
    finite decimal expansion (``0.33`` and ``0.333`` for 1/3, ``2.6667`` for
    8/3), or the decimal has six places or more (a computed value printed
    to float precision: ``0.000977`` for 1/1024).  A cut decimal (``0.66``
    for 2/3), one significant digit (``0.3``) and a rounded answer to a
    reference with a finite expansion (``2.3`` for 2.25) do not match.
    Irrational references (pi, a root) are left to the symbolic check, which
    compares them exactly.  Numbers that are whole parts of a tuple,
    interval, set, list or matrix compare the same way, part by part (see
    `_align_numbers`, not public).

    >>> fast_equivalent("\\\\dfrac{3}{4}", "0.75")
    True
    >>> fast_equivalent("(0.6, 2.6667]", "(\\\\frac{3}{5}, \\\\frac{8}{3}]")
    True
    >>> fast_equivalent("0.66", "\\\\frac{2}{3}")
    False
    >>> fast_equivalent("72", "73")
    False
    >>> fast_equivalent("\\\\sqrt{4}", "2") is None
    True
    """
    left = normalize_answer(extracted)
    right = normalize_answer(reference)
    if not left or not right:
        return None
    # An inequality reference (x > 3) takes its interval (3, \infty) too; an
    # interval reference asks for interval notation, so x > 3 does not answer it.
    interval = _interval_of_inequality(right)
    if interval != right:
        left, right = _interval_of_inequality(left), interval
    if left == right:
        return True
    left = _align_numbers(left, right)
    if left == right:
        return True
    if _is_words(left) and _is_words(right):
        # Text answers ("Monday") compare without case; single letters do not.
        if left.lower() == right.lower():
            return True
    based = _compare_bases(left, right)
    if based is not None:
        return based
    left_value = _as_fraction(left)
    right_value = _as_fraction(right)
    # 1000,99 against 1000.99: a decimal comma, read only when the other side is one number.
    if left_value is None and right_value is not None:
        left_value = _decimal_comma(left)
    elif right_value is None and left_value is not None:
        right_value = _decimal_comma(right)
    if left_value is not None and right_value is not None:
        return _numbers_agree(left, left_value, right, right_value)
    return None


# A number with one comma that cannot be a thousands separator: 1000,99 / 1,22 / 0,111.
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")


def _decimal_comma(answer: str) -> Fraction | None:
    """The value of ``answer`` read with a decimal comma, when no other reading
    fits: ``1,000`` groups thousands and ``2,3`` may list two answers, so both
    stay None; ``1000,99``, ``1,22`` and ``0,111`` are decimals."""
    if not _DECIMAL_COMMA.fullmatch(answer) or len(answer) > MAX_FAST_DIGITS:
        return None
    whole, decimals = answer.lstrip("+-").split(",")
    thousands = len(decimals) == 3 and len(whole) <= 3 and not whole.startswith("0")
    if thousands or len(decimals) == 1:
        return None
    return Fraction(answer.replace(",", "."))


#: Decimal places from which any decimal counts as a rounded value (a computed
#: value printed to float precision), whatever the exact value.
MIN_ROUNDED_PLACES = 6
#: Significant digits a decimal needs to stand for a value it rounds: 0.3 is too coarse for 1/3.
MIN_ROUNDED_DIGITS = 2


def _terminates(value: Fraction) -> bool:
    """Whether ``value`` has a finite decimal expansion: no prime but 2 and 5 divides
    its reduced denominator."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def _rounded_places(decimal: str, exact: Fraction) -> int | None:
    """The decimal places of ``decimal`` when it is ``exact`` correctly rounded to
    them and has two significant digits or more; None otherwise (``0.66`` and
    ``0.3`` for 2/3 and 1/3: a cut, and too few digits to tell)."""
    if not _DECIMAL.fullmatch(decimal):
        return None
    whole, _, fraction_digits = decimal.lstrip("+-").partition(".")
    places = len(fraction_digits)
    if places == 0 or len((whole + fraction_digits).lstrip("0")) < MIN_ROUNDED_DIGITS:
        return None
    # Within half a unit of the last place.  A tie needs an exact value with a
    # finite expansion; there half-up and half-even differ and both are correct.
    if abs(Fraction(decimal) - exact) * 2 * 10**places <= 1:
        return places
    return None


def _numbers_agree(answer: str, answer_value: Fraction, reference: str, value: Fraction) -> bool:
    """Whether the answer's number (spelled ``answer``) states the reference's.

    Equal values agree.  A decimal answer agrees with a reference value it
    correctly rounds when rounding was unavoidable (the value has no finite
    decimal expansion, so any decimal is rounded) or the decimal has six
    places or more.  A reference decimal of six places or more agrees with
    the exact value it rounds (``0.083333`` against ``\\frac{1}{12}``).
    """
    if answer_value == value:
        return True
    places = _rounded_places(answer, value)
    if places is not None and (places >= MIN_ROUNDED_PLACES or not _terminates(value)):
        return True
    places = _rounded_places(reference, answer_value)
    return places is not None and places >= MIN_ROUNDED_PLACES


_MATRIX = re.compile(
    r"\\begin\{(?P<kind>[pbBvV]?matrix|smallmatrix)\}(?P<body>.*)\\end\{(?P=kind)\}", re.DOTALL
)
# What separates the parts of a list, set or union of intervals, and the cells of a matrix.
_PART_SEPARATORS = (",", "\\cup")
_CELL_SEPARATORS = ("&", "\\\\")


def _split_top_level(text: str, start: int, end: int, separators: tuple[str, ...]) -> list:
    """The ``(start, end)`` spans of ``text[start:end]`` between separators outside brackets."""
    spans, depth, index, begin = [], 0, start, start
    while index < end:
        if depth == 0:
            separator = next((s for s in separators if text.startswith(s, index, end)), None)
            if separator is not None and not (
                separator[-1].isalpha() and text[index + len(separator) : end][:1].isalpha()
            ):
                spans.append((begin, index))
                index += len(separator)
                begin = index
                continue
        character = text[index]
        if character in "([{":
            depth += 1
        elif character in ")]}":
            depth -= 1
        index += 1
    spans.append((begin, end))
    return spans


def _wrapped(text: str, start: int, end: int) -> bool:
    """Whether one bracket pair (``(...)``, ``[...)``, ``\\{...\\}``) encloses all of
    ``text[start:end]``."""
    depth = 0
    for index in range(start, end):
        character = text[index]
        if character in "([{":
            depth += 1
        elif character in ")]}":
            depth -= 1
            if depth == 0:
                return index == end - 1
    return False


def _number_parts(answer: str) -> list[tuple[int, int, Fraction]]:
    """``(start, end, value)`` of each plain number that is a whole part of ``answer``:
    the whole answer, an entry of a list, tuple, interval, set or union, a matrix cell,
    at any depth.  A number inside an expression (``2(0.33)``, ``f(0.33)``,
    ``\\sqrt[3]{2}``) is no part."""
    found = []
    pending = [(0, len(answer))]
    while pending:
        start, end = pending.pop()
        while start < end and answer[start].isspace():
            start += 1
        while end > start and answer[end - 1].isspace():
            end -= 1
        if start == end:
            continue
        parts = _split_top_level(answer, start, end, _PART_SEPARATORS)
        if len(parts) > 1:
            pending += parts
            continue
        value = _as_fraction(answer[start:end])
        if value is not None:
            found.append((start, end, value))
            continue
        opening = 2 if answer.startswith("\\{", start) else 1
        if answer[start] in "([" or opening == 2:
            if answer[end - 1] in ")]}" and _wrapped(answer, start, end):
                closing = 2 if answer[end - 2 : end] == "\\}" else 1
                pending.append((start + opening, end - closing))
            continue
        matrix = _MATRIX.fullmatch(answer, start, end)
        if matrix:
            pending += _split_top_level(
                answer, matrix.start("body"), matrix.end("body"), _CELL_SEPARATORS
            )
    return sorted(found)


def _align_numbers(answer: str, reference: str) -> str:
    """``answer`` with each plain number that is a whole part of it spelled as the
    reference's number it states (see `fast_equivalent` for when numbers agree).

    Entries of tuples, intervals, sets, lists, unions and matrix cells are parts,
    so a decimal rounded from the reference's fraction compares part by part,
    by string or by the symbolic check.  A decimal that rounds two different
    reference numbers takes the one in its own position, or stays.

    >>> _align_numbers("\\\\begin{pmatrix}0.33\\\\\\\\0.2\\\\end{pmatrix}",
    ...               "\\\\begin{pmatrix}\\\\frac{1}{3}\\\\\\\\\\\\frac{1}{5}\\\\end{pmatrix}")
    '\\\\begin{pmatrix}\\\\frac{1}{3}\\\\\\\\\\\\frac{1}{5}\\\\end{pmatrix}'
    >>> _align_numbers("(0.3, 0.66)", "(\\\\frac{1}{3}, \\\\frac{2}{3})")
    '(0.3, 0.66)'
    """
    if len(answer) > MAX_ANSWER_LENGTH or len(reference) > MAX_ANSWER_LENGTH:
        return answer
    references = [(reference[start:end], value) for start, end, value in _number_parts(reference)]
    if not references:
        return answer
    parts = _number_parts(answer)
    pieces, written = [], 0
    for index, (start, end, value) in enumerate(parts):
        spelling = answer[start:end]
        agreeing = [ref for ref in references if _numbers_agree(spelling, value, *ref)]
        exact = [text for text, reference_value in agreeing if reference_value == value]
        if exact:
            spelling = exact[0]
        elif len({reference_value for _, reference_value in agreeing}) == 1:
            spelling = agreeing[0][0]
        elif len(parts) == len(references) and references[index] in agreeing:
            spelling = references[index][0]
        pieces += [answer[written:start], spelling]
        written = end
    pieces.append(answer[written:])
    return "".join(pieces)


def _exponent_depth(text: str) -> int:
    """How deeply exponents nest: ``x^2`` is 1, ``2^{3^{4}}`` 2, ``9^9^9`` 3."""
    text = text.replace("**", "^")
    stack: list[int] = []  # the exponent depth outside each open brace
    depth = 0  # the exponent depth at the current position
    chain = 0  # the depth of an exponent that ends right here (for 9^9^9)
    deepest = 0
    pending: int | None = None  # the depth of a "^" waiting for its argument
    index = 0
    length = len(text)
    while index < length:
        character = text[index]
        if character == "^":
            level = max(depth, chain) + 1
            deepest = max(deepest, level)
            pending = level
            chain = 0
            index += 1
            continue
        if character == "{":
            stack.append(depth)
            if pending is not None:
                depth = pending
            pending = None
            chain = 0
        elif character == "}":
            inner = depth
            depth = stack.pop() if stack else 0
            chain = inner if inner > depth else 0
        elif pending is not None and not character.isspace():
            # A bare argument: one character or one \command.
            if character == "\\":
                command = re.match(r"\\[A-Za-z]+", text[index:])
                index += len(command.group(0)) if command else 2
            else:
                index += 1
            chain = pending
            pending = None
            continue
        elif not character.isspace():
            chain = 0
        index += 1
    return deepest


def _rejection(extracted: str) -> str | None:
    """Why an extracted answer is too absurd to hand to sympy, or None."""
    if len(extracted) > MAX_ANSWER_LENGTH:
        return f"answer too long to check ({len(extracted)} characters > {MAX_ANSWER_LENGTH})"
    if "^" in extracted or "**" in extracted:
        depth = _exponent_depth(extracted)
        if depth > MAX_EXPONENT_DEPTH:
            return f"exponent tower too deep to check (depth {depth} > {MAX_EXPONENT_DEPTH})"
    return None


# ---------------------------------------------------------------------------
# The math-verify worker process
# ---------------------------------------------------------------------------


class EquivalenceCheckError(Exception):
    """An equivalence check that could not be completed (timeout, rejected input, crash).

    A verifier turns it into an ``incorrect`` verdict: a check we could not
    complete must never count as correct.
    """


def _wrap_for_math_verify(answer: str) -> str:
    # math-verify's LaTeX extraction looks for math delimiters.
    return "$" + answer.replace("$", "") + "$"


def _worker_main(arguments: list[str]) -> None:
    """Entry of the worker process: answer ``(extracted, reference)`` tasks until EOF.

    ``arguments`` are the socket's file descriptor and the memory limit in
    bytes (0 for none).
    """

    connection = Connection(int(arguments[0]))
    memory_limit = int(arguments[1])
    # Ctrl-C belongs to the parent, which ends this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from math_verify import parse, verify

        # The parent enforces the time bound, so math-verify's own (signal
        # based) timeouts are off; its warning about that is noise here.
        logging.getLogger("math_verify").setLevel(logging.ERROR)
    except Exception as error:  # reported to the parent
        connection.send(("failed", f"cannot import math_verify: {error}"))
        return
    if memory_limit > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        except (ImportError, ValueError, OSError):
            pass  # no limit available here; the time bound still holds

    @functools.lru_cache(maxsize=256)
    def parse_reference(reference: str) -> list:
        # The same reference is checked against many completions.
        return parse(_wrap_for_math_verify(reference), parsing_timeout=None)

    def check(extracted: str, reference: str) -> bool | None:
        gold = parse_reference(reference)
        if not gold:
            return None
        target = parse(_wrap_for_math_verify(extracted), parsing_timeout=None)
        if not target:
            return False
        return bool(verify(gold, target, timeout_seconds=None))

    connection.send(("ready", None))
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        extracted, reference = task
        try:
            reply = ("ok", check(extracted, reference))
        except MemoryError:
            reply = ("error", "equivalence check ran out of memory")
        except RecursionError:
            reply = ("error", "equivalence check recursed too deeply")
        except Exception as error:  # reported to the parent
            reply = ("error", f"equivalence check failed: {type(error).__name__}: {error}")
        try:
            connection.send(reply)
        except (OSError, ValueError):
            return


# The worker is a fresh interpreter started with subprocess rather than
# multiprocessing's "spawn": spawn re-imports the parent's __main__ script,
# which breaks (and re-runs) user scripts without an `if __name__` guard.
# Like spawn, and unlike fork, it copies no locks held by the parent's threads.
_WORKER_BOOTSTRAP = (
    "import sys; from prmsynth.verify._math import _worker_main; _worker_main(sys.argv[1:])"
)


def _end_process(process: Any, connection: Any) -> None:
    """Close the connection and end the worker: terminate, then kill."""
    if connection is not None:
        try:
            connection.close()
        except OSError:
            pass
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                pass  # killed but not yet reaped; nothing more to do


class _Worker:
    """One math-verify worker process, started lazily and replaced after a timeout.

    Thread-safe: a lock serializes its checks.  ``close()`` ends the process;
    the next check starts a new one.  Pickling keeps only the settings.
    """

    def __init__(
        self, memory_limit: int | None = DEFAULT_MEMORY_LIMIT, startup_timeout: float = 120.0
    ):
        self.memory_limit = memory_limit
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Any = None
        self._finalizer: Any = None

    def __getstate__(self) -> dict:
        return {"memory_limit": self.memory_limit, "startup_timeout": self.startup_timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def running(self) -> bool:
        """Whether a worker process is alive now."""
        return self._process is not None and self._process.poll() is None

    def _start(self) -> None:
        parent_socket, child_socket = socket.socketpair()
        environment = dict(os.environ)
        # The worker imports this package from where the parent found it.
        package_root = str(Path(__file__).resolve().parent.parent)
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (package_root, environment.get("PYTHONPATH")) if part
        )
        try:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter, no shell
                [
                    sys.executable,
                    "-c",
                    _WORKER_BOOTSTRAP,
                    str(child_socket.fileno()),
                    str(self.memory_limit or 0),
                ],
                pass_fds=(child_socket.fileno(),),
                stdin=subprocess.DEVNULL,
                # Never write into the parent's stdout (the CLI streams JSONL there).
                stdout=subprocess.DEVNULL,
                env=environment,
            )
        except OSError as error:
            parent_socket.close()
            raise EquivalenceCheckError(f"cannot start the equivalence worker: {error}") from error
        finally:
            child_socket.close()
        connection = Connection(parent_socket.detach())
        self._process, self._connection = process, connection
        # Ends the worker when the pool is garbage collected or at exit.
        self._finalizer = weakref.finalize(self, _end_process, process, connection)
        # Imports take a while; that time must not count against a check.
        if not connection.poll(self.startup_timeout):
            self._stop()
            raise EquivalenceCheckError("equivalence worker did not start in time")
        try:
            status, message = connection.recv()
        except (EOFError, OSError) as error:
            self._stop()
            raise EquivalenceCheckError("equivalence worker died while starting") from error
        if status != "ready":
            self._stop()
            raise EquivalenceCheckError(str(message))

    def _stop(self) -> None:
        self._process = self._connection = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def check(self, extracted: str, reference: str, timeout: float) -> bool | None:
        """math-verify's verdict on the two answers; raises EquivalenceCheckError."""
        with self._lock:
            if not self.running:
                self._stop()
                self._start()
            connection = self._connection
            try:
                connection.send((extracted, reference))
                finished = connection.poll(timeout)
            except (OSError, ValueError) as error:
                self._stop()
                raise EquivalenceCheckError(f"equivalence worker failed: {error}") from error
            if not finished:
                # A hang in C code (huge powers) cannot be interrupted: end the worker.
                self._stop()
                raise EquivalenceCheckError(f"equivalence check timed out after {timeout:g} s")
            try:
                status, value = connection.recv()
            except (EOFError, OSError) as error:
                self._stop()
                raise EquivalenceCheckError("equivalence worker died during the check") from error
        if status == "ok":
            return value
        raise EquivalenceCheckError(str(value))

    def close(self) -> None:
        """End the worker process, if any; a later check starts a new one."""
        with self._lock:
            if self.running:
                try:
                    # A polite request first, so the worker exits on its own.
                    self._connection.send(None)
                    self._process.wait(0.5)
                except Exception:  # noqa: S110 - _stop terminates it anyway
                    pass
            self._stop()


def default_checker_processes() -> int:
    """One checker process per core this process may run on."""

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class _WorkerPool:
    """Up to ``size`` math-verify worker processes (default: one per core).

    A check takes an idle worker, so checks from different threads run in
    parallel and a pathological answer costs only its own worker its timeout.
    Workers start on demand, the most recently used first, so a light load
    keeps one process.  Thread-safe; pickling keeps only the settings.
    """

    def __init__(
        self,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        startup_timeout: float = 120.0,
        size: int | None = None,
    ):

        self.memory_limit = memory_limit
        self.startup_timeout = startup_timeout
        self.size = size or default_checker_processes()
        self._workers = [
            _Worker(memory_limit=memory_limit, startup_timeout=startup_timeout)
            for _ in range(self.size)
        ]
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        for worker in reversed(self._workers):
            self._idle.put(worker)

    def __getstate__(self) -> dict:
        return {
            "memory_limit": self.memory_limit,
            "startup_timeout": self.startup_timeout,
            "size": self.size,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def running(self) -> bool:
        """Whether any worker process is alive now."""
        return any(worker.running for worker in self._workers)

    @property
    def n_running(self) -> int:
        return sum(worker.running for worker in self._workers)

    def check(self, extracted: str, reference: str, timeout: float) -> bool | None:
        """math-verify's verdict on the two answers; raises EquivalenceCheckError."""
        worker = self._idle.get()
        try:
            return worker.check(extracted, reference, timeout)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """End every worker process; a later check starts a new one."""
        for worker in self._workers:
            worker.close()


@attrs.frozen(kw_only=True, eq=False)
class MathEquivalence:
    """Equivalence of two math answers: exact fast path, then math-verify in a worker.

    Call it as ``equivalence(extracted, reference, timeout=2.0)``: True or
    False, or None when the reference itself does not parse.  Plain numbers
    and spellings that normalize alike are decided in-process (see
    `fast_equivalent`); the rest (expressions, tuples, intervals,
    sets) goes to math-verify in worker processes (``processes`` of them at
    most, default one per core, started as concurrent checks need them); a
    worker is killed when its check overruns ``timeout`` and replaced on the
    next call, so one pathological answer costs only its own check.  Workers
    run under a memory limit (``memory_limit`` bytes, None for none).
    Absurd answers (longer than 1,000 characters, exponent towers deeper than
    2) are refused before sympy.  Checks that cannot complete raise
    `EquivalenceCheckError`.  Thread-safe; ``close()`` ends the workers.

    >>> equivalence = MathEquivalence()
    >>> equivalence("\\\\frac{1}{2}", "0.5", timeout=2.0)
    True
    >>> equivalence.close()
    """

    memory_limit: int | None = DEFAULT_MEMORY_LIMIT
    processes: int | None = None
    _pool: _WorkerPool = attrs.field(init=False, repr=False)

    @_pool.default
    def _make_pool(self) -> _WorkerPool:
        return _WorkerPool(memory_limit=self.memory_limit, size=self.processes)

    def __call__(
        self, extracted: str, reference: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> bool | None:
        if not normalize_answer(reference):
            return None
        rejection = _rejection(extracted)
        if rejection is not None:
            raise EquivalenceCheckError(rejection)
        decided = fast_equivalent(extracted, reference)
        if decided is not None:
            return decided
        reference_value = _normalize_for_math_verify(reference)
        extracted_value = _normalize_for_math_verify(extracted)
        if "=" in reference_value or "=" in extracted_value:
            # Against an equation (2x+4y-3=0) the whole of y = -x/2 + 3/4 is compared;
            # an equation answer (2y = 4x + 6) against y = 2x + 3 too.
            reference_value = _normalize_for_math_verify(reference, keep_equation=True)
            extracted_value = _normalize_for_math_verify(extracted, keep_equation=True)
        # Rounded decimals that are parts (0.33 in a matrix for 1/3) take the reference's spelling.
        extracted_value = _align_numbers(extracted_value, reference_value)
        return self._pool.check(extracted_value, reference_value, timeout)

    def close(self) -> None:
        """End the worker process; the object stays usable."""
        self._pool.close()

    def __enter__(self) -> MathEquivalence:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _normalize_for_math_verify(answer: str, *, keep_equation: bool = False) -> str:
    """The spelling handed to math-verify: normalized, but with spaces kept."""
    answer = _strip_math_wrappers(answer)
    answer = _unwrap_text(answer)
    for pattern, replacement in _REMOVED_TOKENS:
        answer = pattern.sub(replacement, answer)
    answer = _drop_units(answer.strip())
    if not keep_equation:
        # Inequalities stay relations here: sympy compares -x > -1 with x < 1.
        answer = _right_hand_side(answer)
    # Only a lone number has thousands separators: in (1,100) or {2,345} the comma
    # separates entries.
    if _LONE_THOUSANDS.fullmatch(answer.strip()):
        answer = answer.replace(",", "")
    choice = _CHOICE_LETTER.match(answer.strip())
    if choice:
        return choice.group("letter")
    return answer.strip()


def answers_equivalent(
    extracted: str, reference: str, *, timeout: float = DEFAULT_TIMEOUT
) -> bool | None:
    """One-off equivalence check; None when the reference does not parse.

    Uses `MathEquivalence`, starting (and ending) a worker process only
    when the fast path cannot decide.  For many checks keep one
    `MathEquivalence` or [`MathAnswerVerifier`][prmsynth.MathAnswerVerifier] instead, which
    keeps its worker.  Raises `EquivalenceCheckError` when the check
    cannot complete.

    >>> answers_equivalent("1,000", "1000")
    True
    >>> answers_equivalent("\\\\$324", "325")
    False
    """
    with MathEquivalence() as equivalence:
        return equivalence(extracted, reference, timeout=timeout)


# ---------------------------------------------------------------------------
# Verifiers
# ---------------------------------------------------------------------------


def reference_answer(reference: str) -> str:
    """The answer a reference states, read as carefully as a response's: escape
    damage repaired (see `repair_escapes`) and, when the reference is a worked
    solution, its final boxed answer.

    >>> reference_answer("So the sum lies between $\\\\boxed{12 \\\\text{ and } 13}$.")
    '12 \\\\text{ and } 13'
    >>> reference_answer("\\\\frac{1}{2}")
    '\\\\frac{1}{2}'
    """
    reference = repair_escapes(reference)
    if _BOX_COMMAND.search(reference):
        boxed = _final_boxed(reference)
        if boxed is not None and boxed[0]:
            return boxed[0]
    return reference


def value_side(answer: str, reference: str) -> str:
    """The value an answer states, as the reference needs it: ``\\sin A = \\frac35``
    against the reference ``\\frac35`` is ``\\frac35``; against an equation
    (``x^2 + y^2 = 25``) the whole equation is compared.

    >>> value_side("AB = 2\\\\sqrt{5}", "2\\\\sqrt5")
    '2\\\\sqrt{5}'
    >>> value_side("5x - 7y + 4 = 0", "5x-7y+4=0")
    '5x - 7y + 4 = 0'
    """
    if "=" in reference or answer.count("=") == 0:
        return answer
    if "!=" in answer or any(symbol in answer for symbol in _RELATIONS):
        return answer
    values = _right_hand_side(answer)
    if "," in answer and "=" not in values:
        return values  # y_1 = 2x, y_2 = 3x: the value of each part
    value = answer.rsplit("=", 1)[1].strip()
    return value or answer


_TRUNCATED = Verdict(status="unparseable", reason="truncated: the completion hit the token limit")
_NO_ANSWER = Verdict(status="unparseable", reason="no answer found")


_check_timeout = attrs.validators.gt(0)


@attrs.frozen(kw_only=True, eq=False)
class MathAnswerVerifier(StepVerifier):
    """The default verifier: extract the final answer, check it against the reference.

    ``extractor`` reads the answer (default [`extract_answer`][prmsynth.extract_answer]);
    ``equivalence`` compares it (default `MathEquivalence`, whose
    worker process this verifier owns and ``close()`` ends); ``timeout``
    bounds one symbolic check in seconds.  A truncated completion
    (``finish_reason="length"``), a response without an answer and a
    reference that does not parse give ``unparseable``; a check that cannot
    complete gives ``incorrect`` with the reason.  ``verify`` never raises.

    Numbers compare exactly, with one exception: a decimal of two significant
    digits or more that is a fraction of the reference correctly rounded
    counts when the fraction has no finite decimal expansion (``0.33`` or
    ``0.333`` for 1/3, also as an entry of a tuple, interval, set or matrix),
    or when it has six places or more; a cut decimal (``0.66`` for 2/3) does
    not, nor a rounded one for an exact decimal (``2.3`` for 2.25).

    >>> verifier = MathAnswerVerifier()
    >>> verifier.verify("3 * 24 = 72, so the answer is 72.", "72")
    Verdict(status='correct', extracted_answer='72', reason=None)
    >>> verifier.verify("The answer is \\\\boxed{73}", "72").status
    'incorrect'
    >>> verifier.verify("The answer is 72", "72", finish_reason="length").status
    'unparseable'
    >>> verifier.close()
    """

    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=_check_timeout)
    extractor: Callable[[str], str | None] = extract_answer
    equivalence: Callable[..., bool | None] = attrs.field(factory=MathEquivalence)

    def verify(self, response: str, reference: str, *, finish_reason: str | None = None) -> Verdict:
        """Check one response against ``reference``; never raises."""
        if finish_reason == "length":
            return _TRUNCATED
        reference = reference_answer(str(reference))
        try:
            extracted = self.extractor(response)
        except Exception as error:  # a verdict, never an exception
            return Verdict(
                status="unparseable", reason=f"answer extraction failed: {_describe(error)}"
            )
        if extracted is None or not str(extracted).strip():
            return _NO_ANSWER
        extracted = value_side(str(extracted), reference)
        try:
            equivalent = self.equivalence(extracted, reference, timeout=self.timeout)
        except EquivalenceCheckError as error:
            return Verdict(status="incorrect", extracted_answer=extracted, reason=str(error))
        except Exception as error:  # a verdict, never an exception
            return Verdict(
                status="incorrect",
                extracted_answer=extracted,
                reason=f"equivalence check failed: {_describe(error)}",
            )
        if equivalent is None:
            return Verdict(
                status="unparseable", extracted_answer=extracted, reason="reference does not parse"
            )
        return Verdict(status="correct" if equivalent else "incorrect", extracted_answer=extracted)

    def close(self) -> None:
        """End the equivalence worker process; the verifier stays usable."""
        close = getattr(self.equivalence, "close", None)
        if callable(close):
            close()


@attrs.frozen(kw_only=True, eq=False)
class ExactMatchVerifier(StepVerifier):
    """Normalized string or exact numeric equality, without sympy.

    For plain-text answers (names, words, letters) or when symbolic checking
    is unwanted; uses the same extraction and normalization as
    [`MathAnswerVerifier`][prmsynth.MathAnswerVerifier].

    >>> ExactMatchVerifier().verify("The answer is \\\\text{Monday}.", "monday").status
    'correct'
    >>> ExactMatchVerifier().verify("#### 1,000", "1000.0").status
    'correct'
    """

    extractor: Callable[[str], str | None] = extract_answer

    def verify(self, response: str, reference: str, *, finish_reason: str | None = None) -> Verdict:
        """Check one response against ``reference``; never raises."""
        if finish_reason == "length":
            return _TRUNCATED
        try:
            reference = reference_answer(str(reference))
            extracted = self.extractor(response)
            if extracted is None or not str(extracted).strip():
                return _NO_ANSWER
            if not normalize_answer(reference):
                return Verdict(
                    status="unparseable",
                    extracted_answer=extracted,
                    reason="reference does not parse",
                )
            equivalent = fast_equivalent(extracted, reference)
        except Exception as error:  # a verdict, never an exception
            return Verdict(status="unparseable", reason=f"check failed: {_describe(error)}")
        return Verdict(status="correct" if equivalent else "incorrect", extracted_answer=extracted)


@attrs.frozen(eq=False)
class FunctionVerifier(StepVerifier):
    """Wraps a user function ``(response, reference) -> bool`` as a verifier.

    Exceptions raised by the function become ``unparseable`` verdicts with
    the error as reason; a truncated completion is ``unparseable`` without
    calling it.

    >>> verifier = FunctionVerifier(lambda response, reference: reference in response)
    >>> verifier.verify("It is Paris.", "Paris").status
    'correct'
    >>> FunctionVerifier(lambda response, reference: 1 / 0).verify("x", "y").reason
    'check failed: ZeroDivisionError: division by zero'
    """

    function: Callable[[str, str], bool]

    def verify(self, response: str, reference: str, *, finish_reason: str | None = None) -> Verdict:
        """Check one response against ``reference``; never raises."""
        if finish_reason == "length":
            return _TRUNCATED
        try:
            result = bool(self.function(response, reference))
        except Exception as error:  # a verdict, never an exception
            return Verdict(status="unparseable", reason=f"check failed: {_describe(error)}")
        return Verdict(status="correct" if result else "incorrect")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
