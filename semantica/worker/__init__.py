"""The worker process: a handler registry, the job runner, and the built-in exec type.

Imports from ``semantica`` (the shared layer) only, never from ``supervisor``
or ``control``. A worker never opens the job store: everything goes through
its socket to the supervisor.
"""
