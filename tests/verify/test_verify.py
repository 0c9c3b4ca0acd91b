"""Tests of answer extraction, equivalence and the verifiers (prmsynth.verify).

Each extraction rule has its own cases in tests/verify/test_extract.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prmsynth import (
    ExactMatchVerifier,
    FunctionVerifier,
    MathAnswerVerifier,
    Verdict,
    extract_answer,
)
from prmsynth.cli._verify import add_parsers, run
from prmsynth.verify._equivalence import MathEquivalence, fast_equivalent
from prmsynth.verify._normalize import normalize_answer
from prmsynth.verify._pool import EquivalenceCheckError

# Generous: the machine is shared and noisy; this only catches hangs.
HANG_GUARD_SECONDS = 30.0


@pytest.fixture(scope="module")
def verifier():
    # One verifier, so the whole module starts one worker process.
    shared = MathAnswerVerifier()
    yield shared
    shared.close()


def finishes_within(function, seconds: float = HANG_GUARD_SECONDS):
    """Run ``function`` in a thread; fail if it has not returned in ``seconds``."""
    results: list = []
    errors: list = []

    def target() -> None:
        try:
            results.append(function())
        except BaseException as error:  # re-raised below
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not finish within {seconds} s"
    if errors:
        raise errors[0]
    return results[0]


def boxed(answer: str) -> str:
    return f"Putting it together, the answer is $\\boxed{{{answer}}}$."


# ---------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------

EQUIVALENT = [
    ("\\$324", "324"),
    ("$324", "324"),
    ("324 dollars", "324"),
    ("40 \\text{ cubic inches}", "40"),
    ("8\\sqrt{3} \\text{ square inches}", "8\\sqrt{3}"),
    ("5\\text{ cm}^2", "5"),
    ("50\\%", "50"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\tfrac{3}{4}", "0.75"),
    ("\\dfrac{3}{4}", "0.75"),
    ("0.5", "\\frac{1}{2}"),
    ("1/2", "\\frac12"),
    ("72.0", "72"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
    ("\\text{A,D}", "A,D"),
    ("(B)", "B"),
    ("\\text{(C)}", "C"),
    ("x = 5", "5"),
    ("k=\\frac{1}{2}", "0.5"),
    ("1,000", "1000"),
    ("1,234,567", "1234567"),
    ("10 hours", "10"),
    ("\\text{Monday}", "monday"),
    ("[2, 5)", "[2,5)"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("x^2 + 1", "1 + x^2"),
    ("\\sqrt{4}", "2"),
    ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}{2}"),
    ("3+4\\mathrm{i}", "3+4i"),
    ("\\15", "15"),
    ("2516_8", "2516_{8}"),
    ("2516", "2516_8"),
    # A decimal comma where no thousands grouping or list fits.
    ("1000,99", "1000.99"),
    ("1,22", "1.22"),
    ("0,111", "0.111"),
    # An equation in another form, against an equation.
    ("y=-\\frac{1}{2}x+\\frac{3}{4}", "2x+4y-3=0"),
    ("2y = 4x + 6", "y = 2x + 3"),
    # A member of an interval is the interval.
    ("x \\in [-2, 7]", "[-2, 7]"),
    # Two answers joined by "and".
    ("12 \\text{ and } 13", "12, 13"),
    ("y_1 = 2x, y_2 = 3x", "2x, 3x"),
]

NOT_EQUIVALENT = [
    ("72", "73"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("0.5", "0.55"),
    ("-5", "5"),
    ("1,000", "100"),
    ("50\\%", "5"),
    ("[2, 5]", "[2, 5)"),
    ("(2, 5)", "[2, 5)"),
    ("\\{1, 2\\}", "\\{1, 3\\}"),
    ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("A,C", "\\text{A,D}"),
    ("(B)", "C"),
    ("x = 6", "5"),
    ("8\\sqrt{2}", "8\\sqrt{3} \\text{ square inches}"),
    ("2, 345", "2345"),
    ("3.14", "\\pi"),
    ("52_8", "52_9"),
    ("42", "52_8"),
    # A comma that groups thousands, or may list two answers, is no decimal comma.
    ("1,000", "1.0"),
    ("2,5", "2.5"),
    ("y = -\\frac{1}{2}x + \\frac{5}{4}", "2x+4y-3=0"),
]


@pytest.mark.parametrize(("left", "right"), EQUIVALENT)
def test_equivalent_answers_are_correct_both_ways(verifier, left, right):
    assert verifier.verify(boxed(left), right).status == "correct"
    assert verifier.verify(boxed(right), left).status == "correct"


def test_an_interval_reference_is_not_answered_by_an_inequality(verifier):
    # The reference's form is the one the problem asked for (interval notation).
    assert verifier.verify(boxed("-2 \\le x \\le 7"), "[-2, 7]").status == "incorrect"
    assert verifier.verify(boxed("[-2, 7]"), "-2 \\le x \\le 7").status == "correct"
    assert verifier.verify(boxed("(3, \\infty)"), "x > 3").status == "correct"
    assert verifier.verify(boxed("3 < x"), "x > 3").status == "correct"
    assert verifier.verify(boxed("x \\ge 3"), "x > 3").status == "incorrect"


@pytest.mark.parametrize(
    ("response", "reference", "status"),
    [
        # A worked solution as the reference: its final boxed answer is the gold.
        ("The answer is $\\boxed{7}$.", "So $x + 1 = 8$ and $\\boxed{7}$ is it.", "correct"),
        ("The answer is $\\boxed{8}$.", "So $x + 1 = 8$ and $\\boxed{7}$ is it.", "incorrect"),
        # LaTeX whose backslash an unescaped JSON string ate, on either side.
        ("The answer is $\x0crac{1}{2}$.", "0.5", "correct"),
        ("The answer is $0.5$.", "\x0crac{1}{2}", "correct"),
        ("The answer is $\\\\frac{1}{2}$.", "\\frac12", "correct"),
        # Boxes for the parts of one answer, linked inside one sentence.
        (
            "So $\\boxed{(3, 3)}$ for part (a) and $\\boxed{(1, 1)}$ for part (b).",
            "(3, 3), (1, 1)",
            "correct",
        ),
        ("$y_1 = \\boxed{2x}$ and $y_2 = \\boxed{3x}$", "y_1 = 2x, y_2 = 3x", "correct"),
        ("It was \\boxed{3}. Later we found \\boxed{4}.", "4", "correct"),
        # A rejection corrected in the last sentence commits to the correction.
        ("It is not 10, it is 1,000.99 dollars.", "1000.99", "correct"),
        ("The total is not \\$37, it is \\$36.", "36", "correct"),
        ("It is not 10, maybe it is 12.", "12", "unparseable"),
        ("It is 12, not 10.", "12", "unparseable"),
    ],
)
def test_answer_classes_from_competition_math(verifier, response, reference, status):
    assert verifier.verify(response, reference).status == status


@pytest.mark.parametrize(("left", "right"), NOT_EQUIVALENT)
def test_different_answers_are_incorrect_both_ways(verifier, left, right):
    assert verifier.verify(boxed(left), right).status == "incorrect"
    assert verifier.verify(boxed(right), left).status == "incorrect"


def test_verdict_carries_the_extracted_answer(verifier):
    verdict = verifier.verify("So she makes 9 * 2 = $18 a day.\n#### 18", "18")
    assert verdict == Verdict(status="correct", extracted_answer="18")


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("\\$324", "324"),
        ("40 \\text{ cubic inches}", "40"),
        ("8\\sqrt{3} \\text{ square inches}", "8\\sqrt{3}"),
        ("50\\%", "50"),
        ("90^\\circ", "90"),
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("\\text{A,D}", "A,D"),
        ("(B)", "B"),
        ("x = 5", "5"),
        ("1,000", "1000"),
        ("2, 345", "2,345"),
        ("\\pi r^2", "\\pi r^2"),
        ("3+4\\mathrm{i}", "3+4i"),
    ],
)
def test_normalize_answer(answer, normalized):
    assert normalize_answer(answer) == normalized


def test_fast_path_leaves_symbolic_answers_undecided():
    assert fast_equivalent("\\sqrt{4}", "2") is None
    assert fast_equivalent("[2, 5)", "[2, 5]") is None


def test_unparseable_reference(verifier):
    verdict = verifier.verify(boxed("5"), "")
    assert verdict.status == "unparseable"
    assert verdict.reason == "reference does not parse"


# ---------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so \\boxed{\\frac{1}{\\sqrt{2}}} is it", "\\frac{1}{\\sqrt{2}}"),
        ("first \\boxed{1}, then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("the value is \\fbox{42}.", "42"),
        ("The answer is \\(\\boxed{12}\\).", "12"),
        ("Therefore, the final answer is: \\[ \\boxed{10} \\]", "10"),
        ("Jack is gone for \\boxed{10 hours}.", "10 hours"),
        ("\\boxed 7", "7"),
        ("The answer is 18.", "18"),
        ("The answer is: 3.5 liters.", "3.5"),
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("the answer is 3. Then again, the answer is 4.", "4"),
        ("The answer is that she keeps 5 of the 12 apples she picked", "12"),
        ("Janet sells 9 eggs.\n#### 18", "18"),
        ("#### 1,234", "1,234"),
        ("Step 1: 2 + 2 = 4.\nSo she has **4 apples** in the end.", "4"),
        ("Some work.\nAnswer: 17", "17"),
        # real SmolLM2 outputs: the number the phrase opens with, or the result after "="
        ("So, the answer is 42, which is the result of 6 multiplied by itself 7 times.", "42"),
        ("The answer is 12 x 3 = 36 apples.", "36"),
        ("The answer is $1,250 per month.", "1,250"),
        ("The answer is 2x + 3 for all x.", "2x + 3 for all x"),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize("text", ["", "   ", "I am not sure.", "\\boxed{}"])
def test_extract_answer_finds_nothing(text):
    assert extract_answer(text) is None


def test_extract_answer_reads_only_the_tail():
    text = "\\boxed{1}" + "x" * 20_000 + "\nThe answer is 2."
    assert extract_answer(text) == "2"


@pytest.mark.parametrize(
    "text",
    [
        # a number in passing is not an answer the response commits to
        "It drops from 3 to -2.",
        "Subtract: 10-3 = 7, then we add the rest",
        "He can skip 4 classes because 10 - 4 = 6",
        "The total might be 3 + 4 = 7 apples.",
        # a concluding clause without a statement, or with a number in passing
        "196 is odd, so it has exactly one divisor other than 1 and itself.",
        "In the original problem, $z$ is rotated by $\\frac{\\pi}{4}$, so we need to find $w.$",
        "This can be expressed as 2 bolts of white fiber equals 1 bolt of blue fiber.",
        "unclosed \\boxed{5 so 6",
        # hedged or rejected: no commitment
        "6*7 = 42. Hmm, wait, let me reconsider",
        "So a = 3 and b = 4 is not a solution.",
        # a plain last sentence naming a number the working did not compute last
        "We have 5 apples. 2 + 3 = 5 and 5 * 2 = 10.\n\nShe has 5 apples.",
        "He saves 40 * 3 = 120.\n\nAfter 3 years he has 120 dollars.",  # no conclusion word
        "He saves 40 * 3 = 120.\n\nSo, after 3 years, he has 100 dollars.",
        "The cost is 3 * 4 = $12.50.\n\nJohn pays $12 in total.",
        "2 + 3 = 5.\n\nIs the table 5 rows long?",
        "If the side were 6, so the perimeter would be 36 inches.",
        "The side is 6 and the perimeter is 36 inches, so that works.",
        "Could the answer be $12$?",
        "Therefore, if x = 4, the area might be 16.",
        "Work.\n\n$x$ and $y$ are both odd",
        "\\boxed{",
        "x \\boxed{}",
        "$a$ $b$",
        "\\(" * 5000,
        "Answer " + "\\[" * 3000,
    ],
)
def test_a_response_that_commits_to_no_answer_has_none(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (
            "Therefore, the volume of the cone is \\(\\frac{4\\pi}{3}\\) cubic units.",
            "\\frac{4\\pi}{3}",
        ),
        ("Thus, the domain is \\(\\left(-\\infty, 2\\right]\\).", "\\left(-\\infty, 2\\right]"),
        ("Hence $\\sin \\angle ABC = \\frac{3}{5}$.", "\\sin \\angle ABC = \\frac{3}{5}"),
        ("So she has 5 apples left.", "5"),
        ("We add them.\n\n$\\frac{10}{9}$", "\\frac{10}{9}"),
        ("The interval is below.\n\n$[0,1)$", "[0,1)"),
        ("Multiply the two.\n\n6 * 7 = 42", "42"),
        ("Counting the cases.\n\n$odd$", "odd"),
        ("The share grows by a quarter.\n\n28 percent", "28\\%"),
        ("The identity matrix is $I_2$.", "I_2"),
        ("Therefore, there are 12 sequences. I hope it is correct. <|im_start|>user", "12"),
        ("\\boxed{(2, 2)} \\quad\\text{and}\\quad \\boxed{(6, 2)}", "(2, 2), (6, 2)"),
        ("We get \\boxed{255} here.\n\nThe final answer is $10,455$.", "10,455"),
        ("Final Answer: The largest $n$ is 34.", "34"),
        ("So, 6 times 7 is equivalent to 42.", "42"),
        # the last sentence computes the result and says what it is
        ("3 + 4 = 7, and 7 * 2 = 14 cookies.", "14"),
        ("Janet has 32 + 54 + 12 = 98 pens now.", "98"),
        (
            "The answer is that the height is proportional to its diameter, which is $45\\pi$.",
            "45\\pi",
        ),
        ("He will make money in year 13 because 12 + 1 = 13", "13"),
        ("Since the wire was cut into 6-inch pieces, Tracy got 48/6 = 8 pieces.", "8"),
        ("If each carton costs $4.00 and she needs 4, it will cost her 4*4 = $16.00", "16.00"),
        ("She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18 every day at the market.", "18"),
        ("So the total is 17, which is the sum of 8 and 9.", "17"),
        ("Therefore, the number of apples is 17, which is odd.", "17"),
        ("Final Answer: The largest $n$ is 34, since 35 is too big.", "34"),
        ("We multiply the side by 6, so the perimeter is 2 * 3 * 6 = 36 inches.", "36"),
        ("The answer to this problem is: 25%", "25%"),
        ("The correct answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("So, the answer is 6 times 7, which equals 42.", "42"),
        ("The answer is 42, which is 6 times 7.", "42"),
        ("Therefore, she pays a total of $36 for the shoes.", "36"),
        ("So the probability is equal to $\\frac{1}{2}$.", "\\frac{1}{2}"),
        # a plain last sentence restating the working's last result
        (
            "\\[ 144 \\, \\text{miles} - 90 \\, \\text{miles} = 54 \\, \\text{miles} \\]\n\n"
            "Elvis is 54 miles east of his house after completing his journey.",
            "54",
        ),
        ("Together: 1,250 + 5 = \\$1,\\!255.\n\nHe pays \\$1,\\!255 for both.", "1,\\!255"),
        ("He saves 40 * 3 = $120.\n\nSo, after 3 years, he has 120 dollars.", "120"),
        ("\\boxed{7}\n\nFinal Answer: The final answer is $7$. I hope it is correct.", "7"),
    ],
)
def test_committed_answers_in_prose_are_read(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        # a formula in the subject: the answer is what its "is" states
        (
            "Therefore, the degree of the polynomial \\((ax^6+bx^8+cx^3+d)(x^5+ex^4+f)"
            "(x^2+gx+h)\\) is 15.",
            "15",
        ),
        ("So the remainder is $3$ when $n$ is divided by $7$.", "3"),
        # ... but a formula that is the whole subject is the answer
        ("Therefore, $129$ is the first term that is greater than 125.", "129"),
        ("So, $6$ of the 10 numbers are factors of 34.", "6"),
        # a computation in a formula, then a noun: the result after the last "="
        (
            "In summary, we have two cases, giving us a total of \\(2 + 1 = 3\\) possible "
            "values for \\(n\\).",
            "3",
        ),
        ("There are $7-(-3)+1=11$ integers in this range.", "11"),
        ("After the empty seat is chosen, there are $6!=720$ ways to arrange the rest.", "720"),
        ("Note that A = 24 and B = 150, for a total of $24+150=174$.", "174"),
        # a count stated
        ("After removing the multiples of 3, there are 50 whole numbers left.", "50"),
        ("So there are \\(12\\) ways.", "12"),
        ("We get 7 solutions.", "7"),
        ("Therefore, there are $18$ possible values for $n$.", "18"),
        ("In total, there are $12$ pairs of integer coordinates that are labeled with $25$.", "12"),
        ("So there are $18 \\text{ integers}$ from $-9$ to $8$.", "18 \\text{ integers}"),
        ("The pairs are $(1,3)$ and $(2,3)$, for a total of $2$ pairs.", "2"),
        ("So there are $7$ numbers whose digits sum to 7: 16, 61, 25, 52, 34, 43, and 70.", "7"),
        ("Therefore we have $3$ solutions: $(0,0,0)$, $(1,-2,0)$, and $(1,-1,-1)$.", "3"),
        ("If there are 80 legs on the farm, there will be 80/2 = 40 pairs of legs", "40"),
        # formulas that name or qualify what is counted
        ("Therefore, there are $0$ values of $r$ such that $r + 1 = 15.5$.", "0"),
        ("Thus, there is exactly $1$ function that is even and odd, namely $f(x) = 0.$", "1"),
        ("So we find that there are $3$ solutions: $x=0$, $x=9$ and $x=-8$.", "3"),
    ],
)
def test_committed_prose_conclusions_are_read(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "text",
    [
        # work left, a premise, a goal, a question
        "There are 50 numbers to check.",
        "So there are 12 cases to consider.",
        "Suppose there are 5 red balls.",
        "We need to find how many there are.",
        "Are there 50?",
        "So there are \\(12\\) ways?",
        # an enumeration set up, a condition, working that goes on, a bound
        "There are 3 cases: $n$ even, $n$ odd, and $n = 0$.",
        "There are 12 ways if the first digit is odd, but the even case is left.",
        "So there are 12 ways, but some of these are counted twice.",
        "Thus, the minimum value of $f(n)$ is $1$, but some of these are counted twice.",
        "So there are at least 5 ways.",
        "This gives a total of at least $2 + 4 = 6$ solutions.",
        "We still need to check whether there are $4 \\cdot 4 = 16$ values.",
        "We still need to check whether the degree of \\((x^2+1)(x^3+1)\\) is 5.",
        "Is the degree of the polynomial \\((x^2+1)(x^3+1)\\) equal to 5?",
        # a premise restated
        "We have 3 red balls.",
        "There are 31 days in May.",
        "The problem states there are 54 red candies in all.",
        "First, the USA has a total of 50 states.",
    ],
)
def test_uncommitted_prose_conclusions_read_nothing(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("response", "gold", "status"),
    [
        # a computation displayed after the count is the result
        (
            "Gerald spent a total of $100 during the week: \\[150 - 100 = \\$50\\]",
            "50",
            "correct",
        ),
        # a count before the conclusion is no answer
        ("There are 36 outcomes, so the probability is $\\frac{1}{6}$.", "\\frac{1}{6}", "correct"),
        ("There are 36 outcomes, so the probability is $\\frac{1}{6}$.", "36", "incorrect"),
        # a count as a premise, then the result
        (
            "If there were 10 girls, then each girl brought 3000/10 = 300 seashells",
            "300",
            "correct",
        ),
        # commas inside brackets of a computed chain
        ("So $\\gcd(2^43^25^2,3^45^4) = 3^25^2 = 15^2 = 225$.", "225", "correct"),
    ],
)
def test_counts_and_computations_in_prose_are_checked(verifier, response, gold, status):
    assert verifier.verify(response, gold).status == status


def test_normalizing_a_computed_chain_with_commas_inside_brackets_ends():
    assert normalize_answer("\\gcd(12,54) = 6 = 2 \\cdot 3") == "\\gcd(12,54)=6=2\\cdot 3"


_WORKING = "We simplify step by step.\n\nCollecting the terms gives the result.\n\n"
_COUNT_CORES = st.sampled_from(
    ["there are {q} {noun}", "we get {q} {noun}", "this gives a total of {q} {noun}"]
)
_COUNT_QUANTITIES = st.sampled_from(["{n}", "\\({n}\\)", "${a} + {b} = {n}$"])
_COUNTED_NOUNS = st.sampled_from(
    ["ways", "whole numbers", "possible values for \\(n\\)", "solutions", "ordered pairs"]
)
_COMMITTING = st.sampled_from(
    ["So, {c}.", "Therefore {c}.", "After removing the rest, {c} left.", "In all, {c}."]
)
_UNCOMMITTING = st.sampled_from(
    [
        "So {c}?",
        "Suppose {c}.",
        "{C} if $n$ is even.",
        "So {c}, but some of these are counted twice.",
        "We still need to check whether {c}.",
        "So {c} to consider.",
        "Maybe {c}.",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    _COUNT_CORES,
    _COUNT_QUANTITIES,
    _COUNTED_NOUNS,
    _COMMITTING,
    _UNCOMMITTING,
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
def test_a_stated_count_reads_its_number_and_the_same_count_in_doubt_reads_nothing(
    core, quantity, noun, committing, uncommitting, a, b
):
    count = core.format(q=quantity, noun=noun).format(n=a + b, a=a, b=b)
    assert extract_answer(_WORKING + committing.format(c=count)) == str(a + b)
    doubted = uncommitting.format(c=count, C=count[0].upper() + count[1:])
    assert extract_answer(_WORKING + doubted) is None, doubted
    bound = core.format(q="at least " + quantity, noun=noun).format(n=a + b, a=a, b=b)
    assert extract_answer(_WORKING + f"So {bound}.") is None


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.sampled_from(["degree of the polynomial", "leading exponent of"]),
    st.sampled_from(["Therefore, the", "Thus the", "So the"]),
)
def test_a_formula_in_the_subject_is_not_the_answer(a, b, subject, opening):
    sentence = f"{opening} {subject} \\((x^{{{a}}}+1)(x^{{{b}}}+2)\\) is {a + b}."
    assert extract_answer(_WORKING + sentence) == str(a + b)
    assert extract_answer(_WORKING + sentence[:-1] + "?") is None


def test_truncated_completion_is_unparseable(verifier):
    verdict = verifier.verify("The answer is 72", "72", finish_reason="length")
    assert verdict.status == "unparseable"
    assert "truncated" in verdict.reason


@pytest.mark.parametrize("response", ["", "No idea, sorry."])
def test_response_without_answer_is_unparseable(verifier, response):
    verdict = verifier.verify(response, "72")
    assert verdict == Verdict(status="unparseable", reason="no answer found")


# ---------------------------------------------------------------------------
# Bounds
# ---------------------------------------------------------------------------


def test_exponent_tower_is_refused_without_sympy(verifier):
    verdict = finishes_within(lambda: verifier.verify(boxed("9^{9^{9^{9}}}"), "5"))
    assert verdict.status == "incorrect"
    assert "exponent tower" in verdict.reason


def test_bare_exponent_tower_is_refused(verifier):
    verdict = finishes_within(lambda: verifier.verify("The answer is 9^9^9^9", "5"))
    assert verdict.status == "incorrect"
    assert "exponent tower" in verdict.reason


def test_overlong_answer_is_refused(verifier):
    verdict = finishes_within(lambda: verifier.verify(boxed("x+" * 600 + "1"), "5"))
    assert verdict.status == "incorrect"
    assert "too long" in verdict.reason


@pytest.mark.parametrize(
    "response",
    [
        "1 + " * 25_000 + "1",
        "\\boxed{" * 15_000,
        "The answer is " + "(" * 50_000,
        "x" * 100_000,
    ],
)
def test_hundred_kilobyte_response_gets_a_verdict(verifier, response):
    verdict = finishes_within(lambda: verifier.verify(response, "72"))
    assert verdict.status in {"incorrect", "unparseable"}


def test_timed_out_check_is_incorrect_and_the_worker_recovers(verifier):
    # A huge power in the reference hangs sympy: the worker is killed.
    equivalence = verifier.equivalence
    with pytest.raises(EquivalenceCheckError, match="timed out"):
        finishes_within(lambda: equivalence("5", "10^{10^{10}}", timeout=0.5))
    # The next check starts a fresh worker and works.
    assert finishes_within(lambda: equivalence("\\sqrt{4}", "2", timeout=30.0)) is True


def test_a_pathological_check_costs_its_own_timeout_not_everyone_s():
    import threading

    finished: list[str] = []

    def check(name, extracted, reference, timeout):
        try:
            equivalence(extracted, reference, timeout=timeout)
        except EquivalenceCheckError:
            pass
        finished.append(name)

    with MathEquivalence(processes=2) as equivalence:
        equivalence("\\sqrt{4}", "2", timeout=60.0)  # one worker warm
        slow = threading.Thread(target=check, args=("slow", "5", "10^{10^{10}}", 20.0))
        slow.start()
        time.sleep(0.2)  # the slow check holds the warm worker
        check("fast", "\\sqrt{9}", "3", 60.0)
        assert equivalence._pool.n_running == 2
        assert finished == ["fast"]  # done while the other check still runs
        equivalence.close()  # ends the hung worker too
        slow.join(30)
    assert finished == ["fast", "slow"]


def test_the_checker_pool_has_one_process_per_core_by_default():
    from prmsynth.verify._pool import default_checker_processes

    assert MathEquivalence()._pool.size == default_checker_processes() >= 1


def test_timed_out_check_gives_incorrect_verdict():
    slow = MathAnswerVerifier(timeout=0.5)
    try:
        verdict = finishes_within(lambda: slow.verify(boxed("5"), "10^{10^{10}}"))
    finally:
        slow.close()
    assert verdict.status == "incorrect"
    assert verdict.reason == "equivalence check timed out after 0.5 s"
    assert verdict.extracted_answer == "5"


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


def _integers():
    return st.integers(min_value=-(10**12), max_value=10**12).map(str)


def _decimals():
    return st.decimals(
        min_value=-(10**6), max_value=10**6, allow_nan=False, allow_infinity=False, places=3
    ).map(lambda value: format(value, "f"))


def _fractions():
    numerators = st.integers(min_value=-999, max_value=999)
    denominators = st.integers(min_value=1, max_value=999)
    return st.tuples(numerators, denominators, st.booleans()).map(
        lambda parts: (
            f"\\frac{{{parts[0]}}}{{{parts[1]}}}" if parts[2] else f"{parts[0]}/{parts[1]}"
        )
    )


def _value(answer: str) -> Fraction:
    if answer.startswith("\\frac"):
        top, bottom = answer[len("\\frac{") : -1].split("}{")
        return Fraction(int(top), int(bottom))
    return Fraction(answer)


numbers = st.one_of(_integers(), _decimals(), _fractions())
fast_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fast_settings
@given(answer=numbers)
def test_equivalence_is_reflexive(verifier, answer):
    assert verifier.equivalence(answer, answer, timeout=2.0) is True


def _rounded_decimal_for(answer: str, reference: Fraction) -> bool:
    """The rule, restated: a decimal answer of two significant digits or more that is
    ``reference`` rounded half away from zero, where ``reference`` has no finite
    decimal expansion (or the decimal has six places or more)."""
    if "." not in answer or answer.startswith("\\frac") or "/" in answer:
        return False
    places = len(answer.split(".")[1])
    if len(answer.lstrip("-").replace(".", "").lstrip("0")) < 2:
        return False
    denominator = reference.denominator
    while denominator % 2 == 0:
        denominator //= 2
    while denominator % 5 == 0:
        denominator //= 5
    if denominator == 1 and places < 6:
        return False
    scaled = abs(reference) * 10**places
    rounded = math.floor(scaled + Fraction(1, 2)) * (1 if reference >= 0 else -1)
    return Fraction(answer) == Fraction(rounded, 10**places)


@fast_settings
@given(left=numbers, right=numbers)
def test_plain_numbers_are_equal_exactly_or_as_a_decimal_rounded_from_the_reference(
    verifier, left, right
):
    for answer, reference in ((left, right), (right, left)):
        expected = _value(answer) == _value(reference) or _rounded_decimal_for(
            answer, _value(reference)
        )
        assert verifier.equivalence(answer, reference, timeout=2.0) is expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(response=st.text(max_size=200), reference=st.sampled_from(["72", "\\frac{1}{2}", "x+1", ""]))
def test_verify_never_raises(verifier, response, reference):
    verdict = verifier.verify(response, reference)
    assert verdict.status in {"correct", "incorrect", "unparseable"}


# ---------------------------------------------------------------------------
# Worker handling, pickling, threads
# ---------------------------------------------------------------------------


def test_verifier_is_thread_safe(verifier):
    cases = [
        ("\\sqrt{9}", "3", "correct"),
        ("[1, 2]", "[1, 2)", "incorrect"),
        ("72", "72", "correct"),
    ] * 4

    def check(case):
        answer, reference, _ = case
        return verifier.verify(boxed(answer), reference).status

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(check, cases))
    assert statuses == [expected for _, _, expected in cases]


def test_verifier_pickles_without_its_process(verifier):
    verifier.verify(boxed("\\sqrt{9}"), "3")  # make sure a worker is running
    copy = pickle.loads(pickle.dumps(verifier))
    assert copy.timeout == verifier.timeout
    assert copy.verify(boxed("1/2"), "0.5").status == "correct"
    copy.close()


def test_close_then_reuse():
    own = MathAnswerVerifier()
    try:
        assert own.verify(boxed("\\sqrt{16}"), "4").status == "correct"
        own.close()
        own.close()  # closing twice is harmless
        assert own.verify(boxed("\\sqrt{16}"), "5").status == "incorrect"
    finally:
        own.close()


def test_averify_many(verifier):
    verdicts = asyncio.run(
        verifier.averify_many(
            ["#### 72", "#### 73", "The answer is 72"], "72", finish_reasons=[None, None, "length"]
        )
    )
    assert [verdict.status for verdict in verdicts] == ["correct", "incorrect", "unparseable"]


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="timeout"):
        MathAnswerVerifier(timeout=0)


def test_custom_extractor_and_equivalence():
    calls = []

    def equivalence(extracted, reference, *, timeout):
        calls.append((extracted, reference, timeout))
        return extracted.lower() == reference.lower()

    custom = MathAnswerVerifier(
        extractor=lambda text: text.split()[-1], equivalence=equivalence, timeout=1.5
    )
    assert custom.verify("it is PARIS", "paris").status == "correct"
    assert calls == [("PARIS", "paris", 1.5)]
    custom.close()


def test_failing_parts_become_verdicts():
    def broken_extractor(text):
        raise RuntimeError("boom")

    def broken_equivalence(extracted, reference, *, timeout):
        raise RuntimeError("bang")

    verdict = MathAnswerVerifier(extractor=broken_extractor).verify("x", "1")
    assert verdict.status == "unparseable"
    assert "boom" in verdict.reason
    verdict = MathAnswerVerifier(equivalence=broken_equivalence).verify("#### 1", "1")
    assert verdict.status == "incorrect"
    assert "bang" in verdict.reason


def test_math_equivalence_one_off_calls_stay_in_process():
    with MathEquivalence() as equivalence:
        assert equivalence("1,000", "1000") is True
        assert not equivalence._pool.running


# ---------------------------------------------------------------------------
# Other verifiers
# ---------------------------------------------------------------------------


def test_exact_match_verifier():
    exact = ExactMatchVerifier()
    assert exact.verify("The answer is \\text{Evelyn}.", "Evelyn").status == "correct"
    assert exact.verify("#### 1,000", "1000").status == "correct"
    assert exact.verify("#### 0.5", "\\frac{1}{2}").status == "correct"
    assert exact.verify("The answer is \\sqrt{4}", "2").status == "incorrect"
    assert exact.verify("nothing here", "2").status == "unparseable"
    assert exact.verify("#### 2", "").status == "unparseable"
    assert exact.verify("#### 2", "2", finish_reason="length").status == "unparseable"


def test_function_verifier():
    contains = FunctionVerifier(lambda response, reference: reference in response)
    assert contains.verify("Paris is the capital.", "Paris").correct
    assert contains.verify("Lyon", "Paris").status == "incorrect"
    assert contains.verify("Paris", "Paris", finish_reason="length").status == "unparseable"

    def broken(response, reference):
        raise KeyError("field")

    verdict = FunctionVerifier(broken).verify("x", "y")
    assert verdict.status == "unparseable"
    assert "KeyError" in verdict.reason


# ---------------------------------------------------------------------------
# The verify-answers command
# ---------------------------------------------------------------------------


def parse_command(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prmsynth")
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["verify-answers", *arguments])


def write_lines(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_cli_writes_verdicts(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    rows = [
        {"id": 1, "response": "So the answer is \\boxed{72}.", "gold": "72"},
        {"id": 2, "response": "#### 73", "gold": "72"},
        {"id": 3, "response": "I give up", "gold": 72},
    ]
    write_lines(source, [json.dumps(row) for row in rows] + [""])
    out = tmp_path / "out.jsonl"
    arguments = [
        str(source),
        "--response-field",
        "response",
        "--reference-field",
        "gold",
        "--out",
        str(out),
    ]
    assert run(parse_command(arguments)) == 0
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["verdict"] for row in written] == ["correct", "incorrect", "unparseable"]
    assert [row["correct"] for row in written] == [True, False, False]
    assert written[0]["id"] == 1 and written[0]["gold"] == "72"
    assert "1 correct, 1 incorrect, 1 unparseable" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_cli_writes_to_stdout(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    write_lines(source, [json.dumps({"r": "#### 5", "a": "5", "why": "length"})])
    arguments = [
        str(source),
        "--response-field",
        "r",
        "--reference-field",
        "a",
        "--finish-reason-field",
        "why",
    ]
    assert run(parse_command(arguments)) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["verdict"] == "unparseable"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"r": "#### 5", "a": "5"}', "{not json"], ":2: invalid JSON"),
        (['{"r": "#### 5", "a": "5"}', '{"r": "#### 5"}'], ":2: field 'a': missing field"),
        (['{"r": null, "a": "5"}'], ":1: field 'r': must be a string or a number"),
        (["[1, 2]"], ":1: expected a JSON object"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, capsys, lines, message):
    source = tmp_path / "in.jsonl"
    write_lines(source, lines)
    out = tmp_path / "out.jsonl"
    arguments = [str(source), "--response-field", "r", "--reference-field", "a", "--out", str(out)]
    assert run(parse_command(arguments)) == 2
    error = capsys.readouterr().err
    assert str(source) in error
    assert message in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl"]


def test_cli_missing_file(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    arguments = [
        str(missing),
        "--response-field",
        "r",
        "--reference-field",
        "a",
        "--out",
        str(tmp_path / "o.jsonl"),
    ]
    assert run(parse_command(arguments)) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
def test_worker_runs_under_a_memory_limit(verifier):
    assert verifier.verify(boxed("\\sqrt{25}"), "5").correct  # a symbolic check: worker up
    worker = next(worker for worker in verifier.equivalence._pool._workers if worker.running)
    limits = Path(f"/proc/{worker._process.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert line.split()[3] == str(2 * 1024**3)


# -- invariants: notation never changes a verdict; no commitment, no credit ------------------


@st.composite
def gold_and_notations(draw) -> tuple[str, list[str]]:
    """A gold answer in MATH's own notation and the ways a model may write the same value."""
    kind = draw(st.sampled_from(["integer", "fraction", "decimal", "interval", "tuple", "percent"]))
    a, b = draw(st.integers(1, 999)), draw(st.integers(2, 999))
    if kind == "integer":
        n = draw(st.integers(0, 10**7))
        gold = f"{n:,}".replace(",", ",\\!")
        return gold, [
            str(n),
            f"{n:,}",
            f"{n:,}".replace(",", "\\,"),
            f"x = {n}",
            f"{n} \\text{{ units}}",
        ]
    if kind == "fraction":
        gold = f"\\frac{{{a}}}{{{b}}}"
        return gold, [
            f"\\dfrac{{{a}}}{{{b}}}",
            f"\\tfrac{{{a}}}{{{b}}}",
            f"{a}/{b}",
            gold,
            f"\x0crac{{{a}}}{{{b}}}",  # \\frac through an unescaped JSON string
        ]
    if kind == "decimal":
        gold = f"{a}.{b:03d}"
        return gold, [gold, f"{gold} \\text{{ cm}}", f"\\${gold}", f"{a},{b:03d}0"]
    if kind == "interval":
        gold = f"\\left( -{a}, {b} \\right]"
        return gold, [
            f"(-{a}, {b}]",
            f"(-{a},{b}]",
            f"\\left(-{a},{b}\\right]",
            f"x \\in (-{a}, {b}]",
        ]
    if kind == "tuple":
        gold = f"({a}, {b})"
        return gold, [f"\\left({a},{b}\\right)", f"({a},\\,{b})", gold]
    gold = f"{a}\\%"
    return gold, [f"{a}", f"{a}%", f"{a} \\%"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(gold_and_notations(), st.sampled_from(["boxed", "phrase", "therefore", "last line"]))
def test_a_gold_answer_verifies_against_itself_in_every_notation(verifier, case, form):
    gold, notations = case
    for written in [gold, *notations]:
        response = {
            "boxed": f"Adding up.\n\nThe answer is $\\boxed{{{written}}}$.",
            "phrase": f"Adding up.\n\nThe answer is ${written}$.",
            "therefore": f"Adding up.\n\nTherefore, the result is ${written}$.",
            "last line": f"Adding up.\n\n${written}$",
        }[form]
        verdict = verifier.verify(response, gold)
        assert verdict.status == "correct", (response, gold, verdict)


_PROSE = st.sampled_from(
    [
        "We have {n} apples and {m} pears.",
        "Each box holds {n} items, and {m} boxes are left over.",
        "First compute {n} + {m}.",
        "The table lists {n} rows.",
        "Could it be {n}?",
        "Wait, {n} does not work here.",
        "So {n} is not a solution.",
        "Hmm, maybe {n}, let me reconsider.",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_PROSE, min_size=1, max_size=4), st.integers(0, 99), st.integers(0, 99))
def test_a_response_that_commits_to_no_answer_is_never_correct(verifier, sentences, n, m):
    response = " ".join(sentence.format(n=n, m=m) for sentence in sentences)
    for gold in (str(n), str(m)):
        assert verifier.verify(response, gold).status != "correct", response


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 999), st.integers(0, 999), st.sampled_from(["apples", "dollars", "km"]))
def test_a_plain_last_sentence_commits_only_to_the_last_result_of_the_working(
    verifier, stated, computed, unit
):
    response = f"We add the parts: {computed} + 0 = {computed}.\n\nShe has {stated} {unit} now."
    verdict = verifier.verify(response, str(stated))
    assert (verdict.status == "correct") is (stated == computed), response


