"""The environment every timed new process of the bench runs in (W5 and the bound's starts).

A new process's time is mostly its imports, and an import is only as cheap as its bytecode:
with ``PYTHONDONTWRITEBYTECODE`` set (as in some shells and CI images) and a module whose
``.pyc`` is missing or stale, every run compiles it again, and the figure says more about
the machine's settings than about the program. So each timed process writes and reads its
bytecode under one prefix of this bench run (``PYTHONPYCACHEPREFIX``), and the untimed first
run of each command fills it: ours, the peers and the bound start alike.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping

_prefix: str | None = None


def start_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with bytecode written and read under this run's own cache prefix."""
    global _prefix
    if _prefix is None:
        _prefix = tempfile.mkdtemp(prefix="semantica-bench-pycache-")
        atexit.register(shutil.rmtree, _prefix, True)
    out = dict(env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out["PYTHONPYCACHEPREFIX"] = _prefix
    return out
