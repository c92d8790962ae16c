"""The platform's metadata database: registry, catalog, grants, usage, devices.

Embedded, it is one SQLite file in WAL mode beside the lake; in the cluster deployment it is the
same tables in PostgreSQL. Every box that keeps metadata declares its tables on `METADATA` in its
own module and creates them with `ensure(engine, *tables)`, so no box needs to know the others.

>>> engine = open_meta("sqlite://")
>>> engine.dialect.name
'sqlite'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, event

METADATA = MetaData()


def meta_url(root: Path) -> str:
    """The embedded metadata database of a platform root."""
    return f"sqlite:///{root / 'meta.sqlite'}"


def open_meta(url: str) -> Engine:
    """An engine on the metadata database (`sqlite:///...` or `postgresql+psycopg://...`)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL + FULL: a committed grant or key survives a crash; readers never block the writer.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def ensure(engine: Engine, *tables: Table) -> None:
    """Create the given tables where they do not exist yet."""
    METADATA.create_all(engine, tables=list(tables))
