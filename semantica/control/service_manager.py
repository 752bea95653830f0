"""Asking the user's service manager (``systemctl --user``, ``launchctl``) from ``semctl service``.

Owns the questions: whether the manager can be used from here
(:func:`manager_problem`: the tool on PATH, a user manager or GUI domain to talk
to) and what it says about a service (:func:`manager_state`), and how commands
are run and quoted. It changes nothing: the steps of an install or uninstall are
run by ``service.py``, which knows what to say when one fails. A tool that fails
is reported as a one-line reason, never raised.
"""

from __future__ import annotations

import os
import re

from semantica.control.service_files import SUPERVISOR, SYSTEMD, Service

# What launchctl print says when the agent is not loaded (its exit status).
LAUNCHCTL_NO_SERVICE = 113


def domain() -> str:
    return f"gui/{os.getuid()}"


def run(command: list[str]) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def join(command: list[str]) -> str:
    import shlex

    return shlex.join(command)


def manager_problem(platform: str) -> str | None:
    """Why the service manager cannot be used from here, or None if it can."""
    import shutil

    if platform == SYSTEMD:
        if shutil.which("systemctl") is None:
            return "systemctl not found: this needs systemd (on macOS: --launchd)"
        probe = ["systemctl", "--user", "show-environment"]
        what = "no systemd user manager to talk to"
    else:
        if shutil.which("launchctl") is None:
            return "launchctl not found: launchd agents need macOS (elsewhere: --systemd)"
        probe = ["launchctl", "print", domain()]
        what = f"no launchd {domain()} domain (log in at the desktop)"
    code, out, err = run(probe)
    if code != 0:
        return f"{what} ({join(probe)}: {one_line(err or out) or f'exit status {code}'})"
    return None


def manager_state(
    platform: str, problem: str | None, service: Service = SUPERVISOR
) -> tuple[str | None, str | None]:
    """What the service manager says about the service, or (None, why it cannot tell).

    ``problem`` is what :func:`manager_problem` said; nothing is asked if it found one.
    """
    if problem is not None:
        return None, problem
    if platform == SYSTEMD:
        code, out, err = run(["systemctl", "--user", "is-active", service.unit])
        if out.strip():
            return out.strip(), None
        return None, one_line(err) or f"systemctl is-active: exit status {code}"
    code, out, err = run(["launchctl", "print", f"{domain()}/{service.label}"])
    if code == LAUNCHCTL_NO_SERVICE:
        return "not loaded", None
    if code != 0:
        return None, one_line(err or out) or f"launchctl print: exit status {code}"
    found = re.search(r"^\s*state = (.+)$", out, re.M)
    return (found.group(1).strip() if found else "loaded"), None
