"""Size caps: the most one job may put in a log line, a progress message, an error
message and a result, and :func:`cut`, the one way text is cut to its cap.

No single job may break the views of all jobs or bloat the supervisor, so each
thing a job produces has a cap (docs/jobs.md, "Sizes", has the table):

* text (a log line, a progress message, an error message) is cut to its cap,
  ending with a note that says what was cut and how big it was;
* a result is JSON and cannot be cut: one over :data:`RESULT_MAX` fails its
  attempt as ``bad_result``, saying its size and the cap.

Both sides apply them. The worker cuts what a handler produces before it goes
on the channel (so a frame never grows past the channel's cap), and the
supervisor cuts again what it receives and what it reads back from the store,
so an older or misbehaving worker, or a row stored before these caps, cannot
bypass them.

Caps count bytes of UTF-8. A cut text is at most its cap, note included, so
cutting a text twice changes nothing.

This module imports nothing of Semantica's: both sides and the clients may use it.
"""

from __future__ import annotations

KIB = 1 << 10
MIB = 1 << 20

#: One line of a job's log (``ctx.log``, a line of an exec command's output).
LOG_LINE_MAX = 64 * KIB
#: The formatted exception at the end of a traceback in a job's log.
EXCEPTION_TEXT_MAX = 64 * KIB
#: The message of ``ctx.progress``.
PROGRESS_MESSAGE_MAX = 1 * KIB
#: ``error.message`` of a job: it travels in every list, wait and event.
ERROR_MESSAGE_MAX = 16 * KIB
#: A job's result, as JSON; a larger one fails the attempt (``bad_result``).
RESULT_MAX = 1 * MIB


def cut(text: str, cap: int, what: str, *, whole: bool = True) -> str:
    """``text`` as it may travel: at most ``cap`` bytes of UTF-8, lone surrogates escaped.

    Text over the cap keeps its beginning and ends with a note naming ``what``
    was cut and its size: ``… [cut: 70.0 MB log line, limit 64 KiB]``. With
    ``whole=False`` the caller holds only the beginning of a longer text (a row
    read in part), so the note says only that it was over the cap.
    """
    if text.isascii() and len(text) <= cap:  # (isascii is known without a look at the text)
        return text
    if len(text) * 6 <= cap:  # no character takes more than 6 bytes (an escape, \udcff)
        return _escaped(text)
    head = text[: cap + 1]  # cap + 1 characters are more than cap bytes
    data = head.encode("utf-8", "backslashreplace")
    if len(data) <= cap:  # (then head is the whole text)
        return data.decode()
    size = None
    if whole:
        size = len(data) if len(head) == len(text) else utf8_size(text)
    end = note(what, cap, size)
    # "ignore": a character cut in its middle goes whole.
    return data[: cap - len(end.encode())].decode("utf-8", "ignore") + end


def oversized_result(size: int) -> str:
    """The error message of an attempt whose result is ``size`` bytes of JSON, over the cap."""
    return (
        f"the handler's result is {size:,} bytes of JSON, over the {binary_size(RESULT_MAX)} "
        "limit; write large output to a file or the job log"
    )


def note(what: str, cap: int, size: int | None = None) -> str:
    """What ends a text cut to ``cap``: ``… [cut: 70.0 MB log line, limit 64 KiB]``, or
    without the size, ``… [cut: log line over 64 KiB]``.

    For a caller that cuts a stream itself (keeping the beginning of a line
    and counting the rest): it keeps ``cap`` minus this note's length.
    """
    if size is None:
        return f"… [cut: {what} over {binary_size(cap)}]"
    return f"… [cut: {decimal_size(size)} {what}, limit {binary_size(cap)}]"


def utf8_size(text: str) -> int:
    """How many bytes ``text`` takes as UTF-8 (lone surrogates escaped, as they travel)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "backslashreplace"))


def decimal_size(size: int) -> str:
    """A measured size for people: ``950 bytes``, ``70.0 MB`` (powers of 1000)."""
    if size < 1000:
        return f"{size} bytes"
    value = size / 1000
    for unit in ("kB", "MB"):
        if value < 999.95:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def binary_size(size: int) -> str:
    """A cap for people, exactly: ``64 KiB``, ``1 MiB``, else in bytes."""
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size:,} bytes"


def _escaped(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
