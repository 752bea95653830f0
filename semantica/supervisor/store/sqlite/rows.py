"""Rows on SQLite: ids as one JSON parameter, and jobs read by id.

The columns and the decoding of a row into a Job are any backend's
(``store/rows.py``); this is what only SQLite reads them with.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from semantica.errors import NoSuchJob
from semantica.supervisor.store.edges import Dialect, Edges
from semantica.supervisor.store.rows import check_id

# Ids as one JSON array parameter: one statement whatever their number. (A
# statement per list length would fill sqlite3's statement cache with up to
# 128 prepared statements of hundreds of parameters each: +9 MB of RSS.)
IDS_IN_JSON = "(SELECT value FROM json_each(?))"


def json_ids(ids: Sequence[int]) -> str:
    return msgspec.json.encode(list(ids)).decode()


#: Dependency edges in SQLite's SQL (one writer: no locks, no one to tell).
#: Each job cancelled with its own message: a JSON object of id -> message, joined on
#: the ids (+state: look the ids up, not every QUEUED job of the state index).
_CANCEL_EACH = (
    "UPDATE jobs SET state = 'CANCELLED', finished_at = ?, error_kind = ?, "
    "error_message = v.m FROM (SELECT CAST(key AS INTEGER) AS id, value AS m "
    "FROM json_each(?)) AS v WHERE jobs.id = v.id AND +jobs.state = 'QUEUED' RETURNING jobs.id"
)


def _messages(ids: list[int], messages: list[str]) -> tuple[str]:
    return (json.dumps(dict(zip(map(str, ids), messages, strict=True))),)


EDGES = Edges(
    Dialect(
        "?",
        "IN " + IDS_IN_JSON,
        json_ids,
        state="+state",
        cancel_each=_CANCEL_EACH,
        messages_param=_messages,
    )
)


def rows_by_id(conn: sqlite3.Connection, wanted: list[int], columns: str) -> list[Sequence[Any]]:
    """``columns`` of the jobs ``wanted`` (each once, in no order); NoSuchJob if one is not."""
    for job_id in wanted:
        check_id(job_id)
    unique = list(dict.fromkeys(wanted))
    rows: list[Sequence[Any]] = conn.execute(
        f"SELECT {columns} FROM jobs WHERE id IN {IDS_IN_JSON}", (json_ids(unique),)
    ).fetchall()
    if len(rows) < len(unique):
        present = {row[0] for row in rows}
        missing = next(job_id for job_id in unique if job_id not in present)
        raise NoSuchJob(f"no job {missing}")
    return rows
