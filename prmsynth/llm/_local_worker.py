"""The embedded model's worker process: llama.cpp with batched sampling, over JSON lines.

Run as ``python -m prmsynth.llm._local_worker GGUF_PATH THREADS`` by
`_local`.  The model lives in this separate process so that a
crash of the native library (an abort, an illegal instruction) ends this
process only: the parent sees the pipe close, reads the exit signal and
stops the run with a message instead of dying silently.

Protocol: one JSON object per line each way.  The worker first answers
``{"ready": true}`` (or ``{"error": ...}`` when the model cannot load).
Requests ``{"id", "prompt", "n", "max_tokens", "temperature", "top_p",
"seed", "stop"}`` may arrive at any time, several at once; each is answered,
in the order they finish, with ``{"id", "choices": [{"text",
"finish_reason", "n_tokens"}], "prompt_tokens"}`` or ``{"id", "error"}``.

Sampling is batched within a request: its prompt is evaluated once and
shared by its ``n`` sequences, then every step decodes one token of every
sequence still running in a single llama.cpp batch.  Each sequence has its
own sampler chain and seed (``seed + index``) and its own stop check.

Requests run one after another, each on an emptied cache.  Batching
requests together would be faster, but floating-point sums in llama.cpp
depend on how the cache and the batch are laid out, so a sample would then
depend on which other requests happened to be in flight: the same seed
would not give the same text.  Alone on an empty cache, a request's layout
depends only on the request, and its samples are reproducible.
This module imports nothing from prmsynth, so the worker starts fast.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import queue
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

#: Sequences decoded together; a request asking for more runs in waves.
MAX_SEQUENCES = 32
#: KV cells shared by a request's sequences; a wave is sized to fit.
CONTEXT_CELLS = 16384
BATCH_TOKENS = 512
#: llama-cpp-python's defaults for create_completion, kept so the samples
#: match what this model gave before batching; temperature and top_p are the
#: request's.
TOP_K = 40
MIN_P = 0.05
_DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a random seed


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int:
    """Index of the earliest stop string in ``text`` found at or after ``start``, or -1.

    >>> find_stop("a = 5<|im_end|>junk", ["<|im_end|>"])
    5
    >>> find_stop("no stop here", ["<|im_end|>", "###"])
    -1
    """
    best = -1
    for stop in stops:
        if not stop:
            continue
        index = text.find(stop, start)
        if index != -1 and (best == -1 or index < best):
            best = index
    return best


class _Request:
    """One request: its prompt tokens, settings, and the samples finished so far."""

    def __init__(self, message: dict[str, Any], tokens: list[int], limit: int) -> None:
        self.id = message.get("id")
        self.tokens = tokens
        self.n = int(message["n"])
        self.limit = limit
        self.temperature = float(message["temperature"])
        self.top_p = float(message["top_p"])
        seed = message.get("seed")
        self.seeds = [
            _DEFAULT_SEED if seed is None else (int(seed) + index) & 0xFFFFFFFF
            for index in range(self.n)
        ]
        self.stops = [str(stop) for stop in message.get("stop") or () if stop]
        self.admitted = 0
        self.choices: list[dict[str, Any] | None] = [None] * self.n

    @property
    def done(self) -> bool:
        return all(choice is not None for choice in self.choices)


class _Sequence:
    """One sample being decoded: its sampler, position, next token and text."""

    def __init__(self, request: _Request, index: int, seq_id: int, sampler: Any) -> None:
        self.request = request
        self.index = index
        self.seq_id = seq_id
        self.sampler = sampler
        self.position = len(request.tokens)
        self.token = -1  # sampled, not yet taken
        self.data = bytearray()
        self.n_tokens = 0
        self.checked = 0  # characters of text already searched for stop strings
        self.text: str | None = None
        self.finish_reason: str | None = None


class BatchedModel:
    """llama.cpp loaded once, decoding the samples of a request together.

    ``submit`` queues a request; ``step`` starts the next request (or wave)
    when none is running, decodes one token of every running sequence and
    returns the requests that finished.  ``sample`` runs one request to its
    end (for benchmarks and tests).
    """

    def __init__(
        self, model_path: str, threads: int, *, max_sequences: int = MAX_SEQUENCES
    ) -> None:
        import llama_cpp as ll

        self.ll = ll
        ll.llama_backend_init()
        model_params = ll.llama_model_default_params()
        # llama.cpp's "extra buffer types" repack weights for AMX or other
        # CPU-specific kernels; built natively on a CPU that advertises AMX,
        # the AMX path traps with an illegal instruction on some VMs.  The
        # plain CPU buffers run on every x86-64 CPU, and SmolLM2's Q4_1
        # weights have no repacked kernels to gain from.
        if "use_extra_bufts" not in {name for name, _ in type(model_params)._fields_}:
            raise RuntimeError(
                f"llama-cpp-python {ll.__version__} is too old for prmsynth: "
                "pip install --upgrade 'llama-cpp-python>=0.3.36'"
            )
        model_params.use_extra_bufts = False
        self.model = ll.llama_model_load_from_file(model_path.encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {model_path}")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.max_positions = min(ll.llama_model_n_ctx_train(self.model), CONTEXT_CELLS // 2)
        context_params = ll.llama_context_default_params()
        context_params.n_ctx = CONTEXT_CELLS
        context_params.n_batch = BATCH_TOKENS
        context_params.n_ubatch = BATCH_TOKENS
        # One more sequence than the samples: it holds the prompt between waves.
        context_params.n_seq_max = max_sequences + 1
        self.prompt_seq = max_sequences
        # One pool of cells for all sequences: a prompt is stored once and
        # shared by every sample copied from it.
        context_params.kv_unified = True
        context_params.n_threads = threads
        context_params.n_threads_batch = threads
        self.context = ll.llama_init_from_model(self.model, context_params)
        if not self.context:
            raise RuntimeError("llama.cpp could not create a context")
        self.memory = ll.llama_get_memory(self.context)
        self.batch = ll.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._piece = ctypes.create_string_buffer(256)
        self.free_ids = list(range(max_sequences - 1, -1, -1))
        self.pending: collections.deque[_Request] = collections.deque()
        self.running: list[_Sequence] = []

    # -- tokens ------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 16
        tokens = (self.ll.llama_token * size)()
        count = self.ll.llama_tokenize(self.vocab, data, len(data), tokens, size, True, True)
        if count < 0:
            raise RuntimeError("the prompt could not be tokenized")
        return list(tokens[:count])

    def piece(self, token: int) -> bytes:
        length = self.ll.llama_token_to_piece(self.vocab, token, self._piece, 256, 0, False)
        return self._piece.raw[: max(0, length)]

    # -- requests ----------------------------------------------------------

    def submit(self, message: dict[str, Any]) -> _Request:
        """Queue a request; raises ValueError for one that can never run."""
        tokens = self.tokenize(str(message["prompt"]))
        if not tokens:
            raise ValueError("empty prompt")
        if len(tokens) >= self.max_positions:
            raise ValueError(
                f"the prompt has {len(tokens)} tokens; the model's context is "
                f"{self.max_positions} tokens"
            )
        if int(message["n"]) < 1 or int(message["max_tokens"]) < 1:
            raise ValueError("n and max_tokens must be >= 1")
        limit = min(int(message["max_tokens"]), self.max_positions - len(tokens))
        request = _Request(message, tokens, limit)
        self.pending.append(request)
        return request

    @property
    def busy(self) -> bool:
        return bool(self.running or self.pending)

    def step(self) -> list[_Request]:
        """Start waiting work when idle, decode one token per running sequence;
        the requests that finished."""
        if not self.running and self.pending:
            self._admit(self.pending[0])
            if self.pending[0].admitted == self.pending[0].n:
                self.pending.popleft()
        finished: list[_Request] = []
        still = []
        for sequence in self.running:
            if self._advance(sequence):
                still.append(sequence)
            elif self._finish(sequence):
                finished.append(sequence.request)
        self.running = still
        if still:
            self._decode([(s.token, s.position, s.seq_id, True) for s in still])
            for index, sequence in enumerate(still):
                sequence.position += 1
                sequence.token = self.ll.llama_sampler_sample(sequence.sampler, self.context, index)
        return finished

    def sample(self, prompt: str, **settings: Any) -> dict[str, Any]:
        """Run one request to its end: ``{"choices", "prompt_tokens"}``."""
        request = self.submit({"prompt": prompt, **settings})
        while not request.done:
            self.step()
        return reply(request)

    # -- decoding ----------------------------------------------------------

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, sequence, wants_logits) entries as one batch."""
        batch = self.batch
        for index, (token, position, seq_id, logits) in enumerate(entries):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = seq_id
            batch.logits[index] = logits
        batch.n_tokens = len(entries)
        status = self.ll.llama_decode(self.context, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def _admit(self, request: _Request) -> None:
        """Start the next wave of ``request``'s samples (its first on an emptied cache)."""
        ll, tokens = self.ll, request.tokens
        if request.admitted == 0:
            ll.llama_memory_clear(self.memory, True)
            start = 0
        else:
            # A later wave: the prompt's cells are kept; its last token is
            # decoded again for the logits the first samples start from.
            start = len(tokens) - 1
            ll.llama_memory_seq_rm(self.memory, self.prompt_seq, start, -1)
        last = 0
        for offset in range(start, len(tokens), BATCH_TOKENS):
            chunk = tokens[offset : offset + BATCH_TOKENS]
            self._decode(
                [
                    (token, offset + i, self.prompt_seq, offset + i == len(tokens) - 1)
                    for i, token in enumerate(chunk)
                ]
            )
            last = len(chunk) - 1
        room = (CONTEXT_CELLS - len(tokens)) // request.limit
        size = max(1, min(request.n - request.admitted, len(self.free_ids), room))
        for _ in range(size):
            seq_id = self.free_ids.pop()
            # The prompt's cells are shared with the sample, not copied.
            ll.llama_memory_seq_cp(self.memory, self.prompt_seq, seq_id, 0, len(tokens))
            index = request.admitted
            request.admitted += 1
            sequence = _Sequence(request, index, seq_id, self._sampler(request, index))
            # Every sample starts from the prompt's last logits.
            sequence.token = ll.llama_sampler_sample(sequence.sampler, self.context, last)
            self.running.append(sequence)

    def _sampler(self, request: _Request, index: int) -> Any:
        ll = self.ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if request.temperature <= 0.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(TOP_K))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(request.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(MIN_P, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(request.temperature))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(request.seeds[index]))
        return chain

    def _advance(self, sequence: _Sequence) -> bool:
        """Take the sequence's sampled token; whether the sequence goes on."""
        request = sequence.request
        if self.ll.llama_vocab_is_eog(self.vocab, sequence.token):
            sequence.finish_reason = "stop"
            return False
        sequence.n_tokens += 1
        sequence.data += self.piece(sequence.token)
        if request.stops:
            # An incomplete UTF-8 character at the end decodes to nothing yet.
            text = sequence.data.decode("utf-8", errors="ignore")
            longest = max(len(stop) for stop in request.stops)
            found = find_stop(text, request.stops, max(0, sequence.checked - longest + 1))
            sequence.checked = len(text)
            if found != -1:
                sequence.text = text[:found]
                sequence.finish_reason = "stop"
                return False
        if sequence.n_tokens >= request.limit:
            sequence.finish_reason = "length"
            return False
        return True

    def _finish(self, sequence: _Sequence) -> bool:
        """Free the sequence's cells and id; whether its request is now complete."""
        ll, request = self.ll, sequence.request
        ll.llama_sampler_free(sequence.sampler)
        ll.llama_memory_seq_rm(self.memory, sequence.seq_id, -1, -1)
        self.free_ids.append(sequence.seq_id)
        text = sequence.text
        if text is None:
            text = sequence.data.decode("utf-8", errors="ignore")
        request.choices[sequence.index] = {
            "text": text,
            "finish_reason": sequence.finish_reason,
            "n_tokens": sequence.n_tokens,
        }
        return request.done


