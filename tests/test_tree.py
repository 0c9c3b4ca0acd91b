from __future__ import annotations

import attrs
import pytest
from hypothesis import given

from prmsynth import Question, ReasoningTree, Rollout, TreeInvariantError, Verdict

from .strategies import trees

QUESTION = Question(id="q", text="What is 2 + 3?", reference_answer="5")


def rollout(correct: bool) -> Rollout:
    return Rollout(
        text="t", steps=("t",), verdict=Verdict(status="correct" if correct else "incorrect")
    )


@given(trees())
def test_random_trees_keep_their_invariants(tree):
    tree.check_invariants()
    for node in tree.nodes():
        stats = tree.node(node)
        assert 0 <= stats.n_correct <= stats.n_rollouts
        assert stats.mc_value is None or 0.0 <= stats.mc_value <= 1.0
        # a node's prefix is the path from the root
        path = tree.path(node)
        assert path[0] == tree.root and path[-1] == node
        assert len(tree.prefix_steps(node)) == len(path) - 1


@given(trees())
def test_siblings_never_share_text(tree):
    for node in tree.nodes():
        texts = [tree.node(child).text for child in tree.children(node)]
        assert len(texts) == len(set(texts))


def test_mc_value_accumulates_over_all_rollouts_seen():
    tree = ReasoningTree(QUESTION)
    node = tree.add_step(tree.root, "2 + 3 = 5")
    assert tree.mc_value(node) is None
    tree.record_rollouts(node, [rollout(True), rollout(False)])
    assert tree.mc_value(node) == 0.5
    tree.record_rollouts(node, [rollout(True), rollout(True)])
    assert tree.mc_value(node) == 0.75
    assert len(tree.node(node).correct_rollouts) == 3


def test_terminal_node_counts_its_own_outcome_once():
    tree = ReasoningTree(QUESTION)
    node = tree.add_step(tree.root, "The answer is 7")
    tree.mark_terminal(node, Verdict(status="incorrect"))
    tree.mark_terminal(node, Verdict(status="incorrect"))
    stats = tree.node(node)
    assert (stats.n_correct, stats.n_rollouts, tree.mc_value(node)) == (0, 1, 0.0)
    assert tree.node(node).verdict == "incorrect"


def overwrite(tree: ReasoningTree, node: int, **changes) -> None:
    """Change a node's statistics behind the tree's back (as a buggy policy editing
    the networkx graph could)."""
    data = tree.graph.nodes[node]
    data["stats"] = attrs.evolve(data["stats"], **changes)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda tree, node: tree.graph.add_edge(node, tree.root),  # cycle
        lambda tree, node: tree.graph.add_node(99, **tree.graph.nodes[node]),  # unreachable
        lambda tree, node: overwrite(tree, node, n_correct=3, n_rollouts=2),
        lambda tree, node: overwrite(tree, node, mc_value=0.3),
    ],
)
def test_check_invariants_catches_corruption(corrupt):
    tree = ReasoningTree(QUESTION)
    node = tree.add_step(tree.root, "a step")
    tree.check_invariants()
    corrupt(tree, node)
    with pytest.raises(TreeInvariantError):
        tree.check_invariants()


def test_steps_are_stripped_and_shared():
    tree = ReasoningTree(QUESTION)
    first = tree.add_steps(tree.root, ["  a ", "b"])
    second = tree.add_steps(tree.root, ["a", "c"])
    assert first[0] == second[0]
    assert len(tree) == 4
    assert sorted(tree.node(n).text for n in tree.leaves()) == ["b", "c"]


@given(trees())
def test_step_views_agree_with_node_attributes(tree):
    for node in tree.nodes():
        steps = tree.steps_to(node)
        assert [step.node_id for step in steps] == tree.path(node)[1:]
        assert [step.depth for step in steps] == list(range(1, len(steps) + 1))
        if steps:
            assert steps[-1].mc_value == tree.mc_value(node)
            assert steps[-1].n_rollouts == tree.node(node).n_rollouts


@given(trees())
def test_node_statistics_are_read_only_from_outside_the_tree(tree):
    for node in tree.nodes():
        stats = tree.node(node)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            stats.n_rollouts += 1
        assert isinstance(stats.correct_rollouts, tuple)
        assert stats.n_correct == len(stats.correct_rollouts) or stats.terminal


def test_a_recorded_rollout_replaces_the_node_statistics_and_leaves_the_old_view_alone():
    tree = ReasoningTree(QUESTION)
    node = tree.add_step(tree.root, "2 + 3 = 5")
    before = tree.node(node)
    tree.record_rollouts(node, [rollout(True)])
    assert (before.n_rollouts, tree.node(node).n_rollouts) == (0, 1)


def test_the_deprecated_mapping_view_reads_the_same_values_and_cannot_write():
    tree = ReasoningTree(QUESTION)
    node = tree.add_step(tree.root, "2 + 3 = 5")
    tree.record_rollouts(node, [rollout(True), rollout(False)])
    with pytest.deprecated_call():
        view = tree[node]
    stats = tree.node(node)
    assert view["text"] == stats.text and view["mc_value"] == stats.mc_value == 0.5
    assert dict(view) == attrs.asdict(stats, recurse=False)
    with pytest.raises(TypeError):
        view["mc_value"] = 1.0  # type: ignore[index]
    with pytest.raises(KeyError):
        view["no_such_field"]


def test_networkx_reads_the_node_statistics_as_node_attributes():
    import networkx as nx

    tree = ReasoningTree(Question(id="q", text="2 + 2?", reference_answer="4"))
    [node] = tree.add_steps(tree.root, ["2 + 2 = 4."])
    tree.mark_terminal(node, Verdict(status="correct"))
    assert nx.get_node_attributes(tree.graph, "text") == {0: "2 + 2?", 1: "2 + 2 = 4."}
    assert tree.graph.nodes[node]["mc_value"] == tree.node(node).mc_value == 1.0
    assert tree.graph.nodes[node]["terminal"] is True


def test_the_deprecated_item_view_is_live():
    tree = ReasoningTree(Question(id="q", text="2 + 2?", reference_answer="4"))
    [node] = tree.add_steps(tree.root, ["2 + 2 = 4."])
    with pytest.warns(DeprecationWarning):
        view = tree[node]
    tree.mark_terminal(node, Verdict(status="correct"))
    assert view["terminal"] is True and view["mc_value"] == 1.0