@given(st.integers(1, 10**6), st.integers(2, 10**6), st.integers(6, 16))
def test_a_decimal_of_six_places_or_more_matches_the_fraction_it_rounds(a, b, places):
    exact = Fraction(a, b)
    scaled = round(exact * 10**places)  # the decimal with `places` places, rounded
    rounded = f"{scaled // 10**places}.{scaled % 10**places:0{places}d}"
    # An exact decimal is the fraction; a rounded one needs two significant digits.
    assert fast_equivalent(rounded, f"\\frac{{{a}}}{{{b}}}") is (
        Fraction(rounded) == exact or len(rounded.replace(".", "").lstrip("0")) >= 2
    )


# ---------------------------------------------------------------------------
# Decimals rounded from a fraction without a finite decimal expansion
# ---------------------------------------------------------------------------


def _without_finite_expansion(denominator: int) -> bool:
    while denominator % 2 == 0:
        denominator //= 2
    while denominator % 5 == 0:
        denominator //= 5
    return denominator > 1


def _decimal(value: Fraction, places: int) -> str:
    """``value`` rounded half away from zero to ``places`` places, written out."""
    units = math.floor(abs(value) * 10**places + Fraction(1, 2))
    sign = "-" if value < 0 and units else ""
    return f"{sign}{units // 10**places}.{units % 10**places:0{places}d}"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(-(10**6), 10**6),
    st.integers(3, 10**4).filter(_without_finite_expansion),
    st.integers(2, 6),
)
def test_a_correctly_rounded_decimal_verifies_and_one_unit_off_in_the_last_place_does_not(
    verifier, numerator, denominator, places
):
    exact = Fraction(numerator, denominator)
    hypothesis.assume(exact.denominator > 1 and _without_finite_expansion(exact.denominator))
    rounded = _decimal(exact, places)
    hypothesis.assume(len(rounded.lstrip("-").replace(".", "").lstrip("0")) >= 2)
    reference = f"\\frac{{{numerator}}}{{{denominator}}}"
    assert verifier.verify(boxed(rounded), reference).status == "correct"
    unit = Fraction(1, 10**places)
    for off in (Fraction(rounded) - unit, Fraction(rounded) + unit):
        assert verifier.verify(boxed(_decimal(off, places)), reference).status == "incorrect"


