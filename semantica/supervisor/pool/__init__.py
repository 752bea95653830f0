"""The worker pool: N worker processes, each running one job at a time, replaced when they die.

Each slot is a task that spawns a worker (``python -m semantica.worker``) with
one end of a socket pair, waits for its hello, then serves it with three
tasks: the *feeder* leases jobs and hands them over, and records the ends the
worker reported (the ends and the next leases share one commit); the *reader*
takes the worker's messages; the *watchdog* enforces the running job's timeout
and the worker's heartbeat. The worker's exit, or EOF on its channel, ends the
serving (the exit alone may have to do: a process the worker started can hold
its end of the channel open); the slot then reaps the process (SIGKILL if it
lingers), settles its jobs, and spawns a replacement.

A worker whose recent jobs were short is handed several jobs at once, and
those it has not started are never held back for long (prefetch: feeding.py).
A worker that dies (SIGKILL, the OOM killer) cannot end what its job started:
the supervisor, a child subreaper on Linux, does (orphans.py).

:class:`WorkerPool` is the one name the rest of the supervisor needs. It is
made of parts, one module each; a part calls a method of another only
through its declaration in ``base.py``:

* ``workerpool.py``: ``WorkerPool``: run, the views (info, top, counts), the
  stop of one job, and the drain (give back, wait idle, stop);
* ``slots.py``: a worker's life in its slot: spawn, hello, serve, reap,
  replace (after a young death, with backoff);
* ``feeding.py``: leases, handing over (prefetch), recording ends with the
  next leases in one commit, give-back and rebalance;
* ``reader.py``: the worker's messages, and its exit when its channel stays
  open;
* ``watchdog.py``: the running job's timeout, the worker's heartbeat, the
  hold limit of prefetched jobs; the stop of a job, and the kill of a worker
  that does not stop it;
* ``settling.py``: how a job's end is recorded (as reported, as asked,
  interrupted, lost with its worker), and ``settle``, which retries that
  write while the store fails;
* ``orphans.py``: what a dead worker's job left running, and what the
  supervisor had below it before;
* ``handle.py``: ``WorkerHandle``, one worker and the jobs it holds;
* ``base.py``: what the parts share.
"""

from semantica.supervisor.pool.feeding import MAX_PREFETCH, PREFETCH_BUDGET_S
from semantica.supervisor.pool.handle import WorkerHandle, WorkerProcess, WorkerState
from semantica.supervisor.pool.settling import REAP_STORE_TRIES, settle
from semantica.supervisor.pool.slots import HELLO_TIMEOUT, WorkerStartError
from semantica.supervisor.pool.watchdog import SILENCE_CONFIRM_S, STOP_MARGIN
from semantica.supervisor.pool.workerpool import EXIT_MARGIN, WorkerPool

__all__ = [
    "WorkerPool",
    "WorkerStartError",
    "WorkerHandle",
    "WorkerProcess",
    "WorkerState",
    "settle",
    "EXIT_MARGIN",
    "HELLO_TIMEOUT",
    "MAX_PREFETCH",
    "PREFETCH_BUDGET_S",
    "REAP_STORE_TRIES",
    "SILENCE_CONFIRM_S",
    "STOP_MARGIN",
]
