"""Rows on PostgreSQL: jobs read by id (the columns and decoding are ``store/rows.py``'s),
and text made storable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from semantica.errors import NoSuchJob
from semantica.supervisor.store.rows import check_id


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
