"""Answer normalization: one canonical spelling per answer, for string comparison,
and the spelling handed to math-verify.

>>> normalize_answer("\\\\$1,000")
'1000'
"""

from __future__ import annotations

import re

from prmsynth.verify._latex import matching_brace, strip_math_wrappers

__all__ = [
    "CHOICE_LETTER",
    "LONE_THOUSANDS",
    "RELATIONS",
    "REMOVED_TOKENS",
    "drop_units",
    "interval_of_inequality",
    "normalize_answer",
    "normalize_for_math_verify",
    "right_hand_side",
    "unwrap_text",
]


REMOVED_TOKENS = (
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
CHOICE_LETTER = re.compile(r"^\(?\s*(?P<letter>[A-Z])\s*\)?$")
RELATIONS = ("<", ">", "\\le", "\\ge", "\\ne", "\\approx", "\\equiv")
_LONE_VARIABLE = re.compile(r"^(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)$")
LONE_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_COMMAND_BEFORE_LETTER = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z0-9])")
_SLASH_ENTRY = re.compile(r"(?<![\w}])(?P<top>\d+)/(?P<bottom>\d+)(?![\w{])")


def unwrap_text(answer: str) -> str:
    """``\\text{A,D}`` -> ``A,D`` when the whole answer is one text group."""
    whole = _WHOLE_TEXT.match(answer)
    if whole and matching_brace(answer, answer.index("{")) == len(answer) - 1:
        return whole.group("inner").strip()
    return answer


def drop_units(answer: str) -> str:
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


def right_hand_side(answer: str) -> str:
    """``x = 5`` -> ``5`` when one side of a single equation is a lone variable;
    ``y_1 = 2x, y_2 = 3x`` -> ``2x, 3x`` when every part of a list is such an equation."""
    if answer.count("=") > 1 and "," in answer:
        parts = _top_level_parts(answer)
        if len(parts) == 1:
            return answer  # "\gcd(12,54) = 6 = 2 \cdot 3": the commas are inside brackets
        sides = [right_hand_side(part) for part in parts]
        if all("=" not in side for side in sides):
            return ", ".join(sides)
        return answer
    member = _MEMBER.match(answer)
    if member:
        return member.group("set")  # x \in [-2, 7]
    if answer.count("=") != 1 or any(symbol in answer for symbol in RELATIONS):
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


def interval_of_inequality(answer: str) -> str:
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
    answer = strip_math_wrappers(answer)
    answer = unwrap_text(answer)
    for pattern, replacement in REMOVED_TOKENS:
        answer = pattern.sub(replacement, answer)
    answer = answer.strip()
    answer = drop_units(answer)
    answer = unwrap_text(answer)
    answer = right_hand_side(answer)
    answer = drop_units(answer)
    # Thousands separators are only taken out before spaces are, so that the
    # list "2, 345" is not read as 2345.
    # Only a lone number has thousands separators: in (1,100) or {2,345} the comma
    # separates entries.
    if LONE_THOUSANDS.fullmatch(answer.strip()):
        answer = answer.replace(",", "")
    answer = _collapse_spaces(answer.strip())
    if "\\begin{" in answer:
        # Matrix entries: -2/5 and -\frac{2}{5} are one spelling.
        answer = _SLASH_ENTRY.sub(r"\\frac{\g<top>}{\g<bottom>}", answer)
    choice = CHOICE_LETTER.match(answer)
    if choice:
        return choice.group("letter")
    if (
        answer.startswith("{")
        and answer.endswith("}")
        and matching_brace(answer, 0) == len(answer) - 1
    ):
        answer = answer[1:-1]
    return answer


def normalize_for_math_verify(answer: str, *, keep_equation: bool = False) -> str:
    """The spelling handed to math-verify: normalized, but with spaces kept."""
    answer = strip_math_wrappers(answer)
    answer = unwrap_text(answer)
    for pattern, replacement in REMOVED_TOKENS:
        answer = pattern.sub(replacement, answer)
    answer = drop_units(answer.strip())
    if not keep_equation:
        # Inequalities stay relations here: sympy compares -x > -1 with x < 1.
        answer = right_hand_side(answer)
    # Only a lone number has thousands separators: in (1,100) or {2,345} the comma
    # separates entries.
    if LONE_THOUSANDS.fullmatch(answer.strip()):
        answer = answer.replace(",", "")
    choice = CHOICE_LETTER.match(answer.strip())
    if choice:
        return choice.group("letter")
    return answer.strip()
