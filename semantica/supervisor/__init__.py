"""The supervisor daemon: store (the only SQL user), scheduler, worker pool, control server.

Imports from ``semantica`` (the shared layer) only, never from ``worker`` or
``control``. ``store/sqlite/`` and ``sql/`` hold every line of SQL.
"""
