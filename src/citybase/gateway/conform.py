"""Make raw rows conform to their declaration: map columns, coerce types, check values.

Every problem is a (row, field, value, reason) finding; a row with any finding is quarantined whole,
with the raw row kept as JSON, and the others go on. Nothing is dropped silently, and the work is
vectorised: the fast path casts a whole column at once and only a column that fails is examined
value by value to find which rows are bad.

Times: values with a zone offset are converted to UTC; values without one are read in the city's
time zone (a department's clock), then converted. Stored times are UTC.

Personal text fields get their masked form once, here (`shadows`), into shadow columns that a masked
read takes as they are (docs/adr/0005). `conform` leaves them out of its rows (the durable log keeps
what was sent); the enrichment step, which lays rows out as the lake stores them, adds them from
the conformed values, so every row written to the lake has them, however it came.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from citybase.errors import InputError
from citybase.gateway.readers._common import ERROR
from citybase.gateway.readers.base import LINE
from citybase.model.dataset import DatasetSpec, FieldSpec, FieldType
from citybase.model.layout import ARROW_TYPES, QUARANTINE_COLUMNS, shadow_columns, stores_shape, value_fields
from citybase.share.masking import mask_arrow

_OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$")
_TRUE = {"true", "t", "yes", "y", "1", "是", "真"}
_FALSE = {"false", "f", "no", "n", "0", "否", "假"}


@dataclass
class Findings:
    """Problems found in a batch: parallel lists, one entry per (row, field)."""

    rows: list[npt.NDArray[np.int64]] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    values: list[list[str | None]] = field(default_factory=list)

    def add(self, idx: npt.NDArray[np.int64], fname: str, reason: str, values: list[str | None]) -> None:
        if len(idx):
            self.rows.append(idx)
            self.fields.append(fname)
            self.reasons.append(reason)
            self.values.append(values)

    def bad_mask(self, n: int) -> npt.NDArray[np.bool_]:
        m = np.zeros(n, dtype=bool)
        for r in self.rows:
            m[r] = True
        return m


@dataclass(frozen=True)
class Conformed:
    good: pa.Table  # value fields, lon/lat (+ geom, bbox for areas), _line
    quarantine: pa.Table  # QUARANTINE_COLUMNS


def _as_str_list(arr: pa.Array, idx: npt.NDArray[np.int64]) -> list[str | None]:
    vals = arr.take(pa.array(idx)).to_pylist()
    return [None if v is None else (v.hex() if isinstance(v, bytes) else str(v))[:200] for v in vals]


def _blank_to_null(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        trimmed = pc.utf8_trim_whitespace(arr)
        empty = pc.equal(trimmed, "")
        return pc.if_else(empty, pa.scalar(None, arr.type), trimmed)
    return arr


def _column(table: pa.Table, spec_field: FieldSpec) -> pa.Array | None:
    """The source column of a field: its `source` name, its own name, or a case-insensitive match."""
    wanted = spec_field.source or spec_field.name
    names = table.column_names
    if wanted in names:
        return table.column(wanted).combine_chunks()
    lower = {n.lower(): n for n in names}
    if wanted.lower() in lower:
        return table.column(lower[wanted.lower()]).combine_chunks()
    return None


def _cast_number(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """The whole column at once; raises if any value does not convert."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        as_float = pc.cast(arr, pa.float64())
        return pc.cast(as_float, target) if target != pa.float64() else as_float
    return pc.cast(arr, target)


