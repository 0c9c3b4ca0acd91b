"""Answer extraction: the final answer a response commits to, by an ordered list of rules.

[`extract_answer`][prmsynth.extract_answer] tries each of `EXTRACTION_RULES` in turn,
first to last, on the last 10,000 characters of a response; the first rule that
fires decides.  Each rule is an `ExtractionRule` value with a name, so the order
is visible in one place (as math-verify's typed extraction configs are) and each
rule can be tested on its own.

>>> [rule.name for rule in EXTRACTION_RULES][:3]
['boxed', 'answer-phrase', 'gsm8k-marker']
>>> extract_answer("First 2 + 3 = 5, so the answer is \\\\boxed{5}.")
'5'
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from typing import Literal

import attrs

from prmsynth.verify._latex import matching_brace, repair_escapes, strip_math_wrappers

__all__ = [
    "BOX_COMMAND",
    "EXTRACTION_WINDOW",
    "MAX_BOX_CANDIDATES",
    "extract_answer",
    "final_boxed",
]


# Only the tail of a response is searched: final answers sit at the end, and
# a cap keeps the regular expressions fast on runaway generations.
EXTRACTION_WINDOW = 10_000
# At most this many \boxed commands are tried, last first.
MAX_BOX_CANDIDATES = 20


BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)\b")
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


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of the last complete ``\\boxed{...}`` /
    ``\\fbox{...}`` commands, in text order."""
    found = []
    # Only the last few candidates: an unclosed \boxed{ costs a scan to the end.
    for match in list(BOX_COMMAND.finditer(text))[-MAX_BOX_CANDIDATES:]:
        rest = text[match.end() :]
        stripped = rest.lstrip(" ")
        if stripped.startswith("{"):
            open_index = match.end() + len(rest) - len(stripped)
            closing = matching_brace(text, open_index)
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


def final_boxed(text: str) -> tuple[str, int] | None:
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
    parts = [strip_math_wrappers(part) for part in parts]
    return ", ".join(part for part in parts if part), end


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
    answer = strip_math_wrappers(sentence)
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
    return strip_math_wrappers(_formula(matches[-1])) or None


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
    quantity = strip_math_wrappers(count.group("quantity"))
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
    quantity = strip_math_wrappers(match.group("quantity"))
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


def _last_line_answer(line: str) -> str | None:
    """A last line that is nothing but the answer (a formula or a number), or None."""
    # "28 percent" / "$28$ pct": the word is the percent sign.
    line = _PERCENT_WORD.sub("\\%", line)
    stripped = strip_math_wrappers(line)
    if not stripped or _HEDGE.search(_outside_math(line)):
        return None
    if BOX_COMMAND.search(line) or stripped.count("{") != stripped.count("}"):
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
    return strip_math_wrappers(next(g for g in spans[-1].groups() if g)) or None


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
# The rules, in order
# ---------------------------------------------------------------------------


class _Decided(enum.Enum):
    NO_ANSWER = "no answer"


NO_ANSWER = _Decided.NO_ANSWER
"""What a rule finds when it fires on a response that commits to no answer ("there
are 50 numbers to check"): the search stops there and extraction gives None."""

Found = str | None | Literal[_Decided.NO_ANSWER]
"""What a rule finds: the answer, None when it does not fire (the next rule is
tried), or `NO_ANSWER`."""


