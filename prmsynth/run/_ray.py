"""A run's search on a Ray cluster: a pool of worker actors fed from one queue.

The driver (the process that owns the run folder) keeps the questions and
hands each to the least busy live worker, at most ``pipeline.concurrency``
at a time per worker, so a slow worker only holds its own questions and a
lost one none: the questions a dead worker held go back to the front of the
queue and another worker searches them.  Each worker is a Ray actor holding
its own copy of the Pipeline (LLM client or Router, checker processes,
search policy), shipped once through Ray's object store (cloudpickle).
The budget, when the run has one, lives in one actor on the driver's
machine: every request of every worker reserves its share there before it
is sent, so the limit is as hard as in one process.

Ray is imported only here, and only when a `RayExecutor` runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import itertools
import logging
import os
import re
import time
import types
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from prmsynth._errors import BackendUnavailable, BudgetExhausted, InputError
from prmsynth._interfaces import (
    EvolutionReport,
    NoEvolution,
    QuestionEvolver,
    SearchResult,
    StepGenerator,
    evolution_report,
)
from prmsynth._tree import ReasoningTree
from prmsynth._values import LLMResponse, Question, Usage
from prmsynth.run._budget import Budget, BudgetedGenerator, Ledger
from prmsynth.run._pipeline import _as_async_iterator, _StallWatch

if TYPE_CHECKING:
    from prmsynth.run._pipeline import Pipeline

_logger = logging.getLogger(__name__)
#: The library's logger: what workers log under it reaches the driver's handlers.
_LIBRARY_LOGGER = "prmsynth"
#: Environment variables the driver passes to its workers (a cluster's own
#: environment is not the driver's): provider keys and servers, litellm's settings.
_FORWARDED_ENV = re.compile(
    r"^(LITELLM_\w+|PRMSYNTH_\w+|\w+_API_KEY|\w+_API_BASE|\w+_API_VERSION|\w+_BASE_URL)$"
)
#: How often the driver collects the workers' log lines and checks for stalls, in seconds.
_POLL_SECONDS = 2.0
#: A question whose worker died this many times is recorded as failed (it may be the cause).
_MAX_ATTEMPTS = 3
#: Log records a worker keeps for the driver between two collections.
_LOG_BUFFER = 10_000


class RayWorkersLost(BackendUnavailable):
    """Every Ray worker of a run is gone and new ones keep dying: the run stops
    (its finished questions stay; the same command resumes)."""


def ray_installed() -> bool:
    """Whether Ray can be imported (without importing it)."""
    return importlib.util.find_spec("ray") is not None


def _import_ray() -> types.ModuleType:
    if not ray_installed():
        raise InputError("--ray", "Ray is not installed: pip install 'prmsynth[ray]'")
    import ray

    return ray


@attrs.define(kw_only=True, eq=False)
class RayExecutor:
    """Search a run's questions on a Ray cluster (``pip install 'prmsynth[ray]'``).

    ``address``: None starts a Ray cluster on this machine for the run (and
    stops it after); ``"auto"`` joins the cluster this process runs in;
    otherwise ``HOST:PORT`` or ``ray://HOST:PORT``.  ``workers``: how many
    worker actors (None: one per ``cpus_per_worker`` CPUs of the cluster),
    each searching up to ``pipeline.concurrency`` questions at once with its
    own copy of the Pipeline.  ``init_options`` go to ``ray.init`` (such as
    ``num_cpus`` for a local cluster).  Pass it to
    [`RunFolder.run`][prmsynth.RunFolder.run] (``executor=``):

    >>> executor = RayExecutor(address="auto", workers=8)
    >>> executor.workers, executor.progress_detail() is None
    (8, True)

    The Pipeline's evolver, when it has one, runs in one more actor (no CPU
    reserved) and hands its questions to the search as it accepts them.
    A worker that dies loses nothing: its questions are searched again by
    another, and a new worker takes its place (a question whose worker died
    three times is recorded as failed).  A run's completion cache
    (``CachedLLM`` over ``OUT/cache.sqlite``) is opened by path in each
    worker: shared on one machine or a shared filesystem, one per machine
    otherwise.  The request limits of an ``LLM`` (``--concurrency``,
    ``--rpm``, ``--tpm``) hold per worker.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    init_options: dict[str, Any] = attrs.Factory(dict)
    #: Set while a run is going: (live workers, pool size).
    _alive: tuple[int, int] | None = attrs.field(default=None, init=False, repr=False)
    _owns_cluster: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not self.cpus_per_worker >= 0:
            raise ValueError(f"cpus_per_worker must be >= 0, got {self.cpus_per_worker}")

    def connect(self) -> None:
        """Join (or start) the cluster now; raises [`InputError`][prmsynth.InputError]
        when Ray is missing or the cluster cannot be reached.  `astream` connects
        by itself: this lets a command line fail before it writes anything."""
        ray = _import_ray()
        if self.address is not None:
            _probe(self.address)
        if ray.is_initialized():
            return  # this process joined a cluster already (ray.init): that one
        env = {name: value for name, value in os.environ.items() if _FORWARDED_ENV.match(name)}
        options: dict[str, Any] = {
            "include_dashboard": False,
            # Workers' output reaches the driver as log records (see _LogBuffer), once.
            "log_to_driver": False,
            "configure_logging": False,
            "runtime_env": {"env_vars": env},
            **self.init_options,
        }
        if self.address is None:
            # A cluster started for this run reports nothing home.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        else:
            options["address"] = self.address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = self.address or "on this machine"
            raise InputError(
                "--ray", f"cannot start or join the Ray cluster {where}: {error}"
            ) from None
        self._owns_cluster = self.address is None

    def evolver_for(self, evolver: QuestionEvolver) -> QuestionEvolver:
        """``evolver``, run in a worker actor of the cluster (its questions come
        back as it accepts them); no evolution stays none."""
        if isinstance(evolver, NoEvolution):
            return evolver
        return _ClusterEvolver(evolver=evolver, executor=self)

    def progress_detail(self) -> str | None:
        if self._alive is None:
            return None
        alive, size = self._alive
        return f"{alive}/{size} workers"

    async def astream(
        self,
        pipeline: Pipeline,
        questions: Iterable[Question] | AsyncIterable[Question],
        *,
        stop_when: Callable[[], bool] | None = None,
    ) -> AsyncIterator[SearchResult]:
        """Search ``questions`` on the cluster; yield each result once, as it
        arrives (see [`Executor`][prmsynth.Executor])."""
        self.connect()
        import ray

        _register_serializers(ray)
        run = _RayRun(ray=ray, executor=self, pipeline=pipeline, stop_when=stop_when)
        try:
            async for result in run.results(questions):
                yield result
        finally:
            run.close()
            if self._owns_cluster:
                ray.shutdown()
                self._owns_cluster = False


