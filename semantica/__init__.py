"""Semantica: a local background job engine.

The public API, importable from here::

    from semantica import Client, handler, PermanentError, SemanticaError, Job

This package's top level holds what every side shares: the protocol, the job
models, errors and configuration. ``supervisor/``, ``worker/`` and
``control/`` import from it and never from each other. Names below are loaded
lazily, so ``import semantica`` stays cheap (``semctl`` starts in milliseconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BadInput",
    "Client",
    "Job",
    "JobState",
    "AuthError",
    "NoSuchJob",
    "PartialEnqueue",
    "PermanentError",
    "SemanticaError",
    "Unreachable",
    "WaitTimeout",
    "handler",
]

_LAZY = {
    "AsyncClient": "semantica.control.async_client",
    "Client": "semantica.control.client",
    "handler": "semantica.worker.registry",
    "Job": "semantica.models",
    "JobState": "semantica.models",
    "PermanentError": "semantica.errors",
    "SemanticaError": "semantica.errors",
    "BadInput": "semantica.errors",
    "NoSuchJob": "semantica.errors",
    "PartialEnqueue": "semantica.control.batches",
    "AuthError": "semantica.errors",
    "Unreachable": "semantica.errors",
    "WaitTimeout": "semantica.errors",
}

if TYPE_CHECKING:
    from semantica.control.async_client import AsyncClient
    from semantica.control.batches import PartialEnqueue
    from semantica.control.client import Client
    from semantica.errors import (
        AuthError,
        BadInput,
        NoSuchJob,
        PermanentError,
        SemanticaError,
        Unreachable,
        WaitTimeout,
    )
    from semantica.models import Job, JobState
    from semantica.worker.registry import handler


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'semantica' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
