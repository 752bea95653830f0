"""How a list of jobs is read newest first, a page at a time; any backend.

A list (``list``, the jobs page, top's latest failures) is the jobs matching
some of state / queue / type / subject, newest first, ``limit`` of them, below
``before``. Every job written pays for each index on ``jobs``, and a state
change for each index holding the state, so lists use the indexes the store
keeps anyway, and one more, rather than one per filter (sql/010 says what that
saves):

* :data:`SUBJECT`: a subject names a few jobs (its generations): they are read
  from ``jobs_subject`` (subject first) and sorted; the other filters are
  checked on them.
* :data:`PAIRS`: a state, or a queue without a type: ``jobs_state`` holds the
  jobs of one (state, queue) pair in id order. The list walks each pair that
  can match (the queues that have jobs in the state; or the six states of the
  queue) from its newest job, and keeps the newest ``limit`` of all: at most
  ``limit`` entries a pair, never every job of the state (which a sort would
  read). SQLite walks a pair a statement, and once ``limit`` are found a later
  pair only down to the oldest of them; PostgreSQL walks them all in one
  statement (``LATERAL``). The work grows with the number of pairs (queues),
  not with the number of jobs.
* :data:`TYPE`: a type without a state: ``jobs_by_type`` holds a type's jobs
  in id order (the one index sql/010 adds: a type is in no other index as its
  first column), read from the newest; a queue is checked on each.
* :data:`SCAN`: no filter: the table from its newest row.

A count (the first page says how many match, up to a cap) reads the same way:
a queue alone is counted as its six (state, queue) ranges of ``jobs_state``.
"""

from __future__ import annotations

from typing import Final

from semantica.models import JobState

SUBJECT: Final = "subject"
PAIRS: Final = "pairs"
TYPE: Final = "type"
SCAN: Final = "scan"

#: The states a queue's pairs are walked in: all of them.
STATES: Final = tuple(state.value for state in JobState)


def how(state: str | None, queue: str | None, type: str | None, subject: str | None) -> str:
    """Which way (:data:`SUBJECT`, :data:`PAIRS`, :data:`TYPE`, :data:`SCAN`) a list with
    these filters is read."""
    if subject is not None:
        return SUBJECT
    if state is not None or (queue is not None and type is None):
        return PAIRS
    return TYPE if type is not None else SCAN