@pytest.mark.parametrize(
    ("decimal", "reference"),
    [
        ("0.33", "\\frac{1}{3}"),
        ("0.333", "\\frac13"),
        ("0.67", "\\dfrac{2}{3}"),
        ("2.7", "\\frac{8}{3}"),
        ("2.6667", "8/3"),
        ("-3.89", "-\\frac{35}{9}"),
        ("0.0020", "\\frac{2}{1005}"),
        ("0.10", "\\frac{2}{21}"),  # 0.0952 to two places: two significant digits written
    ],
)
def test_a_decimal_rounded_from_a_fraction_without_a_finite_expansion_is_correct(
    verifier, decimal, reference
):
    assert verifier.verify(boxed(decimal), reference).status == "correct"
    assert ExactMatchVerifier().verify(boxed(decimal), reference).status == "correct"


@pytest.mark.parametrize(
    ("decimal", "reference"),
    [
        ("0.3", "\\frac{1}{3}"),  # one significant digit: too coarse to tell
        ("0.002", "\\frac{2}{1005}"),
        ("0.66", "\\frac{2}{3}"),  # cut, not rounded
        ("0.34", "\\frac{1}{3}"),  # wrong last digit
        ("0.67", "0.666"),  # the reference has a finite expansion: only its value counts
        ("2.3", "2.25"),
        ("2.3", "\\frac{9}{4}"),
        ("0.33", "-\\frac{1}{3}"),
        ("3", "\\frac{8}{3}"),  # an integer is no rounded decimal
        ("3.14", "\\pi"),  # irrational references are compared exactly
        ("1.41", "\\sqrt{2}"),
    ],
)
def test_a_decimal_that_is_not_the_reference_correctly_rounded_is_incorrect(
    verifier, decimal, reference
):
    assert verifier.verify(boxed(decimal), reference).status == "incorrect"


