"""Nothing a job holds drives the terminal: job text is shown escaped, never read as markup;
a job's own output (``logs``, ``tail ID``) is passed through as it was written.

Each view is run through the real ``semctl`` against a real supervisor. The text comes
from where a job can put it: its subject, its error, its progress message, its type.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import termios
import unicodedata
from pathlib import Path

from harness import SEMCTL, Announcements, Daemon
from lines import Lines

#: An OSC title change ending in BEL, a screen clear, rich markup (an unbalanced closing
#: tag crashed `semctl show`), a right-to-left override, a C1 CSI, a backspace, a CR.
EVIL = "\x1b]0;owned\x07\x1b[2J [/x] [red]x \u202egnp.exe \x9b1m back\bspace\rCR"
#: How each of them must look once escaped.
ESCAPED = ["\\x1b]0;owned\\x07\\x1b[2J", "[/x]", "[red]x", "\\u202e", "\\x9b", "\\x08", "\\r"]
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def assert_inert(text: str) -> None:
    """No control character but newline, no bidi control, no lone surrogate: the text
    cannot move the cursor, set a title, ring, or reorder what is shown."""
    bad = [c for c in text if (unicodedata.category(c) in ("Cc", "Cs") and c != "\n") or c in BIDI]
    assert not bad, f"terminal controls in the output: {bad!r}\n{text!r}"


def assert_shows_escaped(text: str) -> None:
    assert_inert(text)
    for escaped in ESCAPED:
        assert escaped in text, (escaped, text)


def _failed_job(daemon: Daemon, *args: str) -> str:
    payload = json.dumps({"message": EVIL})
    job_id = daemon.semctl(
        "enqueue", "FAIL", "--payload", payload, "--max-attempts", "1", *args
    ).out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    return job_id


def test_show_prints_a_subject_and_error_escaped_and_never_as_markup(daemon: Daemon) -> None:
    """`semctl show` of a job whose subject and error hold terminal controls and markup
    (it crashed on `[/x]`): exit 0, every control escaped, the brackets printed as they are."""
    job_id = _failed_job(daemon, "--subject", EVIL)
    result = daemon.semctl("show", job_id)
    assert result.code == 0, result.err
    assert_shows_escaped(result.out)
    assert result.out.count("[red]x") == 3  # subject, error, payload


def test_list_and_wait_print_job_text_escaped(daemon: Daemon) -> None:
    """`semctl list` (its ERROR column) and `semctl wait` (the error after the state)."""
    job_id = _failed_job(daemon, "--subject", EVIL)
    listed = daemon.semctl("list")
    assert listed.code == 0, listed.err
    assert_shows_escaped(listed.out)
    waited = daemon.semctl("wait", job_id)
    assert waited.code == 1
    assert_shows_escaped(waited.out)


def test_a_type_that_looks_like_markup_is_printed_as_it_is(daemon: Daemon) -> None:
    """A job type may hold brackets: list, show and wait print `[red]MARKUP` literally."""
    job_id = daemon.semctl("enqueue", "[red]MARKUP", "--max-attempts", "1").out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    for args in (["list"], ["show", job_id]):
        result = daemon.semctl(*args)
        assert result.code == 0, result.err
        assert "[red]MARKUP" in result.out, result.out


def test_show_and_top_print_a_progress_message_escaped(
    daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    """A running job's progress message, in `show` and in `top`; top's failures too."""
    _failed_job(daemon)
    release = short_tmp / "release"
    payload = json.dumps(
        {"notify": str(announcements.path), "release": str(release), "message": EVIL}
    )
    job_id = daemon.semctl("enqueue", "PROGRESS", "--payload", payload).out.strip()
    announcements.next()
    with daemon.client() as client:
        for _ in range(1000):  # the report travels worker -> supervisor -> store
            if client.get(int(job_id)).progress is not None:
                break
            select.select([], [], [], 0.01)
    shown = daemon.semctl("show", job_id)
    assert shown.code == 0, shown.err
    assert_shows_escaped(shown.out)
    top = daemon.semctl("top", "--once")
    assert top.code == 0, top.err
    assert_inert(top.out)
    assert "\\x1b]0;owned" in top.out and "[red]x" in top.out  # the failure's error
    release.touch()
    assert daemon.semctl("wait", job_id).code == 0


def test_tail_without_id_prints_event_lines_escaped(daemon: Daemon) -> None:
    """`semctl tail` (every job event): the failed event's error is escaped."""
    tail = Lines([SEMCTL, "tail"], daemon.env())
    try:
        with daemon.client() as client:
            # The stream is open once a probe job's events show up in it.
            while tail.poll(0.5) is None:
                client.enqueue("NOOP", queue="probe")
            bad = client.enqueue("FAIL", {"message": EVIL}, max_attempts=1)
        seen = ""
        while f"job {bad.id} FAIL failed" not in seen:
            line = tail.poll(30)
            assert line is not None, f"no failed event for job {bad.id}:\n{seen}"
            seen += line + "\n"
    finally:
        tail.close()
    assert_shows_escaped(seen)


