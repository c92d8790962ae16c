"""From a grant to a `ReadScope`: the columns, the rows and the masks a consumer reads through.

The query engine applies the scope inside its SQL (query/scope.py), so whatever a consumer asks —
rows in a box, a track, counts per district — is computed over what the grant lets it see.

- Projection: the granted declared fields. Location columns (lon/lat, the place keys, H3, a shape)
  come with the fields they are derived from: the geometry fields, or the address for records
  geocoded from one.
- Rows: the request's filter AND the provider's filter (a narrowing only ever narrows).
- Masks: every personal field is masked (masking.py) unless the grant lists it in `unmasked`. A
  position geocoded from a masked address would give the address away, so it is coarsened too:
  lon/lat rounded to 0.01° (about 1 km), H3 cut to resolution 7, the building key hidden.
  A masked personal text field is read from its shadow column (its masked form, written with the
  row: `shadows`) where the table has one; the mask expression is then not evaluated at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from citybase.errors import InputError
from citybase.model.city import Level
from citybase.model.dataset import DatasetSpec, FieldType
from citybase.model.layout import H3, PLACE_KEYS, shadow_columns, stored_columns, value_fields
from citybase.query._sql import literal, membership, quote, to_utc
from citybase.query.aggregate import h3_parent_sql
from citybase.query.scope import ReadScope
from citybase.share.masking import mask_sql

#: Where a position derived from a masked address is cut to.
COARSE_DEGREES = 2
COARSE_H3 = 7

Scalar = str | int | float | bool


class RowFilter(BaseModel):
    """Which rows a grant covers: places, field values and a time window, all ANDed.

    >>> from citybase.query.demo import PINGS
    >>> spec = DatasetSpec.model_validate(PINGS)
    >>> RowFilter(places={"district": ["A"]}, equals={"vehicle": ["a", "b"]}).sql(spec)
    '("district" IN (\\'A\\')) AND ("vehicle" IN (\\'a\\', \\'b\\'))'
    """

    model_config = ConfigDict(extra="forbid")

    #: Place level -> the area codes covered (e.g. {"district": ["110105"]}).
    places: dict[str, list[str]] = Field(default_factory=dict)
    #: Declared field -> the values covered.
    equals: dict[str, list[Scalar]] = Field(default_factory=dict)
    #: Time window on the dataset's time field, [start, end).
    start: datetime | None = None
    end: datetime | None = None

    @property
    def empty(self) -> bool:
        return not self.places and not self.equals and self.start is None and self.end is None

    def sql(self, spec: DatasetSpec, *, window: bool = True, places: bool = True) -> str | None:
        """The filter as a SQL boolean over the stored columns (None when it covers every row).

        Without its time window or its places when `window` or `places` is false (a `ReadScope`
        keeps those apart); they are checked all the same.
        """
        stored = {n for n, _, _ in stored_columns(spec)}
        conds: list[str] = []
        for level, codes in sorted(self.places.items()):
            if level not in PLACE_KEYS or level not in stored:
                raise InputError(f"dataset {spec.name!r} has no place level {level!r} to filter on")
            if places:
                conds.append(membership(quote(level), codes))
        for name, values in sorted(self.equals.items()):
            if name not in value_fields(spec):
                raise InputError(f"dataset {spec.name!r} has no stored field {name!r} to filter on")
            _check_values(spec, name, values)
            conds.append(membership(quote(name), values))
        if self.start is not None or self.end is not None:
            if spec.time_field is None:
                raise InputError(f"dataset {spec.name!r} has no time field for a time window")
            if not window:
                return " AND ".join(f"({c})" for c in conds) or None
            t = quote(spec.time_field)
            if self.start is not None:
                conds.append(f"{t} >= {literal(self.start)}")
            if self.end is not None:
                conds.append(f"{t} < {literal(self.end)}")
        return " AND ".join(f"({c})" for c in conds) or None


_KINDS: dict[FieldType, tuple[type, ...]] = {
    FieldType.string: (str,),
    FieldType.json: (str,),
    FieldType.int: (int,),
    FieldType.float: (int, float),
    FieldType.bool: (bool,),
}


def _check_values(spec: DatasetSpec, name: str, values: Iterable[Any]) -> None:
    """Values of the field's type, so that the filter cannot fail later, at every read."""
    ftype = spec.field(name).type
    kinds = _KINDS.get(ftype)
    if kinds is None:
        raise InputError(f"filter {name!r} ({ftype.value}) by a time window (start, end), not by values")
    bad = [v for v in values if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds)]
    if bad:
        raise InputError(f"filter values {bad[:3]} do not fit field {name!r} of type {ftype.value}")


