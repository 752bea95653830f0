"""Errors shared by every side of Semantica.

Every error a user can see is a :class:`SemanticaError` carrying a stable string
``code``. The code is what travels over the socket (in an ``ErrorReply``) and
what ``semctl`` turns into its exit status, so the client library, the CLI and
the supervisor agree on meaning without sharing exception objects.

:class:`PermanentError` is different: handlers raise it to fail a job attempt
without retry. It never crosses the socket as an exception.
"""

from __future__ import annotations

from typing import ClassVar

# Exit statuses of semctl, as the README lists them.
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5


class SemanticaError(Exception):
    """Root of every Semantica error; ``code`` is stable, ``exit_code`` is semctl's status."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_JOB_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(SemanticaError):
    """The request was malformed or asked for something impossible; nothing changed."""

    code = "bad_input"
    exit_code = EXIT_BAD_INPUT


class Unreachable(SemanticaError):
    """No supervisor answers at the socket."""

    code = "unreachable"
    exit_code = EXIT_UNREACHABLE


class AuthError(SemanticaError):
    """The supervisor refused the client: wrong token or wrong user."""

    code = "auth"
    exit_code = EXIT_AUTH


class NoSuchJob(SemanticaError):
    """The job id names no job."""

    code = "not_found"
    exit_code = EXIT_NOT_FOUND


class ProtocolError(SemanticaError):
    """A frame or message did not follow the protocol (bad bytes, too large, wrong version)."""

    code = "protocol"


class FrameTooLarge(ProtocolError):
    """A frame header announced a body larger than the cap; the body was not read."""


class WaitTimeout(SemanticaError):
    """``wait`` gave up before the jobs finished."""

    code = "timeout"


class StoreError(SemanticaError):
    """The job store failed (I/O error, disk full); the request changed nothing."""

    code = "store_error"


class StoreFull(StoreError):
    """The disk (or a file size limit) is full; nothing was written."""

    code = "store_full"


class StoreBusy(StoreError):
    """Another process held the database locked past the busy timeout; nothing changed."""

    code = "store_busy"


class StoreUnavailable(StoreError):
    """The job store's server cannot be reached (down, restarting, cut off); nothing changed.

    A client may try again: the supervisor reconnects on its own.
    """

    code = "store_unavailable"


class ConfigError(SemanticaError):
    """A setting (environment variable or flag) has a value that cannot be used."""

    code = "config"
    exit_code = EXIT_BAD_INPUT


class InternalError(SemanticaError):
    """A bug on the supervisor side; the message says what failed."""

    code = "internal"


_BY_CODE: dict[str, type[SemanticaError]] = {
    cls.code: cls
    for cls in (
        BadInput,
        Unreachable,
        AuthError,
        NoSuchJob,
        ProtocolError,
        WaitTimeout,
        StoreError,
        StoreFull,
        StoreBusy,
        StoreUnavailable,
        ConfigError,
        InternalError,
    )
}


def register_code(cls: type[SemanticaError]) -> type[SemanticaError]:
    """Make an error class defined elsewhere come back as itself from :func:`error_from_code`."""
    _BY_CODE[cls.code] = cls
    return cls


def error_from_code(code: str, message: str) -> SemanticaError:
    """Rebuild the error an ``ErrorReply`` describes (an unknown code: a plain SemanticaError)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = SemanticaError(message)
        err.code = code  # type: ignore[misc]  # keep a code from a newer supervisor visible
        return err
    return cls(message)


class PermanentError(Exception):
    """Raised by a handler: fail this attempt and do not retry the job."""