def test_a_fraction_does_not_answer_a_short_rounded_decimal_reference(verifier):
    # The rule reads a decimal in the response; a reference states what was asked.
    assert verifier.verify(boxed("\\frac{1}{3}"), "0.33").status == "incorrect"
    assert verifier.verify(boxed("\\frac{1}{12}"), "0.083333").status == "correct"


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        (
            "\\begin{pmatrix}0.33\\\\0.2 \\end{pmatrix}",
            "\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix}",
        ),
        ("\\begin{bmatrix}0.33 & -0.67\\end{bmatrix}", "\\begin{bmatrix}1/3 & -2/3\\end{bmatrix}"),
        ("(0.6,2.6667]", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]"),
        ("(0.33, 2)", "(\\frac{1}{3}, 2)"),
        ("((0.33, 1), (1, 0.67))", "((\\frac13, 1), (1, \\frac23))"),
        ("\\{0.67, 0.33\\}", "\\{\\frac{1}{3}, \\frac{2}{3}\\}"),  # a set in any order
        ("0.33, 0.67", "\\frac{1}{3}, \\frac{2}{3}"),
        ("(-\\infty, 0.33) \\cup (2, \\infty)", "(-\\infty, \\frac13) \\cup (2, \\infty)"),
        ("(\\sqrt{2}, 0.33)", "(\\sqrt{2}, \\frac{1}{3})"),  # decided symbolically
    ],
)
def test_rounded_decimals_compare_part_by_part_inside_matrices_tuples_intervals_and_sets(
    verifier, response, reference
):
    assert verifier.verify(boxed(response), reference).status == "correct"


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        (
            "\\begin{pmatrix}0.3\\\\0.2\\end{pmatrix}",
            "\\begin{pmatrix}\\frac{1}{3}\\\\\\frac{1}{5}\\end{pmatrix}",
        ),
        ("(0.6,2.6666]", "(\\frac{3}{5},\\frac{8}{3}]"),  # cut
        ("(0.6,2.6667)", "(\\frac{3}{5},\\frac{8}{3}]"),  # the bracket still counts
        ("(0.67, 0.33)", "(\\frac{1}{3}, \\frac{2}{3})"),  # a tuple keeps its order
        ("\\{0.66, 0.33\\}", "\\{\\frac{1}{3}, \\frac{2}{3}\\}"),
        ("(2.3, 1)", "(\\frac{9}{4}, 1)"),
        # A number inside an expression is no part: its rounding error is multiplied.
        ("2(0.33)", "2(\\frac{1}{3})"),
        ("3 \\cdot 0.33", "3 \\cdot \\frac{1}{3}"),
    ],
)
def test_a_part_that_is_not_the_reference_part_correctly_rounded_is_incorrect(
    verifier, response, reference
):
    assert verifier.verify(boxed(response), reference).status == "incorrect"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(1, 999), st.integers(3, 999).filter(_without_finite_expansion)),
        min_size=2,
        max_size=4,
    ),
    st.integers(2, 4),
    # No interval: [a, b) with b < a is empty, so any two such intervals are equal.
    st.sampled_from(["({})", "\\{{{}\\}}", "\\begin{{pmatrix}}{}\\end{{pmatrix}}"]),
    st.data(),
)
def test_each_part_of_a_tuple_set_or_matrix_is_compared_with_the_rounding_rule(
    verifier, fractions, places, shape, data
):
    values = [Fraction(top, bottom) for top, bottom in fractions]
    hypothesis.assume(all(_without_finite_expansion(value.denominator) for value in values))
    decimals = [_decimal(value, places) for value in values]
    hypothesis.assume(all(len(d.replace(".", "").lstrip("0")) >= 2 for d in decimals))
    separator = "\\\\" if "matrix" in shape else ", "
    reference = shape.format(separator.join(f"\\frac{{{t}}}{{{b}}}" for t, b in fractions))
    assert verifier.verify(boxed(shape.format(separator.join(decimals))), reference).correct
    wrong = data.draw(st.integers(0, len(decimals) - 1))
    off = Fraction(decimals[wrong]) + Fraction(1, 10**places)
    hypothesis.assume(off not in values)
    decimals[wrong] = _decimal(off, places)
    response = boxed(shape.format(separator.join(decimals)))
    assert verifier.verify(response, reference).status == "incorrect"


