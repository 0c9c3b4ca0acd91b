"""The reasoning tree: the core data structure, a wrapper over ``networkx.DiGraph``.

The root holds the question; every other node holds one solution step, and
the node's prefix is the path from the root.  Monte Carlo statistics live on
the nodes, one read-only `NodeStats` each (``tree.node(id)``): ``n_rollouts``
completions were sampled from the node's prefix and ``n_correct`` of them
reached the reference answer, so ``mc_value = n_correct / n_rollouts`` (None
while nothing was sampled).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import networkx as nx

from prmsynth._errors import TreeInvariantError
from prmsynth._values import Question, Rollout, Step, Verdict, VerdictStatus


@attrs.frozen(kw_only=True)
class NodeStats:
    """One node of a [`ReasoningTree`][prmsynth.ReasoningTree]: its step text and
    Monte Carlo statistics, read with [`ReasoningTree.node`][prmsynth.ReasoningTree.node].

    Read-only: the search changes a node through the tree's methods
    (``record_rollouts``, ``mark_terminal``, ``set_label``, ...), which
    replace the node's value.  ``n_correct`` of ``n_rollouts`` usable
    completions from the node's prefix reached the reference answer
    (``mc_value`` is their ratio, None while nothing was sampled); completions
    that could not be judged are kept apart (``unusable_rollouts``, counted in
    ``n_truncated`` and ``n_unparseable``).  ``terminal`` marks the last step
    of a finished solution, ``verdict`` its answer's status; ``label`` is the
    first-error rule's judgement of the step (False: the first wrong step),
    ``critic_first_error`` a critic's verdict on the solution ending here.

    >>> from prmsynth import Question, ReasoningTree
    >>> tree = ReasoningTree(Question(id="q", text="2 + 2?", reference_answer="4"))
    >>> stats = tree.node(tree.add_step(tree.root, "2 + 2 = 4."))
    >>> stats.text, stats.mc_value, stats.n_rollouts
    ('2 + 2 = 4.', None, 0)
    """

    text: str
    mc_value: float | None = None
    n_correct: int = 0
    n_rollouts: int = 0
    visits: int = 0
    terminal: bool = False
    verdict: VerdictStatus | None = None
    correct_rollouts: tuple[Rollout, ...] = ()
    incorrect_rollouts: tuple[Rollout, ...] = ()
    n_truncated: int = 0
    n_unparseable: int = 0
    unusable_rollouts: tuple[Rollout, ...] = ()
    label: bool | None = None
    critic_first_error: int | None = None


class _NodeView(Mapping[str, Any]):
    """``tree[node]``: a node's fields by name, read-only and live (deprecated: use
    attributes)."""

    __slots__ = ("_node", "_tree")

    def __init__(self, tree: ReasoningTree, node: int) -> None:
        self._tree, self._node = tree, node

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELD_NAMES:
            raise KeyError(key)
        # Looked up on each read, as the dict it replaces was: a view held across
        # the search sees what the search learnt since.
        return getattr(self._tree.node(self._node), key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELD_NAMES)

    def __len__(self) -> int:
        return len(_FIELD_NAMES)

    def __repr__(self) -> str:
        return f"_NodeView({self._tree.node(self._node)!r})"


_FIELD_NAMES = tuple(field.name for field in attrs.fields(NodeStats))


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
    >>> tree.node(second).text
    'The answer is 5.'
    >>> [step.depth for step in tree.steps_to(second)]
    [1, 2]
    """

    root: int = 0

    def __init__(self, question: Question) -> None:
        self.question = question
        self.graph = nx.DiGraph()
        self._add_node(self.root, question.text)

    # -- structure -----------------------------------------------------------------

    # A node holds its (frozen) NodeStats under "stats", and its fields as the
    # graph's node attributes too, so that networkx reads them
    # (get_node_attributes, graph.nodes[n]["mc_value"]); written by these two
    # methods only, never read back.
    def _add_node(self, node: int, text: str, **fields: Any) -> None:
        stats = NodeStats(text=text, **fields)
        self.graph.add_node(node, **attrs.asdict(stats, recurse=False), stats=stats)

    def _update(self, node: int, **changes: Any) -> None:
        data = self.graph.nodes[node]
        stats = attrs.evolve(data["stats"], **changes)
        data.update({name: getattr(stats, name) for name in changes}, stats=stats)

    def add_step(self, parent: int, text: str) -> int:
        """Add one step under ``parent`` (or return the child that already has this text)."""
        text = text.strip()
        for child in self.graph.successors(parent):
            if self.node(child).text == text:
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
        return [self.node(n).text for n in self.path(node)[1:]]

    def step(self, node: int) -> Step:
        """A read-only [`Step`][prmsynth.Step] view of ``node``."""
        stats = self.node(node)
        return Step(
            node_id=node,
            text=stats.text,
            depth=len(self.path(node)) - 1,
            mc_value=stats.mc_value,
            n_correct=stats.n_correct,
            n_rollouts=stats.n_rollouts,
            visits=stats.visits,
            terminal=stats.terminal,
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

    def node(self, node: int) -> NodeStats:
        """``node``'s text and statistics ([`NodeStats`][prmsynth.NodeStats], read-only)."""
        return self.graph.nodes[node]["stats"]

    def __getitem__(self, node: int) -> Mapping[str, Any]:
        """Deprecated: ``node``'s fields by name, read-only; use `node` (attributes)."""
        warnings.warn(
            "tree[node][key] is deprecated; read tree.node(node).key instead",
            DeprecationWarning,
            stacklevel=2,
        )
        self.node(node)  # an unknown node raises here, as before
        return _NodeView(self, node)

    # -- statistics ----------------------------------------------------------------

    def mc_value(self, node: int) -> float | None:
        return self.node(node).mc_value

    def record_rollouts(self, node: int, rollouts: Sequence[Rollout]) -> None:
        """Count ``rollouts`` sampled from ``node``'s prefix and update its MC value.

        A rollout whose answer could not be judged (cut off at the token limit,
        or no answer found) says nothing about the prefix: it is kept in
        ``unusable_rollouts`` and counted in ``n_truncated`` or
        ``n_unparseable``, never in the MC value.  A prefix with no usable
        rollout keeps the value None.
        """
        stats = self.node(node)
        usable = [rollout for rollout in rollouts if rollout.usable]
        unusable = [rollout for rollout in rollouts if not rollout.usable]
        truncated = sum(rollout.finish_reason == "length" for rollout in unusable)
        correct = [rollout for rollout in usable if rollout.correct]
        n_rollouts = stats.n_rollouts + len(usable)
        n_correct = stats.n_correct + len(correct)
        self._update(
            node,
            n_truncated=stats.n_truncated + truncated,
            n_unparseable=stats.n_unparseable + len(unusable) - truncated,
            unusable_rollouts=(*stats.unusable_rollouts, *unusable),
            n_rollouts=n_rollouts,
            n_correct=n_correct,
            correct_rollouts=(*stats.correct_rollouts, *correct),
            incorrect_rollouts=(
                *stats.incorrect_rollouts,
                *(rollout for rollout in usable if not rollout.correct),
            ),
            mc_value=n_correct / n_rollouts if n_rollouts else stats.mc_value,
        )

    def mark_terminal(self, node: int, verdict: Verdict) -> None:
        """Mark ``node`` as the last step of a finished solution with this ``verdict``.

        A finished solution's value is known exactly, so it counts as one
        rollout of its own (1 correct or 0) unless the node was already sampled
        or its answer cannot be judged (then the value stays unknown).
        """
        changes: dict[str, Any] = {"terminal": True, "verdict": verdict.status}
        if self.node(node).n_rollouts == 0 and verdict.status != "unparseable":
            changes.update(
                n_rollouts=1, n_correct=int(verdict.correct), mc_value=float(verdict.correct)
            )
        self._update(node, **changes)

    def set_label(self, node: int, label: bool) -> None:
        """Record the first-error rule's judgement of ``node``'s step: False for
        the first wrong step of a solution, True for a step before it.  A later
        judgement, made with more evidence, replaces an earlier one."""
        self._update(node, label=label)

    def set_critique(self, leaf: int, first_error: int | None) -> None:
        """Record a critic's verdict on the solution that ends at ``leaf``: the
        index (into the path's steps) of its first wrong step, -1 for none,
        None for no verdict."""
        self._update(leaf, critic_first_error=first_error)

    def increment_visits(self, node: int) -> None:
        self._update(node, visits=self.node(node).visits + 1)

    def total_visits(self) -> int:
        return sum(self.node(node).visits for node in self.graph)

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
        for node in graph:
            stats = self.node(node)
            n_correct, n_rollouts = stats.n_correct, stats.n_rollouts
            if not 0 <= n_correct <= n_rollouts:
                raise TreeInvariantError(
                    f"node {node}: need 0 <= n_correct <= n_rollouts, got {n_correct}, {n_rollouts}"
                )
            expected = n_correct / n_rollouts if n_rollouts else None
            if stats.mc_value != expected:
                raise TreeInvariantError(
                    f"node {node}: mc_value {stats.mc_value!r} is not n_correct / n_rollouts"
                )
            if stats.visits < 0:
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