def reply(request: _Request) -> dict[str, Any]:
    """The answer to a finished request."""
    return {"id": request.id, "choices": request.choices, "prompt_tokens": len(request.tokens)}


def _read_requests(source: TextIO, inbox: queue.Queue[dict[str, Any] | None]) -> None:
    for line in source:
        if line.strip():
            inbox.put(json.loads(line))
    inbox.put(None)  # the parent closed the pipe: finish and exit


def serve(model: BatchedModel, source: TextIO, replies: TextIO) -> None:
    """Answer requests from ``source`` until it closes, batching those in flight."""
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_read_requests, args=(source, inbox), daemon=True).start()

    def send(answer: dict[str, Any]) -> None:
        replies.write(json.dumps(answer) + "\n")
        replies.flush()

    open_ = True
    while open_ or model.busy:
        # Wait only when idle; while decoding, take whatever has arrived.
        messages = [inbox.get()] if open_ and not model.busy else []
        while True:
            try:
                messages.append(inbox.get_nowait())
            except queue.Empty:
                break
        for message in messages:
            if message is None:
                open_ = False
                continue
            try:
                model.submit(message)
            except Exception as error:  # a bad request is answered, not fatal
                send({"id": message.get("id"), "error": f"{type(error).__name__}: {error}"})
        for request in model.step():
            send(reply(request))


def main(argv: Sequence[str]) -> int:
    model_path, threads = argv[0], int(argv[1])
    # Ctrl-C at a terminal reaches the whole process group; it belongs to the
    # parent, which reports how far its run got and then ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the original stdout; anything the native library
    # prints to fd 1 goes to stderr (the parent's log) instead.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        model = BatchedModel(model_path, threads)
    except Exception as error:
        replies.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        replies.flush()
        return 1
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    serve(model, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
