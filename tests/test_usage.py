"""One Usage value carries spend: adding, file records, and the results that hold it."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmsynth import LabelResult, Question, ReasoningTree, SearchResult, Usage

counts = st.integers(min_value=0, max_value=10**9)
usages = st.builds(
    Usage,
    n_completions=counts,
    prompt_tokens=counts,
    completion_tokens=counts,
    cost=st.integers(min_value=0, max_value=10**6).map(lambda cents: cents / 100),
)
TREE = ReasoningTree(Question(id="q", text="2 + 2?", reference_answer="4"))


@given(usages, usages, usages)
def test_adding_usage_is_commutative_associative_and_zero_changes_nothing(a, b, c):
    assert a + b == b + a
    assert (a + b).n_completions == a.n_completions + b.n_completions
    left, right = (a + b) + c, a + (b + c)
    assert attrs.evolve(left, cost=0.0) == attrs.evolve(right, cost=0.0)
    assert left.cost == pytest.approx(right.cost)
    assert a + Usage() == a


@given(usages)
def test_a_line_records_usage_under_its_file_keys_and_reads_it_back(usage):
    record = usage.as_record()
    assert list(record) == ["n_completions", "prompt_tokens", "completion_tokens", "cost"]
    assert Usage.from_record(record) == usage


def test_a_line_without_spend_keys_reads_as_nothing_spent():
    assert Usage.from_record({"question_id": "q"}) == Usage()


@given(usages)
def test_results_read_their_usage_under_the_old_names(usage):
    result = SearchResult(tree=TREE, status="kept", usage=usage)
    assert (result.n_completions, result.prompt_tokens) == (
        usage.n_completions,
        usage.prompt_tokens,
    )
    assert (result.completion_tokens, result.cost) == (usage.completion_tokens, usage.cost)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.n_completions = 1  # type: ignore[misc]


def test_results_built_with_the_old_count_names_hold_the_same_usage():
    old = SearchResult(tree=TREE, status="kept", n_completions=8, cost=0.5)
    assert old == SearchResult(tree=TREE, status="kept", usage=Usage(n_completions=8, cost=0.5))
    assert attrs.evolve(old, status="failed").usage == old.usage
    label = LabelResult(
        tree=TREE, step_values=[], first_error=-1, final_verdict=None, n_completions=3
    )
    assert label.usage == Usage(n_completions=3)
    with pytest.raises(TypeError, match="not both"):
        SearchResult(tree=TREE, status="kept", usage=Usage(), n_completions=1)