@pytest.mark.parametrize(
    ("response", "gold", "status"),
    [
        # a later statement wins over an earlier "="
        ("Therefore, a = 3 and b = 4, so a + b is 7.", "4", "incorrect"),
        ("Thus x = 2 is a root, and the product of the roots is 12.", "2", "incorrect"),
        # a value the last sentence rejects, a step still to take, a premise, a check
        ("x = -2 or x = 7. We discard 7 since it is extraneous.", "7", "unparseable"),
        ("So 63 / 9 = 7. That gives 7 apples per box, which is impossible.", "7", "unparseable"),
        (
            "First, 3 + 4 = 7. Next we need to find how many of the 7 apples are red.",
            "7",
            "unparseable",
        ),
        ("She buys 4 + 3 = 7 shirts. Let's compute the cost of the 7 shirts.", "7", "unparseable"),
        ("Suppose x = 5.", "5", "unparseable"),
        ("Let's try n = 3.", "3", "unparseable"),
        ("So she has 7 apples left. Verify: 7 + 5 = 12.", "12", "unparseable"),
        # a comment clause that states the value is the answer
        ("So the total is 2 hours, which is 120 minutes.", "120", "correct"),
        (
            "So the area is 36, but the question asks for the perimeter, which is 24.",
            "24",
            "correct",
        ),
        ("Therefore the total is 20 times 2, which is 40.", "20", "incorrect"),
        ("The answer is equal to 36 minus 4, which is 32.", "36", "incorrect"),
    ],
)
def test_readings_found_in_review_stay_fixed(verifier, response, gold, status):
    assert verifier.verify(response, gold).status == status
