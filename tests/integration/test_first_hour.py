"""The first hour with semctl, as a new user meets it: through the real CLI and supervisor."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import SEMCTL, Announcements, Daemon, Result

from semantica import __version__


def test_semctl_version() -> None:
    """`semctl --version` prints the version and exits 0, with no supervisor needed."""
    run = subprocess.run([SEMCTL, "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"semctl {__version__}\n"


def test_output_into_a_pipe_is_not_wrapped_or_padded(daemon: Daemon) -> None:
    """Into a pipe (or a file) a long error stays on one line in `list`, `show` and `wait`,
    and no line ends in the spaces rich pads tables with."""
    message = "the long reason " + "x" * 300
    job_id = daemon.semctl(
        "enqueue", "FAIL", "--payload", json.dumps({"message": message}), "--max-attempts", "1"
    ).out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    for args in (["list"], ["show", job_id], ["wait", job_id], ["queues"], ["status"]):
        out = daemon.semctl(*args).out
        if args[0] not in ("queues", "status"):
            lines = [line for line in out.splitlines() if "the long reason" in line]
            assert lines and all("x" * 300 in line for line in lines), (args, out)
        assert all(line == line.rstrip() for line in out.splitlines()), (args, out)


def test_logs_separate_attempts(daemon: Daemon) -> None:
    """A job that failed and ran again: `semctl logs` and `semctl tail ID` show a line
    naming attempt 2 between the two attempts' output; `-n` still counts lines."""
    payload = json.dumps({"count": 2, "fail": True})
    job_id = daemon.semctl(
        "enqueue", "LINES", "--payload", payload, "--max-attempts", "2", "--backoff", "0.01"
    ).out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    for args in (["logs", job_id], ["tail", job_id]):
        lines = daemon.semctl(*args).out.splitlines()
        separators = [i for i, line in enumerate(lines) if line.startswith("--- attempt ")]
        assert len(separators) == 1, lines
        [at] = separators
        assert lines[at].startswith("--- attempt 2, ")
        assert lines[:2] == ["line 0", "line 1"] and lines[at + 1 : at + 3] == lines[:2]
    assert len(daemon.semctl("logs", job_id, "-n", "3").out.splitlines()) == 3


def _error_lines(shown: str) -> list[str]:
    return [line for line in shown.splitlines() if "error" in line.split("  ")[0]]


