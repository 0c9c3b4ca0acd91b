"""Where a run's questions are searched: in this process, or on a Ray cluster.

A run folder (``run_to_directory``, ``RunFolder.run``) hands its questions
to an executor and writes the results it yields; the executor decides where
the searching happens.  `LocalExecutor` is ``Pipeline.astream`` in this
process; ``RayExecutor`` (``prmsynth[ray]``) spreads the questions over a
pool of Ray actors, each with its own copy of the Pipeline.  Either way the folder alone writes the
files, so every guarantee of a run (one line per question, resume, hard
budget) holds the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from prmsynth._interfaces import QuestionEvolver, SearchResult
from prmsynth._values import Question

if TYPE_CHECKING:
    from prmsynth.run._pipeline import Pipeline

#: The ``--ray`` value that starts a Ray cluster on this machine for the run.
START_LOCAL = "local"


@runtime_checkable
class Executor(Protocol):
    """Searches a run's questions and yields each result once its question is done.

    ``pipeline`` is the run's (its generator already wrapped in the run's
    budget when it has one); ``stop_when`` is asked before each question
    starts, and once it says True no further question starts.  Every
    question taken from ``questions`` must be yielded exactly once, unless
    the run stops by an exception.
    """

    def astream(
        self,
        pipeline: Pipeline,
        questions: Iterable[Question] | AsyncIterable[Question],
        *,
        stop_when: Callable[[], bool] | None = None,
    ) -> AsyncIterator[SearchResult]: ...

    def evolver_for(self, evolver: QuestionEvolver) -> QuestionEvolver:
        """The evolver the run uses in place of ``evolver`` (where evolution runs)."""
        ...

    def progress_detail(self) -> str | None:
        """A short note for the progress line (None: nothing to add)."""
        ...


@attrs.frozen(kw_only=True)
class LocalExecutor:
    """Search in this process: ``pipeline.astream``, up to ``pipeline.concurrency`` at once."""

    def astream(
        self,
        pipeline: Pipeline,
        questions: Iterable[Question] | AsyncIterable[Question],
        *,
        stop_when: Callable[[], bool] | None = None,
    ) -> AsyncIterator[SearchResult]:
        return pipeline.astream(questions, stop_when=stop_when, evolve=False)

    def evolver_for(self, evolver: QuestionEvolver) -> QuestionEvolver:
        return evolver

    def progress_detail(self) -> str | None:
        return None


def executor_from_option(text: str | None) -> Executor:
    """The executor of ``prmsynth run --ray [ADDRESS]``.

    None (no ``--ray``): this process.  ``"local"`` (``--ray`` alone): a Ray
    cluster started on this machine for the run.  ``"auto"``: the cluster
    this process runs in (``RAY_ADDRESS``, or one started with ``ray start``);
    anything else is a cluster address (``HOST:PORT`` or ``ray://HOST:PORT``).
    A Ray executor joins (or starts) its cluster here, so that a missing Ray
    or a wrong address stops a command before it writes anything
    ([`InputError`][prmsynth.InputError]).

    >>> executor_from_option(None)
    LocalExecutor()
    """
    if text is None:
        return LocalExecutor()
    from prmsynth.run._ray import RayExecutor

    address = text.strip()
    executor = RayExecutor(address=None if address in ("", START_LOCAL) else address)
    executor.connect()
    return executor