def _probe(address: str, timeout: float = 10.0) -> None:
    """Raise [`InputError`][prmsynth.InputError] when nothing listens at a
    ``HOST:PORT`` (or ``ray://HOST:PORT``) address: ``ray.init`` would retry
    for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise InputError(
            "--ray",
            f"no Ray cluster answers at {address} ({error}): is it started, "
            "and is the address right (the head node's HOST:6379, or ray://HOST:10001)?",
        ) from None


def _register_serializers(ray: Any) -> None:
    """How the parts of a Pipeline that hold open files or sockets travel:
    a completion cache by its path (each worker opens its own connection)."""
    from prmsynth.llm._cache import CompletionCache

    ray.util.register_serializer(
        CompletionCache, serializer=_cache_path, deserializer=CompletionCache
    )


def _cache_path(cache: Any) -> str:
    return str(cache.path)


# --- evolution, in one worker ---


class _EvolutionWorker:
    """A Ray actor running one evolution; the driver collects its accepted
    questions, progress lines and log records as they come."""

    def __init__(self, evolver: QuestionEvolver, log_level: int) -> None:
        self.ready: list[Question] = []
        self.lines: list[str] = []
        if _has_field(evolver, "progress"):
            evolver = attrs.evolve(evolver, progress=self.lines.append)
        self.evolver = evolver
        self.logs = _LogBuffer(log_level)
        library = logging.getLogger(_LIBRARY_LOGGER)
        library.addHandler(self.logs)
        library.setLevel(log_level)
        library.propagate = False

    async def run(self, seeds: list[Question]) -> EvolutionReport:
        return await evolution_report(self.evolver, seeds, on_question=self.ready.append)

    def take(self) -> tuple[list[Question], list[str], list[dict[str, Any]]]:
        # Emptied in place: the running evolution appends to these very lists.
        ready, lines = self.ready[:], self.lines[:]
        del self.ready[:], self.lines[:]
        return ready, lines, self.logs.drain()


def _has_field(instance: object, name: str) -> bool:
    return attrs.has(type(instance)) and name in attrs.fields_dict(type(instance))


@attrs.frozen(kw_only=True)
class _ClusterEvolver(QuestionEvolver):
    """``evolver`` run in a worker actor of ``executor``'s cluster, so that its
    answer votes and equivalence checks spend the cluster's CPU, not the driver's."""

    evolver: QuestionEvolver
    executor: RayExecutor

    async def evolve(self, questions: Sequence[Question]) -> list[Question]:
        return list((await self.evolve_with_report(questions)).questions)

    async def evolve_with_report(
        self,
        questions: Sequence[Question],
        *,
        on_question: Callable[[Question], object] | None = None,
    ) -> EvolutionReport:
        self.executor.connect()
        import ray

        _register_serializers(ray)
        progress = getattr(self.evolver, "progress", None)
        shipped = self.evolver
        if _has_field(shipped, "progress"):
            shipped = attrs.evolve(shipped, progress=None)  # a driver-side callback
        actor = (
            ray.remote(_EvolutionWorker)
            # No CPU reserved: the search's workers may hold every CPU of the
            # cluster already, and they wait for this actor's questions.
            .options(num_cpus=0, max_concurrency=1000)
            .remote(shipped, logging.getLogger(_LIBRARY_LOGGER).getEffectiveLevel())
        )
        name = "prmsynth-evolution"

        async def hand_over() -> None:
            ready, lines, logs = await actor.take.remote()
            _replay_logs(name, logs)
            for line in lines:
                if progress is not None:
                    progress(line)
            for question in ready:
                if on_question is not None:
                    on_question(question)

        try:
            running = asyncio.wrap_future(actor.run.remote(list(questions)).future())
            while not running.done():
                await asyncio.wait({running}, timeout=0.5)
                await hand_over()
            try:
                report = running.result()
            except ray.exceptions.RayTaskError as error:
                cause = getattr(error, "cause", None)
                raise (cause if isinstance(cause, BaseException) else error) from None
            await hand_over()
            return report
        finally:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)


# --- the budget, kept in one place for every worker ---


class _BudgetKeeper:
    """A Ray actor holding the run's [`Ledger`][prmsynth.run._budget.Ledger]:
    every worker's requests reserve here, one at a time (one event loop)."""

    def __init__(self, budget: Budget, spent_completions: int, spent_cost: float) -> None:
        self.ledger = Ledger(
            budget=budget, spent=Usage(n_completions=spent_completions, cost=spent_cost)
        )
        # What each worker has reserved and not yet settled.
        self.held: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])

    async def acquire(self, worker: str, n: int) -> tuple[bool, float | str]:
        """Wait until a price is known (the first request goes alone), then reserve:
        one method, so that no other request reserves in between, as in one process."""
        await self.ledger.wait_for_price()
        return self.reserve(worker, n)

    def reserve(self, worker: str, n: int) -> tuple[bool, float | str]:
        try:
            cost = self.ledger.reserve(n)
        except BudgetExhausted as error:
            return False, str(error)
        held = self.held[worker]
        held[0] += n
        held[1] += cost
        return True, cost

    def settle(self, worker: str, n: int, reserved_cost: float, cost: float) -> None:
        self._unhold(worker, n, reserved_cost)
        self.ledger.settle(n, reserved_cost, types.SimpleNamespace(cost=cost))

    def release(self, worker: str, n: int, reserved_cost: float) -> None:
        self._unhold(worker, n, reserved_cost)
        self.ledger.release(n, reserved_cost)

    def worker_lost(self, worker: str) -> None:
        """A dead worker's reservations count as spent: its requests may have been served."""
        n, cost = self.held.pop(worker, (0, 0.0))
        if n:
            self.ledger.release(int(n), cost)
            self.ledger.spent += Usage(n_completions=int(n), cost=cost)

    def _unhold(self, worker: str, n: int, reserved_cost: float) -> None:
        held = self.held[worker]
        held[0] -= n
        held[1] -= reserved_cost

    def snapshot(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "spent_completions": ledger.spent_completions,
            "spent_cost": ledger.spent_cost,
            "reserved_completions": ledger.reserved_completions,
            "reserved_cost": ledger.reserved_cost,
            "cost_per_completion": ledger.cost_per_completion,
            "exhausted": ledger.exhausted,
            "price_known": ledger.price_known,
        }


