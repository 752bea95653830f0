"""Rows on PostgreSQL: jobs read by id (the columns and decoding are ``store/rows.py``'s),
and text made storable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from semantica.errors import NoSuchJob
from semantica.limits import ERROR_MESSAGE_MAX, PROGRESS_MESSAGE_MAX
from semantica.supervisor.store.edges import Dialect, Edges
from semantica.supervisor.store.postgres.changes import notify
from semantica.supervisor.store.rows import check_id, columns, row_columns

#: The name of the node running a job (the name its node registered with).
NODE_NAME = "(SELECT n.name FROM nodes AS n WHERE n.id = node_id)"
#: The jobs a queued job still waits for, as ``3,4`` (store/rows.py's WAITING_ON).
WAITING_ON = (
    "CASE WHEN deps_unmet > 0 THEN (SELECT string_agg(after_id::text,',') FROM job_deps "
    "WHERE job_deps.job_id = id AND status = 'waiting') END"
)
#: The columns a Job is read from here: store/rows.py's, with its node's name.
JOB_COLUMNS = columns(ERROR_MESSAGE_MAX, PROGRESS_MESSAGE_MAX, node=NODE_NAME, waits=WAITING_ON)


#: Dependency edges in PostgreSQL's SQL. The jobs waited for are read FOR SHARE when an
#: edge is added: an end of one of them on another node waits for the edge's commit, and
#: its resolution (a statement after its own) then sees the edge.
#: Each job cancelled with its own message: two arrays, unnested side by side.
_CANCEL_EACH = (
    "UPDATE jobs SET state = 'CANCELLED', finished_at = %s, error_kind = %s, "
    "error_message = v.m FROM unnest(%s::bigint[], %s::text[]) AS v(id, m) "
    "WHERE jobs.id = v.id AND jobs.state = 'QUEUED' RETURNING jobs.id"
)
EDGES = Edges(
    Dialect(
        "%s",
        "= ANY(%s::bigint[])",
        list,
        "FOR SHARE",
        notify,
        cancel_each=_CANCEL_EACH,
        messages_param=lambda ids, messages: (list(ids), list(messages)),
    )
)


def view_columns(cut: int) -> str:
    """store/rows.py's ``row_columns``, with the node's name."""
    return row_columns(cut, NODE_NAME, WAITING_ON)


def clean(text: str) -> str:
    """PostgreSQL text holds no NUL character: one in a message becomes U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def rows_by_id(
    conn: psycopg.Connection[Any], wanted: Sequence[int], columns: str
) -> list[Sequence[Any]]:
    """``columns`` of the jobs ``wanted`` (each once, in no order); NoSuchJob if one is not.

    The ids go as one array parameter: one statement whatever their number.
    """
    for job_id in wanted:
        check_id(job_id)
    unique = list(dict.fromkeys(wanted))
    rows: list[Sequence[Any]] = conn.execute(
        f"SELECT {columns} FROM jobs WHERE id = ANY(%s::bigint[])", (unique,)
    ).fetchall()
    if len(rows) < len(unique):
        present = {row[0] for row in rows}
        missing = next(job_id for job_id in unique if job_id not in present)
        raise NoSuchJob(f"no job {missing}")
    return rows
