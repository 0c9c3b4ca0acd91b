"""Benchmark of answer checks: accuracy, false positives and speed.

Usage: python benchmarks/answer_check.py [--data DIR] [--all-cores]

The sets, from the shared data folder (default: ../shared/data next to the
repository root):

* ProcessBench GSM8K: 400 real model solutions with a human judgement of
  whether the final answer is correct; the gold answer is joined from the
  GSM8K test set (the number after ``####``).
* BIG-Bench-Mistake multistep arithmetic: 300 real model chains of thought
  ending "So the answer is N", correct when the chain's answer is the target.
* GSM8K reference solutions: the 1,319 human-written test solutions with
  their ``#### N`` line removed, read against the gold (correct) and the gold
  plus one (not correct): the answer must come from how the solution ends
  ("She makes 9 * 2 = $18 every day at the farmers' market.").
* MATH500 rewrites: the gold answers of MATH500 rewritten in equivalent ways
  (``\\dfrac``, ``\\text{ units}``, ``\\left(``, thousands separators,
  ``x =``, decimals) and in non-equivalent ways (perturbed numbers, flipped
  interval ends, flipped signs), each checked in both directions.
* MATH500 decimals for fractions: each number of a gold answer (whole, or an
  entry of a tuple or interval) that is a fraction with no finite decimal
  expansion, written as a decimal correctly rounded to 2, 3 and 4 places
  (correct), and as the same decimal cut instead of rounded, with its last
  digit off by one, or with one significant digit (``0.66``, ``0.68``, ``0.7``
  for 2/3: not correct); a gold with a finite expansion (``9/4``, ``1.25``)
  rounded to fewer places (and fewer than six) is not correct either.
* MATH500 answers as models state them: each gold answer boxed and then
  restated in a "Final Answer:" line, in a concluding "Therefore/Thus ..."
  sentence (also "..., so the value is X", "... is equal to X", "The answer
  to this problem is X", "the total is X, which is the sum of 8 and 9"),
  alone on the last line, or restated in a plain last sentence after the
  computation that gave it (all correct), and the same with a
  close wrong answer (incorrect); plus responses that never commit to the
  answer: a hedge ("could it be X? wait, let me reconsider") or a rejection
  ("so X is not a solution") or a last sentence naming a number the working
  did not compute last, which must not count as correct.

Compared: (a) prmsynth's MathAnswerVerifier, (b) plain math-verify
``verify(parse(gold), parse(response))``, (c) exact match of the last boxed
answer, (d) "gold is a substring of the last sentence".  Every method gets
one untimed warm-up call; the verifier's worker start-up is reported on its
own line.  By default the process (and so the verifier's worker) is pinned
to one core.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPOSITORY_ROOT.parent / "shared" / "data"

# (response, reference, expected correct, class of the case)
Case = tuple[str, str, bool, str]


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def processbench_cases(data: Path) -> list[Case]:
    """ProcessBench GSM8K solutions joined with their GSM8K gold answers."""
    gold_by_question = {}
    with open(data / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
            gold_by_question[row["question"].strip()] = gold
    with open(data / "processbench" / "gsm8k.json", encoding="utf-8") as handle:
        items = json.load(handle)
    cases = []
    for item in items:
        gold = gold_by_question.get(item["problem"].strip())
        if gold is None:
            continue  # not found in GSM8K test; should not happen
        correct = bool(item["final_answer_correct"])
        cases.append(("\n\n".join(item["steps"]), gold, correct, "gsm8k solution"))
    return cases


def gsm8k_reference_cases(data: Path) -> list[Case]:
    """GSM8K's human-written reference solutions with their ``#### N`` line
    (and ``<<...>>`` calculator notes) removed, so the answer must be read from
    how the solution ends: against the gold (correct), and against the gold
    plus one (not correct)."""
    cases = []
    with open(data / "gsm8k" / "test.jsonl", encoding="utf-8") as handle:
        for line in handle:
            solution, gold = json.loads(line)["answer"].rsplit("####", 1)
            solution = re.sub(r"<<[^>]*>>", "", solution).strip()
            gold = gold.strip().replace(",", "")
            cases.append((solution, gold, True, "reference solution"))
            cases.append((solution, str(int(gold) + 1), False, "reference solution (wrong)"))
    return cases


def bigbench_cases(data: Path) -> list[Case]:
    """BIG-Bench-Mistake multistep arithmetic: real model chains of thought
    ("... So the answer is 1244"), correct when the chain's answer is the target."""
    cases = []
    with open(data / "bigbench_mistake" / "multistep_arithmetic.jsonl", encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            correct = row["answer"].strip() == row["target"].strip()
            cases.append(("\n\n".join(row["steps"]), row["target"], correct, "arithmetic chain"))
    return cases


# A unit after the value ("15\mbox{ cm}^2"): its digits are not the answer's.
_UNIT_SUFFIX = re.compile(r"\s*\\(?:text|mbox)\{\s*[A-Za-z ]+\}(?:\^\d)?$")


def _perturb_last_number(answer: str) -> str | None:
    """The answer with its last integer (outside a unit) plus one, or None without digits."""
    unit = _UNIT_SUFFIX.search(answer)
    value, suffix = (answer[: unit.start()], unit.group(0)) if unit else (answer, "")
    matches = list(re.finditer(r"\d+", value))
    if not matches:
        return None
    last = matches[-1]
    return value[: last.start()] + str(int(last.group(0)) + 1) + value[last.end() :] + suffix


def _with_thousands(answer: str) -> str | None:
    if re.fullmatch(r"-?\d{4,}", answer):
        return f"{int(answer):,}"
    return None


def _as_decimal(answer: str) -> str | None:
    """\\frac{a}{b} with a terminating decimal, as that decimal."""
    match = re.fullmatch(r"(-?)\\d?frac\{(\d+)\}\{(\d+)\}", answer)
    if not match:
        return None
    value = Fraction(int(match.group(2)), int(match.group(3)))
    reduced = value.denominator
    for prime in (2, 5):
        while reduced % prime == 0:
            reduced //= prime
    if reduced != 1 or value.denominator == 1:
        return None
    # Terminating: exact with as many places as the denominator's power of 2 or 5.
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    text = f"{Decimal(value.numerator) / Decimal(value.denominator):.{places}f}"
    return match.group(1) + text


def _top_level_list(answer: str) -> list[str] | None:
    """The parts of a list answer ("1, 2" or "-3, 5"), None for anything else."""
    depth, parts, start = 0, [], 0
    for index, character in enumerate(answer):
        depth += character in "([{"
        depth -= character in ")]}"
        if character == "," and depth == 0:
            parts.append(answer[start:index].strip())
            start = index + 1
    parts.append(answer[start:].strip())
    return parts if len(parts) > 1 and all(parts) else None


# One number, perhaps with thousands separators (58,500 or 10,\!080): not a list.
_SINGLE_NUMBER = re.compile(r"\\?\$?-?\d{1,3}(?:,(?:\\!)?\s*\d{3})*(?:\.\d+)?|-?\d+(?:\.\d+)?")
_INTERVAL = re.compile(r"(?P<open>[\[(])(?P<low>[^,()\[\]]+),(?P<high>[^,()\[\]]+)(?P<close>[\])])")


def _as_inequality(gold: str) -> str | None:
    """[a, b) as a \\le x < b (None for tuples and unbounded ends)."""
    match = _INTERVAL.fullmatch(gold.replace(" ", ""))
    if not match or (gold.startswith("(") and gold.endswith(")")) or "infty" in gold:
        return None
    low_relation = "\\le" if match.group("open") == "[" else "<"
    high_relation = "\\le" if match.group("close") == "]" else "<"
    return f"{match.group('low')} {low_relation} x {high_relation} {match.group('high')}"


def math500_rewrites(data: Path) -> list[Case]:
    """Equivalent and non-equivalent rewrites of MATH500 answers, both directions,
    each labelled with the notation it exercises."""
    cases: list[Case] = []
    with open(data / "math500" / "test.jsonl", encoding="utf-8") as handle:
        golds = [json.loads(line)["answer"].strip() for line in handle]

    def both_ways(rewrite: str, gold: str, expected: bool, kind: str) -> None:
        kind += "" if expected else " (different)"
        cases.append((f"So the answer is $\\boxed{{{rewrite}}}$.", gold, expected, kind))
        cases.append((f"So the answer is $\\boxed{{{gold}}}$.", rewrite, expected, kind))

    for gold in golds:
        plain = not re.search(r"\\text|\\mbox|\\begin|=|\\cup|,", gold)
        perturbed = _perturb_last_number(gold)
        if perturbed == gold:
            perturbed = None
        for answer, expected in ((gold, True), (perturbed, False)):
            if answer is None:
                continue
            if "\\frac" in answer:
                both_ways(answer.replace("\\frac", "\\dfrac"), gold, expected, "dfrac")
            if plain:
                both_ways(answer + " \\text{ units}", gold, expected, "text unit")
                both_ways("x = " + answer, gold, expected, "x = value")
            thousands = _with_thousands(answer)
            if thousands:
                both_ways(thousands, gold, expected, "thousands separator")
            decimal = _as_decimal(answer)
            if decimal:
                both_ways(decimal, gold, expected, "decimal")
                whole, places = decimal.lstrip("-").split(".")
                if len(places) == 2 or len(places) > 3 or (len(places) == 3 and len(whole) > 3):
                    # 2,5 may list two answers and 15,975 group thousands; 15,97 is a decimal.
                    both_ways(decimal.replace(".", ","), gold, expected, "decimal comma")
            parts = _top_level_list(answer)
            if parts and "\\begin" not in answer and not _SINGLE_NUMBER.fullmatch(answer):
                cases.append(
                    (
                        "So the answers are "
                        + " and ".join(f"$\\boxed{{{part}}}$" for part in parts)
                        + ".",
                        gold,
                        expected,
                        "list boxed part by part" + ("" if expected else " (different)"),
                    )
                )
            left, _, right = answer.partition("=")
            if right and not re.fullmatch(r"\s*[A-Za-z]\s*", left) and not left.endswith("\\"):
                both_ways(
                    f"2({left.strip()}) = 2({right.strip()})", gold, expected, "equation scaled"
                )
        if gold.startswith("(") and gold.endswith(")"):
            both_ways("\\left" + gold[:-1] + "\\right)", gold, True, "left/right")
        if perturbed is not None:
            both_ways(perturbed, gold, False, "changed number")
        if _INTERVAL.fullmatch(gold.replace(" ", "")) and not gold.startswith("("):
            flipped = gold[:-1] + ("]" if gold.endswith(")") else ")")
            both_ways(flipped, gold, False, "interval bracket")
        inequality = _as_inequality(gold)
        if inequality:
            # The reference's form is what the problem asked for: an inequality states
            # an interval answer, an interval answers an inequality question.
            cases.append((f"So $\\boxed{{{inequality}}}$.", gold, False, "inequality for interval"))
            cases.append((f"So $\\boxed{{{gold}}}$.", inequality, True, "interval for inequality"))
        if re.fullmatch(r"\d+(?:\.\d+)?", gold) and float(gold) != 0:
            both_ways("-" + gold, gold, False, "sign")
        if "\\frac" in gold:
            damaged = gold.replace("\\frac", "\x0crac")  # "\\frac" written unescaped into JSON
            cases.append((f"The answer is ${damaged}$.", gold, True, "escape-damaged LaTeX"))
        solution = f"{WORK}Hence the answer is $\\boxed{{{gold}}}$."
        cases.append(
            (f"The answer is $\\boxed{{{gold}}}$.", solution, True, "worked-solution gold")
        )
        if perturbed is not None:
            cases.append(
                (
                    f"The answer is $\\boxed{{{perturbed}}}$.",
                    solution,
                    False,
                    "worked-solution gold (different)",
                )
            )
    return cases


# A fraction that is a whole number of the answer: the answer, or an entry of a tuple or interval.
_PART_FRACTION = re.compile(
    r"(?:^|(?<=[(\[,])|(?<=\\left\()|(?<=\\left\[))\s*(?P<sign>-?)"
    r"\\[dt]?frac(?:\{(?P<top>\d+)\}|(?P<top_digit>\d))(?:\{(?P<bottom>\d+)\}|(?P<bottom_digit>\d))"
    r"(?=\s*(?:$|[,)\]]|\\right))"
)
_EXACT_DECIMAL = re.compile(r"-?\d+\.\d{2,}")


def _fraction_of(match: re.Match) -> Fraction | None:
    top = int(match.group("top") or match.group("top_digit"))
    bottom = int(match.group("bottom") or match.group("bottom_digit"))
    if bottom == 0:
        return None
    return Fraction(-top if match.group("sign") else top, bottom)


def _terminates(value: Fraction) -> bool:
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def _decimal_text(value: Fraction, places: int, rounding: str) -> str:
    """``value`` with ``places`` decimal places, rounded half away from zero or cut."""
    with localcontext() as context:
        context.prec = 60
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        mode = ROUND_HALF_UP if rounding == "round" else ROUND_DOWN
        return str(exact.quantize(Decimal(1).scaleb(-places), rounding=mode))


def _significant_digits(decimal: str) -> int:
    return len(decimal.lstrip("-").replace(".", "").lstrip("0"))


DECIMAL_CLASSES = (
    "decimal rounded",
    "decimal cut (different)",
    "decimal last digit off (different)",
    "decimal one digit (different)",
)


def _decimal_variants(value: Fraction, places: int) -> dict[str, str]:
    """The decimals for one non-terminating ``value`` at ``places`` places, by class;
    a class is missing where its decimal would not differ from the rounded one."""
    rounded = _decimal_text(value, places, "round")
    if _significant_digits(rounded) < 2:
        return {}
    variants = {"decimal rounded": rounded}
    cut = _decimal_text(value, places, "cut")
    if cut != rounded:
        variants["decimal cut (different)"] = cut
    # One unit in the last place further from zero (one nearer is the cut decimal).
    unit = Fraction(1 if value > 0 else -1, 10**places)
    off = _decimal_text(Fraction(Decimal(rounded)) + unit, places, "round")
    variants["decimal last digit off (different)"] = off
    # One significant digit (0.3 for 1/3, 0.05 for 3/56): the most places that leave one.
    coarse = [_decimal_text(value, q, "round") for q in range(1, places + 1)]
    one_digit = [decimal for decimal in coarse if _significant_digits(decimal) == 1]
    if one_digit:
        variants["decimal one digit (different)"] = one_digit[-1]
    return variants


def math500_decimals(data: Path) -> list[Case]:
    """MATH500 gold answers with their fractions written as decimals, rounded
    correctly (correct) and rounded wrongly or too coarsely (not correct)."""
    with open(data / "math500" / "test.jsonl", encoding="utf-8") as handle:
        golds = [json.loads(line)["answer"].strip() for line in handle]
    cases: list[Case] = []

    def add(answer: str, gold: str, kind: str) -> None:
        case = (f"So the answer is $\\boxed{{{answer}}}$.", gold, not kind.endswith(")"), kind)
        if case not in cases:  # one significant digit is the same decimal at every places
            cases.append(case)

    for gold in golds:
        matches = list(_PART_FRACTION.finditer(gold))
        values = [_fraction_of(match) for match in matches]
        if values and None not in values and not all(map(_terminates, values)):
            for places, kind in itertools.product((2, 3, 4), DECIMAL_CLASSES):
                # Each non-terminating fraction takes the class's decimal, the others
                # their exact decimal (3/5 as 0.6).
                decimals = [
                    str(Decimal(value.numerator) / Decimal(value.denominator))
                    if _terminates(value)
                    else _decimal_variants(value, places).get(kind)
                    for value in values
                ]
                if None in decimals:
                    continue
                answer, written = "", 0
                for match, decimal in zip(matches, decimals, strict=True):
                    answer += gold[written : match.start("sign")] + decimal
                    written = match.end()
                add(answer + gold[written:], gold, kind)
        exact = None
        if len(matches) == 1 and matches[0].span() == (0, len(gold)):
            exact = values[0]
        elif _EXACT_DECIMAL.fullmatch(gold):
            exact = Fraction(gold)
        if exact is not None and _terminates(exact):
            places = 0
            while (exact * 10**places).denominator != 1:
                places += 1
            if places >= 2:
                # 9/4 or 1.25 rounded to one place fewer than it has: not the answer
                # (from six places on a decimal may be rounded: 0.000977 for 1/1024).
                rounded = _decimal_text(exact, min(places - 1, 5), "round")
                add(rounded, gold, "decimal rounded, exact (different)")
    return cases


WORK = "We simplify the expression step by step.\n\nCollecting the terms gives the result.\n\n"


def math500_prose(data: Path) -> list[Case]:
    """MATH500 gold answers stated the ways models state them, committed or not."""
    with open(data / "math500" / "test.jsonl", encoding="utf-8") as handle:
        golds = [json.loads(line)["answer"].strip() for line in handle]
    cases: list[Case] = []
    for gold in golds:
        wrong = _perturb_last_number(gold)
        for answer, expected in ((gold, True), (wrong, False)):
            if answer is None or (answer == gold and not expected):
                continue
            sign = "" if expected else " (wrong)"
            cases += [
                (
                    f"{WORK}The answer is $\\boxed{{{answer}}}$.\n\nFinal Answer: The final "
                    f"answer is ${answer}$. I hope it is correct.",
                    gold,
                    expected,
                    "boxed, then restated" + sign,
                ),
                (
                    f"{WORK}Therefore, the answer is \\({answer}\\).",
                    gold,
                    expected,
                    "therefore" + sign,
                ),
                (f"{WORK}Thus, the value we want is ${answer}$.", gold, expected, "thus" + sign),
                (
                    f"{WORK}We add the two parts, so the value we want is ${answer}$.",
                    gold,
                    expected,
                    "concluding clause" + sign,
                ),
                (
                    f"{WORK}The answer to this problem is ${answer}$.",
                    gold,
                    expected,
                    "answer to this problem" + sign,
                ),
                (
                    f"{WORK}So the value we want is equal to ${answer}$.",
                    gold,
                    expected,
                    "is equal to" + sign,
                ),
                (f"{WORK}${answer}$", gold, expected, "last line alone" + sign),
            ]
        cases += [
            (
                f"{WORK}Could it be ${gold}$? Hmm, wait, let me reconsider the second step.",
                gold,
                False,
                "hedged, no answer",
            ),
            (f"{WORK}So ${gold}$ is not a solution.", gold, False, "rejected, no answer"),
        ]
        if wrong is not None and _SINGLE_NUMBER.fullmatch(gold):
            cases += [
                (f"{WORK}It is not {wrong}, it is {gold}.", gold, True, "corrected number"),
                (
                    f"{WORK}It is not {gold}, it is {wrong}.",
                    gold,
                    False,
                    "corrected number (wrong)",
                ),
            ]
            # A comment after the answer, with numbers of its own.
            for result, expected in ((gold, True), (wrong, False)):
                cases.append(
                    (
                        f"{WORK}So the total is {result}, which is the sum of 8 and 9.",
                        gold,
                        expected,
                        "answer, then a comment" + ("" if expected else " (wrong)"),
                    )
                )
            # A plain last sentence restating what the last computation gave.
            for result, expected in ((gold, True), (wrong, False)):
                cases.append(
                    (
                        f"{WORK}Adding the two parts gives $x = {result}$.\n\n"
                        f"The garden covers {result} square feet in all.",
                        gold,
                        expected,
                        "restated result" + ("" if expected else " (wrong)"),
                    )
                )
            # A concluding sentence with other numbers beside that result.
            for result, expected in ((gold, True), (wrong, False)):
                cases.append(
                    (
                        f"{WORK}Adding the two parts gives $x = {result}$.\n\n"
                        f"So, after 3 years, the garden covers {result} square feet.",
                        gold,
                        expected,
                        "restated result among numbers" + ("" if expected else " (wrong)"),
                    )
                )
            cases.append(
                (
                    f"{WORK}Adding the two parts gives $x = {wrong}$.\n\n"
                    f"So, after 3 years, the garden covers {gold} square feet.",
                    gold,
                    False,
                    "number in passing among numbers, no answer",
                )
            )
            # The same sentence with a number the working did not compute last.
            cases.append(
                (
                    f"{WORK}Adding the two parts gives $x = {wrong}$.\n\n"
                    f"The garden covers {gold} square feet in all.",
                    gold,
                    False,
                    "number in passing, no answer",
                )
            )
    return cases


# A count stated with the boxed answer as its quantity: "there are $\boxed{12}$ ways",
# "for a total of $3+48=\boxed{51}$ segments", "we get $\boxed{7}$ solutions".
_COUNT_SHAPE = re.compile(
    r"\b(?:there\s+(?:are|is|were|will\s+be|must\s+be)|we\s+(?:get|have|find|obtain|count)|"
    r"total\s+of|giving(?:\s+us)?|gives(?:\s+us)?|leaves|leaving|yields)\s+"
    r"(?:a\s+total\s+of\s+)?(?:exactly\s+|only\s+)?\$(?P<quantity>[^$]*\\boxed\{[^$]*)\$"
    r"\s*(?:\\text\{\s*)?[A-Za-z]",
    re.IGNORECASE,
)
# A subject in words that holds a formula, then "is" and the boxed answer:
# "the degree of the polynomial $(x^2+1)(x^3+1)$ is $\boxed{5}$".
_SUBJECT_SHAPE = re.compile(
    r"^(?:\W*\w+,\s*)?(?:the|our|its|this)\s+[^$]*\$[^$]+\$[^$,.;:]*?\s(?:is|equals)\s+"
    r"\$\\boxed\{[^$]*\}\$\s*(?:[A-Za-z ]+)?[.]?$",
    re.IGNORECASE,
)
_OPENER = re.compile(r"^(?:therefore|thus|hence|so|in\s+total|finally|altogether)\b,?\s*", re.I)


def _last_sentence_start(text: str) -> int:
    """Where the last sentence of ``text`` starts (a period, then a space and a capital)."""
    starts = [
        match.end() for match in re.finditer(r"[.!?]\$*\s+(?=[A-Z$\\])|\n|\\end\{\w+\*?\}", text)
    ]
    return starts[-1] if starts else 0


def _uncommitted_forms(sentence: str, quantity: int | None) -> dict[str, str]:
    """The same conclusion made into statements that commit to nothing, by class;
    ``quantity`` is where a count's formula opens."""
    core = _OPENER.sub("", sentence).rstrip(" .")
    core = core[:1].lower() + core[1:]
    forms = {
        "question": sentence.rstrip(" .") + "?",
        "premise": "Suppose " + core + ".",
        "still to check": "We still need to check whether " + core + ".",
        "working goes on": sentence.rstrip(" .") + ", but some of these are counted twice.",
        "under a condition": sentence.rstrip(" .") + " if $n$ is even.",
    }
    if quantity is not None:  # where the count's formula opens
        forms["bound"] = sentence[:quantity] + "at least " + sentence[quantity:]
        forms["work left"] = sentence.rstrip(" .") + " to check."
    return forms


def math_prose_conclusions(data: Path) -> list[Case]:
    """MATH's human-written test solutions (all 5,000; MATH-500 is a subset) whose last
    sentence states the boxed answer as a count ("so there are $\\boxed{12}$ ways", "for a
    total of $3+48=\\boxed{51}$ segments") or after a subject that holds a formula ("the
    degree of $(x^2+1)(x^3+1)$ is $\\boxed{5}$"), with the box removed: read against the
    gold (correct) and the gold plus one (not correct), and made uncommitted (a question,
    a premise, a check still to do, working that goes on, a condition; for counts also a
    bound and work left) against the gold (not correct)."""
    cases: list[Case] = []
    with open(data / "math" / "test.jsonl", encoding="utf-8") as handle:
        solutions = [json.loads(line)["solution"] for line in handle]
    for solution in solutions:
        solution = solution.rstrip()
        start = _last_sentence_start(solution)
        sentence = solution[start:]
        if solution.count("\\boxed") != 1 or "$$" in sentence or "\\[" in sentence:
            continue  # one box, in the last sentence, no displayed formula
        count = _COUNT_SHAPE.search(sentence)
        if count and re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", count.group("quantity"))):
            count = None  # "gives $c = \boxed{4}$ as the only solution": no count
        subject = None if count else _SUBJECT_SHAPE.search(sentence)
        if not (count or subject):
            continue
        box = sentence.index("\\boxed")
        opening = sentence.index("{", box)
        depth, end = 0, opening
        for end in range(opening, len(sentence)):
            depth += {"{": 1, "}": -1}.get(sentence[end], 0)
            if depth == 0:
                break
        gold = sentence[opening + 1 : end]
        wrong = _perturb_last_number(gold)
        if not gold.strip() or wrong is None:
            continue
        unboxed = sentence[:box] + gold + sentence[end + 1 :]
        working = solution[:start]
        if count:
            kind = "count" + (", computed" if "=" in count.group("quantity") else "")
        else:
            kind = "formula in the subject"
        cases.append((working + unboxed, gold, True, kind))
        cases.append((working + unboxed, wrong, False, kind + " (wrong)"))
        quantity = count.start("quantity") - 1 if count else None
        verb = re.search(r"\s(?:is|equals)\s", sentence)
        statement = sentence[: quantity if count else verb.start()]
        if "," in _OPENER.sub("", statement):
            continue  # made uncommitted only where the statement is one clause
        for form, text in _uncommitted_forms(unboxed, quantity).items():
            cases.append((working + text, gold, False, f"{kind.split(',')[0]}, {form}"))
    return cases


def math500_count_templates(data: Path) -> list[Case]:
    """The three conclusions of the issue as templates over the MATH-500 problems with a
    whole-number answer: a formula of the problem in the subject ("Therefore, the value
    of \\(f\\) is 15."), a computation in a formula before a noun ("giving us a total of
    \\(2 + 13 = 15\\) possible values for \\(n\\)"), a count ("there are 15 whole numbers
    left"); the right answer, a wrong one, and the same made uncommitted."""
    cases: list[Case] = []
    with open(data / "math500" / "test.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows:
        gold = row["answer"].strip()
        if not re.fullmatch(r"\d+", gold) or int(gold) < 2:
            continue
        # The problem's first short formula, where its dollar signs pair up (no prices,
        # no displays).
        problem = row["problem"]
        paired = "$$" not in problem and "\\$" not in problem and problem.count("$") % 2 == 0
        formulas = [
            formula.rstrip(".,;: ")
            for formula in (problem.split("$")[1::2] if paired else [])
            if 3 <= len(formula) <= 60 and "\n" not in formula and "\\\\" not in formula
        ]
        subject = formulas[0] if formulas else "x^2 + 1"
        part = int(gold) // 3 or 1
        for value, expected in ((gold, True), (str(int(gold) + 1), False)):
            sign = "" if expected else " (wrong)"
            cases += [
                (
                    f"{WORK}Therefore, the value we want for \\({subject}\\) is {value}.",
                    gold,
                    expected,
                    "template: formula in the subject" + sign,
                ),
                (
                    f"{WORK}In summary, we have two cases, giving us a total of "
                    f"\\({part} + {int(value) - part} = {value}\\) possible values for \\(n\\).",
                    gold,
                    expected,
                    "template: computation, then a noun" + sign,
                ),
                (
                    f"{WORK}After removing the multiples of 3, there are {value} whole numbers "
                    "left.",
                    gold,
                    expected,
                    "template: count" + sign,
                ),
                (
                    f"{WORK}So there are \\({value}\\) ways.",
                    gold,
                    expected,
                    "template: count" + sign,
                ),
                (f"{WORK}We get {value} solutions.", gold, expected, "template: count" + sign),
            ]
        uncommitted = [
            f"There are {gold} numbers to check.",
            f"Suppose there are {gold} of them.",
            "We need to find how many there are.",
            f"Are there {gold}?",
            f"There are {gold} cases: \\(n\\) even and \\(n\\) odd.",
            f"There are {gold} ways if \\(n\\) is odd, but the even case is left.",
            f"So there are at least {gold} ways.",
            f"Is the value we want for \\({subject}\\) equal to {gold}?",
            f"We still have to check whether the value for \\({subject}\\) is {gold}.",
        ]
        cases += [(WORK + text, gold, False, "template: uncommitted") for text in uncommitted]
    return cases


# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces matched."""
    start = text.rfind("\\boxed{")
    if start == -1:
        return None
    depth = 0
    for index in range(start + len("\\boxed"), len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len("\\boxed{") : index]
    return None


def boxed_exact_match(response: str, reference: str) -> bool:
    answer = last_boxed(response)
    return answer is not None and answer.strip() == reference.strip()


def last_sentence_substring(response: str, reference: str) -> bool:
    sentences = [part for part in re.split(r"(?<=[.!?])\s+", response.strip()) if part.strip()]
    return bool(sentences) and reference.strip() in sentences[-1]


def make_math_verify() -> Callable[[str, str], bool]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def check(response: str, reference: str) -> bool:
        return bool(verify(parse(reference), parse(response)))

    return check


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def measure(check: Callable[[str, str], bool], cases: list[Case]) -> dict:
    check(*cases[0][:2])  # warm-up, untimed: imports and caches
    outcomes: dict[str, list[int]] = {}  # class -> [right, false positives, false negatives]
    worst = 0.0
    started = time.perf_counter()
    for response, reference, expected, kind in cases:
        begin = time.perf_counter()
        try:
            predicted = bool(check(response, reference))
        except Exception:  # a crash counts as "not correct"
            predicted = False
        worst = max(worst, time.perf_counter() - begin)
        tally = outcomes.setdefault(kind, [0, 0, 0])
        tally[0 if predicted == expected else 1 if predicted else 2] += 1
    elapsed = time.perf_counter() - started
    right, false_positives, false_negatives = (
        sum(t[i] for t in outcomes.values()) for i in range(3)
    )
    return {
        "accuracy": right / len(cases),
        "false_positives": false_positives,
        "false_negatives": false_negatives,
        "checks_per_second": len(cases) / elapsed,
        "worst_ms": worst * 1000,
        "by_class": outcomes,
    }


def print_table(title: str, cases: list[Case], results: dict[str, dict]) -> None:
    positives = sum(expected for _, _, expected, _ in cases)
    print(f"\n{title}: {len(cases)} checks ({positives} correct, {len(cases) - positives} not)")
    header = f"{'method':<36} {'accuracy':>8} {'FP':>5} {'FN':>5} {'checks/s':>9} {'worst ms':>9}"
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        print(
            f"{name:<36} {result['accuracy']:>8.2%} {result['false_positives']:>5} "
            f"{result['false_negatives']:>5} {result['checks_per_second']:>9.0f} "
            f"{result['worst_ms']:>9.1f}"
        )
    kinds = sorted({kind for *_, kind in cases})
    if len(kinds) > 1:
        names = list(results)[:2]  # prmsynth and math-verify, side by side
        width = max(34, *map(len, kinds))
        print(f"\n  {'class':<{width}} " + "  ".join(f"{n[:3]} right/FP/FN" for n in names))
        for kind in kinds:
            cells = [
                "{:>6}/{:>3}/{:>3}".format(*results[name]["by_class"].get(kind, [0, 0, 0]))
                for name in names
            ]
            print(f"  {kind:<{width}} " + "      ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument(
        "--all-cores", action="store_true", help="do not pin the benchmark to one core"
    )
    args = parser.parse_args(argv)

    needed = [
        args.data / "processbench" / "gsm8k.json",
        args.data / "gsm8k" / "test.jsonl",
        args.data / "math500" / "test.jsonl",
        args.data / "bigbench_mistake" / "multistep_arithmetic.jsonl",
    ]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        print(
            "answer_check: data not found: " + ", ".join(missing) + "\n"
            "Expected the shared data folder at ../shared/data beside the repository "
            "(or pass --data DIR).",
            file=sys.stderr,
        )
        return 2

    prose_sets = []
    if (args.data / "math" / "test.jsonl").is_file():
        prose_sets.append(("MATH solutions ending in prose", math_prose_conclusions(args.data)))
    else:
        print("answer_check: no math/test.jsonl; the MATH prose set is skipped", file=sys.stderr)

    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        # The worker process inherits this, so the whole check runs on one core.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    sys.path.insert(0, str(REPOSITORY_ROOT))
    from prmsynth.verify._math import MathAnswerVerifier

    verifier = MathAnswerVerifier()
    begin = time.perf_counter()
    verifier.verify("\\boxed{\\sqrt{4}}", "2")  # starts the worker
    startup = time.perf_counter() - begin

    def prmsynth_check(response: str, reference: str) -> bool:
        return verifier.verify(response, reference).correct

    methods = {
        "(a) prmsynth MathAnswerVerifier": prmsynth_check,
        "(b) math-verify verify(parse, parse)": make_math_verify(),
        "(c) last boxed == gold": boxed_exact_match,
        "(d) gold in last sentence": last_sentence_substring,
    }
    try:
        for title, cases in (
            ("ProcessBench GSM8K (human labels)", processbench_cases(args.data)),
            ("BIG-Bench-Mistake arithmetic (model chains)", bigbench_cases(args.data)),
            ("GSM8K reference solutions without ####", gsm8k_reference_cases(args.data)),
            ("MATH500 answer rewrites (both directions)", math500_rewrites(args.data)),
            ("MATH500 decimals for fractions", math500_decimals(args.data)),
            ("MATH500 answers as models state them", math500_prose(args.data)),
            ("MATH500 counts and subjects with formulas", math500_count_templates(args.data)),
            *prose_sets,
        ):
            results = {name: measure(check, cases) for name, check in methods.items()}
            print_table(title, cases, results)
    finally:
        verifier.close()
    cores = "all cores" if args.all_cores else "pinned to one core"
    print(f"\nMathAnswerVerifier worker start-up (untimed above): {startup:.2f} s; {cores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
