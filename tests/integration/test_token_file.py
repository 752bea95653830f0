"""A token file that is not a token: one line naming the file and the fix, exit 2, everywhere.

semanticad reads the token at start; semctl, ``Client`` and ``AsyncClient``
read it when they connect. None of them may answer a garbled file with a
traceback (or with "wrong token", which sends the user looking elsewhere).
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from harness import Daemon

from semantica import AsyncClient, Client
from semantica.errors import ConfigError

pytestmark = pytest.mark.slow

#: (id, content): each is no token; semanticad's own is 43 URL-safe characters and "\n".
GARBLED = [
    ("not-utf8", b"\xff\xfe\x00\x01\x80token\n"),
    ("latin-1", "jeton-d\u00e9faut\n".encode("latin-1")),
    ("nul-bytes", b"abc\x00\x00def\n"),
    ("two-lines", b"first-line\nsecond-line\n"),
    ("escape-sequence", b"\x1b[2Jtoken\n"),
    ("empty", b"\n"),
    ("huge", b"x" * 100_000),
]


def _garble(token: Path, content: bytes) -> None:
    token.write_bytes(content)
    token.chmod(0o600)


def _one_line_naming(err: str, token: Path) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert str(token) in err and "delete it" in err, err


@pytest.mark.parametrize("content", [c for _, c in GARBLED], ids=[i for i, _ in GARBLED])
def test_semanticad_refuses_a_token_file_that_is_not_a_token(
    short_tmp: Path, content: bytes
) -> None:
    """semanticad with a garbled token file: exit 2 and one line naming it and the fix."""
    daemon = Daemon(home=short_tmp / "home")
    daemon.home.mkdir(mode=0o700)
    token = daemon.home / "token"
    _garble(token, content)
    result = subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", "--workers", "1"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    _one_line_naming(result.stderr, token)
    assert not daemon.socket.exists()


def test_clients_refuse_a_token_file_that_is_not_a_token(daemon: Daemon) -> None:
    """The token file is garbled while the supervisor runs: semctl (its fast enqueue path
    and the others) exits 2 with one line; Client and AsyncClient raise ConfigError
    (exit_code 2) naming the file. Nothing reaches the supervisor."""
    token = daemon.home / "token"
    good = token.read_bytes()

    async def use_async() -> None:
        async with AsyncClient(home=daemon.home) as client:
            await client.status()

    try:
        for name, content in GARBLED:
            _garble(token, content)
            for args in (("status",), ("enqueue", "NOOP"), ("list",)):
                result = daemon.semctl(*args)
                assert result.code == 2, (name, args, result.err)
                _one_line_naming(result.err, token)
                assert result.out == ""
            with pytest.raises(ConfigError) as sync_error:
                Client(home=daemon.home).status()
            assert sync_error.value.exit_code == 2 and str(token) in sync_error.value.message
            with pytest.raises(ConfigError) as async_error:
                trio.run(use_async)
            assert str(token) in async_error.value.message, name
    finally:
        token.write_bytes(good)
    with daemon.client() as client:
        assert client.status().counts["QUEUED"] == 0  # no enqueue got through


def test_a_token_file_that_is_a_directory_is_one_line_too(daemon: Daemon) -> None:
    """A directory where the token should be: exit 2 and one line, not a traceback."""
    token = daemon.home / "token"
    good = token.read_bytes()
    token.unlink()
    token.mkdir(mode=0o700)
    try:
        result = daemon.semctl("status")
        assert result.code == 2, result.err
        assert result.err.count("\n") == 1 and str(token) in result.err, result.err
    finally:
        token.rmdir()
        token.write_bytes(good)
        token.chmod(0o600)


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails (EFBIG)
        _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    return apply


def test_a_token_cut_short_by_a_full_disk_is_not_kept(short_tmp: Path) -> None:
    """A first start that runs out of room while it writes the token (here a file size
    limit that lets the lock file's pid through, not the token) fails in one line and
    leaves no token file: a partial one would be taken as the token at the next start,
    a short and guessable one. The next start makes a whole token."""
    daemon = Daemon(home=short_tmp / "home")
    result = subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", "--workers", "1"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_file_size_limit(10),
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "the disk is full" in result.stderr, result.stderr
    assert not (daemon.home / "token").exists()
    daemon.start()
    try:
        token = (daemon.home / "token").read_text()
        assert len(token.strip()) == 43 and token.endswith("\n"), token
        assert sorted(p.name for p in daemon.home.iterdir() if "token" in p.name) == ["token"]
        assert daemon.semctl("status").code == 0
    finally:
        assert not daemon.stop_for_good()
