"""How an attempt ends: its handler's return or exception, as the report the worker sends.

Owns the classification of an attempt's end (see :mod:`semantica.worker.runner`
for the rules) and the caps on what a job controls in it: an error message is
cut to ``ERROR_MESSAGE_MAX``, an exception's text to ``EXCEPTION_TEXT_MAX``, a
result over ``RESULT_MAX`` (or not JSON, or JSON that would come back changed)
fails the attempt, permanently. A handler's traceback goes to the job's log
without the worker's and trio's frames. Pure functions, safe from any thread;
they never raise for what a handler returned or raised.
"""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path
from typing import Any

import msgspec
import outcome
import trio

from semantica.errors import PermanentError
from semantica.limits import (
    ERROR_MESSAGE_MAX,
    EXCEPTION_TEXT_MAX,
    RESULT_MAX,
    cut,
    oversized_result,
)
from semantica.models import ErrorKind, JobError, payload_problem
from semantica.protocol import JobFinished, RunJob
from semantica.worker import registry
from semantica.worker.context import JobContext, LogBuffer


def note_ended(logs: LogBuffer, ended: int) -> None:
    """Say in the job's log that processes it left running were ended (they may be missed)."""
    if ended:
        what = "1 process" if ended == 1 else f"{ended} processes"
        logs.add(f"[semantica: ended {what} the job left running]")


def failed(job: RunJob, kind: ErrorKind, message: str, permanent: bool = False) -> JobFinished:
    error = JobError(kind.value, cut(message, ERROR_MESSAGE_MAX, "error message"))
    return JobFinished(lease=job.lease, error=error, permanent=permanent)


def succeeded(job: RunJob, result: Any) -> JobFinished:
    """The report of a handler that returned ``result`` (which must be JSON, and not too big)."""
    # What would be stored changed (a set as a list, NaN as null) is refused, as for payloads.
    problem = payload_problem(result, "the handler's result")
    if problem is not None:
        return failed(job, ErrorKind.BAD_RESULT, problem, permanent=True)
    try:
        encoded = msgspec.json.encode(result)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:  # ValueError: a lone surrogate
        return failed(
            job, ErrorKind.BAD_RESULT, f"the handler's result is not JSON: {exc}", permanent=True
        )
    if len(encoded) > RESULT_MAX:
        return failed(job, ErrorKind.BAD_RESULT, oversized_result(len(encoded)), permanent=True)
    return JobFinished(lease=job.lease, result=encoded)


def blocking_handler(job: RunJob) -> registry.HandlerFn | None:
    """The plain (not async) handler of this job's type, if it has one."""
    if job.type == registry.EXEC_TYPE:
        return None
    fn = registry.lookup(job.type)
    return None if fn is None or inspect.iscoroutinefunction(fn) else fn


def call_blocking(
    job: RunJob, ctx: JobContext, logs: LogBuffer, fn: registry.HandlerFn
) -> JobFinished:
    """Run one attempt of a plain handler (in the handler thread) and classify its end."""
    try:
        payload = msgspec.json.decode(job.payload)
    except msgspec.DecodeError as exc:
        return failed(job, ErrorKind.BAD_PAYLOAD, f"payload is not JSON: {exc}", permanent=True)
    try:
        result = fn(ctx, payload)
    except PermanentError as exc:
        return failed(job, ErrorKind.EXCEPTION, str(exc) or "PermanentError", permanent=True)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001  # (as above)
        return handler_failed(job, exc, logs)
    return succeeded(job, result)


def handler_failed(job: RunJob, exc: BaseException, logs: LogBuffer) -> JobFinished:
    """A handler raised: its traceback into the job's log, the attempt failed (retried).

    ``sys.exit()`` in a handler fails its attempt too, rather than ending the
    worker (which would cost the job an attempt as worker_lost, and print an
    exception group into the supervisor's log).
    """
    for line in handler_traceback(exc):
        logs.add(line)
    if isinstance(exc, SystemExit):
        return failed(job, ErrorKind.EXCEPTION, f"the handler called sys.exit({exc.code!r})")
    return failed(job, ErrorKind.EXCEPTION, f"{type(exc).__name__}: {exc}")


_OUR_FRAMES = tuple(
    str(Path(module.__file__).resolve().parent)
    for module in (trio, outcome, registry)  # registry: this package (semantica/worker)
    if module.__file__
)


def handler_traceback(exc: BaseException) -> list[str]:
    """The traceback of a handler's exception, without the worker's and trio's frames.

    The exception's own text (its type and message) is cut to EXCEPTION_TEXT_MAX
    before it is split into lines: a message of millions of lines would
    otherwise become as many log lines.
    """
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not str(Path(frame.filename).resolve()).startswith(_OUR_FRAMES)
    ]
    text = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    exception = "".join(traceback.format_exception_only(exc)).rstrip("\n")
    text.append(cut(exception, EXCEPTION_TEXT_MAX, "exception message"))
    return [part for chunk in text for part in chunk.rstrip("\n").split("\n")]