def _coerce_number(arr: pa.Array, target: pa.DataType, f: FieldSpec, out: Findings) -> pa.Array:
    try:
        return _cast_number(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    raw = arr.to_pandas()
    num = pd.to_numeric(raw, errors="coerce")
    bad = np.nonzero((num.isna() & raw.notna()).to_numpy())[0]
    out.add(bad, f.name, f"not a number ({f.type.value})", _as_str_list(arr, bad))
    values = num.to_numpy(dtype=np.float64, na_value=np.nan)
    if target == pa.int64():
        frac = np.nonzero(np.isfinite(values) & (values != np.round(values)))[0]
        out.add(frac, f.name, "not a whole number", _as_str_list(arr, frac))
        mask = ~np.isfinite(values)
        return pa.array(np.where(mask, 0, values).astype(np.int64), mask=mask)
    return pa.array(values, mask=~np.isfinite(values))


def _coerce_time(arr: pa.Array, f: FieldSpec, tz: str, out: Findings) -> pa.Array:
    """Timestamps to naive UTC microseconds."""
    if pa.types.is_timestamp(arr.type):
        ts = arr
        if ts.type.tz is None:  # type: ignore[attr-defined]
            ts = pc.assume_timezone(ts, tz, ambiguous="earliest", nonexistent="earliest")
        return pc.cast(pc.cast(ts, pa.timestamp("us", "UTC")), pa.timestamp("us"))
    if pa.types.is_date(arr.type):
        return _coerce_time(pc.cast(arr, pa.timestamp("us")), f, tz, out)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    if f.format is None:
        try:  # fast path: ISO 8601 without an offset, in the city's zone
            return _coerce_time(pc.cast(arr, pa.timestamp("us")), f, tz, out)
        except pa.ArrowInvalid:
            pass
        try:  # ISO 8601, all with an offset
            return _coerce_time(pc.cast(arr, pa.timestamp("us", "UTC")), f, tz, out)
        except pa.ArrowInvalid:
            pass
    raw = arr.to_pandas()
    has_offset = raw.str.contains(_OFFSET, na=False).to_numpy()
    result = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    fmt = f.format or "ISO8601"
    for aware in (False, True):
        sel = has_offset == aware
        if not sel.any():
            continue
        part = raw[sel]
        try:
            parsed = pd.to_datetime(part, errors="coerce", format=fmt, utc=aware)
        except (ValueError, TypeError):
            parsed = pd.to_datetime(part, errors="coerce", format="mixed", utc=aware)
        if not aware:
            parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        result[sel] = parsed.dt.tz_convert("UTC").dt.as_unit("us")
    bad = np.nonzero((result.isna() & raw.notna()).to_numpy())[0]
    out.add(bad, f.name, f"not a time{' in format ' + f.format if f.format else ''}", _as_str_list(arr, bad))
    return pa.array(result.dt.tz_localize(None), type=pa.timestamp("us"))


def _coerce_bool(arr: pa.Array, f: FieldSpec, out: Findings) -> pa.Array:
    if pa.types.is_boolean(arr.type):
        return arr
    low = pc.utf8_lower(pc.cast(arr, pa.string()))
    t = pc.is_in(low, pa.array(sorted(_TRUE)))
    fa = pc.is_in(low, pa.array(sorted(_FALSE)))
    bad = np.nonzero(pc.and_(pc.is_valid(low), pc.invert(pc.or_(t, fa))).to_numpy(zero_copy_only=False))[0]
    out.add(bad, f.name, "not a yes/no value", _as_str_list(arr, bad))
    return pc.if_else(t, True, pc.if_else(fa, False, pa.scalar(None, pa.bool_())))


def _as_given(arr: pa.Array, f: FieldSpec, tz: str) -> pa.Array | None:
    """Text of numbers or times converted as it stands, or None where any value does not convert.

    A blank or padded value never converts (Arrow's parsers take no whitespace), so where this
    succeeds, trimming and blanking first would have changed nothing: the common case of a clean
    file skips that pass over every string.
    """
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    try:
        if f.type in (FieldType.int, FieldType.float):
            return _cast_number(arr, ARROW_TYPES[f.type])
        if f.type is FieldType.timestamp and f.format is None:
            return _coerce_time(pc.cast(arr, pa.timestamp("us")), f, tz, Findings())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return None


def coerce(arr: pa.Array, f: FieldSpec, tz: str, out: Findings) -> pa.Array:
    """One column to its declared type, recording the rows that do not convert."""
    res = _as_given(arr, f, tz)
    if res is not None:
        _check_values(arr, res, f, out)
        return res
    arr = _blank_to_null(arr)
    if f.type in (FieldType.int, FieldType.float):
        res = _coerce_number(arr, ARROW_TYPES[f.type], f, out)
    elif f.type is FieldType.timestamp:
        res = _coerce_time(arr, f, tz, out)
    elif f.type is FieldType.date:
        res = pc.cast(_coerce_time(arr, f, "UTC", out), pa.date32())
    elif f.type is FieldType.bool:
        res = _coerce_bool(arr, f, out)
    elif f.type is FieldType.json and (pa.types.is_struct(arr.type) or pa.types.is_list(arr.type)):
        res = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in arr.to_pylist()])
    else:
        res = pc.cast(arr, pa.string())
    _check_values(arr, res, f, out)
    return res


def _check_values(raw: pa.Array, arr: pa.Array, f: FieldSpec, out: Findings) -> None:
    if f.required:
        bad = np.nonzero(pc.is_null(raw).to_numpy(zero_copy_only=False))[0]
        out.add(bad, f.name, "missing required value", [None] * len(bad))
    if f.min is not None:
        bad = np.nonzero(pc.fill_null(pc.less(arr, f.min), False).to_numpy(zero_copy_only=False))[0]
        out.add(bad, f.name, f"below the minimum {f.min:g}", _as_str_list(arr, bad))
    if f.max is not None:
        bad = np.nonzero(pc.fill_null(pc.greater(arr, f.max), False).to_numpy(zero_copy_only=False))[0]
        out.add(bad, f.name, f"above the maximum {f.max:g}", _as_str_list(arr, bad))
    if f.enum is not None:
        ok = pc.is_in(arr, pa.array(f.enum))
        bad = np.nonzero(pc.and_(pc.is_valid(arr), pc.invert(ok)).to_numpy(zero_copy_only=False))[0]
        out.add(bad, f.name, f"not one of {f.enum}", _as_str_list(arr, bad))