@attrs.frozen(kw_only=True)
class Response:
    """A response as the rules read it: the last `EXTRACTION_WINDOW` characters, escape
    damage repaired, the dollar signs of amounts and trailing sign-offs removed.

    >>> Response.read("So $4 + $5 = $9.\\nI hope it is correct.").last_line
    'So 4 + 5 = 9.'
    """

    text: str

    @classmethod
    def read(cls, text: str) -> Response:
        text = _without_currency_signs(repair_escapes(text[-EXTRACTION_WINDOW:])).rstrip()
        for _ in range(8):  # a few trailing tokens at most; anchored at the end, so cheap
            sign_off = _SIGN_OFF.search(text, max(0, len(text) - 64))
            if sign_off is None:
                break
            text = text[: sign_off.start()].rstrip()
        return cls(text=text)

    @functools.cached_property
    def phrases(self) -> list[re.Match[str]]:
        """Every "The answer is" / "Final answer:" in the text."""
        return list(_ANSWER_PHRASE.finditer(self.text))

    @functools.cached_property
    def last_line(self) -> str:
        """The last line that is not blank, stripped ("" for an empty text)."""
        lines = [line.strip() for line in self.text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @functools.cached_property
    def last_sentence(self) -> str | None:
        """The last sentence of the last line, or None for an empty text."""
        sentences = _sentences(self.last_line)
        return sentences[-1] if sentences else None


@attrs.frozen(kw_only=True)
class ExtractionRule:
    """One way a response states its answer: ``find`` gives the answer when the rule
    fires, None when it does not, and `NO_ANSWER` when it fires on a response that
    commits to none."""

    name: str
    find: Callable[[Response], Found]


def _boxed(response: Response) -> Found:
    """The last ``\\boxed{...}`` / ``\\fbox{...}`` (boxes joined by "and" or commas are
    one answer in parts), unless a "final answer" stated after it says otherwise."""
    boxed = final_boxed(response.text)
    if boxed is None:
        return None
    answer, boxed_end = boxed
    # A "final answer" stated after the last box overrides a box in the working.
    later = [
        match
        for match in response.phrases
        if match.start() >= boxed_end and "final" in match.group(0).lower()
    ]
    if later:
        stated = _phrase_answer(response.text[later[-1].end() :])
        if _meaningful(stated):
            return stated
    return answer or None


def _answer_phrase(response: Response) -> Found:
    """The last "The answer is X" / "Final Answer: X" whose sentence does not hedge."""
    text = response.text
    for match in reversed(response.phrases[-MAX_BOX_CANDIDATES:]):
        line = text[match.start() :].split("\n", 1)[0]
        if _HEDGE.search(_outside_math(_first_sentence(line))):
            continue  # "the answer is not 4"
        answer = _stated_answer(line[match.end() - match.start() :])
        if answer:
            return answer
    return None


def _gsm8k_marker(response: Response) -> Found:
    """GSM8K's ``#### X``: the last one."""
    markers = list(_GSM8K_ANSWER.finditer(response.text))
    if not markers:
        return None
    return strip_math_wrappers(markers[-1].group(1)) or None


def _answer_display(response: Response) -> Found:
    """ "Answer" and a displayed formula that ends the response (``Answer \\[ 9 \\]``)."""
    display = _ANSWER_DISPLAY.search(response.text)
    if display is None:
        return None
    return _meaningful(strip_math_wrappers(display.group(1))) or NO_ANSWER


def _answer_line(response: Response) -> Found:
    """A last line ``Answer: X``."""
    line = _ANSWER_LINE.match(response.last_line)
    return _stated_answer(line.group(1)) if line else None


def _bold(response: Response) -> Found:
    """The last ``**X**`` with a digit on the last line."""
    bold = [
        match.group(1)
        for match in _BOLD.finditer(response.last_line)
        if any(character.isdigit() for character in match.group(1))
    ]
    if not bold:
        return None
    return _phrase_answer(bold[-1]) or None


def _stated_count(response: Response) -> Found:
    """A count the last sentence states ("there are 50 whole numbers left"), or
    `NO_ANSWER` for one that commits to nothing ("50 numbers to check")."""
    if response.last_sentence is None:
        return None
    counted, answer = _counted_answer(response.last_sentence)
    if not counted:
        return None
    return _meaningful(answer) or NO_ANSWER


def _concluding_sentence(response: Response) -> Found:
    """A concluding last sentence: "Therefore/Thus/So ... is X" ("the degree of
    \\((x^2+1)(x^3+1)\\) is 5" states 5, not the subject's formula)."""
    sentence = response.last_sentence
    return None if sentence is None else _meaningful(_concluding_answer(sentence))


def _concluding_clause_rule(response: Response) -> Found:
    """A concluding clause that ends the last sentence ("..., so the perimeter is 36")."""
    sentence = response.last_sentence
    return None if sentence is None else _meaningful(_concluding_clause(sentence))


def _declared_formula(response: Response) -> Found:
    """A last sentence that ends by declaring one formula ("The identity matrix is $M$.")."""
    sentence = response.last_sentence
    return None if sentence is None else _meaningful(_declared_answer(sentence))


def _corrected_value(response: Response) -> Found:
    """A last sentence that corrects a rejected value ("it's not 10, it's 12")."""
    sentence = response.last_sentence
    return None if sentence is None else _meaningful(_corrected_answer(sentence))


def _bare_answer_line(response: Response) -> Found:
    """A last line that is nothing but the answer (a formula or a number)."""
    return _meaningful(_last_line_answer(response.last_line))


def _restated(response: Response) -> Found:
    """A plain last sentence that restates the result the working's last "=" computed."""
    sentence = response.last_sentence
    if sentence is None:
        return None
    working = response.text[: response.text.rfind(sentence)]
    return _restated_result(sentence, working) or None


def _computed(response: Response) -> Found:
    """A last sentence that computes the result itself ("She makes 9 * 2 = $18 every day.")."""
    if response.last_sentence is None:
        return None
    return _final_computation(response.last_sentence) or None


EXTRACTION_RULES: tuple[ExtractionRule, ...] = (
    ExtractionRule(name="boxed", find=_boxed),
    ExtractionRule(name="answer-phrase", find=_answer_phrase),
    ExtractionRule(name="gsm8k-marker", find=_gsm8k_marker),
    ExtractionRule(name="answer-display", find=_answer_display),
    ExtractionRule(name="answer-line", find=_answer_line),
    ExtractionRule(name="bold", find=_bold),
    ExtractionRule(name="stated-count", find=_stated_count),
    ExtractionRule(name="concluding-sentence", find=_concluding_sentence),
    ExtractionRule(name="concluding-clause", find=_concluding_clause_rule),
    ExtractionRule(name="declared-formula", find=_declared_formula),
    ExtractionRule(name="corrected-value", find=_corrected_value),
    ExtractionRule(name="bare-answer-line", find=_bare_answer_line),
    ExtractionRule(name="restated-result", find=_restated),
    ExtractionRule(name="final-computation", find=_computed),
)
"""The extraction rules, first to last: [`extract_answer`][prmsynth.extract_answer] tries
them in this order and the first that fires decides."""


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
    response = Response.read(text)
    for rule in EXTRACTION_RULES:
        found = rule.find(response)
        if found is NO_ANSWER:
            return None
        if found:
            return found
    return None
