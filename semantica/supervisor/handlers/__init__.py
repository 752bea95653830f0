"""Control requests: one ``handle_<verb>`` per request, and the one place that dispatches.

* ``dispatch.py``: :func:`~.dispatch.dispatch`, a ``match`` over message types
  (an explicit list), never a lookup of a name the client sent;
* ``jobs.py``: the writes to jobs (``enqueue``, ``cancel``, ``retry``);
* ``enqueue_group.py``: pipelined ``enqueue`` requests written as one insert;
* ``reads.py``: the reads of jobs (``get``, ``list``, ``wait``, ``logs``);
* ``live.py``: what is pushed or drawn live (``follow``, ``events``, ``top``);
* ``admin.py``: queues and the supervisor (``pause``, ``resume``, ``limit``,
  ``queues``, ``status``, ``maintenance``, ``metrics``, ``shutdown``);
* ``schedules.py``: schedules (``schedule_put``, ``schedule_get``, ``schedules``,
  ``schedule_pause``, ``schedule_remove``, ``schedule_run``, ``schedule_apply``);
* ``common.py``: what several of them share (the reply budget, the busy-store
  retry of a request's write).

Each verb is the request's wire tag, and the handler is ``handle_`` and that
tag; where a ``semctl`` command or a ``Client`` method says it otherwise,
docs/protocol.md says which is which. A handler gets :class:`Services`
(services.py), never the supervisor: it writes through ``services.jobs`` (the
lifecycle) and reads through ``services.store`` (:class:`StoreReads`).
"""