def _geometry(
    spec: DatasetSpec, table: pa.Table, cols: dict[str, pa.Array], out: Findings
) -> dict[str, pa.Array]:
    """lon/lat (and the shape, for areas) in WGS 84, with unreadable or impossible places found."""
    geo = spec.geometry
    n = table.num_rows
    res: dict[str, pa.Array] = {}
    if geo is None:
        if spec.address_field:  # located later by geocoding (the fusion box)
            res["lon"] = pa.nulls(n, pa.float64())
            res["lat"] = pa.nulls(n, pa.float64())
        return res
    if geo.lon is not None and geo.lat is not None:
        lon = cols[geo.lon].to_numpy(zero_copy_only=False).astype(np.float64)
        lat = cols[geo.lat].to_numpy(zero_copy_only=False).astype(np.float64)
        shapes = None
        where = geo.lon
    else:
        assert geo.field is not None
        raw = cols[geo.field]
        shapes = _decode(raw, geo.encoding)
        missing_raw = pc.is_null(raw).to_numpy(zero_copy_only=False)
        unreadable = np.nonzero(shapely.is_missing(shapes) & ~missing_raw)[0]
        out.add(unreadable, geo.field, f"unreadable geometry ({geo.encoding})", _as_str_list(raw, unreadable))
        empty = shapely.is_missing(shapes) | shapely.is_empty(shapes)
        pts = shapely.point_on_surface(np.where(empty, np.array(None, dtype=object), shapes))
        lon = shapely.get_x(pts)
        lat = shapely.get_y(pts)
        where = geo.field
    if geo.crs.upper() not in ("EPSG:4326", "WGS84", "OGC:CRS84"):
        from pyproj import Transformer

        tr = Transformer.from_crs(geo.crs, "EPSG:4326", always_xy=True)
        lon, lat = tr.transform(lon, lat)
        if shapes is not None:
            shapes = shapely.transform(shapes, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
    present = np.isfinite(lon) & np.isfinite(lat)
    outside = np.nonzero(present & ((np.abs(lon) > 180) | (np.abs(lat) > 90)))[0]
    out.add(
        outside,
        where,
        "coordinates outside the world (lon -180..180, lat -90..90)",
        [f"{lon[i]:.6g}, {lat[i]:.6g}" for i in outside[:10_000]] + [None] * max(0, len(outside) - 10_000),
    )
    if spec.kind.value in ("points", "tracks", "areas"):
        missing = np.nonzero(~present)[0]
        out.add(missing, where, "no location", [None] * len(missing))
    res["lon"] = pa.array(lon, mask=~present)
    res["lat"] = pa.array(lat, mask=~present)
    if stores_shape(spec) and shapes is not None:
        b = shapely.bounds(shapes)
        res["geom"] = pa.array(shapely.to_wkb(shapes), type=pa.binary())
        for i, c in enumerate(("xmin", "ymin", "xmax", "ymax")):
            res[c] = pa.array(b[:, i], mask=~np.isfinite(b[:, i]))
    return res


def _decode(raw: pa.Array, encoding: str) -> npt.NDArray[np.object_]:
    vals = raw.to_numpy(zero_copy_only=False)
    if encoding == "wkb":  # binary, or hex text
        out = shapely.from_wkb(vals, on_invalid="ignore")
    elif encoding == "wkt":
        out = shapely.from_wkt(pc.cast(raw, pa.string()).to_numpy(zero_copy_only=False), on_invalid="ignore")
    else:
        out = shapely.from_geojson(
            pc.cast(raw, pa.string()).to_numpy(zero_copy_only=False), on_invalid="ignore"
        )
    return np.asarray(out, dtype=object)


def conform(
    spec: DatasetSpec,
    table: pa.Table,
    *,
    tz: str,
    source: str,
    batch: str,
) -> Conformed:
    """Raw rows in, rows in the declared types plus quarantined ones out.

    >>> spec = DatasetSpec(name="aq", department="eco", system="aq", kind="records",
    ...     fields=[{"name": "pm25", "type": "float", "min": 0}])
    >>> c = conform(spec, pa.table({"pm25": ["12.5", "x", "-1"], "_line": [2, 3, 4]}),
    ...             tz="UTC", source="f.csv", batch="b1")
    >>> c.good.column("pm25").to_pylist(), c.quarantine.column("reason").to_pylist()
    ([12.5], ['not a number (float)', 'below the minimum 0'])
    """
    n = table.num_rows
    lines = (
        table.column(LINE).combine_chunks().cast(pa.int64())
        if LINE in table.column_names
        else pa.array(np.arange(1, n + 1, dtype=np.int64))
    )
    missing_required = [f.source or f.name for f in spec.fields if f.required and _column(table, f) is None]
    if missing_required:
        raise InputError(
            f"{source}: required column(s) {missing_required} not found; "
            f"the file has {[c for c in table.column_names if c != LINE]}"
        )
    out = Findings()
    cols: dict[str, pa.Array] = {}
    for f in spec.fields:
        raw = _column(table, f)
        if raw is None:
            cols[f.name] = pa.nulls(n, ARROW_TYPES[f.type])
            continue
        if spec.geometry is not None and f.name == spec.geometry.field:
            cols[f.name] = raw  # decoded below, in its own encoding
            continue
        cols[f.name] = coerce(raw, f, tz, out)
    if ERROR in table.column_names:  # rows the reader could not split or parse (e.g. wrong field count)
        err = table.column(ERROR).combine_chunks()
        broken = np.nonzero(pc.is_valid(err).to_numpy(zero_copy_only=False))[0]
        reasons = np.asarray(err.take(pa.array(broken)).to_pylist(), dtype=object)
        for reason in sorted(set(reasons)):
            rows = broken[reasons == reason]
            out.add(rows, "(row)", str(reason), [None] * len(rows))
    geo = _geometry(spec, table, cols, out)
    stored = {name: cols[name] for name in value_fields(spec)}
    stored.update(geo)
    stored[LINE] = lines
    full = pa.table(stored)
    bad = out.bad_mask(n)
    good = full.filter(pa.array(~bad)) if bad.any() else full
    return Conformed(good=good, quarantine=_quarantine_table(spec, table, out, lines, source, batch))


def shadows(spec: DatasetSpec, columns: Mapping[str, pa.Array | pa.ChunkedArray]) -> dict[str, pa.Array]:
    """Shadow column -> the masked values of its personal field (share/masking.py's rule), for the
    fields present in `columns` (conformed values: the masked form is of the value as stored).

    >>> spec = DatasetSpec(name="v", department="h", system="s", kind="records",
    ...     fields=[{"name": "patient", "personal": "name"}, {"name": "cost", "type": "float"}])
    >>> got = shadows(spec, {"patient": pa.array(["张三", None]), "cost": pa.array([1.0, 2.0])})
    >>> {k: v.to_pylist() for k, v in got.items()}
    {'patient__masked': ['张*', None]}
    """
    out: dict[str, pa.Array] = {}
    for name, shadow in shadow_columns(spec).items():
        personal = spec.field(name).personal
        if name in columns and personal is not None:
            out[shadow] = mask_arrow(columns[name], personal)
    return out


def _quarantine_table(
    spec: DatasetSpec, table: pa.Table, out: Findings, lines: pa.Array, source: str, batch: str
) -> pa.Table:
    if not out.rows:
        return pa.schema([(n, t) for n, t, _ in QUARANTINE_COLUMNS]).empty_table()
    idx = np.concatenate(out.rows)
    fields = np.concatenate([[f] * len(r) for f, r in zip(out.fields, out.rows, strict=True)])
    reasons = np.concatenate([[r] * len(rows) for r, rows in zip(out.reasons, out.rows, strict=True)])
    values: list[str | None] = [v for vs in out.values for v in vs]
    raw_cols = [c for c in table.column_names if c not in (LINE, ERROR)]
    raw_rows = table.select(raw_cols).take(pa.array(idx)).to_pylist()
    raw_json = [json.dumps(r, ensure_ascii=False, default=_jsonable) for r in raw_rows]
    k = len(idx)
    now = datetime.now(UTC).replace(tzinfo=None)
    return pa.table(
        {
            "dataset": pa.array([spec.name] * k),
            "batch": pa.array([batch] * k),
            "source": pa.array([source] * k),
            "line": lines.take(pa.array(idx)),
            "field": pa.array(fields.tolist(), pa.string()),
            "value": pa.array(values, pa.string()),
            "reason": pa.array(reasons.tolist(), pa.string()),
            "raw": pa.array(raw_json, pa.string()),
            "quarantined_at": pa.array([now] * k, pa.timestamp("us")),
        }
    )


def _jsonable(v: Any) -> str:
    return v.hex() if isinstance(v, bytes) else str(v)
