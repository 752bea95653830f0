"""The handler registry: ``@handler("TYPE")`` and the lookup the worker does.

Handler modules are plain Python modules named in ``SEMANTICA_HANDLERS``; the
worker imports them at start, and their decorators fill this registry. A
handler is ``fn(ctx, payload)``, plain or ``async`` (trio); its return value,
which must be JSON-able, becomes the job's result.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from semantica.models import EXEC_TYPE as EXEC_TYPE  # the type the worker runs itself

HandlerFn = Callable[[Any, Any], Any]
F = TypeVar("F", bound=HandlerFn)

_handlers: dict[str, HandlerFn] = {}


def handler(type_name: str) -> Callable[[F], F]:
    """Register the decorated function as the handler of jobs of ``type_name``.

    Raises:
        ValueError: the name is empty, is the built-in ``exec``, or already has a
            handler (two modules claiming one type is a configuration error).
    """
    if not isinstance(type_name, str) or not type_name:
        raise ValueError("a handler needs a non-empty job type name")
    if type_name == EXEC_TYPE:
        raise ValueError(f"{EXEC_TYPE!r} is built in and cannot be replaced")

    def register(fn: F) -> F:
        existing = _handlers.get(type_name)
        if existing is not None and existing is not fn:
            raise ValueError(
                f"job type {type_name!r} already has a handler: "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _handlers[type_name] = fn
        return fn

    return register


def lookup(type_name: str) -> HandlerFn | None:
    """The handler for a job type, or None."""
    return _handlers.get(type_name)


def registered_types() -> list[str]:
    """Every job type this process can run, ``exec`` included."""
    return sorted({EXEC_TYPE, *_handlers})


def load_modules(names: Iterable[str]) -> None:
    """Import each handler module (their ``@handler`` decorators register them)."""
    for name in names:
        importlib.import_module(name)
