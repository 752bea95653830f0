"""The control side: the Python client, the ``semctl`` command line and its rendering.

Imports from ``semantica`` (the shared layer) only, never from ``supervisor``
or ``worker``. Everything here talks to the supervisor over its socket.
"""
