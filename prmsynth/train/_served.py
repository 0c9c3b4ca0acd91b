"""One small client for a PRM served by vLLM's pooling API (``POST /pooling``).

vLLM serves a token-classification or reward model (``vllm serve MODEL
--runner pooling``) and answers ``{"model": M, "input": [text, ...]}`` with
``{"data": [{"index": i, "data": [[...], ...]}, ...]}``: one row of values per
token of each input.  The client sends one input per step prefix, each ending
with the step separator, and reads the last row of each: two values are
[wrong, right] (probabilities, or logits that are then put through a
softmax), one value is a probability (or a logit outside [0, 1], put through
a sigmoid).  Only the standard library is used.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import attrs

from prmsynth._errors import BackendUnavailable, InputError


def _probability(row: Any) -> float:
    """A step's probability of being right from its last token's row."""
    values = row if isinstance(row, list) else [row]
    if not values or not all(isinstance(v, (int, float)) for v in values):
        raise ValueError(f"expected a list of numbers, got {row!r}")
    if len(values) == 1:
        value = float(values[0])
        return value if 0.0 <= value <= 1.0 else 1 / (1 + math.exp(-value))
    wrong, right = float(values[0]), float(values[-1])
    if len(values) == 2 and min(wrong, right) >= 0 and abs(wrong + right - 1) < 1e-3:
        return right
    return 1 / (1 + math.exp(wrong - right))  # softmax over the two logits


@attrs.frozen(kw_only=True)
class ServedPRM:
    """A PRM behind vLLM's ``/pooling`` endpoint at ``url`` (``http://host:port``).

    ``model`` defaults to the server's first (``GET /v1/models``); the
    separator must be the one the PRM was trained with.
    """

    url: str
    model: str | None = None
    separator: str = "\n"
    timeout: float = 120.0

    def _request(self, path: str, body: dict[str, Any] | None) -> Any:
        if not self.url.startswith(("http://", "https://")):
            raise InputError(self.url, "expected an http:// or https:// URL")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            self.url.rstrip("/") + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise BackendUnavailable(f"{self.url}{path}: HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise BackendUnavailable(f"{self.url}{path}: {error}") from None

    def served_model(self) -> str:
        """``model``, or the first model the server lists."""
        if self.model:
            return self.model
        listing = self._request("/v1/models", None)
        try:
            return listing["data"][0]["id"]
        except (KeyError, IndexError, TypeError):
            raise BackendUnavailable(f"{self.url}/v1/models: lists no model") from None

    def resolved(self) -> ServedPRM:
        """This client with ``model`` filled in from the server (one request)."""
        return attrs.evolve(self, model=self.served_model())

    def score(self, problem: str, steps: Sequence[str], answer: str | None = None) -> list[float]:
        """Each step's probability of being right, in one request."""
        prefixes, text = [], problem + self.separator
        for step in steps:
            text += step + self.separator
            prefixes.append(text)
        answer = self._request("/pooling", {"model": self.served_model(), "input": prefixes})
        try:
            items = sorted(answer["data"], key=lambda item: item["index"])
            if len(items) != len(steps):
                raise ValueError(f"{len(items)} results for {len(steps)} inputs")
            # One row per token (token classification, reward), or one row for
            # the whole input (a sequence classifier): read the last token's.
            rows = [item["data"] for item in items]
            return [_probability(r[-1] if r and isinstance(r[0], list) else r) for r in rows]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise InputError(f"{self.url}/pooling", f"unexpected response: {error}") from None
