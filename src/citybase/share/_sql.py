"""Dialect helpers for the metadata database (SQLite embedded, PostgreSQL in a cluster)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def insert_ignore(c: Connection, table: Table, values: dict[str, Any]) -> None:
    """INSERT that does nothing when the primary key exists (no failed transaction in PostgreSQL)."""
    ins = postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert
    c.execute(ins(table).values(**values).on_conflict_do_nothing())


def upsert_add(
    c: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str], add: list[str]
) -> None:
    """INSERT rows; where the key exists, add the `add` columns to the stored ones instead."""
    if not rows:
        return
    ins = postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert
    stmt = ins(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={a: table.c[a] + stmt.excluded[a] for a in add}
    )
    c.execute(stmt, rows)
