"""Test doubles for prmsynth, for this project's tests and for yours.

`ScriptedLLM` satisfies the [`LLM`][prmsynth.LLM] protocol without a
model: a function you write decides every completion, so a test can plant
outcomes (which prefixes succeed, where the first error is) and check that the
search recovers them.

>>> import asyncio
>>> llm = ScriptedLLM(lambda request: f"sample {request.sample_index}")
>>> response = asyncio.run(llm.complete([{"role": "user", "content": "hi"}], n=2))
>>> [completion.text for completion in response.completions]
['sample 0', 'sample 1']
>>> len(llm.requests)
1

`FakeOpenAIServer` is the other end of a real HTTP connection: an
OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 that tests and
benchmarks start themselves, with a fixed latency and injected faults (rate
limits, server errors, hangs, malformed JSON, empty choices, truncated
answers), so that litellm and prmsynth's retries run exactly as in production.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from prmsynth._values import Completion, LLMResponse

__all__ = [
    "FakeOpenAIServer",
    "FakeRequest",
    "FaultRates",
    "ScriptedLLM",
    "ScriptedRequest",
    "VirtualClock",
]


@attrs.define
class VirtualClock:
    """Time that passes only when something sleeps on it: give ``time`` as a
    ``clock`` and ``sleep`` as a ``sleep`` (``RequestLimiter``, ``RetryPolicy``,
    which ``LiteLLMClient(retry=...)`` waits with) and a test checks every wait
    exactly, whatever the machine's load.

    >>> clock = VirtualClock()
    >>> asyncio.run(clock.sleep(1.5)); clock.time(), clock.slept
    (1.5, [1.5])
    """

    now: float = 0.0
    slept: list[float] = attrs.field(factory=list)

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # let the others run, as a real wait would


@attrs.frozen(kw_only=True)
class ScriptedRequest:
    """What the script sees for one sample: the messages and the sample's index.

    ``sample_index`` is the index within the request (0 .. n - 1);
    ``request_number`` counts requests made to this LLM so far.
    """

    messages: tuple[Mapping[str, str], ...]
    sample_index: int
    request_number: int
    seed: int | None
    temperature: float
    max_tokens: int

    @property
    def prompt(self) -> str:
        """All message contents joined, for scripts that look for markers."""
        return "\n\n".join(message["content"] for message in self.messages)

    @property
    def last_message(self) -> str:
        return self.messages[-1]["content"]


Script = Callable[[ScriptedRequest], "str | Completion"]


@attrs.define
class ScriptedLLM:
    """A fake LLM whose completions come from ``script(request)``.

    The script returns the completion text (finish reason ``"stop"``) or a
    [`Completion`][prmsynth.Completion] to control finish reason and token count.
    Token counts default to the number of whitespace-separated words.
    Every request is kept in ``requests`` for assertions.  With
    ``prefix_continuation="native"`` a partial solution arrives as a last
    assistant message (``"prefix": True``) instead of quoted.
    """

    script: Script
    requests: list[tuple[tuple[Mapping[str, str], ...], int]] = attrs.field(factory=list)
    #: What it says of continuing a started reply (see
    #: [`LLMStepGenerator`][prmsynth.LLMStepGenerator]'s ``prefix_mode``): ``"native"``
    #: to receive partial solutions as the start of its reply; None quotes them.
    prefix_continuation: str | None = attrs.field(default=None, kw_only=True)

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
        frozen_messages = tuple(dict(message) for message in messages)
        request_number = len(self.requests)
        self.requests.append((frozen_messages, n))
        completions = []
        for index in range(n):
            result = self.script(
                ScriptedRequest(
                    messages=frozen_messages,
                    sample_index=index,
                    request_number=request_number,
                    seed=seed,
                    temperature=temperature,
                    max_tokens=max_tokens,
                )
            )
            if isinstance(result, str):
                result = Completion(text=result, finish_reason="stop", n_tokens=len(result.split()))
            completions.append(result)
        prompt_tokens = sum(len(message["content"].split()) for message in frozen_messages)
        return LLMResponse(
            completions=tuple(completions),
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(c.n_tokens or 0 for c in completions),
        )

    @property
    def n_completions(self) -> int:
        """Completions served so far."""
        return sum(n for _, n in self.requests)


# ---------------------------------------------------------------------------
# A loopback OpenAI-compatible server: real HTTP for litellm to talk to.
# ---------------------------------------------------------------------------

FAULT_KINDS = (
    "rate_limit",
    "server_error",
    "hang",
    "malformed",
    "empty_choices",
    "truncated",
    "bad_request",
)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
_REASONS.update({401: "Unauthorized", 500: "Internal Server Error"})


_probability = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0))


@attrs.frozen(kw_only=True)
class FaultRates:
    """How often the server misbehaves: the chance of each fault per chat request.

    At most one fault hits a request, so the rates must sum to at most 1.
    ``rate_limit`` answers 429, ``server_error`` 500, ``hang`` holds the
    request open without answering, ``malformed`` sends a 200 whose body is
    not JSON, ``empty_choices`` a 200 with ``"choices": []`` and ``truncated``
    answers cut in half with ``finish_reason: "length"``; ``bad_request``
    answers 400, an error no retry can fix.

    >>> FaultRates(rate_limit=0.1, truncated=0.05).total
    0.15000000000000002
    >>> FaultRates(hang=0.7, malformed=0.7)
    Traceback (most recent call last):
    ...
    ValueError: fault rates must sum to at most 1, got 1.4
    """

    rate_limit: float = attrs.field(default=0.0, validator=_probability)
    server_error: float = attrs.field(default=0.0, validator=_probability)
    hang: float = attrs.field(default=0.0, validator=_probability)
    malformed: float = attrs.field(default=0.0, validator=_probability)
    empty_choices: float = attrs.field(default=0.0, validator=_probability)
    truncated: float = attrs.field(default=0.0, validator=_probability)
    bad_request: float = attrs.field(default=0.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        if self.total > 1.0 + 1e-9:
            raise ValueError(f"fault rates must sum to at most 1, got {self.total}")

    @property
    def total(self) -> float:
        return sum(getattr(self, kind) for kind in FAULT_KINDS)

    def draw(self, uniform: float) -> str | None:
        """The fault for a uniform draw in [0, 1), or None for a good answer."""
        for kind in FAULT_KINDS:
            uniform -= getattr(self, kind)
            if uniform < 0.0:
                return kind
        return None


@attrs.frozen(kw_only=True)
class FakeRequest:
    """What a `FakeOpenAIServer` responder sees for one choice of one request."""

    body: Mapping[str, Any] = attrs.field(repr=False)
    sample_index: int
    request_number: int

    @property
    def messages(self) -> list[Mapping[str, str]]:
        return list(self.body.get("messages") or [])

    @property
    def prompt(self) -> str:
        """All message contents joined, for responders that look for markers."""
        return "\n\n".join(str(message.get("content") or "") for message in self.messages)

    @property
    def n(self) -> int:
        return int(self.body.get("n") or 1)

    @property
    def seed(self) -> int | None:
        return self.body.get("seed")

    @property
    def max_tokens(self) -> int | None:
        return self.body.get("max_tokens") or self.body.get("max_completion_tokens")


Responder = Callable[[FakeRequest], "str | None"]  # None: a choice with null content


def _default_responder(request: FakeRequest) -> str:
    return "2 + 3 = 5.\n\nThe answer is \\boxed{5}."


def _http_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on 127.0.0.1, run in a background thread.

    Use it as a context manager; ``url`` is the ``api_base`` to give litellm
    (``model="openai/fake"``).  Every chat request waits ``latency`` seconds,
    then gets ``n`` choices written by ``responder`` (``honour_n=False``
    plays a provider that ignores ``n``), unless a fault hits it: the fault
    ``fault_rule(body)`` names (when it names one), else the entries of
    ``fault_sequence`` (a fault kind or None per request, in arrival order),
    else faults drawn at ``faults`` rates.  The draws are
    seeded by ``seed``, the request body and how often that body was seen,
    so they do not depend on arrival order.  A hang lasts ``hang_seconds``
    (bounded, and cut short when the server stops).  With ``api_key`` set, a
    request without ``Authorization: Bearer <api_key>`` gets 401 and a message
    that echoes the key it was sent, as real providers do.

    Counters for assertions: ``requests`` (chat requests received),
    ``in_flight`` and ``max_in_flight``, ``faults_served`` (a Counter by
    kind) and ``bodies`` (the parsed request bodies, when ``keep_bodies``).

    >>> import json, urllib.request
    >>> with FakeOpenAIServer() as server:
    ...     request = urllib.request.Request(
    ...         server.url + "/chat/completions",
    ...         data=json.dumps({"model": "fake", "n": 2, "messages": []}).encode(),
    ...         headers={"Content-Type": "application/json"})
    ...     with urllib.request.urlopen(request, timeout=10) as answer:
    ...         reply = json.load(answer)
    >>> [choice["finish_reason"] for choice in reply["choices"]], server.requests
    (['stop', 'stop'], 1)
    """

    def __init__(
        self,
        *,
        responder: Responder = _default_responder,
        latency: float = 0.0,
        faults: FaultRates | None = None,
        fault_sequence: Sequence[str | None] = (),
        fault_rule: Callable[[Mapping[str, Any]], str | None] | None = None,
        seed: int = 0,
        hang_seconds: float = 30.0,
        retry_after: float | None = None,
        honour_n: bool = True,
        keep_bodies: bool = True,
        api_key: str | None = None,
    ) -> None:
        for kind in fault_sequence:
            if kind is not None and kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        if latency < 0 or hang_seconds < 0:
            raise ValueError("latency and hang_seconds must be >= 0")
        self.responder = responder
        self.latency = latency
        self.faults = faults or FaultRates()
        self.fault_sequence = tuple(fault_sequence)
        self.fault_rule = fault_rule
        self.seed = seed
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.honour_n = honour_n
        self.keep_bodies = keep_bodies
        self.api_key = api_key
        self.port: int | None = None
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults_served: collections.Counter[str] = collections.Counter()
        self.bodies: list[dict[str, Any]] = []
        self._seen: collections.Counter[str] = collections.Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task] = set()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        """The ``api_base`` for litellm: ``http://127.0.0.1:PORT/v1``."""
        if self.port is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="FakeOpenAIServer", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("the fake server did not start within 30 s")
        if self._startup_error is not None:
            raise RuntimeError("the fake server did not start") from self._startup_error

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or stopping is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(stopping.set)
        except RuntimeError:  # the loop already closed
            pass
        thread.join(timeout=30)
        self._thread = None

    # -- the server thread -------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as error:  # reported to start() rather than lost in a thread
            self._startup_error = error
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=2048)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:  # HTTP/1.1 keep-alive: one request after another
                request_line = await reader.readline()
                if not request_line.strip():
                    break
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                parts = request_line.decode("latin-1").split()
                path = parts[1] if len(parts) > 1 else ""
                answer = self._refuse_key(headers) or await self._answer(path, body)
                if answer is None:  # a hang: the client gives up, or the server stops
                    break
                writer.write(answer)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a client that went away mid-request is not the server's problem
        except asyncio.CancelledError:
            # Only stop() cancels; ending quietly keeps asyncio's stream callback
            # from reporting the cancelled handler as an error.
            pass
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    def _refuse_key(self, headers: Mapping[str, str]) -> bytes | None:
        if self.api_key is None:
            return None
        sent = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if sent == self.api_key:
            return None
        message = {"error": {"message": f"Incorrect API key provided: {sent}.", "code": 401}}
        return _http_response(401, json.dumps(message).encode())

    def _fault(self, raw: bytes, body: Mapping[str, Any], request_number: int) -> str | None:
        if self.fault_rule is not None:
            kind = self.fault_rule(body)
            if kind is not None:
                if kind not in FAULT_KINDS:
                    raise ValueError(f"fault_rule named an unknown fault {kind!r}")
                return kind
        if request_number < len(self.fault_sequence):
            return self.fault_sequence[request_number]
        if self.faults.total <= 0.0:
            return None
        digest = hashlib.sha256(raw).hexdigest()
        occurrence = self._seen[digest]
        self._seen[digest] += 1
        return self.faults.draw(random.Random(f"{self.seed}:{digest}:{occurrence}").random())

    async def _answer(self, path: str, raw: bytes) -> bytes | None:
        if not path.rstrip("/").endswith("/chat/completions"):
            return _http_response(404, b'{"error": {"message": "not found"}}')
        request_number = self.requests
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                body = json.loads(raw)
            except ValueError:
                return _http_response(400, b'{"error": {"message": "body is not JSON"}}')
            if self.keep_bodies:
                self.bodies.append(body)
            fault = self._fault(raw, body, request_number)
            if fault is not None:
                self.faults_served[fault] += 1
            if fault == "rate_limit":
                headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after}"}
                message = b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
                return _http_response(429, message, headers)
            if fault == "server_error":
                return _http_response(500, b'{"error": {"message": "injected server error"}}')
            if fault == "bad_request":
                return _http_response(400, b'{"error": {"message": "injected bad request"}}')
            if fault == "hang":
                await asyncio.sleep(self.hang_seconds)
                return None
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault == "malformed":
                return _http_response(200, b'{"id": "chatcmpl-broken", "choices": [{"ind')
            return _http_response(200, self._completion(body, request_number, fault))
        finally:
            self.in_flight -= 1

    def _completion(self, body: Mapping[str, Any], request_number: int, fault: str | None) -> bytes:
        n = int(body.get("n") or 1) if self.honour_n else 1
        choices = []
        completion_tokens = 0
        if fault != "empty_choices":
            for index in range(n):
                text = self.responder(
                    FakeRequest(body=body, sample_index=index, request_number=request_number)
                )
                finish_reason = "stop"
                if fault == "truncated" and text is not None:
                    text, finish_reason = text[: len(text) // 2], "length"
                completion_tokens += len((text or "").split())
                choices.append(
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason,
                    }
                )
        prompt_tokens = sum(
            len(str(message.get("content") or "").split()) for message in body.get("messages") or []
        )
        payload = {
            "id": f"chatcmpl-fake-{request_number}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": str(body.get("model") or "fake"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return json.dumps(payload).encode()