def test_show_of_a_job_running_again_labels_the_earlier_error(
    daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    """While attempt 2 runs, and while it waits for its retry, `semctl show` gives attempt
    1's error as "last error (attempt 1)", not as the job's error (and so do `wait` and
    `list`); once the job has ended, its error is "error" again."""
    release = short_tmp / "release"
    payload = json.dumps({"notify": str(announcements.path), "release": str(release)})
    running = daemon.semctl(
        "enqueue", "FAIL_ONCE", "--payload", payload, "--backoff", "0.01"
    ).out.strip()
    announcements.next()
    waiting = daemon.semctl(
        "enqueue", "FAIL_ONCE", "--payload", payload, "--backoff", "600"
    ).out.strip()
    with daemon.client() as client:
        while client.get(int(waiting)).waiting_for != "retry_backoff":
            select.select([], [], [], 0.01)
    earlier = "exception: ValueError: the first attempt failed"
    for job_id in (running, waiting):
        shown = daemon.semctl("show", job_id).out
        assert _error_lines(shown) == [f"last error (attempt 1)  {earlier}"], shown
        # wait (when it gives up) and list say so too
        waited = daemon.semctl("wait", job_id, "--timeout", "0").out
        assert f"(last error (attempt 1): {earlier})" in waited, waited
    listed = daemon.semctl("list").out
    assert listed.count(f"last error (attempt 1): {earlier}") == 2, listed
    release.touch()
    assert daemon.semctl("wait", running).code == 0
    assert daemon.semctl("cancel", waiting).code == 0
    shown = daemon.semctl("show", waiting).out
    assert [line.split()[0] for line in _error_lines(shown)] == ["error"], shown


def test_tail_ends_with_a_line_saying_how_the_job_ended(daemon: Daemon) -> None:
    """`semctl tail ID` ends with one line (on stderr, so that stdout stays the job's own
    output) giving the job's end state, and its error if it failed."""
    done = daemon.semctl("enqueue", "LINES", "--payload", '{"count": 1}').out.strip()
    failed = daemon.semctl(
        "enqueue", "FAIL", "--payload", '{"message": "boom"}', "--max-attempts", "1"
    ).out.strip()
    result = daemon.semctl("tail", done)
    assert (result.code, result.out) == (0, "line 0\n")
    assert result.err.splitlines()[-1].startswith(f"--- job {done} DONE"), result.err
    result = daemon.semctl("tail", failed)
    assert result.code == 1 and "ValueError: boom" in result.out  # the traceback
    last = result.err.splitlines()[-1]
    assert last.startswith(f"--- job {failed} FAILED") and "exception: ValueError: boom" in last


def test_status_and_top_say_when_the_supervisor_is_draining(
    make_daemon: Callable[..., Daemon], announcements: Announcements
) -> None:
    """After SIGTERM, while a running job holds the drain up, `status` (and --json) and
    `top` say the supervisor is draining; before, they do not."""
    daemon = make_daemon("--drain-timeout", "120")
    assert "draining" not in daemon.semctl("status").out
    assert daemon.semctl("status", "--json").json()["draining"] is False
    payload = json.dumps({"notify": str(announcements.path)})
    daemon.semctl("enqueue", "ASYNC_HANG", "--payload", payload)
    announcements.next()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while not daemon.semctl("status", "--json").json()["draining"]:
        assert time.monotonic() < deadline, "status never said draining"
        select.select([], [], [], 0.05)  # the signal is handled on the supervisor's loop
    assert "draining" in daemon.semctl("status").out
    assert "draining" in daemon.semctl("top", "--once").out
    assert daemon.client().top().draining


# ------------------------------------------------------------ exec jobs: the caller's environment

SHOW_ENV = 'echo "FOO=$FOO BAR=${BAR-unset} SUPERVISOR_ONLY=${SUPERVISOR_ONLY-unset}"'


def _run_env(daemon: Daemon, *args: str, **env: str) -> str:
    job_id = daemon.semctl(
        "enqueue", "exec", *args, "--", "sh", "-c", SHOW_ENV, env=daemon.env(**env)
    ).out.strip()
    assert daemon.semctl("wait", job_id).code == 0
    return daemon.semctl("logs", job_id).out.strip()


def test_exec_runs_with_the_callers_environment(make_daemon: Callable[..., Daemon]) -> None:
    """`semctl enqueue exec` captures the caller's environment, as pueue does: the command
    sees the caller's variables, and none the supervisor has but the caller has not.
    `--env K=V` adds or overrides; `--no-env` gives the supervisor's environment."""
    daemon = make_daemon(SUPERVISOR_ONLY="supervisor's")
    out = _run_env(daemon, FOO="the caller's")
    assert out == "FOO=the caller's BAR=unset SUPERVISOR_ONLY=unset"
    out = _run_env(daemon, "--env", "BAR=given", "--env", "FOO=over", FOO="the caller's")
    assert out == "FOO=over BAR=given SUPERVISOR_ONLY=unset"
    out = _run_env(daemon, "--no-env", "--env", "BAR=given", FOO="the caller's")
    assert out == "FOO= BAR=given SUPERVISOR_ONLY=supervisor's"


def test_a_captured_environment_is_in_the_payload_but_not_on_screen(daemon: Daemon) -> None:
    """The environment is stored in the job's payload (`show --json` has it); `semctl
    show` says how many variables there are rather than print their values."""
    env = daemon.env(API_TOKEN="s3cret-value")
    job_id = daemon.semctl("enqueue", "exec", "--", "true", env=env).out.strip()
    payload = daemon.semctl("show", job_id, "--json").json()["payload"]
    assert payload["env"]["API_TOKEN"] == "s3cret-value" and payload["inherit_env"] is False
    shown = daemon.semctl("show", job_id)
    assert shown.code == 0 and "s3cret-value" not in shown.out
    assert f"{len(payload['env'])} variables" in shown.out, shown.out


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "--env", "NOEQUALS", "--", "true"],
        ["exec", "--env", "=value", "--", "true"],
        ["ADD", "--env", "A=1", "--payload", '{"a": 1, "b": 2}'],
        ["exec", "--no-env", "--payload", '{"argv": ["true"]}'],
    ],
)
def test_env_options_that_cannot_apply_exit_2(daemon: Daemon, args: list[str]) -> None:
    """A malformed --env, or --env/--no-env without a command after --: one line, exit 2."""
    result = daemon.semctl("enqueue", *args)
    assert result.code == 2 and result.out == "", (result.out, result.err)
    assert len(result.err.strip().splitlines()) == 1


