"""Answer equivalence: an exact fast path for numbers and common LaTeX spellings,
then math-verify (sympy) in a worker process with a hard time bound.

>>> fast_equivalent("\\\\frac{1}{2}", "0.5")
True
"""

from __future__ import annotations

import re
from fractions import Fraction

import attrs

from prmsynth.verify._normalize import (
    interval_of_inequality,
    normalize_answer,
    normalize_for_math_verify,
)
from prmsynth.verify._pool import DEFAULT_MEMORY_LIMIT, EquivalenceCheckError, WorkerPool

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER_LENGTH",
    "MAX_EXPONENT_DEPTH",
    "MAX_FAST_DIGITS",
    "MIN_ROUNDED_DIGITS",
    "MIN_ROUNDED_PLACES",
    "MathEquivalence",
    "answers_equivalent",
    "fast_equivalent",
]


# Longer extracted answers are rejected before they reach sympy.
MAX_ANSWER_LENGTH = 1_000
# Exponent towers deeper than this (9^{9^{9}}) are rejected before sympy.
MAX_EXPONENT_DEPTH = 2
# Plain numbers with more digits than this skip the exact fast path.
MAX_FAST_DIGITS = 200
DEFAULT_TIMEOUT = 2.0
_BASED_NUMERAL = re.compile(r"(?P<digits>[0-9][0-9A-Za-z]*)_\{?(?P<base>\d{1,2})\}?")
_INTEGER = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)")
_SLASH_FRACTION = re.compile(r"(?P<sign>[-+]?)\(?(?P<top>\d+)\)?/\(?(?P<bottom>\d+)\)?")
_LATEX_FRACTION = re.compile(
    r"(?P<sign>[-+]?)\\frac(?:\{(?P<top>[-+]?\d+(?:\.\d+)?)\}|(?P<top_digit>\d))"
    r"(?:\{(?P<bottom>[-+]?\d+(?:\.\d+)?)\}|(?P<bottom_digit>\d))"
)


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
    interval = interval_of_inequality(right)
    if interval != right:
        left, right = interval_of_inequality(left), interval
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
    _pool: WorkerPool = attrs.field(init=False, repr=False)

    @_pool.default
    def _make_pool(self) -> WorkerPool:
        return WorkerPool(memory_limit=self.memory_limit, size=self.processes)

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
        reference_value = normalize_for_math_verify(reference)
        extracted_value = normalize_for_math_verify(extracted)
        if "=" in reference_value or "=" in extracted_value:
            # Against an equation (2x+4y-3=0) the whole of y = -x/2 + 3/4 is compared;
            # an equation answer (2y = 4x + 6) against y = 2x + 3 too.
            reference_value = normalize_for_math_verify(reference, keep_equation=True)
            extracted_value = normalize_for_math_verify(extracted, keep_equation=True)
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
