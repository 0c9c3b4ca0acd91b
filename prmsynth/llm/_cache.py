"""A persistent, content-addressed cache of completions, so reruns cost nothing.

Every completion is stored under the SHA-256 of a canonical JSON of what
decides it: the model string, the messages, ``temperature``, ``top_p``,
``max_tokens``, ``seed`` and the sample's index within its request.  ``n``
is not part of the key, so a request for 8 samples reuses the 4 an earlier
request for 4 stored and pays only for 4 more.

Without a seed, a rerun reuses earlier samples instead of drawing fresh
ones: that is what makes an interrupted run resumable at no cost.  Within
one run, repeated unseeded requests with identical prompts still get fresh
samples: [`CachedLLM`][prmsynth.CachedLLM] numbers them on (the k-th identical request
takes the sample indices after those the earlier ones took), and a rerun
that makes the same requests maps them to the same stored samples.  A
seeded request is its seed's samples: repeating it, in a run or a rerun,
returns the same samples, as a seeded backend would.

Only completion text, finish reason, token count, the model string and a
timestamp are stored: never an API key, an ``api_base`` or other options.
The file is SQLite in WAL mode; each thread has its own connection, writes
run in a worker thread (``asyncio.to_thread``) and SQLite's own locking
makes concurrent writers (many requests of a run, or two processes) safe.

>>> import asyncio, tempfile, pathlib
>>> from prmsynth.testing import ScriptedLLM
>>> backend = ScriptedLLM(lambda request: f"sample {request.sample_index}")
>>> with tempfile.TemporaryDirectory() as folder:
...     with CompletionCache(pathlib.Path(folder) / "cache.sqlite") as cache:
...         llm = CachedLLM(llm=backend, cache=cache, model="scripted")
...         messages = [{"role": "user", "content": "hi"}]
...         first = asyncio.run(llm.complete(messages, n=2, seed=7))
...         again = asyncio.run(llm.complete(messages, n=3, seed=7))
>>> [c.text for c in again.completions], backend.requests[-1][1], len(backend.requests)
(['sample 0', 'sample 1', 'sample 0'], 1, 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import attrs

from prmsynth._errors import storage_error
from prmsynth._interfaces import LLM
from prmsynth._values import Completion, LLMResponse
from prmsynth.llm._continuation import PrefixContinuation, prefix_continuation

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    n_tokens INTEGER,
    created REAL NOT NULL
) WITHOUT ROWID
"""
# SQLite caps the number of bound parameters per statement (999 in old builds).
_LOOKUP_CHUNK = 500


