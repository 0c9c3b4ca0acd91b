"""The reasoning tree: the core data structure, a wrapper over ``networkx.DiGraph``.

The root holds the question; every other node holds one solution step, and
the node's prefix is the path from the root.  Monte Carlo statistics live on
the nodes: ``n_rollouts`` completions were sampled from the node's prefix and
``n_correct`` of them reached the reference answer, so
``mc_value = n_correct / n_rollouts`` (None while nothing was sampled).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import networkx as nx

from prmsynth._errors import TreeInvariantError
from prmsynth._values import Question, Rollout, Step, Verdict


class ReasoningTree:
    """A tree of solution steps for one question.

    >>> from prmsynth import Question
    >>> tree = ReasoningTree(Question(id="q1", text="What is 2 + 3?", reference_answer="5"))
    >>> first, second = tree.add_steps(tree.root, ["2 + 3 = 5.", "The answer is 5."])
    >>> tree.prefix_steps(second)
    ['2 + 3 = 5.', 'The answer is 5.']
    >>> tree.add_steps(tree.root, ["2 + 3 = 5."]) == [first]  # identical prefixes share a node
    True
    >>> tree.mc_value(first) is None
    True
    >>> [step.depth for step in tree.steps_to(second)]
    [1, 2]
    """

    root: int = 0

    def __init__(self, question: Question) -> None:
        self.question = question
        self.graph = nx.DiGraph()
        self._add_node(self.root, question.text)

    # -- structure -----------------------------------------------------------------

    def _add_node(self, node: int, text: str, **attributes: Any) -> None:
        self.graph.add_node(
            node,
            text=text,
            mc_value=None,
            n_correct=0,
            n_rollouts=0,
            visits=0,
            terminal=False,
            verdict=None,
            correct_rollouts=[],
            incorrect_rollouts=[],
            n_truncated=0,
            n_unparseable=0,
            unusable_rollouts=[],
            label=None,
            critic_first_error=None,
        )
        self.graph.nodes[node].update(attributes)

    def add_step(self, parent: int, text: str) -> int:
        """Add one step under ``parent`` (or return the child that already has this text)."""
        text = text.strip()
        for child in self.graph.successors(parent):
            if self.graph.nodes[child]["text"] == text:
                return child
        node = self.graph.number_of_nodes()
        while node in self.graph:  # ids stay unique even for trees loaded with gaps
            node += 1
        self._add_node(node, text)
        self.graph.add_edge(parent, node)
        return node

    def add_steps(self, parent: int, steps: Iterable[str]) -> list[int]:
        """Add a chain of steps under ``parent``; returns the new (or shared) node ids."""
        nodes = []
        for step in steps:
            parent = self.add_step(parent, step)
            nodes.append(parent)
        return nodes

    def children(self, node: int) -> list[int]:
        return list(self.graph.successors(node))

    def parent(self, node: int) -> int | None:
        predecessors = list(self.graph.predecessors(node))
        return predecessors[0] if predecessors else None

    def path(self, node: int) -> list[int]:
        """Node ids from the root down to ``node``, both included."""
        path = [node]
        while (parent := self.parent(path[-1])) is not None:
            path.append(parent)
        return path[::-1]

    def prefix_steps(self, node: int) -> list[str]:
        """The step texts from the root (excluded) down to ``node`` (included)."""
        return [self.graph.nodes[n]["text"] for n in self.path(node)[1:]]

    def step(self, node: int) -> Step:
        """A read-only [`Step`][prmsynth.Step] view of ``node``."""
        data = self.graph.nodes[node]
        return Step(
            node_id=node,
            text=data["text"],
            depth=len(self.path(node)) - 1,
            mc_value=data["mc_value"],
            n_correct=data["n_correct"],
            n_rollouts=data["n_rollouts"],
            visits=data["visits"],
            terminal=data["terminal"],
        )

    def steps_to(self, node: int) -> list[Step]:
        """The steps from the first one down to ``node`` (the root excluded)."""
        return [self.step(n) for n in self.path(node)[1:]]

    def nodes(self) -> Iterator[int]:
        """Node ids in depth-first order from the root, children in insertion order."""
        return iter(nx.dfs_preorder_nodes(self.graph, self.root))

    def leaves(self) -> list[int]:
        return [node for node in self.nodes() if self.graph.out_degree(node) == 0]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __getitem__(self, node: int) -> dict[str, Any]:
        """The attribute dict of ``node`` (read it; change it through the methods)."""
        return self.graph.nodes[node]

    # -- statistics ----------------------------------------------------------------

    def mc_value(self, node: int) -> float | None:
        return self.graph.nodes[node]["mc_value"]

    def record_rollouts(self, node: int, rollouts: Sequence[Rollout]) -> None:
        """Count ``rollouts`` sampled from ``node``'s prefix and update its MC value.

        A rollout whose answer could not be judged (cut off at the token limit,
        or no answer found) says nothing about the prefix: it is kept in
        ``unusable_rollouts`` and counted in ``n_truncated`` or
        ``n_unparseable``, never in the MC value.  A prefix with no usable
        rollout keeps the value None.
        """
        data = self.graph.nodes[node]
        for rollout in rollouts:
            if not rollout.usable:
                key = "n_truncated" if rollout.finish_reason == "length" else "n_unparseable"
                data[key] += 1
                data["unusable_rollouts"].append(rollout)
                continue
            data["n_rollouts"] += 1
            if rollout.correct:
                data["n_correct"] += 1
                data["correct_rollouts"].append(rollout)
            else:
                data["incorrect_rollouts"].append(rollout)
        if data["n_rollouts"]:
            data["mc_value"] = data["n_correct"] / data["n_rollouts"]

    def mark_terminal(self, node: int, verdict: Verdict) -> None:
        """Mark ``node`` as the last step of a finished solution with this ``verdict``.

        A finished solution's value is known exactly, so it counts as one
        rollout of its own (1 correct or 0) unless the node was already sampled
        or its answer cannot be judged (then the value stays unknown).
        """
        data = self.graph.nodes[node]
        data["terminal"] = True
        data["verdict"] = verdict.status
        if data["n_rollouts"] == 0 and verdict.status != "unparseable":
            data["n_rollouts"] = 1
            data["n_correct"] = int(verdict.correct)
            data["mc_value"] = float(verdict.correct)

    def set_label(self, node: int, label: bool) -> None:
        """Record the first-error rule's judgement of ``node``'s step: False for
        the first wrong step of a solution, True for a step before it.  A later
        judgement, made with more evidence, replaces an earlier one."""
        self.graph.nodes[node]["label"] = label

    def set_critique(self, leaf: int, first_error: int | None) -> None:
        """Record a critic's verdict on the solution that ends at ``leaf``: the
        index (into the path's steps) of its first wrong step, -1 for none,
        None for no verdict."""
        self.graph.nodes[leaf]["critic_first_error"] = first_error

    def increment_visits(self, node: int) -> None:
        self.graph.nodes[node]["visits"] += 1

    def total_visits(self) -> int:
        return sum(data["visits"] for _, data in self.graph.nodes(data=True))

    # -- invariants ----------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise [`TreeInvariantError`][prmsynth.TreeInvariantError] unless the tree is well formed.

        One root with no parent, no cycle, every node reachable from the root,
        every other node with exactly one parent, ``0 <= n_correct <= n_rollouts``
        and ``mc_value`` equal to their ratio (None when nothing was sampled).
        """
        graph = self.graph
        if self.root not in graph:
            raise TreeInvariantError("the tree has no root node")
        if not nx.is_directed_acyclic_graph(graph):
            raise TreeInvariantError("the tree has a cycle")
        roots = [node for node in graph if graph.in_degree(node) == 0]
        if roots != [self.root]:
            raise TreeInvariantError(f"the tree must have exactly one root, found {roots}")
        for node in graph:
            if node != self.root and graph.in_degree(node) != 1:
                raise TreeInvariantError(f"node {node} has {graph.in_degree(node)} parents")
        reachable = nx.descendants(graph, self.root) | {self.root}
        if len(reachable) != graph.number_of_nodes():
            raise TreeInvariantError("some nodes are not reachable from the root")
        for node, data in graph.nodes(data=True):
            n_correct, n_rollouts = data["n_correct"], data["n_rollouts"]
            if not 0 <= n_correct <= n_rollouts:
                raise TreeInvariantError(
                    f"node {node}: need 0 <= n_correct <= n_rollouts, got {n_correct}, {n_rollouts}"
                )
            expected = n_correct / n_rollouts if n_rollouts else None
            if data["mc_value"] != expected:
                raise TreeInvariantError(
                    f"node {node}: mc_value {data['mc_value']!r} is not n_correct / n_rollouts"
                )
            if data["visits"] < 0:
                raise TreeInvariantError(f"node {node}: negative visit count")

    # -- comparison ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReasoningTree):
            return NotImplemented
        return (
            self.question == other.question
            and dict(self.graph.nodes(data=True)) == dict(other.graph.nodes(data=True))
            and sorted(self.graph.edges) == sorted(other.graph.edges)
            # child order is part of the tree (it is the order steps were found)
            and all(self.children(n) == other.children(n) for n in self.graph)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<ReasoningTree question={self.question.id!r} nodes={len(self)}>"