@attrs.frozen(kw_only=True)
class _KeptBudgetGenerator(StepGenerator):
    """A worker's generator: each request first reserves its share at the
    run's `_BudgetKeeper` (``keeper``), as `BudgetedGenerator` does in one process."""

    generator: StepGenerator
    keeper: Any
    worker: str = ""

    async def generate(
        self,
        question: Question,
        prefix: Sequence[str],
        *,
        n: int,
        sample_offset: int = 0,
    ) -> LLMResponse:
        reserved, value = await self.keeper.acquire.remote(self.worker, n)
        if not reserved:
            raise BudgetExhausted(value)
        try:
            response = await self.generator.generate(
                question, prefix, n=n, sample_offset=sample_offset
            )
        except BaseException:
            self.keeper.release.remote(self.worker, n, value)
            raise
        await self.keeper.settle.remote(self.worker, n, value, response.cost)
        return response

    def split_steps(self, text: str) -> list[str]:
        return self.generator.split_steps(text)

    def join_steps(self, steps: Sequence[str]) -> str:
        return self.generator.join_steps(steps)

    def __getattr__(self, name: str) -> Any:
        # system_prompt, sampling, messages(): the wrapped generator's.
        if name.startswith("__") or name in ("generator", "keeper", "worker"):
            raise AttributeError(name)
        return getattr(self.generator, name)


