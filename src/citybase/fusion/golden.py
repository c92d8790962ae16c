"""Golden records: the best value of each field of an entity, with the record it came from.

Rules per field: the most frequent value among members (ties to the more complete), the most
complete (longest), the most recent (by the rules' recency column) or the most trusted source.
Every value keeps its provenance (record uid, source, how many members agree) so that a user can
see why the golden record says what it says.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from citybase.fusion.rules import MatchRules


def golden_records(records: pa.Table, members: pa.Table, rules: MatchRules) -> tuple[pa.Table, pa.Table]:
    """(wide, provenance): one row per entity, and one row per entity and field with its source.

    `records` are the raw input rows with a `uid` column; `members` maps uid -> entity_id.
    """
    con = duckdb.connect()
    con.register("recs", records)
    con.register("mem", members.select(["uid", "entity_id"]))
    fields = [f for f in rules.fields if f.kind != "geo" and f.name in records.column_names]
    src = (
        f'cast(r."{rules.source}" as varchar)'
        if rules.source and rules.source in records.column_names
        else "null"
    )
    recency = f'cast(r."{rules.recency}" as varchar)' if rules.recency else "null"
    prio = {s: i for i, s in enumerate(rules.source_priority)}
    prio_sql = " ".join(f"when '{s}' then {i}" for s, i in prio.items())
    prio_expr = f"case source {prio_sql} else {len(prio)} end" if prio else "0"
    parts = []
    for f in fields:
        order = {
            "most_frequent": "support desc, length(value) desc, uid",
            "most_complete": "length(value) desc, support desc, uid",
            "most_recent": "recency desc nulls last, support desc, uid",
            "source_priority": f"{prio_expr}, support desc, uid",
        }[f.golden]
        parts.append(
            f"""
            select * from (
              select entity_id, '{f.name}' as field, value, uid, source, support, '{f.golden}' as rule,
                     row_number() over (partition by entity_id order by {order}) as rk
              from (
                select m.entity_id, cast(r."{f.name}" as varchar) as value, r.uid, {src} as source,
                       {recency} as recency,
                       count(*) over (partition by m.entity_id, cast(r."{f.name}" as varchar)) as support
                from recs r join mem m using (uid)
                where r."{f.name}" is not null and trim(cast(r."{f.name}" as varchar)) <> ''
              )
            ) where rk = 1"""
        )
    if not parts:
        empty = pa.table({"entity_id": pa.array([], pa.string())})
        return empty, empty
    prov = (
        con.sql(" union all ".join(parts) + " order by entity_id, field")
        .arrow()
        .read_all()
        .drop_columns(["rk"])
    )
    con.register("prov", prov)
    cols = ", ".join(
        f"""max(value) filter (where field = '{f.name}') as "{f.name}",
            max(uid) filter (where field = '{f.name}') as "{f.name}__from\""""
        for f in fields
    )
    wide = (
        con.sql(
            f"select m.entity_id, {cols} from (select distinct entity_id from mem) m"
            " left join prov using (entity_id) group by m.entity_id order by m.entity_id"
        )
        .arrow()
        .read_all()
    )
    con.close()
    return wide, prov
