"""Geocoding: parsed addresses matched to the city's address and building reference.

The reference is any table of standard addresses (or building names) with lon/lat, e.g. the
housing department's building register. Matching is by key, not by fuzzy search: road + number
inside the district, then building name (+ building number), then the centroid of the finest
division matched. Each result says how precise it is, and why when nothing matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from citybase.fusion.address.normalise import simplify
from citybase.fusion.address.parse import parse_addresses
from citybase.fusion.divisions import Divisions

_BUILDING_TAIL = re.compile(r"(?:号楼|栋|幢|座|楼)$")


def road_key(district: str | None, road: str | None, number: str | None) -> str | None:
    """The key of a street address: district code (may be empty), road and house number."""
    if road is None or number is None:
        return None
    return f"{district or ''}|{road}|{int(number)}"


def name_key(name: str | None, building: str | None = None) -> str | None:
    """The key of a named building: 谊源苑1号楼 and 谊源苑 + building 1 give the same key."""
    if not name:
        return None
    n = _BUILDING_TAIL.sub("", simplify(name))
    return n + (building or "")


def _keys(parsed: pa.Table) -> tuple[list[str | None], list[str | None], list[str | None]]:
    dist = parsed["division_code"].to_pylist()
    roads, nums = parsed["road"].to_pylist(), parsed["number"].to_pylist()
    names, blds = parsed["building_name"].to_pylist(), parsed["building"].to_pylist()
    d6 = [d[:6] if d and len(d) >= 6 else None for d in dist]
    full = [road_key(d, r, n) for d, r, n in zip(d6, roads, nums, strict=True)]
    bare = [road_key(None, r, n) for r, n in zip(roads, nums, strict=True)]
    named = [name_key(a, b) for a, b in zip(names, blds, strict=True)]
    return full, bare, named


@dataclass
class Reference:
    """Standard addresses with coordinates, indexed by road key and by building-name key."""

    by_road: dict[str, tuple[float, float, str]]
    by_bare_road: dict[str, tuple[float, float, str]]
    by_name: dict[str, tuple[float, float, str]]

    @classmethod
    def build(
        cls,
        table: pa.Table,
        divisions: Divisions,
        *,
        address: str = "address",
        name: str | None = "building_name",
        lon: str = "longitude",
        lat: str = "latitude",
        ref_id: str = "record_id",
        default: str | None = None,
    ) -> Reference:
        """Index a reference table; keys that point at two places are dropped (no guessing)."""
        parsed = parse_addresses(table[address], divisions, default=default)
        full, bare, named = _keys(parsed)
        if name is not None and name in table.column_names:
            named = [name_key(n) or k for n, k in zip(table[name].to_pylist(), named, strict=True)]
        xs, ys, ids = (
            table[lon].to_pylist(),
            table[lat].to_pylist(),
            table[ref_id].cast(pa.string()).to_pylist(),
        )

        def index(keys: list[str | None]) -> dict[str, tuple[float, float, str]]:
            out: dict[str, tuple[float, float, str]] = {}
            bad: set[str] = set()
            for k, x, y, i in zip(keys, xs, ys, ids, strict=True):
                if k is None or x is None or y is None:
                    continue
                if k in out and out[k][2] != i:
                    bad.add(k)
                out[k] = (x, y, i)
            for k in bad:
                del out[k]
            return out

        return cls(index(full), index(bare), index(named))


def geocode(
    addresses: pa.Array | pa.ChunkedArray,
    divisions: Divisions,
    reference: Reference | None = None,
    *,
    default: str | None = None,
) -> pa.Table:
    """Coordinates for a column of addresses.

    Returns the parsed parts plus lon, lat, `precision` (address / building / street / district /
    null), `ref_id` (the reference row matched) and `reason` where nothing could be placed.
    """
    parsed = parse_addresses(addresses, divisions, default=default)
    full, bare, named = _keys(parsed)
    codes = parsed["division_code"].to_pylist()
    oks = parsed["ok"].to_pylist()
    reasons = parsed["reason"].to_pylist()
    lons: list[float | None] = []
    lats: list[float | None] = []
    prec: list[str | None] = []
    refs: list[str | None] = []
    why: list[str | None] = []
    for i in range(len(full)):
        hit: tuple[float, float, str] | None = None
        p = "address"
        f, b, nm = full[i], bare[i], named[i]
        if reference is not None:
            hit = reference.by_road.get(f) if f else None
            if hit is None and b:
                hit = reference.by_bare_road.get(b)
            if hit is None and nm:
                hit, p = reference.by_name.get(nm), "building"
        if hit is not None:
            lons.append(hit[0])
            lats.append(hit[1])
            prec.append(p)
            refs.append(hit[2])
            why.append(None)
            continue
        d = divisions.by_code.get(codes[i] or "")
        while d is not None and d.lon is None:
            pc_ = d.parent_code()
            d = divisions.by_code.get(pc_) if pc_ else None
        if d is not None and d.lon is not None and d.level in ("street", "district"):
            lons.append(d.lon)
            lats.append(d.lat)
            prec.append(d.level)
            refs.append(None)
            why.append(None if oks[i] else reasons[i])
        else:
            lons.append(None)
            lats.append(None)
            prec.append(None)
            refs.append(None)
            why.append(reasons[i] if not oks[i] else "not in the address reference")
    out = parsed.drop_columns(["reason"])
    return (
        out.append_column("lon", pa.array(lons, pa.float64()))
        .append_column("lat", pa.array(lats, pa.float64()))
        .append_column("precision", pa.array(prec, pa.string()))
        .append_column("ref_id", pa.array(refs, pa.string()))
        .append_column("reason", pa.array(why, pa.string()))
    )


def match_rate(geocoded: pa.Table) -> float:
    """Share of rows placed at address or building precision."""
    p = geocoded["precision"]
    good = pc.sum(pc.is_in(p, pa.array(["address", "building"])).cast(pa.int64())).as_py() or 0
    return float(good) / max(len(p), 1)
