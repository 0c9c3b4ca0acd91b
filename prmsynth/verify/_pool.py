"""The checker pool: math-verify runs in worker processes, so that a check that
hangs in C code (huge powers) costs only its own worker, killed at its timeout."""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "EquivalenceCheckError",
    "WorkerPool",
    "default_checker_processes",
]


DEFAULT_MEMORY_LIMIT = 2 * 1024**3


class EquivalenceCheckError(Exception):
    """An equivalence check that could not be completed (timeout, rejected input, crash).

    A verifier turns it into an ``incorrect`` verdict: a check we could not
    complete must never count as correct.
    """


def _wrap_for_math_verify(answer: str) -> str:
    # math-verify's LaTeX extraction looks for math delimiters.
    return "$" + answer.replace("$", "") + "$"


def _worker_main(arguments: list[str]) -> None:
    """Entry of the worker process: answer ``(extracted, reference)`` tasks until EOF.

    ``arguments`` are the socket's file descriptor and the memory limit in
    bytes (0 for none).
    """

    connection = Connection(int(arguments[0]))
    memory_limit = int(arguments[1])
    # Ctrl-C belongs to the parent, which ends this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from math_verify import parse, verify

        # The parent enforces the time bound, so math-verify's own (signal
        # based) timeouts are off; its warning about that is noise here.
        logging.getLogger("math_verify").setLevel(logging.ERROR)
    except Exception as error:  # reported to the parent
        connection.send(("failed", f"cannot import math_verify: {error}"))
        return
    if memory_limit > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        except (ImportError, ValueError, OSError):
            pass  # no limit available here; the time bound still holds

    @functools.lru_cache(maxsize=256)
    def parse_reference(reference: str) -> list:
        # The same reference is checked against many completions.
        return parse(_wrap_for_math_verify(reference), parsing_timeout=None)

    def check(extracted: str, reference: str) -> bool | None:
        gold = parse_reference(reference)
        if not gold:
            return None
        target = parse(_wrap_for_math_verify(extracted), parsing_timeout=None)
        if not target:
            return False
        return bool(verify(gold, target, timeout_seconds=None))

    connection.send(("ready", None))
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        extracted, reference = task
        try:
            reply = ("ok", check(extracted, reference))
        except MemoryError:
            reply = ("error", "equivalence check ran out of memory")
        except RecursionError:
            reply = ("error", "equivalence check recursed too deeply")
        except Exception as error:  # reported to the parent
            reply = ("error", f"equivalence check failed: {type(error).__name__}: {error}")
        try:
            connection.send(reply)
        except (OSError, ValueError):
            return


# The worker is a fresh interpreter started with subprocess rather than
# multiprocessing's "spawn": spawn re-imports the parent's __main__ script,
# which breaks (and re-runs) user scripts without an `if __name__` guard.
# Like spawn, and unlike fork, it copies no locks held by the parent's threads.
# The command names the entry by its own module, so that moving it cannot break it.
_WORKER_BOOTSTRAP = (
    f"import sys; from {_worker_main.__module__} import {_worker_main.__name__} as main; "
    "main(sys.argv[1:])"
)


def _import_root() -> str:
    """The folder the worker imports prmsynth from: the one holding the package the
    parent imported (``__name__`` has one dotted part per folder below it)."""

    return str(Path(__file__).resolve().parents[__name__.count(".")])


def _end_process(process: Any, connection: Any) -> None:
    """Close the connection and end the worker: terminate, then kill."""
    if connection is not None:
        try:
            connection.close()
        except OSError:
            pass
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                pass  # killed but not yet reaped; nothing more to do


