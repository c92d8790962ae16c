"""What one reader may see of the fused entities: decided by its grants on the feeding datasets.

Fusion itself reads every record; a department reading the result sees an entity only through
the source records it may read (its own datasets, or a live grant), and each of those through
the grant's scope (`cb.share.scope_for`): the projection, the row filter and the masks of
personal fields, applied by the query engine as for any other read. Nothing here masks a value:

- a golden field shows the value of the record it came from *as the reader reads that record*
  (masked where the grant masks it), or nothing when the reader cannot read that record or column;
- a link and a location are derived from an address: shown only through a record whose address
  the reader reads unmasked (a masked address must not come back as a building or a point).

Records, sources and counts from datasets the reader cannot read are left out without a trace:
that a person appears in the social-assistance register is itself personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from citybase.errors import CitybaseError
from citybase.fusion.declaration import EntityTypeSpec, Feed
from citybase.fusion.lake import stored
from citybase.model.dataset import DatasetSpec
from citybase.sqltext import literal, quote

if TYPE_CHECKING:
    from citybase.platform import CityBase
    from citybase.query.scope import ReadScope
    from citybase.registry import Principal


@dataclass(frozen=True)
class DatasetView:
    """One feeding dataset as a reader sees it."""

    feed: Feed
    spec: DatasetSpec
    scope: ReadScope
    columns: frozenset[str] | None  # stored columns visible (None: all)
    ids: frozenset[str] | None  # record ids the row filter lets through (None: all)

    def column(self, rule_column: str) -> str | None:
        """The stored column a rule column is read from in this dataset (None: not there)."""
        return stored(self.spec, self.feed.column(rule_column))

    @property
    def record_id(self) -> str:
        return stored(self.spec, self.feed.record_id) or self.feed.record_id

    def sees(self, column: str) -> bool:
        return self.columns is None or column in self.columns

    def raw(self, column: str | None) -> bool:
        """Visible and unmasked."""
        return column is not None and self.sees(column) and column not in self.scope.masked


def dataset_views(cb: CityBase, who: Principal, et: EntityTypeSpec) -> dict[str, DatasetView]:
    """The feeds of `et` the reader may read (own, operator, or a live grant), with their scopes."""
    out: dict[str, DatasetView] = {}
    for feed in et.feeds:
        try:
            scope = cb.share.scope_for(who, feed.dataset)
        except CitybaseError as e:
            if e.status in (403, 404):  # no grant, not shared, dataset gone: not readable
                continue
            raise
        cols = frozenset(scope.fields) if scope.fields is not None else None
        view = DatasetView(feed, cb.lake.spec(feed.dataset), scope, cols, None)
        if not view.raw(view.record_id):
            continue  # records that cannot be told apart cannot be joined to entities
        if scope.limits_rows:
            t = cb.query.sql(
                f"SELECT CAST({quote(view.record_id)} AS VARCHAR) AS r FROM city.{quote(feed.dataset)}",
                scopes={feed.dataset: scope},
            )
            view = DatasetView(feed, view.spec, scope, cols, frozenset(t["r"].to_pylist()))
        out[feed.dataset] = view
    return out


def visible_members(members: pa.Table, views: dict[str, DatasetView]) -> pa.Table:
    """The member rows (uid, entity_id, source) whose record the reader may read."""
    if not views:
        return members.slice(0, 0)
    mask = pc.is_in(members["source"], pa.array(list(views), pa.string()))
    t = members.filter(mask)
    limited = {d: v.ids for d, v in views.items() if v.ids is not None}
    if not limited or t.num_rows == 0:
        return t
    keep = []
    for uid, src in zip(t["uid"].to_pylist(), t["source"].to_pylist(), strict=True):
        ids = limited.get(src)
        keep.append(ids is None or uid.split("|", 1)[1] in ids)
    return t.filter(pa.array(keep))


def search(
    cb: CityBase, who: Principal, views: dict[str, DatasetView], et: EntityTypeSpec, text: str
) -> set[str]:
    """uids of the readable records whose mapped fields contain `text`, as the reader sees them
    (a masked name is searched masked); metered as a use of each dataset."""
    found: set[str] = set()
    pattern = literal("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    for name, v in views.items():
        cols = {v.column(rc) for rc, numeric in et.rule_columns() if not numeric}
        seen = sorted(c for c in cols if c is not None and v.sees(c))
        if not seen:
            continue
        hay = "concat_ws(' ', " + ", ".join(f"CAST({quote(c)} AS VARCHAR)" for c in seen) + ")"
        t = cb.share.sql(
            who,
            f"SELECT CAST({quote(v.record_id)} AS VARCHAR) AS r FROM city.{quote(name)}"
            f" WHERE {hay} ILIKE {pattern} ESCAPE '\\'",
            purpose=f"entity search ({et.entity_type})",
        )
        found.update(f"{name}|{r}" for r in t["r"].to_pylist())
    return found


def read_records(
    cb: CityBase, who: Principal, views: dict[str, DatasetView], uids: list[str], purpose: str
) -> dict[str, dict[str, Any]]:
    """uid -> the record as the reader reads it (visible declared fields, masked where masked)."""
    by_ds: dict[str, list[str]] = {}
    for u in uids:
        ds, rid = u.split("|", 1)
        if ds in views:
            by_ds.setdefault(ds, []).append(rid)
    out: dict[str, dict[str, Any]] = {}
    for ds, rids in sorted(by_ds.items()):
        v = views[ds]
        cols = list(dict.fromkeys(c for f in v.spec.fields if (c := stored(v.spec, f.name)) and v.sees(c)))
        rid = quote(v.record_id)
        sql = (
            f"SELECT {', '.join(quote(c) for c in cols)} FROM city.{quote(ds)}"
            f" WHERE CAST({rid} AS VARCHAR) IN ({', '.join(literal(r) for r in sorted(set(rids)))})"
            f" QUALIFY row_number() OVER (PARTITION BY {rid}"
            " ORDER BY _ingested_at DESC, _batch DESC, _line DESC) = 1"
        )  # the latest row of a record id, as fusion reads it (lake.py)
        t = cb.share.sql(who, sql, purpose=purpose)
        for row in t.to_pylist():
            out[f"{ds}|{row[v.record_id]}"] = {k: plain(x) for k, x in row.items()}
    return out


def plain(v: Any) -> Any:
    """A value as JSON carries it."""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


def golden_for(
    provenance: pa.Table, records: dict[str, dict[str, Any]], views: dict[str, DatasetView]
) -> dict[str, dict[str, dict[str, Any]]]:
    """entity_id -> field -> {value, dataset, record}: each golden value as the reader reads the
    record it came from; fields from records the reader cannot read are left out."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in provenance.to_pylist():
        rec = records.get(row["uid"])
        if rec is None:
            continue
        ds, rid = row["uid"].split("|", 1)
        col = views[ds].column(row["field"])
        if col is None or col not in rec or rec[col] is None:
            continue
        out.setdefault(row["entity_id"], {})[row["field"]] = {
            "value": str(rec[col]),
            "dataset": ds,
            "record": rid,
        }
    return out
