"""A schedules file (TOML), read into checked specs for ``semctl schedule apply``.

::

    [schedules.nightly]
    cron = "0 3 * * *"
    tz = "Europe/Berlin"          # default: this machine's zone
    type = "exec"
    argv = ["restic", "backup", "/home"]
    cwd = "~"                     # default: your home directory
    env = { RESTIC_REPOSITORY = "/mnt/backup" }
    timeout = "2h"

    [schedules.index]
    every = "15m"
    jitter = "30s"
    type = "INDEX_FILE"
    payload = { path = "src" }

Each ``[schedules.NAME]`` table is one schedule: when (``cron`` or ``every``,
``tz``, ``jitter``, ``catch_up``, ``overlap``, ``paused``) and its job (``type``,
``payload``, ``queue``, ``subject``, ``priority``, ``timeout``, ``max_attempts``,
``backoff``, ``require_charging``, ``require_idle``). A key may be written with
``-`` for ``_`` (``catch-up``). Durations (``every``, ``jitter``, ``timeout``,
``backoff``) are seconds or ``90s``, ``15m``, ``1h30m``, ``2d``.

An exec job's command is ``argv``; it runs in ``cwd`` (``~`` expanded; a relative
path is taken from the file's directory; default the home directory, as cron
does) with the supervisor's environment plus ``env``. Unlike ``semctl schedule
add``, a file never captures the environment of the shell that applies it: the
same file gives the same schedules wherever it is applied from.

Every problem is one line naming the schedule and the key, raised as
:class:`~semantica.errors.BadInput` before anything is sent: a file is applied
whole or not at all. A hostile file (huge, nested absurdly deep, of the wrong
types) is refused the same way. tomllib is imported only here, by ``apply``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from semantica.control.schedule_input import local_zone, parse_duration
from semantica.errors import BadInput, SemanticaError
from semantica.models import EXEC_TYPE, JobSpec, short_repr, validate_spec
from semantica.schedules import (
    CATCH_UP_CHOICES,
    EVERY_MIN_S,
    OVERLAP_CHOICES,
    ScheduleSpec,
    check_cron,
    check_zone,
    validate_schedule,
    validate_schedule_name,
)

#: The largest schedules file read (a request is capped at 1 MiB anyway).
FILE_MAX_BYTES = 1 << 20
#: The most schedules one file may hold.
SCHEDULES_MAX = 1000

#: Every key of a schedule's table, and what it takes.
_STR, _BOOL, _INT = "a string", "true or false", "a whole number"
_DURATION, _ANY = "a duration (seconds, or 90s, 15m, 1h30m, 2d)", "any value"
_STRS, _ENV = "a list of strings", "a table of strings"
KEYS: dict[str, str] = {
    "cron": _STR,
    "every": _DURATION,
    "tz": _STR,
    "jitter": _DURATION,
    "catch_up": _STR,
    "overlap": _STR,
    "paused": _BOOL,
    "type": _STR,
    "payload": _ANY,
    "argv": _STRS,
    "cwd": _STR,
    "env": _ENV,
    "queue": _STR,
    "subject": _STR,
    "priority": _INT,
    "timeout": _DURATION,
    "max_attempts": _INT,
    "backoff": _DURATION,
    "require_charging": _BOOL,
    "require_idle": _BOOL,
}
_JOB_KEYS = ("queue", "subject", "priority", "max_attempts", "require_charging", "require_idle")


def read_schedules(path: Path, zone: str | None = None) -> list[ScheduleSpec]:
    """The schedules of the file at ``path``, checked, by name.

    ``zone``: the default ``tz`` (else :func:`local_zone`).

    Raises:
        BadInput: the file cannot be read, is not TOML, or a schedule is wrong
            (one line naming the schedule and the key).
    """
    import tomllib  # (not on semctl's fast path)

    try:
        with path.open("rb") as file:
            data = file.read(FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > FILE_MAX_BYTES:
        raise BadInput(f"{path}: more than {FILE_MAX_BYTES >> 20} MiB; not a schedules file")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise BadInput(f"{path}: nested too deeply") from None
    try:
        return specs_of_document(document, path.resolve().parent, zone)
    except SemanticaError as exc:
        raise BadInput(f"{path}: {exc.message}") from None


def specs_of_document(
    document: dict[str, Any], base: Path, zone: str | None = None
) -> list[ScheduleSpec]:
    """The schedules of a parsed file; ``base`` is its directory (for a relative cwd).

    Raises:
        BadInput: as :func:`read_schedules`, without the file's name.
    """
    unknown = set(document) - {"schedules"}
    if unknown:
        raise BadInput(
            f"unknown top-level key {short_repr(sorted(unknown)[0])} (want [schedules.NAME])"
        )
    tables = document.get("schedules", {})
    if not isinstance(tables, dict):
        raise BadInput("'schedules' must be a table of [schedules.NAME] tables")
    if len(tables) > SCHEDULES_MAX:
        raise BadInput(f"{len(tables)} schedules; a file holds at most {SCHEDULES_MAX}")
    default_zone = (zone or local_zone()) if tables else "UTC"
    specs = []
    for name in sorted(tables):
        try:
            validate_schedule_name(name)
            specs.append(_spec(name, tables[name], base, default_zone))
        except SemanticaError as exc:
            raise BadInput(f"schedule {short_repr(name)}: {exc.message}") from None
    return specs


def _spec(name: str, table: object, base: Path, zone: str) -> ScheduleSpec:
    if not isinstance(table, dict):
        raise BadInput("must be a table ([schedules.NAME])")
    fields: dict[str, Any] = {}
    for key, value in table.items():
        canonical = key.replace("-", "_")
        if canonical not in KEYS or canonical in fields:
            raise BadInput(f"unknown key {short_repr(key)} (keys: {', '.join(KEYS)})")
        fields[canonical] = _typed(key, value, KEYS[canonical])
    for key, value in list(fields.items()):
        if KEYS[key] == _DURATION:
            fields[key] = _keyed(key, parse_duration, value, "the value")
    if "type" not in fields:
        raise BadInput("key 'type' is missing (the job type, e.g. exec)")
    if ("cron" in fields) == ("every" in fields):
        raise BadInput("give exactly one of the keys 'cron' and 'every'")
    if fields.get("every", EVERY_MIN_S) < EVERY_MIN_S:
        raise BadInput(f"key 'every' must be at least {EVERY_MIN_S:g} s")
    tz = fields.get("tz", zone)
    tz_info = _keyed("tz", check_zone, tz)
    if "cron" in fields:
        _keyed("cron", check_cron, fields["cron"], tz_info)
    for key, choices in (("catch_up", CATCH_UP_CHOICES), ("overlap", OVERLAP_CHOICES)):
        if key in fields and fields[key] not in choices:
            raise BadInput(f"key {key!r} must be one of {', '.join(choices)}")
    job = _job(fields, base)
    spec = ScheduleSpec(
        name=name,
        job=job,
        cron=fields.get("cron"),
        every=fields.get("every"),
        tz=tz,
        jitter=fields.get("jitter", 0.0),
        catch_up=fields.get("catch_up", "one"),
        overlap=fields.get("overlap", "skip"),
        paused=fields.get("paused", False),
    )
    validate_schedule(spec)  # what is left: the whole, as the supervisor checks it
    return spec


def _job(fields: dict[str, Any], base: Path) -> JobSpec:
    """The job template: each key checked alone first, so that its error names it."""
    type_ = fields["type"]
    payload = fields.get("payload")
    if "argv" in fields:
        if type_ != EXEC_TYPE:
            raise BadInput(f"key 'argv' is for exec jobs; {type_} takes 'payload'")
        if payload is not None:
            raise BadInput("give an exec job's 'argv' or its 'payload', not both")
        payload = {"argv": fields["argv"], "cwd": _cwd(fields.get("cwd", "~"), base)}
        if "env" in fields:
            payload["env"] = fields["env"]
    elif "cwd" in fields or "env" in fields:
        raise BadInput("keys 'cwd' and 'env' go with an exec job's 'argv'")
    elif type_ == EXEC_TYPE and payload is None:
        raise BadInput("key 'argv' is missing (the command of an exec job)")
    options = {key: fields[key] for key in (*_JOB_KEYS, "timeout", "backoff") if key in fields}
    for key, value in options.items():
        _keyed(key, validate_spec, JobSpec(type="T", **{key: value}))
    job = JobSpec(type=type_, payload=payload, **options)
    _keyed("argv" if "argv" in fields else "payload", validate_spec, job)
    return job


def _cwd(text: str, base: Path) -> str:
    """An exec job's directory: ``~`` expanded, a relative one taken from ``base``."""
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else base / path)


def _typed(key: str, value: Any, kind: str) -> Any:
    """``value`` if it is of ``kind`` (BadInput naming ``key`` if not)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _STR:
        ok = isinstance(value, str)
    elif kind == _BOOL:
        ok = isinstance(value, bool)
    elif kind == _INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == _DURATION:
        ok = number or isinstance(value, str)
    elif kind == _STRS:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind == _ENV:
        ok = isinstance(value, dict) and all(isinstance(item, str) for item in value.values())
    else:
        ok = True  # (a payload: checked as JSON with the job)
    if not ok:
        raise BadInput(f"key {key!r} must be {kind}, got {short_repr(value, 40)}")
    return value


def _keyed(key: str, check: Any, *args: Any) -> Any:
    """``check(*args)``, its BadInput said as about ``key``."""
    try:
        return check(*args)
    except SemanticaError as exc:
        raise BadInput(f"key {key!r}: {exc.message}") from None
