"""What a person types for a schedule, read: durations, and the local time zone.

* :func:`parse_duration` reads ``90s``, ``15m``, ``1h30m``, ``2d``, ``1.5h`` or
  plain seconds (``3600``, ``0.5``) into seconds; :func:`format_duration`
  writes seconds back that way (``5400`` -> ``1h30m``), so a schedule is shown
  as it was given.
* :func:`local_zone` is the caller's IANA zone, the default of ``--tz``: the
  ``TZ`` variable if it names one, else where ``/etc/localtime`` links to, else
  ``/etc/timezone`` (Debian), else ``UTC``. It is asked where the client runs
  (not in the supervisor, whose zone may differ), and the name is stored
  explicitly, so a schedule keeps its zone whatever machine reads it later.

Both fail with :class:`~semantica.errors.BadInput`, in one line. This module
imports zoneinfo only inside :func:`local_zone` (``semctl``'s start-up stays fast).
"""

from __future__ import annotations

import math
import os
import re

from semantica.errors import BadInput
from semantica.models import SECONDS_MAX, short_repr

#: Seconds in each unit, largest first (the order a duration is written in).
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Compiled on first use (re caches them), not at import: semctl loads this module
# for every command, and few parse a duration.
_PART = r"(\d+(?:\.\d+)?)([dhms])"
_NUMBER = r"\d+(?:\.\d+)?"
#: The longest text read as a duration: anything longer is a mistake, said briefly.
_TEXT_MAX = 64


def parse_duration(text: str | float, what: str = "duration") -> float:
    """Seconds from ``90s``, ``15m``, ``1h30m``, ``2d``, ``1.5h`` or plain seconds.

    Units come largest first, each at most once. A number (int or float) is
    taken as seconds. ``what`` names the option in the error (``--every``).

    Raises:
        BadInput: not a duration, negative, or not below SECONDS_MAX.
    """
    if isinstance(text, bool):
        raise BadInput(f"{what} must be a duration like 90s, 15m, 1h30m, 2d, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        seconds = _parse_text(text.strip().lower()) if len(text) <= _TEXT_MAX else -1.0
        if seconds < 0:
            raise BadInput(
                f"{what} must be a duration like 90s, 15m, 1h30m, 2d or plain seconds, "
                f"got {short_repr(text)}"
            )
    if not (math.isfinite(seconds) and 0 <= seconds < SECONDS_MAX):
        raise BadInput(f"{what} must be 0 or more seconds and below {SECONDS_MAX:.0e}")
    return seconds


def _parse_text(text: str) -> float:
    """Seconds, or -1.0 if ``text`` is no duration."""
    if re.fullmatch(_NUMBER, text):
        return float(text)
    total, at, order = 0.0, 0, list(UNITS)
    last = -1
    for match in re.finditer(_PART, text):
        if match.start() != at:
            return -1.0
        rank = order.index(match.group(2))
        if rank <= last:  # "30m1h", "1h1h": units largest first, once each
            return -1.0
        last = rank
        total += float(match.group(1)) * UNITS[match.group(2)]
        at = match.end()
    return total if at == len(text) and at > 0 else -1.0


def format_duration(seconds: float) -> str:
    """``seconds`` as :func:`parse_duration` reads it: ``5400`` is ``1h30m``."""
    if seconds <= 0:
        return "0s"
    if seconds != int(seconds):
        return f"{seconds:g}s"
    left = int(seconds)
    parts = []
    for unit, size in UNITS.items():
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def local_zone() -> str:
    """The caller's IANA time zone name; ``UTC`` if none can be found."""
    from zoneinfo import ZoneInfo  # (not on semctl's fast path)

    candidates = []
    tz = os.environ.get("TZ")
    if tz:
        candidates.append(_zone_name(tz.removeprefix(":")))
    try:
        candidates.append(_zone_name(os.path.realpath("/etc/localtime")))
    except OSError:
        pass
    try:
        with open("/etc/timezone", encoding="utf-8") as file:
            candidates.append(file.read(256).strip())
    except (OSError, UnicodeDecodeError):
        pass
    for name in candidates:
        if not name or name.startswith("/") or ".." in name:
            continue
        try:
            ZoneInfo(name)
        except (ValueError, OSError, KeyError):  # (ZoneInfoNotFoundError is a KeyError)
            continue
        return name
    return "UTC"


def _zone_name(path: str) -> str:
    """``Europe/Berlin`` from ``/usr/share/zoneinfo/Europe/Berlin``; a name stays itself."""
    marker = "zoneinfo/"
    at = path.rfind(marker)
    name = path[at + len(marker) :] if at >= 0 else path
    return name.removeprefix("posix/").removeprefix("right/")
