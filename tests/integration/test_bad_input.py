"""Bad input gets the documented exit code, one line on stderr, and changes nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import SEMCTL, Daemon

from semantica import Client
from semantica.errors import AuthError, BadInput, Unreachable


def _counts(daemon: Daemon) -> dict[str, int]:
    counts: dict[str, int] = daemon.semctl("status", "--json").json()["counts"]
    return counts


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("semctl: ")
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "ADD", "--payload", "{not json"],
        ["enqueue", "ADD", "--payload", "{}", "--payload-file", "/dev/null"],
        ["enqueue", "ADD", "--payload-file", "/no/such/file.json"],
        ["enqueue", "NO_SUCH_TYPE"],
        ["enqueue", "ADD", "--priority", "5000"],
        ["enqueue", "ADD", "--max-attempts", "0"],
        ["enqueue", "ADD", "--queue", "bad queue name!"],
        ["enqueue", "ADD", "--delay", "-1"],
        ["enqueue", "ADD", "--at", "next tuesday"],
        ["enqueue", "ADD", "--", "echo", "hi"],
        ["enqueue", "exec", "--payload", '{"argv": ["true"]}', "--", "true"],
        ["list", "--state", "SLEEPING"],
        ["logs", "1", "-n", "-3"],
        # Numbers past 64 bits, or past what SQLite can count on from them.
        ["enqueue", "exec", "--priority", "99999999999999999999", "--", "true"],
        ["enqueue", "exec", "--subject", "s", "--generation", str(2**64 - 1), "--", "true"],
        ["enqueue", "exec", "--subject", "s", "--generation", str(2**63 - 1), "--", "true"],
        ["enqueue", "ADD", "--payload", "1e400"],
        ["enqueue", "ADD", "--payload", "[" * 2000 + "]" * 2000],
        ["show", "99999999999999999999"],
        ["cancel", "99999999999999999999"],
        ["logs", "1", "-n", "99999999999999999999"],
        ["list", "--limit", "99999999999999999999"],
        ["limit", "q", "99999999999999999999"],
        ["enqueue", "exec", "--at", "0001-01-01T00:00:00+14:00", "--", "true"],
        ["enqueue", "exec", "--timeout", "0", "--", "true"],
        # exec jobs that could never run: refused now, not FAILED later.
        ["enqueue", "exec"],
        ["enqueue", "exec", "--payload", "{}"],
        ["enqueue", "exec", "--payload", '{"argv": "ls"}'],
        ["enqueue", "exec", "--payload", '{"argv": ["true"], "env": {"A": 1}}'],
        ["enqueue", "exec", "--", ""],
    ],
)
def test_bad_input_exits_2_and_enqueues_nothing(daemon: Daemon, args: list[str]) -> None:
    """Malformed payloads, unknown types and out-of-range options: exit 2, one line, no job."""
    before = _counts(daemon)
    result = daemon.semctl(*args)
    assert result.code == 2, (result.out, result.err)
    assert result.out == ""
    _one_line(result.err)
    assert _counts(daemon) == before


def test_payload_files_that_are_not_json_text_exit_2(daemon: Daemon, tmp_path: Path) -> None:
    """A binary --payload-file, or JSON nested thousands deep: exit 2, one line, no job."""
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    before = _counts(daemon)
    for path, reason in [(binary, "not UTF-8"), (deep, "nested")]:
        result = daemon.semctl("enqueue", "ADD", "--payload-file", str(path))
        assert result.code == 2, (result.out, result.err)
        assert reason in _one_line(result.err)
    assert _counts(daemon) == before


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda c: c.enqueue("ADD", {"x": float("nan")}), "finite"),
        (lambda c: c.enqueue("ADD", b"\xff"), "bytes"),
        (lambda c: c.enqueue("ADD", {"tags": {1, 2}}), "set"),
        (lambda c: c.enqueue("ADD", priority=2**70), "priority"),
        (lambda c: c.enqueue("exec", {"argv": []}), "argv"),
        (
            lambda c: c.enqueue_many([{"type": "ADD"}, {"type": "ADD", "payload": {None: 2}}]),
            "keys",
        ),
        (lambda c: c.cancel(2**70), "cannot send"),
        (lambda c: c.enqueue("ADD", {"name": "x\udcff"}), "surrogates not allowed"),
    ],
    ids=["nan", "bytes", "set", "priority", "exec argv", "None key", "huge id", "surrogate"],
)
def test_the_python_client_refuses_what_it_would_change(
    daemon: Daemon, call: Callable[[Client], object], reason: str
) -> None:
    """NaN, bytes and sets would come back as null, base64 and a list; numbers past 64 bits
    cannot be sent: BadInput (a SemanticaError), and nothing is stored."""
    before = _counts(daemon)
    with daemon.client() as client, pytest.raises(BadInput, match=reason):
        call(client)
    assert _counts(daemon) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["frobnicate"], "No such command"),
        (["show", "abc"], "'abc' is not a valid int"),
        (["enqueue", "exec", "--bogus"], "No such option: --bogus"),
        (["enqueue", "exec", "--priority", "high", "--", "true"], "--priority"),
        (["enqueue"], "Missing argument"),
    ],
)
def test_bad_usage_exits_2_with_one_line(daemon: Daemon, args: list[str], says: str) -> None:
    """An unknown command or option, or a word where a number goes: exit 2 and one line
    naming the problem and the command's --help (not click's four-line usage block)."""
    result = daemon.semctl(*args)
    assert result.code == 2, result.err
    line = _one_line(result.err)
    assert says in line and "--help" in line


def test_output_that_cannot_be_written_is_one_line_and_exit_1(daemon: Daemon) -> None:
    """stdout on a full disk: one line saying so, exit 1, no traceback."""
    with open("/dev/full", "w") as full:
        for args in (["status"], ["enqueue", "exec", "--delay", "60", "--", "true"]):
            run = subprocess.run(
                [SEMCTL, *args],
                env=daemon.env(),
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
            assert run.returncode == 1, run.stderr
            assert "cannot write the output" in _one_line(run.stderr)


@pytest.mark.parametrize("command", [["show", "999"], ["wait", "999"], ["logs", "999"]])
def test_unknown_job_id_exits_5(daemon: Daemon, command: list[str]) -> None:
    """Asking about a job that does not exist: exit 5 and a message naming the id."""
    result = daemon.semctl(*command)
    assert result.code == 5
    assert "999" in _one_line(result.err)


def test_no_supervisor_exits_3_and_says_where_it_looked(short_tmp: Path) -> None:
    """Without a supervisor semctl exits 3, naming the socket path and how to start one."""
    daemon = Daemon(home=short_tmp / "nothing-here")
    result = daemon.semctl("status")
    assert result.code == 3
    line = _one_line(result.err)
    assert str(daemon.socket) in line and "semanticad" in line
    assert not daemon.home.exists()  # looking created nothing
    with pytest.raises(Unreachable):
        Client(home=daemon.home).status()
    bad = daemon.semctl("enqueue", "exec", "--priority", "5000", "--", "true")
    assert bad.code == 2 and "priority" in _one_line(bad.err)  # bad input first


def test_wrong_token_exits_4_and_changes_nothing(daemon: Daemon, short_tmp: Path) -> None:
    """A client with the wrong token is refused (exit 4) and its enqueue is not applied."""
    fake_home = short_tmp / "fake"
    fake_home.mkdir(mode=0o700)
    (fake_home / "token").write_text("not-the-token\n")
    env = daemon.env(SEMANTICA_HOME=str(fake_home), SEMANTICA_SOCKET=str(daemon.socket))
    before = _counts(daemon)
    result = daemon.semctl("enqueue", "NOOP", env=env)
    assert result.code == 4
    assert "token" in _one_line(result.err)
    assert _counts(daemon) == before
    with pytest.raises(AuthError):
        Client(socket=daemon.socket, token="").status()
    assert daemon.semctl("status").code == 0  # the supervisor is unharmed