def location_columns(spec: DatasetSpec) -> list[str]:
    """The platform's columns that say where a row is."""
    stored = [n for n, _, _ in stored_columns(spec)]
    loc = {"lon", "lat", "geom", "xmin", "ymin", "xmax", "ymax", H3, *PLACE_KEYS}
    return [c for c in stored if c in loc]


def _location_sources(spec: DatasetSpec) -> set[str]:
    """The declared fields a row's location comes from."""
    if spec.geometry is not None:
        return {f for f in (spec.geometry.lon, spec.geometry.lat, spec.geometry.field) if f}
    return {spec.address_field} if spec.address_field else set()


def visible_columns(spec: DatasetSpec, fields: Iterable[str] | None) -> list[str]:
    """Stored columns a grant of `fields` (declared names; None = all) shows, in stored order."""
    declared = {f.name for f in spec.fields}
    wanted = declared if fields is None else set(fields)
    unknown = sorted(wanted - declared)
    if unknown:
        raise InputError(f"dataset {spec.name!r} has no field(s) {unknown}")
    show = wanted & set(value_fields(spec))
    if wanted & _location_sources(spec):
        show |= set(location_columns(spec))
    show |= {"_batch", "_line", "_ingested_at"}
    return [n for n, _, _ in stored_columns(spec) if n in show]


def masks(spec: DatasetSpec, columns: Iterable[str], unmasked: Iterable[str] = ()) -> dict[str, str]:
    """Column -> mask expression for the personal columns among `columns` not in `unmasked`."""
    cols, raw = set(columns), set(unmasked)
    out: dict[str, str] = {}
    for f in spec.fields:
        if f.personal is not None and f.name in cols and f.name not in raw:
            out[f.name] = mask_sql(f.name, f.personal, f.type)
    addr = spec.address_field
    if spec.geometry is None and addr and spec.field(addr).personal is not None and addr in out:
        out.update(coarse_location(spec, cols))
    return out


def coarse_location(spec: DatasetSpec, columns: set[str]) -> dict[str, str]:
    """Masks that blur a position geocoded from a personal address."""
    out: dict[str, str] = {}
    for c in ("lon", "lat"):
        if c in columns:
            out[c] = f"round({quote(c)}, {COARSE_DEGREES})"
    if H3 in columns:
        out[H3] = h3_parent_sql(quote(H3), COARSE_H3)
    if Level.building.value in columns:
        out[Level.building.value] = "CAST(NULL AS VARCHAR)"
    return out


def grant_scope(
    spec: DatasetSpec,
    fields: Iterable[str] | None,
    filters: Iterable[RowFilter | None] = (),
    unmasked: Iterable[str] = (),
) -> ReadScope:
    """The `ReadScope` of a grant.

    >>> from citybase.query.demo import PINGS
    >>> s = grant_scope(DatasetSpec.model_validate(PINGS), ["vehicle", "t"],
    ...                 [RowFilter(places={"district": ["A"]}, equals={"vehicle": ["a"]})])
    >>> s.fields, s.row_filter, s.places
    (['vehicle', 't', '_batch', '_line', '_ingested_at'], '("vehicle" IN (\\'a\\'))', {'district': ('A',)})
    """
    cols = visible_columns(spec, fields)
    given = [f for f in filters if f is not None]
    parts = [s for s in (f.sql(spec, window=False, places=False) for f in given) if s]
    places: dict[str, tuple[str, ...]] = {}
    for f in given:
        for level, codes in f.places.items():  # two filters on one level: the codes in both
            keep = set(codes)
            places[level] = tuple(c for c in places.get(level, tuple(codes)) if c in keep)
    row_filter = " AND ".join(f"({p})" for p in parts) if len(parts) > 1 else (parts[0] if parts else None)
    starts = [f.start for f in given if f.start is not None]
    ends = [f.end for f in given if f.end is not None]
    masked = masks(spec, cols, unmasked)
    return ReadScope(
        fields=cols,
        row_filter=row_filter,
        masked=masked,
        shadows=shadows(spec, masked),
        start=max(starts, key=to_utc) if starts else None,  # the windows' intersection
        end=min(ends, key=to_utc) if ends else None,
        places=places,
    )


def shadows(spec: DatasetSpec, masked: dict[str, str]) -> dict[str, str]:
    """Masked column -> its shadow column, for the masked columns whose mask the shadow holds."""
    return {
        c: s for c, s in shadow_columns(spec).items() if c in masked and masked[c] == _field_mask(spec, c)
    }


def _field_mask(spec: DatasetSpec, name: str) -> str:
    f = spec.field(name)
    assert f.personal is not None
    return mask_sql(name, f.personal, f.type)