# --- the workers ---


class _LogBuffer(logging.Handler):
    """Keeps a worker's log records (as plain dicts) until the driver collects them."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=_LOG_BUFFER)

    def emit(self, record: logging.LogRecord) -> None:
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = logging.Formatter().formatException(record.exc_info)
        self.records.append(
            {
                "name": record.name,
                "levelno": record.levelno,
                "message": record.getMessage(),
                "exc_text": exc_text,
                "created": record.created,
            }
        )

    def drain(self) -> list[dict[str, Any]]:
        records = list(self.records)
        self.records.clear()
        return records


class _SearchWorker:
    """A Ray actor: one copy of the Pipeline, searching the questions it is handed."""

    def __init__(self, pipeline: Pipeline, name: str, log_level: int) -> None:
        generator = pipeline.generator
        if isinstance(generator, _KeptBudgetGenerator):
            pipeline = attrs.evolve(pipeline, generator=attrs.evolve(generator, worker=name))
        self.pipeline = pipeline
        self.logs = _LogBuffer(log_level)
        library = logging.getLogger(_LIBRARY_LOGGER)
        library.addHandler(self.logs)
        library.setLevel(log_level)
        library.propagate = False  # the driver shows them; not the worker's stderr as well

    def ready(self) -> int:
        """The worker's process id, once its Pipeline is in place."""
        return os.getpid()

    async def search(self, question: Question) -> tuple[SearchResult, list[dict[str, Any]]]:
        result = await self.pipeline.search_question(question)
        return result, self.logs.drain()

    def drain_logs(self) -> list[dict[str, Any]]:
        return self.logs.drain()

    def close(self) -> None:
        self.pipeline.verifier.close()


def _replay_logs(worker: str, records: Iterable[dict[str, Any]]) -> None:
    """A worker's log records, through the driver's loggers (``-v``, ``--log-file``)."""
    for data in records:
        logger = logging.getLogger(data["name"])
        if not logger.isEnabledFor(data["levelno"]):
            continue
        record = logger.makeRecord(
            data["name"], data["levelno"], "(ray worker)", 0, "%s: %s",
            (worker, data["message"]), None,
        )  # fmt: skip
        record.exc_text = data["exc_text"]
        record.created = data["created"]
        logger.handle(record)


@attrs.define(kw_only=True, eq=False)
class _Slot:
    """One place in the pool: its current actor, and the questions it holds."""

    index: int
    generation: int = 0
    name: str = ""
    actor: Any = None
    #: The actor's ``ready`` call while it starts; None once it serves (or died).
    starting: asyncio.Future | None = None
    alive: bool = False
    dead: bool = False
    held: dict[asyncio.Future, Question] = attrs.Factory(dict)


