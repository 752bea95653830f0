"""Text for people's terminals: job data made inert, and the console every view draws on.

Contract:

* :func:`printable` is the one escaping function of every ``semctl`` view (``list``,
  ``show``, ``wait``, ``top``, ``status``, ``tail`` without an ID). Whatever a job holds
  (its subject, type, error, progress message, payload) is shown with every character
  that could drive a terminal written as a visible escape: C0 and C1 controls and DEL
  (``\\x1b``, ``\\x07``, ``\\x9b``; ``\\n``, ``\\r``, ``\\t`` by name), the bidi controls
  that reorder what is shown (``\\u202e``), line and paragraph separators, the
  characters that show nothing (``\\u200b``, ``\\ufeff``, tag characters), and lone
  surrogates. Other text, backslashes included, is shown as it is.
* Job data is never read as rich markup: views hand rich :func:`cell` objects (``Text``),
  never strings with data inside, so ``[red]x`` prints ``[red]x`` and ``[/x]`` cannot
  crash a view.
* A job's own output (``semctl logs``, ``semctl tail ID``) does not come here: it is
  written as it was, like ``cat`` (see :func:`write_output`).
* :func:`console` draws at the terminal's width on a terminal; into a pipe or a file,
  lines are never wrapped, and :func:`show` drops the spaces rich pads them with.

Importing this module is cheap (no rich); rich is loaded only by the functions that draw.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from semantica.models import ErrorKind, Job, JobState

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

# C0 controls, DEL, C1 controls; the Arabic letter mark, LRM/RLM, the line and paragraph
# separators, the bidi embeddings, overrides and isolates; lone surrogates (which a
# terminal cannot be sent, and which would fail the write); and the characters that show
# nothing (the zero-width space, the word joiner and invisible operators, the BOM, the
# tag characters), with which two different subjects would look the same. (The zero-width
# joiner and non-joiner stay: emoji sequences and Persian and Indic writing need them.)
# (Compiled on first use, by re, which caches it: compiling it takes ~1 ms, and most text
# never needs it; see printable.)
_UNSAFE = (
    "[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\ufeff\ud800-\udfff\U000e0000-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character that could drive a terminal written as an escape."""
    # Every character above is one str.isprintable refuses (a control, a format
    # character, a separator other than the space, a surrogate, or unassigned), so
    # text it accepts, as most is, is safe as it stands.
    if text.isprintable():
        return text
    return re.sub(_UNSAFE, _escape, text)


def error_label(job: Job) -> str:
    """What a job's error is: "error" once it has finished; while it is queued or running
    again, "last error (attempt N)", the attempt it came from (an error is kept until the
    next attempt ends, so it is not the current one's)."""
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return "error"
    # attempts counts a running attempt; an interrupted one was given back, not spent.
    attempt = job.attempts - (job.state == JobState.RUNNING)
    if job.error is not None and job.error.kind == ErrorKind.INTERRUPTED:
        attempt += 1
    return f"last error (attempt {attempt})" if attempt >= 1 else "last error (before a retry)"


def error_text(job: Job) -> str:
    """A job's error on one line, "" if none, labelled if it is an earlier attempt's."""
    if job.error is None:
        return ""
    text = f"{job.error.kind}: {job.error.message}"
    label = error_label(job)
    return text if label == "error" else f"{label}: {text}"


#: The colour of each job state, in every view.
STATE_STYLE = {
    "QUEUED": "cyan",
    "RUNNING": "yellow",
    "DONE": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "SUPERSEDED": "dim",
}


def cell(text: str | None, style: str = "", *, default: str = "-", one_line: bool = False) -> Text:
    """A rich ``Text`` holding ``text`` escaped (``default`` when None); never markup.

    ``one_line``: in a column narrower than the text, cut with an ellipsis, not wrapped
    (a long error keeps to its row; into a pipe nothing is narrow, so nothing is cut).
    """
    from rich.text import Text

    shown = Text(default if text is None else printable(text), style=style)
    if one_line:
        shown.no_wrap, shown.overflow = True, "ellipsis"
    return shown


def state_cell(state: str) -> Text:
    """A job state in its colour."""
    return cell(state, STATE_STYLE.get(state, ""))


#: Columns when the output is not a terminal: wide enough never to wrap a line.
NO_WRAP_WIDTH = 1_000_000


def is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except ValueError:  # stdout is closed
        return False


def console(**options: Any) -> Console:
    """A rich console for stdout: the terminal's width on a terminal, else no wrapping.

    (rich would draw 80 columns into a pipe, cutting a long error over lines that
    ``grep`` then sees apart.)
    """
    from rich.console import Console

    if not is_terminal():
        options.setdefault("width", NO_WRAP_WIDTH)
    return Console(highlight=False, **options)


def show(*renderables: RenderableType) -> None:
    """Print each renderable on lines of its own, to stdout, for people.

    Into a pipe or a file: never wrapped, and without the spaces rich pads lines with.
    """
    from rich.console import Group

    out = console()
    if is_terminal():
        out.print(Group(*renderables))
        return
    with out.capture() as captured:
        out.print(Group(*renderables))
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def write_output(lines: Iterable[str]) -> None:
    """A job's own output, as it was written: UTF-8 bytes straight to stdout, like ``cat``.

    Not escaped and not re-encoded for the locale: a command's colours and progress bars
    work, and text outside ASCII comes out as the bytes the job wrote whatever the
    terminal's encoding is said to be.
    """
    sys.stdout.flush()  # what was printed before goes first
    buffer = sys.stdout.buffer
    for line in lines:
        # (Lines come off the wire as valid UTF-8; "replace" only guards the write.)
        buffer.write(line.encode("utf-8", "replace") + b"\n")
    buffer.flush()
