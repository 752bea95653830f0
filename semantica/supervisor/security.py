"""The supervisor's locks: a private state directory and the token.

The rules (docs/security.md): the state directory is ours and 0700, the
token file ours and 0600, the socket 0600 inside that directory. A client must
present the token, compared in constant time, and run as the same user (or
root) where the OS tells peer credentials (:mod:`semantica.peercred`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from semantica.config import read_token_file
from semantica.errors import ConfigError


def prepare_home(home: Path) -> None:
    """Create the state directory 0700, or check that an existing one is ours and private.

    Raises:
        ConfigError: it is not a directory, belongs to another user, or is open to others
            (the message says how to fix it).
    """
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        home.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = home.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"state directory {home} is not a directory")
    _check_private(home, info, "directory", "700")


def _check_private(path: Path, info: os.stat_result, what: str, mode: str) -> None:
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); "
            f"use a state directory of your own (SEMANTICA_HOME)"
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"fix it with: chmod {mode} {path}"
        )


def load_or_create_token(path: Path) -> str:
    """The token in ``path``, created (random, 0600) on first start.

    Raises:
        ConfigError: the file is not ours, is readable by others, is a link, or holds no
            token (see :func:`~semantica.config.read_token_file`).
        OSError: a new token could not be written (a full disk); no token file is left.
    """
    if not os.path.lexists(path):
        try:
            return _create_token(path)
        except FileExistsError:
            pass  # made meanwhile (we hold the lock: not by another supervisor)
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"token file {path} is not a regular file")
    _check_private(path, info, "token file", "600")
    try:
        return read_token_file(path)
    except OSError as exc:  # gone or unreadable since the lstat
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None


def _create_token(path: Path) -> str:
    """Write a new token whole, then give it its name: a write cut short (a full disk,
    a kill) leaves no token file, never a partial token that the next start would take
    as the token (a short, guessable one)."""
    token = secrets.token_urlsafe(32)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)  # a kill's leftover (we hold the single-instance lock)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(partial, path)  # never replaces a token that is there (FileExistsError)
    finally:
        partial.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # the new name survives a power loss
    finally:
        os.close(directory)
    return token


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison, so timing tells nothing about the token."""
    return hmac.compare_digest(expected.encode(), given.encode())
