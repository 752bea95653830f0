"""The supervisor daemon: store (the only SQL user), scheduler, worker pool, control server.

Imports from ``semantica`` (the shared layer) only, never from ``worker`` or
``control``. ``store/sqlite/`` and ``sql/`` hold every line of SQL.

structlog is first imported here, with rich hidden: structlog.dev imports rich (when
it is installed, as semctl needs it) only to format exceptions with it, and the
supervisor formats them as plain text first (``format_exc_info``, log.py), so rich
and pygments would cost it about 3.7 MiB of memory and 70 modules for nothing.
"""

import sys

if "structlog" not in sys.modules and "rich" not in sys.modules:
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401 - imported now, while rich is hidden
    finally:
        del sys.modules["rich"]
