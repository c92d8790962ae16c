"""The city graph: links between entities (a person lives in a building, a firm is registered at
one) and entity locations for place keys.

Links come from the records: a person record's address geocoded to a housing record makes the
person's entity point at that record's building entity. Each link keeps the records that support
it, so a link can be explained and counted.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from citybase.fusion.features import UID
from citybase.fusion.resolve import Resolution

RECORD_LINK_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("from_entity", pa.string()),
        ("relation", pa.string()),
        ("to_entity", pa.string()),
    ]
)
LINK_SCHEMA = pa.schema(
    [
        ("from_entity", pa.string()),
        ("relation", pa.string()),
        ("to_entity", pa.string()),
        ("records", pa.int64()),
    ]
)


def link_entities(
    source: Resolution, field: str, target: Resolution, *, relation: str, target_field: str | None = None
) -> pa.Table:
    """Entity -> entity links where a source record's `field` address points at a target record.

    A source address key matches a target record by the reference row it was geocoded to (the
    target's record id) or, with `target_field`, by the target's own address key.
    """
    recs = link_records(source, field, target, relation=relation, target_field=target_field)
    con = duckdb.connect()
    con.register("recs", recs)
    out = (
        con.sql(
            "select from_entity, relation, to_entity, count(*) as records from recs"
            " group by all order by from_entity, records desc, to_entity"
        )
        .arrow()
        .read_all()
        .cast(LINK_SCHEMA)
    )
    con.close()
    return out


def link_records(
    source: Resolution, field: str, target: Resolution, *, relation: str, target_field: str | None = None
) -> pa.Table:
    """The links record by record: uid (the source record that supports it), from_entity, relation,
    to_entity. Kept per record so that a reader is shown a link only through a record it may see."""
    key = f"{field}_key"
    if key not in source.prepared.column_names:
        raise KeyError(f"{field!r} is not an address field of the {source.entity_type} rules")
    src = source.prepared.select([UID, key]).rename_columns(["uid", "key"])
    con = duckdb.connect()
    con.register("src", src)
    con.register("smem", source.members.select([UID, "entity_id"]))
    con.register("tmem", target.members.select([UID, "entity_id"]))
    tkeys = "select uid, split_part(uid, '|', 2) as key from tmem"
    if target_field is not None:
        con.register(
            "tprep", target.prepared.select([UID, f"{target_field}_key"]).rename_columns(["uid", "key"])
        )
        tkeys += " union all select uid, key from tprep where key is not null"
    sql = f"""
        with tk as ({tkeys}),
             hits as (
               select distinct s.uid as suid, tm.entity_id as to_entity
               from src s join tk on s.key = tk.key join tmem tm on tm.uid = tk.uid
               where s.key is not null)
        select h.suid as uid, sm.entity_id as from_entity, '{relation}' as relation, h.to_entity
        from hits h join smem sm on sm.uid = h.suid
        order by uid, to_entity
    """
    out = con.sql(sql).arrow().read_all().cast(RECORD_LINK_SCHEMA)
    con.close()
    return out


def entity_points(res: Resolution, field: str) -> pa.Table:
    """entity_id, lon, lat: the median of the members' geocoded points, for place keys."""
    lon, lat = f"{field}_lon", f"{field}_lat"
    con = duckdb.connect()
    con.register("p", res.prepared.select([UID, lon, lat]))
    con.register("m", res.members.select([UID, "entity_id"]))
    out = (
        con.sql(
            f'select entity_id, median("{lon}") as lon, median("{lat}") as lat, count("{lon}") as points'
            f' from p join m using (uid) where "{lon}" is not null group by entity_id order by entity_id'
        )
        .arrow()
        .read_all()
    )
    con.close()
    return out
