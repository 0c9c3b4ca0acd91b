"""Each answer-extraction rule on its own: where it fires, and where it must not.

`EXTRACTION_RULES` is the order ``extract_answer`` tries them in; the cases of a
rule are responses it alone decides (no earlier rule fires), so each also checks
``extract_answer`` end to end.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prmsynth import extract_answer
from prmsynth.verify._extract import (
    EXTRACTION_RULES,
    EXTRACTION_WINDOW,
    NO_ANSWER,
    Response,
)

RULES = {rule.name: rule for rule in EXTRACTION_RULES}

#: (rule, response, the answer it finds): the rule fires, and is the first that does.
FIRES = [
    ("boxed", "So the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("boxed", "The solutions are \\boxed{2} and \\boxed{6}.", "2, 6"),
    ("boxed", "We get \\boxed{3}, but the final answer is 4.", "4"),
    ("boxed", "Thus \\fbox{$x = 1$}", "x = 1"),
    ("answer-phrase", "The answer is $42$.", "42"),
    ("answer-phrase", "The final answer is 7. I hope it is correct.", "7"),
    ("answer-phrase", "Final Answer: The largest $n$ is 34.", "34"),
    ("gsm8k-marker", "She pays 3 * 24 = 72 dollars.\n#### 72", "72"),
    ("gsm8k-marker", "#### $1,000", "1,000"),
    ("answer-display", "Answer\n\\[ 9 \\]", "9"),
    ("answer-line", "Answer: 15 apples", "15"),
    ("answer-line", "We add them.\nanswer: $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("bold", "Adding them, we get **36**", "36"),
    ("stated-count", "After removing the multiples of 3, there are 50 whole numbers left.", "50"),
    ("stated-count", "So there are $7 - 3 + 1 = 5$ integers.", "5"),
    ("concluding-sentence", "Therefore, the area is 36 square units.", "36"),
    ("concluding-sentence", "Thus $x = 3$.", "x = 3"),
    ("concluding-clause", "We multiply the side by 4, so the perimeter is 36 inches.", "36"),
    (
        "declared-formula",
        "The identity matrix is $\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}$.",
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
    ),
    ("corrected-value", "It's not 10, it's 12 dollars.", "12"),
    ("bare-answer-line", "Adding them up:\n\n$\\frac{10}{9}$", "\\frac{10}{9}"),
    ("bare-answer-line", "6 * 7 = 42", "42"),
    ("restated-result", "He walks 20 + 34 = 54 miles.\nElvis is 54 miles east of his house.", "54"),
    ("final-computation", "She makes 9 * 2 = $18 every day.", "18"),
]

#: (rule, response): the rule does not fire, so the next one is asked.
DOES_NOT_FIRE = [
    ("boxed", "Compute \\boxed{ and then stop"),
    ("boxed", "The answer is 5."),
    ("answer-phrase", "So the answer is not 4, let me check again."),
    ("answer-phrase", "The question asks for the area."),
    ("gsm8k-marker", "The total is 12 # 3"),
    ("gsm8k-marker", "So she has 5 apples."),
    ("answer-display", "Answer: 9"),
    ("answer-display", "Answer\n\\[ 9 \\]\nThat was easy."),
    ("answer-line", "Answer the question first."),
    ("answer-line", "Answer: 9\nThen we go on."),
    ("bold", "The key idea is **symmetry**."),
    ("bold", "**36** is what we got.\nBut that was wrong."),
    ("stated-count", "There are 31 days in May."),
    ("stated-count", "There are 36 outcomes, so the probability is $\\frac{1}{6}$."),
    ("concluding-sentence", "Therefore, maybe it is 36?"),
    ("concluding-sentence", "The area is 36."),
    ("concluding-clause", "We multiply the side by 4, so we need to find $w$."),
    ("concluding-clause", "Maybe we multiply by 4, so the perimeter is 36."),
    ("declared-formula", "Perhaps the matrix is $M$."),
    ("declared-formula", "The matrix is $M$ when $x = 1$, as shown."),
    ("corrected-value", "Maybe it's not 10, it's 12."),
    ("corrected-value", "It is 12 dollars."),
    ("bare-answer-line", "The table has 5 rows."),
    ("bare-answer-line", "$a$ $b$"),
    ("restated-result", "He walks 20 + 34 = 54 miles.\nElvis is 55 miles east of his house."),
    ("restated-result", "The table lists 5 rows."),
    ("final-computation", "Suppose x = 5."),
    ("final-computation", "6*7 = 42. Hmm, wait, let me reconsider."),
    ("final-computation", "He can skip 4 classes because 10 - 4 = 6."),
]

#: (rule, response): the rule fires on a response that commits to no answer.
COMMITS_TO_NOTHING = [
    ("answer-display", "Answer: \\[ \\]"),
    ("stated-count", "There are 50 numbers to check."),
    ("stated-count", "There are 3 cases: $n$ even, $n$ odd and $n = 0$."),
    ("stated-count", "So there are at least 5 ways."),
]


def first_to_fire(text: str) -> str | None:
    response = Response.read(text)
    return next((rule.name for rule in EXTRACTION_RULES if rule.find(response)), None)


@pytest.mark.parametrize(("name", "text", "answer"), FIRES, ids=[case[0] for case in FIRES])
def test_a_rule_finds_the_answer_its_response_states(name, text, answer):
    assert RULES[name].find(Response.read(text)) == answer
    assert first_to_fire(text) == name
    assert extract_answer(text) == answer


@pytest.mark.parametrize(("name", "text"), DOES_NOT_FIRE, ids=[case[0] for case in DOES_NOT_FIRE])
def test_a_rule_does_not_fire_on_a_response_it_does_not_read(name, text):
    assert RULES[name].find(Response.read(text)) is None


@pytest.mark.parametrize(
    ("name", "text"), COMMITS_TO_NOTHING, ids=[case[0] for case in COMMITS_TO_NOTHING]
)
def test_a_rule_that_finds_no_commitment_ends_the_search(name, text):
    assert RULES[name].find(Response.read(text)) is NO_ANSWER
    assert first_to_fire(text) == name
    assert extract_answer(text) is None


def test_every_rule_has_cases_where_it_fires_and_where_it_does_not():
    names = [rule.name for rule in EXTRACTION_RULES]
    assert len(set(names)) == len(names)
    firing = {case[0] for case in FIRES + COMMITS_TO_NOTHING}
    silent = {case[0] for case in DOES_NOT_FIRE}
    assert set(names) == firing == silent


@pytest.mark.parametrize(
    ("text", "winner", "loser"),
    [
        ("The answer is 5.\nSo the result is \\boxed{6}.", "boxed", "answer-phrase"),
        ("The answer is 5.\n#### 6", "answer-phrase", "gsm8k-marker"),
        ("The answer is coming.\nAnswer\n\\[ 9 \\]", "answer-phrase", "answer-display"),
        ("Answer\n\\[ 9 \\]", "answer-display", "bare-answer-line"),
        ("Final answer: $x = 3$", "answer-phrase", "declared-formula"),
        ("6 * 7 = 42", "bare-answer-line", "final-computation"),
    ],
)
def test_an_earlier_rule_wins_over_a_later_one(text, winner, loser):
    names = [rule.name for rule in EXTRACTION_RULES]
    response = Response.read(text)
    assert names.index(winner) < names.index(loser)
    assert RULES[winner].find(response) and RULES[loser].find(response)
    assert first_to_fire(text) == winner


def test_a_response_is_read_after_its_sign_off_and_currency_signs():
    response = Response.read("She gets $400 + $60 = $460.\nI hope it is correct.</s>")
    assert response.last_line == "She gets 400 + 60 = 460."
    assert response.last_sentence == "She gets 400 + 60 = 460."
    assert Response.read("").last_sentence is None


@settings(deadline=None, max_examples=40)  # 10,000-character texts on a shared machine
@given(st.text(alphabet="ab 1=$.\\{}\n", min_size=1, max_size=60), st.text(max_size=40))
def test_only_the_last_window_of_a_response_is_read(tail, head):
    text = (tail * (EXTRACTION_WINDOW // max(len(tail), 1) + 1))[-EXTRACTION_WINDOW:]
    answer = extract_answer(head + text)
    assert answer == extract_answer(text)
    assert answer is None or answer != ""


def test_the_verifier_guide_lists_the_rules_in_their_order():
    from ..conftest import REPO_ROOT

    guide = (REPO_ROOT / "docs" / "howto-verifier.md").read_text(encoding="utf-8")
    places = [guide.find(f"`{rule.name}`") for rule in EXTRACTION_RULES]
    assert -1 not in places
    assert places == sorted(places)