def test_an_exec_job_without_its_command_is_told_so(daemon: Daemon) -> None:
    """`semctl enqueue exec --no-env` (the command forgotten): the line says the command is
    missing, not that --no-env is misplaced."""
    result = daemon.semctl("enqueue", "exec", "--no-env")
    assert result.code == 2
    assert "needs its command after --" in result.err, result.err


def test_wait_says_when_it_timed_out(daemon: Daemon) -> None:
    """`semctl wait --timeout` on a job still queued: exit 1 as for a failure, and a line on
    stderr says it was the timeout, so a script can tell the two apart."""
    job_id = daemon.semctl("enqueue", "NOOP", "--delay", "3600").out.strip()
    result = daemon.semctl("wait", job_id, "--timeout", "0.2")
    assert result.code == 1
    assert result.out.strip() == f"{job_id} QUEUED"
    assert "timed out after 0.2 s; 1 of 1 jobs not finished" in result.err


def test_help_answers_to_h(daemon: Daemon) -> None:
    for args in (["-h"], ["list", "-h"], ["enqueue", "-h"]):
        result = daemon.semctl(*args)
        assert result.code == 0 and "Usage:" in result.out, (args, result.err)


# ------------------------------------------------------------ bad input: one clear line, exit 2


def _queues(daemon: Daemon) -> list[dict[str, object]]:
    queues: list[dict[str, object]] = daemon.semctl("queues", "--json").json()
    return queues


def _one_line(result: Result) -> str:
    assert result.code == 2 and result.out == "", (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semctl: "), result.err
    return lines[0]


def test_pause_resume_and_limit_of_a_queue_never_seen(daemon: Daemon) -> None:
    """`resume` of an unknown queue (a typo, say) is an error; so are `pause` and `limit`
    unless told `--create` (to hold a queue before its first job). Nothing is created."""
    daemon.semctl("enqueue", "NOOP", "--queue", "index")
    before = _queues(daemon)
    for args in (["resume", "indx"], ["pause", "indx"], ["limit", "indx", "2"]):
        line = _one_line(daemon.semctl(*args))
        assert "no queue 'indx'" in line and "index" in line, line  # names the known ones
    assert _queues(daemon) == before
    for args in (["pause", "index"], ["limit", "index", "2"], ["resume", "index"]):
        assert daemon.semctl(*args).code == 0
    created = daemon.semctl("pause", "--create", "later")
    assert created.code == 0 and created.out.startswith("later: paused"), created
    assert daemon.semctl("limit", "--create", "gpu", "1").code == 0
    names = [q["name"] for q in _queues(daemon)]
    assert "later" in names and "gpu" in names and "indx" not in names


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["limit", "q", "-1"], "-1"),
        (["cancel", "-1"], "-1"),
        (["cancel", "3", "-2"], "-2"),
        (["show", "-1"], "-1"),
        (["wait", "-5"], "-5"),
        (["retry", "-1"], "-1"),
        (["tail", "-1"], "-1"),
        (["logs", "-1"], "-1"),
        (["show", "0"], "0"),
    ],
)
def test_negative_numbers_get_a_clear_line(daemon: Daemon, args: list[str], says: str) -> None:
    """A negative job id or limit is bad input, said as such: not "No such option: -1"."""
    line = _one_line(daemon.semctl(*args))
    assert "No such option" not in line and says in line, line


def test_post_to_the_metrics_endpoint_is_405(make_daemon: Callable[..., Daemon]) -> None:
    """Only GET /metrics is served: a POST to it is 405 Method Not Allowed, with Allow: GET."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_daemon("--metrics-addr", f"127.0.0.1:{port}")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET"
    refused.value.close()


def test_a_second_supervisor_on_the_same_home_exits_2(daemon: Daemon) -> None:
    """As the README says: a second `semanticad` on a state directory in use exits 2 at
    once with one line naming the running one's pid, and the first goes on."""
    assert daemon.proc is not None
    run = subprocess.run(
        [str(Path(SEMCTL).parent / "semanticad"), "--workers", "1"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (
        f"semanticad: another semanticad (pid {daemon.proc.pid}) is running with this state "
        "directory"
    )
    assert daemon.semctl("status").code == 0


def test_top_into_a_pipe_prints_one_frame_and_ends(daemon: Daemon) -> None:
    """`semctl top > file` (or piped): a live screen needs a terminal, so it prints one
    frame, as --once, and exits 0 instead of drawing nothing for ever."""
    out = daemon.semctl("top", timeout=20)
    assert out.code == 0, out.err
    assert out.out.startswith("semanticad ") and " idle " in out.out  # the header, the workers