class _Worker:
    """One math-verify worker process, started lazily and replaced after a timeout.

    Thread-safe: a lock serializes its checks.  ``close()`` ends the process;
    the next check starts a new one.  Pickling keeps only the settings.
    """

    def __init__(
        self, memory_limit: int | None = DEFAULT_MEMORY_LIMIT, startup_timeout: float = 120.0
    ):
        self.memory_limit = memory_limit
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Any = None
        self._finalizer: Any = None

    def __getstate__(self) -> dict:
        return {"memory_limit": self.memory_limit, "startup_timeout": self.startup_timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def running(self) -> bool:
        """Whether a worker process is alive now."""
        return self._process is not None and self._process.poll() is None

    def _start(self) -> None:

        parent_socket, child_socket = socket.socketpair()
        environment = dict(os.environ)
        # The worker imports this package from where the parent found it.
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (_import_root(), environment.get("PYTHONPATH")) if part
        )
        try:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter, no shell
                [
                    sys.executable,
                    "-c",
                    _WORKER_BOOTSTRAP,
                    str(child_socket.fileno()),
                    str(self.memory_limit or 0),
                ],
                pass_fds=(child_socket.fileno(),),
                stdin=subprocess.DEVNULL,
                # Never write into the parent's stdout (the CLI streams JSONL there).
                stdout=subprocess.DEVNULL,
                env=environment,
            )
        except OSError as error:
            parent_socket.close()
            raise EquivalenceCheckError(f"cannot start the equivalence worker: {error}") from error
        finally:
            child_socket.close()
        connection = Connection(parent_socket.detach())
        self._process, self._connection = process, connection
        # Ends the worker when the pool is garbage collected or at exit.
        self._finalizer = weakref.finalize(self, _end_process, process, connection)
        # Imports take a while; that time must not count against a check.
        if not connection.poll(self.startup_timeout):
            self._stop()
            raise EquivalenceCheckError("equivalence worker did not start in time")
        try:
            status, message = connection.recv()
        except (EOFError, OSError) as error:
            self._stop()
            raise EquivalenceCheckError("equivalence worker died while starting") from error
        if status != "ready":
            self._stop()
            raise EquivalenceCheckError(str(message))

    def _stop(self) -> None:
        self._process = self._connection = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def check(self, extracted: str, reference: str, timeout: float) -> bool | None:
        """math-verify's verdict on the two answers; raises EquivalenceCheckError."""
        with self._lock:
            if not self.running:
                self._stop()
                self._start()
            connection = self._connection
            try:
                connection.send((extracted, reference))
                finished = connection.poll(timeout)
            except (OSError, ValueError) as error:
                self._stop()
                raise EquivalenceCheckError(f"equivalence worker failed: {error}") from error
            if not finished:
                # A hang in C code (huge powers) cannot be interrupted: end the worker.
                self._stop()
                raise EquivalenceCheckError(f"equivalence check timed out after {timeout:g} s")
            try:
                status, value = connection.recv()
            except (EOFError, OSError) as error:
                self._stop()
                raise EquivalenceCheckError("equivalence worker died during the check") from error
        if status == "ok":
            return value
        raise EquivalenceCheckError(str(value))

    def close(self) -> None:
        """End the worker process, if any; a later check starts a new one."""
        with self._lock:
            if self.running:
                try:
                    # A polite request first, so the worker exits on its own.
                    self._connection.send(None)
                    self._process.wait(0.5)
                except Exception:  # noqa: S110 - _stop terminates it anyway
                    pass
            self._stop()


def default_checker_processes() -> int:
    """One checker process per core this process may run on."""

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class WorkerPool:
    """Up to ``size`` math-verify worker processes (default: one per core).

    A check takes an idle worker, so checks from different threads run in
    parallel and a pathological answer costs only its own worker its timeout.
    Workers start on demand, the most recently used first, so a light load
    keeps one process.  Thread-safe; pickling keeps only the settings.
    """

    def __init__(
        self,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        startup_timeout: float = 120.0,
        size: int | None = None,
    ):

        self.memory_limit = memory_limit
        self.startup_timeout = startup_timeout
        self.size = size or default_checker_processes()
        self._workers = [
            _Worker(memory_limit=memory_limit, startup_timeout=startup_timeout)
            for _ in range(self.size)
        ]
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        for worker in reversed(self._workers):
            self._idle.put(worker)

    def __getstate__(self) -> dict:
        return {
            "memory_limit": self.memory_limit,
            "startup_timeout": self.startup_timeout,
            "size": self.size,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def running(self) -> bool:
        """Whether any worker process is alive now."""
        return any(worker.running for worker in self._workers)

    @property
    def n_running(self) -> int:
        return sum(worker.running for worker in self._workers)

    def check(self, extracted: str, reference: str, timeout: float) -> bool | None:
        """math-verify's verdict on the two answers; raises EquivalenceCheckError."""
        worker = self._idle.get()
        try:
            return worker.check(extracted, reference, timeout)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """End every worker process; a later check starts a new one."""
        for worker in self._workers:
            worker.close()