def test_status_prints_a_home_that_looks_like_markup_as_it_is(short_tmp: Path) -> None:
    """`semctl status` names the state directory: brackets in it are not markup."""
    daemon = Daemon(home=short_tmp / "[red]home")
    try:
        daemon.start()
        result = daemon.semctl("status")
        assert result.code == 0, result.err
        assert "[red]home" in result.out, result.out
        assert_inert(result.out)
    finally:
        assert not daemon.stop_for_good()


# ------------------------------------------------------------ a job's own output: as written

#: Output a command may write on purpose: colours, a progress bar redrawn with CR, a tab,
#: markup-like brackets, text outside ASCII.
OUTPUT = b"\x1b[31mred\x1b[0m [red]x[/] [/x]\ttab\nbar 10%\rbar 100%\nna\xc3\xafve \xe2\x9c\x93\n"


def _exec_printing(daemon: Daemon, data: bytes, tmp: Path) -> str:
    script = tmp / "out.py"
    script.write_text(f"import sys; sys.stdout.buffer.write({data!r})\n")
    return daemon.semctl("enqueue", "exec", "--", "python3", str(script)).out.strip()


def test_logs_and_tail_print_a_jobs_output_byte_for_byte(daemon: Daemon, short_tmp: Path) -> None:
    """`semctl logs` and `semctl tail ID` are `cat`: colours, CRs, tabs and brackets pass
    through unchanged, and UTF-8 text comes out as the same bytes whatever the locale's
    encoding says (a Latin-1 terminal, say)."""
    job_id = _exec_printing(daemon, OUTPUT, short_tmp)
    assert daemon.semctl("wait", job_id).code == 0
    for env in (daemon.env(), daemon.env(PYTHONIOENCODING="latin-1")):
        for args in (["logs", job_id], ["tail", job_id]):
            run = subprocess.run([SEMCTL, *args], env=env, capture_output=True, timeout=60)
            assert run.returncode == 0, run.stderr
            assert run.stdout == OUTPUT, (args, run.stdout)


# ------------------------------------------------------------ on a real terminal


def on_a_terminal(daemon: Daemon, *args: str, columns: int = 80, rows: int = 24) -> list[str]:
    """What `semctl ARGS` shows on a terminal of that size (a pty), colours removed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = daemon.env()
    for name in ("COLUMNS", "LINES", "NO_COLOR", "TERM"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color"
    try:
        run = subprocess.run(
            [SEMCTL, *args], env=env, stdin=subprocess.DEVNULL, stdout=slave, timeout=60
        )
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert run.returncode == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode()).replace("\r\n", "\n")
    return text.splitlines()


def test_list_on_a_terminal_keeps_a_long_error_to_its_row(daemon: Daemon) -> None:
    """On an 80-column terminal, a job whose error is 20,000 characters long takes one
    row of `semctl list`, cut with an ellipsis (it wrapped over 300 lines)."""
    payload = json.dumps({"message": "y" * 20_000})
    job_id = daemon.semctl(
        "enqueue", "FAIL", "--payload", payload, "--max-attempts", "1"
    ).out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    lines = on_a_terminal(daemon, "list")
    assert len(lines) == 2, lines  # the header and the job
    assert len(lines[1]) <= 80 and lines[1].rstrip().endswith("…")


def test_top_once_fits_an_80_by_24_terminal(daemon: Daemon) -> None:
    """`semctl top --once` on a real 80x24 terminal: at most 24 lines of at most 80."""
    with daemon.client() as client:
        client.wait(client.enqueue("FAIL", {"message": "z" * 5000}, max_attempts=1).id)
    lines = on_a_terminal(daemon, "top", "--once")
    assert 0 < len(lines) <= 24 and max(len(line) for line in lines) <= 80, lines
    assert any(line.startswith("FAILED JOB") for line in lines), lines
