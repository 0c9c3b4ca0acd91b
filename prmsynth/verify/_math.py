"""Answer checking: did a completion reach the reference answer?

Every Monte Carlo label counts completions that reached the right answer, so
this check bounds the quality of the whole data set.  It has three
replaceable parts, each in a module of its own:

* [`extract_answer`][prmsynth.extract_answer] reads the final answer out of a model's text
  (last ``\\boxed{}``, "The answer is ...", GSM8K ``#### N``, ...: the ordered
  rules of ``prmsynth/verify/_extract.py``);
* `MathEquivalence` decides whether two answers are the same: a fast,
  exact path for plain numbers and common LaTeX spellings (``_normalize.py``,
  ``_equivalence.py``), then math-verify (sympy) for everything else, in a
  worker process with a hard time bound (``_pool.py``);
* [`MathAnswerVerifier`][prmsynth.MathAnswerVerifier] (here) ties both together behind the
  [`StepVerifier`][prmsynth.StepVerifier] interface and turns every
  outcome, errors included, into a [`Verdict`][prmsynth.Verdict].

[`ExactMatchVerifier`][prmsynth.ExactMatchVerifier] (normalized strings and numbers, no sympy) and
[`FunctionVerifier`][prmsynth.FunctionVerifier] (any user function) share the same interface.
The rest of prmsynth imports the answer check from this module, so ``__all__``
names the parts too.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from prmsynth._interfaces import StepVerifier
from prmsynth._values import Verdict
from prmsynth.verify._equivalence import (
    DEFAULT_TIMEOUT,
    MAX_ANSWER_LENGTH,
    MathEquivalence,
    answers_equivalent,
    fast_equivalent,
)
from prmsynth.verify._extract import BOX_COMMAND, extract_answer, final_boxed
from prmsynth.verify._latex import repair_escapes
from prmsynth.verify._normalize import RELATIONS, normalize_answer, right_hand_side
from prmsynth.verify._pool import EquivalenceCheckError, default_checker_processes

__all__ = [
    "MAX_ANSWER_LENGTH",
    "EquivalenceCheckError",
    "ExactMatchVerifier",
    "FunctionVerifier",
    "MathAnswerVerifier",
    "MathEquivalence",
    "answers_equivalent",
    "default_checker_processes",
    "extract_answer",
    "fast_equivalent",
    "normalize_answer",
    "reference_answer",
    "value_side",
]


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
    if BOX_COMMAND.search(reference):
        boxed = final_boxed(reference)
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
    if "!=" in answer or any(symbol in answer for symbol in RELATIONS):
        return answer
    values = right_hand_side(answer)
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
