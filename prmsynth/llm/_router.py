"""Several endpoints behind one model name, through ``litellm.Router``.

A config file in litellm's ``model_list`` format (the same as the litellm
proxy's ``config.yaml``) lists deployments; those sharing a ``model_name``
are load-balanced, so a run can spread its requests over several vLLM
servers or API deployments::

    model_list:
      - model_name: qwen-math
        litellm_params:
          model: hosted_vllm/Qwen/Qwen2.5-Math-7B-Instruct
          api_base: http://gpu-1:8000/v1
      - model_name: qwen-math
        litellm_params:
          model: hosted_vllm/Qwen/Qwen2.5-Math-7B-Instruct
          api_base: http://gpu-2:8000/v1
          api_key: os.environ/GPU2_KEY
    router_settings:            # optional, passed to litellm.Router
      routing_strategy: simple-shuffle

The Router's own retries are switched off (``num_retries=0`` whatever the
config says) and [`RouterLLM`][prmsynth.RouterLLM] retries instead, with the same backoff,
limits, ``n`` fallback and accounting as [`LiteLLMClient`][prmsynth.LiteLLMClient]:
each attempt goes back through the Router, so a retry after a failing server
may land on a healthy one, and the Router's cooldowns still steer traffic
away from deployments that keep failing.  When every deployment is cooling
down, the Router's "no deployments available" is retried after its cooldown
(``router_settings: {cooldown_time: ...}``; ``disable_cooldowns: true``
switches cooldowns off).  JSON config files work as well.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from prmsynth._errors import InputError, is_secret_name
from prmsynth.llm._client import RetryingLLM, import_litellm, without_secrets
from prmsynth.llm._continuation import ContinuationRoute, continuation_route

#: Router settings prmsynth owns: retries are its own (see the module doc).
_FORCED_SETTINGS = {"num_retries": 0, "retry_after": 0}


def load_router_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or JSON router config; a bare list is taken as the ``model_list``.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "router.json"
    ...     _ = path.write_text('[{"model_name": "m", "litellm_params": {"model": "openai/x"}}]')
    ...     load_router_config(path)["model_list"][0]["model_name"]
    'm'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(path, f"cannot read router config: {error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InputError(path, f"not valid JSON: {error}") from None
    else:
        import yaml  # a dependency of litellm

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InputError(path, f"not valid YAML: {error}") from None
    if isinstance(data, list):
        data = {"model_list": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("model_list"), list):
        raise InputError(path, "expected a 'model_list' of deployments")
    for number, deployment in enumerate(data["model_list"], start=1):
        if (
            not isinstance(deployment, Mapping)
            or not isinstance(deployment.get("model_name"), str)
            or not isinstance(deployment.get("litellm_params"), Mapping)
            or not isinstance(deployment["litellm_params"].get("model"), str)
        ):
            raise InputError(
                path, f"deployment {number} needs 'model_name' and 'litellm_params.model'"
            )
    settings = data.get("router_settings") or {}
    if not isinstance(settings, Mapping):
        raise InputError(path, "'router_settings' must be a mapping")
    return {"model_list": list(data["model_list"]), "router_settings": dict(settings)}


def _deployment_secrets(model_list: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Every credential in the deployments (a parameter `is_secret_name` names one:
    ``api_key``, ``aws_secret_access_key``, ``vertex_credentials``, ...), resolved
    the way litellm resolves ``os.environ/NAME``."""
    secrets = []
    for deployment in model_list:
        params = deployment.get("litellm_params") or {}
        for name, value in params.items():
            if not is_secret_name(str(name)) or not isinstance(value, str) or not value:
                continue
            if value.startswith("os.environ/"):
                value = os.environ.get(value.removeprefix("os.environ/"), "")
            if value:
                secrets.append(value)
    return tuple(secrets)


def _rebuilt_router_llm(cls: type[RouterLLM], fields: dict[str, Any]) -> RouterLLM:
    router = import_litellm().Router(**fields["router_arguments"])
    return cls(router=router, **fields)


