"""``semctl enqueue``: the command's work, and a fast path that skips typer.

Editors and file watchers call ``semctl enqueue`` once per file, so it must
start quickly; importing typer alone costs most of its start-up time. The
fast path parses the common forms of the command itself (the options below,
``--opt value`` or ``--opt=value``, ``-- ARGV``) and hands anything else
(``--help``, an unknown option, a malformed number) to the full typer CLI,
which then reports it exactly as it always does. Both paths run the same
:func:`run_enqueue`. A unit test checks that the option tables here and the
typer command agree.

An exec command given after ``--`` runs as if typed here: in this directory,
with this environment (all of it, as pueue does, stored in the job's payload;
``--env NAME=VALUE`` adds or overrides, ``--no-env`` leaves the supervisor's).

The id alone goes to stdout, always. A job added already CANCELLED (``--after``
a job that had ended badly) is also said so on stderr, with the reason: the
exit status is still 0, since the job was stored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from semantica.control.client import Client
from semantica.control.terminal import printable
from semantica.errors import BadInput, SemanticaError
from semantica.models import JobState

#: Options that take a value: flag -> (keyword, converter).
VALUE_OPTIONS: dict[str, tuple[str, Any]] = {
    "--queue": ("queue", str),
    "--subject": ("subject", str),
    "--generation": ("generation", int),
    "--priority": ("priority", int),
    "--payload": ("payload", str),
    "--payload-file": ("payload_file", Path),
    "--max-attempts": ("max_attempts", int),
    "--timeout": ("timeout", float),
    "--delay": ("delay", float),
    "--at": ("at", str),
    "--backoff": ("backoff", float),
}
#: Options that may be given more than once, each taking a value: flag -> keyword.
LIST_OPTIONS: dict[str, str] = {"--env": "env", "--after": "after", "--after-end": "after_end"}
#: Options that are switches: flag -> keyword.
SWITCHES: dict[str, str] = {
    "--require-charging": "require_charging",
    "--require-idle": "require_idle",
    "--supersede-running": "supersede_running",
    "--no-env": "no_env",
    "--json": "json_out",
}
#: The most a captured environment may take, as JSON: a request is capped at 1 MiB.
ENV_MAX_BYTES = 256 * 1024
DEFAULTS: dict[str, Any] = {
    "queue": "default",
    "subject": None,
    "generation": None,
    "priority": 0,
    "payload": None,
    "payload_file": None,
    "max_attempts": 3,
    "timeout": None,
    "delay": None,
    "at": None,
    "backoff": None,
    "require_charging": False,
    "require_idle": False,
    "supersede_running": False,
    "env": None,
    "no_env": False,
    "json_out": False,
    "after": None,
    "after_end": None,
}


def parse_payload(payload: str | None, payload_file: Path | None) -> Any:
    """The payload from --payload or --payload-file, parsed as JSON (BadInput if not)."""
    if payload is not None and payload_file is not None:
        raise BadInput("give --payload or --payload-file, not both")
    if payload_file is not None:
        try:
            payload = payload_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot read --payload-file {payload_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise BadInput(f"--payload-file {payload_file} is not UTF-8 text") from None
    if payload is None:
        return None
    try:
        # msgspec rather than json: the json module costs 2 ms of start-up here.
        return msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise BadInput(f"payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput("payload is nested too deeply") from None


def run_enqueue(
    type: str,
    argv: list[str] | None,
    *,
    payload: str | None,
    payload_file: Path | None,
    json_out: bool,
    client: Client,
    env: list[str] | None = None,
    no_env: bool = False,
    after: list[str] | None = None,
    after_end: list[str] | None = None,
    **options: Any,
) -> None:
    """Enqueue one job and print its id (or, with ``json_out``, the job).

    Raises:
        SemanticaError: bad input, no supervisor, ... (the caller turns it into an exit code).
    """
    data = job_data(type, argv, payload, payload_file, env, no_env)
    if after:
        options["after"] = job_ids("--after", after)
    if after_end:
        options["after_end"] = job_ids("--after-end", after_end)
    try:
        # The client connects on its first request, after it checked the spec:
        # bad input is exit 2 even with no supervisor running.
        job = client.enqueue(type, data, **options)
    finally:
        client.close()
    if json_out:
        sys.stdout.write(msgspec.json.encode(job).decode() + "\n")
        return
    sys.stdout.write(f"{job.id}\n")
    if job.state == JobState.CANCELLED and job.error is not None:
        # Added after a job that already ended badly: stored, but it will never run.
        # The id stays alone on stdout (scripts read it); the why goes to stderr.
        why = f"{job.error.kind}: {job.error.message}"
        sys.stderr.write(f"semctl: job {job.id} was added CANCELLED: {printable(why)}\n")


def job_ids(flag: str, values: list[str]) -> list[int]:
    """The job ids given to ``flag`` (BadInput naming one that is not a number)."""
    ids = []
    for value in values:
        # int() itself says what is a number: str.isdigit() also takes characters
        # such as a superscript two that int() refuses.
        try:
            ids.append(int(value))
        except ValueError:
            raise BadInput(f"{flag} takes a job id, got {value!r}") from None
    return ids


def job_data(
    type: str,
    argv: list[str] | None,
    payload: str | None,
    payload_file: Path | None,
    env: list[str] | None,
    no_env: bool,
    command: str = "semctl enqueue",
) -> Any:
    """A job's payload from the command line: ``--payload`` / ``--payload-file``, or for
    exec the command after ``--``, with this directory and environment (:func:`exec_env`).

    Raises:
        BadInput: both given, ARGV for another type, --env without a command, ...
    """
    data = parse_payload(payload, payload_file)
    if (env or no_env) and not argv:
        if type == "exec" and data is None:
            raise BadInput(f"an exec job needs its command after --: {command} exec -- CMD ...")
        raise BadInput("--env and --no-env are for an exec job's command, given after --")
    if argv:
        if type != "exec":
            raise BadInput(f"arguments after -- are for exec jobs; {type} takes --payload")
        if data is not None:
            raise BadInput("give an exec job's command after --, or --payload, not both")
        # Like a shell: the command runs where semctl was run, with this environment.
        data = {"argv": list(argv), "cwd": os.getcwd(), **exec_env(env or [], no_env)}
    return data


def exec_env(assignments: list[str], no_env: bool) -> dict[str, Any]:
    """The payload keys for an exec command's environment.

    Without ``no_env``: this process's whole environment, which the command gets
    instead of the supervisor's (``inherit_env`` false), with ``assignments``
    (``NAME=VALUE``) on top. With it: only the assignments, added to the
    supervisor's environment.
    """
    extra: dict[str, str] = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise BadInput(f"--env takes NAME=VALUE, got {assignment!r}")
        extra[name] = value
    if no_env:
        return {"env": extra} if extra else {}
    captured = {**os.environ, **extra}
    size = len(msgspec.json.encode(captured))
    if size > ENV_MAX_BYTES:
        raise BadInput(
            f"your environment takes {size // 1024} KiB, more than the {ENV_MAX_BYTES // 1024} "
            "KiB an exec job may carry: use --no-env, with --env for what the command needs"
        )
    return {"env": captured, "inherit_env": False}


def parse_fast(args: list[str]) -> tuple[str, list[str], dict[str, Any]] | None:
    """``(type, argv, options)`` for the forms the fast path knows, else None."""
    options = dict(DEFAULTS)
    positional: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return _finish(positional, args[i + 1 :], options)
        if not arg.startswith("-"):
            positional.append(arg)
            i += 1
            continue
        flag, has_value, inline = arg.partition("=")
        if flag in seen and flag not in LIST_OPTIONS:
            return None  # repeated: let typer decide what that means
        seen.add(flag)
        if flag in SWITCHES and not has_value:
            options[SWITCHES[flag]] = True
            i += 1
            continue
        if flag not in VALUE_OPTIONS and flag not in LIST_OPTIONS:
            return None  # --help, --no-..., a typo: typer explains
        if has_value:
            text = inline
        elif i + 1 < len(args):
            text = args[i + 1]
            i += 1
        else:
            return None
        i += 1
        if flag in LIST_OPTIONS:
            keyword = LIST_OPTIONS[flag]
            options[keyword] = [*(options[keyword] or []), text]
            continue
        keyword, convert = VALUE_OPTIONS[flag]
        try:
            options[keyword] = convert(text)
        except ValueError:
            return None  # typer's message for a bad number
    return _finish(positional, [], options)


def _finish(
    positional: list[str], argv: list[str], options: dict[str, Any]
) -> tuple[str, list[str], dict[str, Any]] | None:
    if len(positional) != 1:
        return None  # no type, or words where -- was meant: typer explains
    return positional[0], argv, options


def fast_main(args: list[str], where: tuple[str | None, str | None] = (None, None)) -> int | None:
    """Run ``semctl enqueue ARGS`` without typer; None if typer must handle it.

    ``where``: the ``--home`` and ``--socket`` given before ``enqueue`` (None: the
    environment's)."""
    parsed = parse_fast(args)
    if parsed is None:
        return None
    type_, argv, options = parsed
    try:
        run_enqueue(
            type_,
            argv,
            payload=options.pop("payload"),
            payload_file=options.pop("payload_file"),
            json_out=options.pop("json_out"),
            client=Client(*where),
            **options,
        )
    except SemanticaError as exc:
        sys.stderr.write(f"semctl: {printable(exc.message)}\n")
        return exc.exit_code
    return 0