def request_fingerprint(
    model: str,
    messages: Sequence[Mapping[str, str]],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int | None,
) -> str:
    """The canonical JSON of a request, less its sample index (see `sample_key`).

    >>> request_fingerprint("m", [{"role": "user", "content": "hi"}],
    ...                     temperature=1, top_p=0.95, max_tokens=8, seed=None)
    '["m",[{"content":"hi","role":"user"}],1.0,0.95,8,null'
    """
    canonical = json.dumps(
        [
            model,
            [dict(message) for message in messages],
            float(temperature),
            float(top_p),
            int(max_tokens),
            None if seed is None else int(seed),
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return canonical[:-1]  # open, so that a sample index can close it


def sample_key(fingerprint: str, sample_index: int) -> str:
    """SHA-256 of ``[model, messages, temperature, top_p, max_tokens, seed, index]`` as JSON.

    >>> key = sample_key(request_fingerprint("m", [], temperature=0.7, top_p=0.95,
    ...                                      max_tokens=8, seed=1), 0)
    >>> key == hashlib.sha256(b'["m",[],0.7,0.95,8,1,0]').hexdigest()
    True
    """
    # surrogatepass: a lone surrogate in a prompt keys its own entry instead of failing.
    key = f"{fingerprint},{int(sample_index)}]".encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()


def _switch_to_wal(connection: sqlite3.Connection, path: Path, wait: float = 60.0) -> None:
    """Put the database in WAL mode, waiting out other connections doing the same.

    SQLite does not apply the busy timeout while a brand-new file changes its
    journal mode, so connections opening one new file at once can fail with
    "database is locked": that one step is retried here.
    """
    deadline = time.monotonic() + wait
    delay = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(f"{path}: {error} for {wait:.0f} s") from None
        time.sleep(random.uniform(0, delay))  # jitter, so waiters spread out
        delay = min(0.5, delay * 2)


class CompletionCache:
    """Completions in an SQLite file, by `sample_key`.

    Usable from any thread and from several processes at once; ``close``
    (or leaving the ``with`` block) closes every connection it opened.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self._storage():
            self._open()

    @contextlib.contextmanager
    def _storage(self, *, after_work: bool = False) -> Iterator[None]:
        """A disk that cannot take the cache (full, read-only) stops the run:
        [`StorageError`][prmsynth.StorageError], never a failed question
        (``after_work``: a completion was paid for and could not be kept)."""
        try:
            yield
        except (OSError, sqlite3.Error) as error:
            fatal = storage_error(error, self.path, after_work=after_work)
            if fatal is None:
                raise
            raise fatal from None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite creates a database 0o644 less the umask, never group-writable even
        # under umask 002; a file that exists keeps its mode (and its -wal and -shm
        # files copy it), so create it first as open() would.
        with contextlib.suppress(FileExistsError):
            self.path.touch(exist_ok=False)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards the list of connections, not the database
        self._closed = False
        connection = self._connection()
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise ValueError(
                f"{self.path}: cache schema version {version}, expected {_SCHEMA_VERSION}"
            )
        with connection:
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        if self._closed:
            raise RuntimeError(f"the completion cache {self.path} is closed")
        # check_same_thread=False only so that close() may close it from another thread.
        connection = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=60000")
        _switch_to_wal(connection, self.path)
        connection.execute("PRAGMA synchronous=NORMAL")
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The stored completions among ``keys`` (absent keys are left out)."""
        with self._storage():
            return self._get_many(keys)

    def _get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        connection = self._connection()
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = list(keys[start : start + _LOOKUP_CHUNK])
            # Only "?" placeholders are formatted into the statement.
            marks = ",".join("?" * len(chunk))
            query = "SELECT key, text, finish_reason, n_tokens FROM completions WHERE key IN "
            rows = connection.execute(f"{query}({marks})", chunk)
            for key, text, finish_reason, n_tokens in rows:
                found[key] = Completion(text=text, finish_reason=finish_reason, n_tokens=n_tokens)
        return found

    def put_many(self, model: str, items: Iterable[tuple[str, Completion]]) -> None:
        """Store completions; a key already present keeps its first completion."""
        now = time.time()
        rows = [
            (key, model, completion.text, completion.finish_reason, completion.n_tokens, now)
            for key, completion in items
        ]
        if not rows:
            return
        with self._storage(after_work=True):
            connection = self._connection()
            with connection:  # one transaction
                connection.executemany(
                    "INSERT OR IGNORE INTO completions "
                    "(key, model, text, finish_reason, n_tokens, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )

    async def aput_many(self, model: str, items: Iterable[tuple[str, Completion]]) -> None:
        """`put_many` in a worker thread, so a busy database never blocks the loop."""
        await asyncio.to_thread(self.put_many, model, list(items))

    def __len__(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> CompletionCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def llm_identity(llm: object) -> str:
    """What names ``llm``'s answers: its ``cache_identity()`` (the model, its
    server and options, no secrets) when it has one, else its model string or class."""
    identity = getattr(llm, "cache_identity", None)
    if callable(identity):
        return identity()  # the model, its server and options: never another server's answers
    model = getattr(llm, "model", None)
    return model if isinstance(model, str) else f"{type(llm).__module__}.{type(llm).__qualname__}"


@attrs.define(kw_only=True, eq=False)
class CachedLLM:
    """An [`LLM`][prmsynth.LLM] that answers from a [`CompletionCache`][prmsynth.CompletionCache]
    first.

    For a request of ``n`` samples it looks up sample indices ``0 .. n - 1``,
    asks ``llm`` only for the missing ones (``n`` = how many are missing, with
    ``seed + first missing index`` so that a first request goes out unchanged),
    stores them and returns all it has in index order.  Tokens and cost count
    what the backend spent: a full hit costs nothing.  ``model`` names the
    cache's namespace (default: ``llm.model``).  ``hits`` and ``misses`` count
    samples.
    """

    llm: LLM
    cache: CompletionCache
    model: str = attrs.field(
        default=attrs.Factory(lambda self: llm_identity(self.llm), takes_self=True)
    )
    hits: int = attrs.field(default=0, init=False)
    misses: int = attrs.field(default=0, init=False)
    # Sample indices already handed out per unseeded request in this run (see the module doc).
    _taken: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)

    @property
    def prefix_continuation(self) -> PrefixContinuation | None:
        """The wrapped LLM's (see ``prefix_mode`` of
        [`LLMStepGenerator`][prmsynth.LLMStepGenerator])."""
        return prefix_continuation(self.llm)

    @property
    def uncached(self) -> LLM:
        """The wrapped LLM, for requests whose answer must come from the model
        (a probe: a cached answer proves nothing about the server)."""
        return getattr(self.llm, "uncached", self.llm)

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_tokens: int = 512,
        seed: int | None = None,
    ) -> LLMResponse:
        fingerprint = request_fingerprint(
            self.model,
            messages,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
        )
        first_index = 0
        if seed is None:
            # Counted before any await, so concurrent identical requests take
            # disjoint indices.
            first_index = self._taken.get(fingerprint, 0)
            self._taken[fingerprint] = first_index + n
        keys = [sample_key(fingerprint, first_index + index) for index in range(n)]
        found = self.cache.get_many(keys)
        missing = [index for index, key in enumerate(keys) if key not in found]
        self.hits += n - len(missing)
        if not missing:
            return LLMResponse(completions=tuple(found[key] for key in keys))
        self.misses += len(missing)
        response = await self.llm.complete(
            messages,
            n=len(missing),
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=None if seed is None else seed + missing[0],
        )
        # A backend may return fewer than asked: those indices stay missing.
        fresh = dict(zip((keys[index] for index in missing), response.completions, strict=False))
        if fresh:
            await self.cache.aput_many(self.model, fresh.items())
        found.update(fresh)
        return LLMResponse(
            completions=tuple(found[key] for key in keys if key in found),
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            cost=response.cost,
        )
