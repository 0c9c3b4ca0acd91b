"""Hypothesis strategies that build random valid reasoning trees."""

from __future__ import annotations

from hypothesis import strategies as st

from prmsynth import Question, ReasoningTree, Rollout, Verdict

step_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda text: text.strip())

verdicts = st.builds(
    Verdict,
    status=st.sampled_from(["correct", "incorrect", "unparseable"]),
    extracted_answer=st.one_of(st.none(), st.text(max_size=10)),
)

rollouts = st.builds(
    Rollout,
    text=st.text(max_size=40),
    steps=st.lists(step_text, max_size=3).map(tuple),
    verdict=verdicts,
    n_tokens=st.one_of(st.none(), st.integers(0, 1000)),
    finish_reason=st.sampled_from([None, "stop", "length"]),
)


@st.composite
def trees(draw) -> ReasoningTree:
    question = Question(
        id=draw(st.text(min_size=1, max_size=8)),
        text=draw(step_text),
        reference_answer=draw(step_text),
    )
    tree = ReasoningTree(question)
    for _ in range(draw(st.integers(0, 12))):
        parent = draw(st.sampled_from(sorted(tree.graph.nodes)))
        chain = tree.add_steps(parent, draw(st.lists(step_text, min_size=1, max_size=4)))
        for node in draw(st.lists(st.sampled_from(chain), max_size=2)):
            tree.record_rollouts(node, draw(st.lists(rollouts, max_size=3)))
        if draw(st.booleans()):
            tree.mark_terminal(chain[-1], draw(verdicts))
        for node in draw(st.lists(st.sampled_from(chain), max_size=2)):
            tree.increment_visits(node)
    return tree