@attrs.define(kw_only=True, eq=False)
class _RayRun:
    """One run's pool, queue and budget keeper on the cluster."""

    ray: Any
    executor: RayExecutor
    pipeline: Pipeline
    stop_when: Callable[[], bool] | None
    slots: list[_Slot] = attrs.Factory(list)
    keeper: Any = None
    ledger: Ledger | None = None
    run_id: str = attrs.Factory(lambda: uuid.uuid4().hex[:8])
    deaths_since_result: int = 0

    # -- setting up --

    def _here(self) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.ray.get_runtime_context().get_node_id()
        return NodeAffinitySchedulingStrategy(node_id=node, soft=True)

    def _shipped_pipeline(self) -> Any:
        """The Pipeline the workers get: the budget kept by one actor, no evolver
        (the folder evolved its questions already)."""
        pipeline = self.pipeline
        generator = pipeline.generator
        if isinstance(generator, BudgetedGenerator):
            self.ledger = ledger = generator.ledger
            self.keeper = (
                self.ray.remote(_BudgetKeeper)
                .options(num_cpus=0, scheduling_strategy=self._here(), max_concurrency=1000)
                .remote(ledger.budget, ledger.spent_completions, ledger.spent_cost)
            )
            generator = _KeptBudgetGenerator(generator=generator.generator, keeper=self.keeper)
        return self.ray.put(attrs.evolve(pipeline, generator=generator, evolver=NoEvolution()))

    def _pool_size(self) -> int:
        if self.executor.workers is not None:
            return self.executor.workers
        cpus = float(self.ray.cluster_resources().get("CPU", 1.0))
        per_worker = self.executor.cpus_per_worker
        return max(1, int(cpus // per_worker)) if per_worker > 0 else max(1, int(cpus))

    def _start(self, slot: _Slot, shipped: Any, log_level: int) -> None:
        slot.generation += 1
        slot.name = f"prmsynth-{self.run_id}-worker-{slot.index}.{slot.generation}"
        slot.actor = (
            self.ray.remote(_SearchWorker)
            .options(
                name=slot.name,
                num_cpus=self.executor.cpus_per_worker,
                max_concurrency=max(1000, 2 * self.pipeline.concurrency),
            )
            .remote(shipped, slot.name, log_level)
        )
        slot.starting = asyncio.wrap_future(slot.actor.ready.remote().future())
        slot.alive = slot.dead = False

    def _report_alive(self) -> None:
        alive = sum(slot.alive for slot in self.slots)
        self.executor._alive = (alive, len(self.slots))

    # -- the queue --

    async def results(
        self, questions: Iterable[Question] | AsyncIterable[Question]
    ) -> AsyncIterator[SearchResult]:
        ray_exceptions = self.ray.exceptions
        lost_errors = (ray_exceptions.RayActorError, ray_exceptions.ActorUnavailableError)
        source = aiter(questions) if isinstance(questions, AsyncIterable) else None
        if source is None:
            source = _as_async_iterator(questions)  # type: ignore[arg-type]
        shipped = self._shipped_pipeline()
        log_level = logging.getLogger(_LIBRARY_LOGGER).getEffectiveLevel()
        self.slots = [_Slot(index=index) for index in range(self._pool_size())]
        for slot in self.slots:
            self._start(slot, shipped, log_level)
        self._report_alive()
        capacity = self.pipeline.concurrency
        requeued: collections.deque[Question] = collections.deque()
        attempts: collections.Counter[str] = collections.Counter()
        watch = _StallWatch(self.pipeline.stall_seconds)
        stall_task = asyncio.ensure_future(watch.run())
        taking: asyncio.Future | None = None
        exhausted = stopped = False
        last_poll = time.monotonic()

        def free_slot() -> _Slot | None:
            open_slots = [s for s in self.slots if s.alive and len(s.held) < capacity]
            return min(open_slots, key=lambda s: len(s.held), default=None)

        def submit(question: Question) -> None:
            slot = free_slot()
            if slot is None:  # the pool shrank while the question was taken
                requeued.appendleft(question)
                return
            future = asyncio.wrap_future(slot.actor.search.remote(question).future())
            slot.held[future] = question
            watch.started[question.id] = time.monotonic()

        def stopping() -> bool:
            nonlocal stopped
            stopped = stopped or (self.stop_when is not None and self.stop_when())
            return stopped

        try:
            while True:
                # Hand out questions while some live worker has room.
                while taking is None and free_slot() is not None and not stopping():
                    if requeued:
                        submit(requeued.popleft())
                    elif not exhausted:
                        taking = asyncio.ensure_future(anext(source, None))
                    else:
                        break
                held = {f: s for s in self.slots for f in s.held}
                if stopped or (exhausted and not requeued):
                    if not held and taking is None:
                        break
                starting = {s.starting: s for s in self.slots if s.starting is not None}
                waiting = set(held) | set(starting) | ({taking} if taking else set())
                if not waiting:
                    self._give_up("no Ray worker is left to search the questions")
                done, _ = await asyncio.wait(
                    waiting, timeout=_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    if future is taking:
                        taking = None
                        question = future.result()
                        if question is None:
                            exhausted = True
                        elif not stopping():
                            submit(question)
                    elif future in starting:
                        slot = starting[future]
                        slot.starting = None
                        try:
                            future.result()
                            slot.alive = True
                        except lost_errors as error:
                            self._lost(slot, error, 0)
                        self._report_alive()
                    else:
                        slot = held[future]
                        question = slot.held.pop(future)
                        try:
                            result, logs = future.result()
                        except lost_errors as error:
                            self._lost(slot, error, len(slot.held) + 1)
                            attempts[question.id] += 1
                            if attempts[question.id] < _MAX_ATTEMPTS:
                                requeued.appendleft(question)  # another worker takes it first
                                continue
                            result, logs = _lost_result(question, attempts[question.id]), []
                        except ray_exceptions.RayTaskError as error:
                            cause = getattr(error, "cause", None)
                            raise (cause if isinstance(cause, BaseException) else error) from None
                        watch.started.pop(question.id, None)
                        watch.last_finished = time.monotonic()
                        self.deaths_since_result = 0
                        _replay_logs(slot.name, logs)
                        await self._mirror_budget()
                        yield result
                self._replace_dead(shipped, log_level)
                await self._mirror_budget()
                if time.monotonic() - last_poll >= _POLL_SECONDS:
                    last_poll = time.monotonic()
                    await self._collect_logs(lost_errors)
        finally:
            stall_task.cancel()
            if taking is not None:
                taking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(stall_task, return_exceptions=True)

    def _lost(self, slot: _Slot, error: BaseException, held: int) -> None:
        if slot.dead:
            return
        slot.alive, slot.dead = False, True
        self.deaths_since_result += 1
        _logger.warning(
            "Ray worker %s is gone (%s); its %d questions in flight go to other workers",
            slot.name,
            type(error).__name__,
            held,
        )
        self._report_alive()

    def _replace_dead(self, shipped: Any, log_level: int) -> None:
        """A dead worker whose questions are all back in the queue gets a successor,
        unless workers keep dying without a question finishing."""
        for slot in self.slots:
            if not slot.dead or slot.held:
                continue
            if self.keeper is not None:
                self.keeper.worker_lost.remote(slot.name)
            with contextlib.suppress(Exception):
                self.ray.kill(slot.actor, no_restart=True)
            if self.deaths_since_result > 2 * len(self.slots):
                slot.dead = False  # retired: no successor
                slot.actor = None
                if not any(s.alive or s.starting or s.dead for s in self.slots):
                    self._give_up("Ray workers keep dying before any question finishes")
                continue
            self._start(slot, shipped, log_level)

    def _give_up(self, why: str) -> None:
        raise RayWorkersLost(
            f"{why}: see the Ray logs (/tmp/ray/session_latest/logs); "
            "finished questions are kept and the same command resumes"
        )

    async def _mirror_budget(self) -> None:
        """Copy the keeper's counts into the folder's ledger, which decides when
        the run stops and what its summary says was spent."""
        if self.keeper is None or self.ledger is None:
            return
        snapshot = await self.keeper.snapshot.remote()
        for name, value in snapshot.items():
            setattr(self.ledger, name, value)

    async def _collect_logs(self, lost_errors: tuple[type[BaseException], ...]) -> None:
        live = [slot for slot in self.slots if slot.alive]
        calls = [slot.actor.drain_logs.remote() for slot in live]
        for slot, call in zip(live, calls, strict=True):
            try:
                _replay_logs(slot.name, await call)
            except lost_errors:
                pass  # its questions' results say so

    def close(self) -> None:
        """End every actor of the run (Ctrl-C, an error, or the end)."""
        actors = [slot.actor for slot in self.slots if slot.actor is not None]
        for actor in itertools.chain(actors, [self.keeper] if self.keeper else []):
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)
        self.slots = []


def _lost_result(question: Question, attempts: int) -> SearchResult:
    reason = f"WorkerLost: its Ray worker died {attempts} times while searching it"
    _logger.warning("question %s failed: %s", question.id, reason)
    return SearchResult(tree=ReasoningTree(question), status="failed", reason=reason)