def _cooldown_seconds(error: BaseException) -> float | None:
    """How long a Router said to wait when no deployment was available, else None."""
    if type(error).__name__ not in ("RouterRateLimitError", "RouterRateLimitErrorBasic"):
        return None
    try:
        return max(0.0, float(getattr(error, "cooldown_time", 0.0) or 0.0))
    except (TypeError, ValueError):
        return 0.0


@attrs.frozen(kw_only=True)
class RouterLLM(RetryingLLM):
    """An [`LLM`][prmsynth.LLM] over a ``litellm.Router``: ``model`` is a ``model_name``
    shared by several deployments.  Build it with `from_config`.

    Retry, timeout, limiter and accounting settings are those of
    `RetryingLLM`.
    """

    router: Any = attrs.field(repr=False, eq=False)
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False, eq=False)
    #: The deployments behind ``model`` (their ``litellm_params`` less secrets), for the cache.
    deployments: tuple[Mapping[str, Any], ...] = attrs.field(default=(), repr=False, eq=False)
    #: The ``litellm.Router`` arguments it was built with (`from_config`): another
    #: process (a Ray worker) builds its own Router from them when it is unpickled.
    router_arguments: Mapping[str, Any] | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        **settings: Any,
    ) -> RouterLLM:
        """A RouterLLM for ``model`` (default: the config's only ``model_name``).

        ``settings`` are [`RouterLLM`][prmsynth.RouterLLM] fields (``max_attempts``,
        ``request_timeout``, ``limiter``, ``options``, ...).
        """
        config = load_router_config(path)
        names = sorted({deployment["model_name"] for deployment in config["model_list"]})
        if model is None:
            if len(names) != 1:
                raise InputError(
                    path, f"several model names ({', '.join(names)}); choose one with --model"
                )
            model = names[0]
        elif model not in names:
            raise InputError(path, f"no deployment named {model!r} (have: {', '.join(names)})")
        litellm = import_litellm()
        router_settings = {**config["router_settings"], **_FORCED_SETTINGS}
        router = litellm.Router(model_list=config["model_list"], **router_settings)
        deployments = tuple(
            without_secrets(deployment["litellm_params"])
            for deployment in config["model_list"]
            if deployment["model_name"] == model
        )
        return cls(
            model=model,
            router=router,
            secrets=_deployment_secrets(config["model_list"]),
            deployments=deployments,
            router_arguments={"model_list": config["model_list"], **router_settings},
            **settings,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A litellm Router holds locks and HTTP clients: a copy builds its own.
        if self.router_arguments is None:
            raise TypeError("only a RouterLLM built by from_config can be pickled")
        fields = {
            field.alias: getattr(self, field.name)
            for field in attrs.fields(type(self))
            if field.init and field.name != "router"
        }
        return _rebuilt_router_llm, (type(self), fields)

    def _served_by(self) -> dict[str, Any]:
        return {"deployments": list(self.deployments)} if self.deployments else {}

    def _continuation_route(self) -> ContinuationRoute | None:
        # Any deployment may answer a request: all must continue the same way.
        routes = {
            continuation_route(str(params.get("model", "")), params.get("api_base"))
            for params in self.deployments
        }
        return routes.pop() if len(routes) == 1 else None

    @property
    def _local(self) -> bool:
        return False  # a router's deployments are never the embedded model

    def _send(self, litellm: ModuleType, kwargs: dict[str, Any]) -> Awaitable[Any]:
        return self.router.acompletion(**kwargs)

    def _is_retryable(self, litellm: ModuleType, error: BaseException) -> bool:
        # "No deployments available" (all cooling down after failures) passes with time.
        return _cooldown_seconds(error) is not None or super()._is_retryable(litellm, error)

    def _backoff(self, attempt: int, error: BaseException) -> float:
        delay = super()._backoff(attempt, error)
        cooldown = _cooldown_seconds(error)
        # The cooldown is the router's own setting, not a remote hint: waiting
        # less would only meet the same refusal, so it is not capped.
        return delay if cooldown is None else max(delay, cooldown)

    def _secrets(self) -> tuple[str, ...]:
        return self.secrets
