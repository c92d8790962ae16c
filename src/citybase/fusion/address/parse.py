"""Chinese address parsing: division hierarchy, then road, number, building, unit, room.

Divisions are matched against the configured division table (full names, short names, renames),
each level inside the one above it; the rest is read with patterns for the parts every Chinese
address shares. An address that yields no place below the district (no road and number, no
building name) is reported with a reason rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from citybase.fusion.address.normalise import normalise_address
from citybase.fusion.divisions import MUNICIPALITIES, Divisions, Level

_COMMUNITY = re.compile(r"(.{2,10}?(?:社区居委会|社区|居委会|村委会|村))(?=.)")
_ROAD = re.compile(r"(.{1,14}?(?:大街|大道|胡同|路|街|巷|道|里|弄))(?=\d)")
_NUMBER = re.compile(r"(\d+)(?:号院|号楼|号)")
_BUILDING = re.compile(r"-?(\d+|[A-Z])(?:号楼|栋|幢|座|号?楼(?=\d+单元|\d+门))")
_UNIT = re.compile(r"-?(\d+)(?:单元|门|-)")
_FLOOR = re.compile(r"(\d+)(?:层|楼)(?=\d)")
_ROOM = re.compile(r"-?(\d+)(?:室|号房|房)?$")
_FLOOR_ONLY = re.compile(r"(\d+)(?:层|楼)$")
_NAME = re.compile(r"([^\d\-]{2,20}?)(?=\d|$)")

FIELDS = (
    "province", "city", "district", "street", "community", "road", "number",
    "building_name", "building", "unit", "floor", "room",
)  # fmt: skip


@dataclass
class ParsedAddress:
    """The parts of one address; `ok` False with a `reason` when it cannot be placed."""

    text: str
    normalised: str = ""
    province: str | None = None
    city: str | None = None
    district: str | None = None
    street: str | None = None
    community: str | None = None
    road: str | None = None
    number: str | None = None
    building_name: str | None = None
    building: str | None = None
    unit: str | None = None
    floor: str | None = None
    room: str | None = None
    division_code: str | None = None  # the finest division matched
    renamed_from: list[str] = field(default_factory=list)
    rest: str = ""
    ok: bool = True
    reason: str | None = None


def parse_address(text: str | None, divisions: Divisions, *, default: str | None = None) -> ParsedAddress:
    """Parse one address. `default` is the code prefix to resolve ambiguous short names in (the city).

    >>> from citybase.fusion.divisions import Division
    >>> d = Divisions([Division("11", "北京市", "province"), Division("110105", "朝阳区", "district")])
    >>> a = parse_address("北京朝阳区建国路８８号三单元１０２室", d)
    >>> (a.province, a.district, a.road, a.number, a.unit, a.room)
    ('北京市', '朝阳区', '建国路', '88', '3', '102')
    """
    if text is None or not text.strip():
        return ParsedAddress(text or "", ok=False, reason="empty address")
    s = normalise_address(text)
    out = ParsedAddress(text, s)
    pos = 0
    scope: str | None = None
    levels: tuple[Level, ...] = ("province", "city", "district", "street")
    for level in levels:
        found = None
        if scope is None and default is not None:  # the city's own divisions first
            found = divisions.find(s, pos, level, within=default)
        if found is None and (level != "street" or (scope is not None and len(scope) >= 6)):
            # townships only inside a known district: their names repeat across the country
            found = divisions.find(s, pos, level, within=scope)
        if found is None:
            continue
        d = found.division
        setattr(out, level, d.name)
        if found.renamed_from:
            out.renamed_from.append(found.renamed_from)
        out.division_code = d.code
        scope = d.code
        pos += found.length
        # parents implied by the code (an address often starts at the district)
        for parent_level, n in (("province", 2), ("city", 4), ("district", 6)):
            if getattr(out, parent_level) is None and len(d.code) > n:
                p = divisions.by_code.get(d.code[:n])
                if p is not None:
                    setattr(out, parent_level, p.name)
    if out.city is None and out.province is not None and (out.division_code or "")[:2] in MUNICIPALITIES:
        out.city = out.province
    rest = s[pos:]
    community, road = _COMMUNITY.match(rest), _ROAD.match(rest)
    if community and (road is None or len(road.group(1)) > len(community.group(1))):
        out.community, rest = community.group(1), rest[community.end() :]
    if m := _ROAD.match(rest):
        out.road, rest = m.group(1), rest[m.end() :]
        if num := _NUMBER.match(rest):
            out.number, rest = num.group(1), rest[num.end() :]
    if out.number is None and (m := _NAME.match(rest)):
        out.building_name, rest = m.group(1), rest[m.end() :]
    if m := _BUILDING.match(rest):
        out.building, rest = m.group(1), rest[m.end() :]
    if m := _UNIT.match(rest):
        out.unit, rest = m.group(1), rest[m.end() :]
    if m := _FLOOR.match(rest):
        out.floor, rest = m.group(1), rest[m.end() :]
    if m := _ROOM.match(rest):
        out.room, rest = m.group(1), rest[m.end() :]
    elif m := _FLOOR_ONLY.match(rest):
        out.floor, rest = m.group(1), rest[m.end() :]
    out.rest = rest
    placed = out.number is not None or (
        out.building_name is not None and (out.division_code or out.building or out.unit or out.room)
    )
    if not placed:
        out.ok = False
        out.reason = "no road and number, nor a building name with a division or a unit"
    return out


def parse_addresses(
    addresses: pa.Array | pa.ChunkedArray, divisions: Divisions, *, default: str | None = None
) -> pa.Table:
    """Parse a column of addresses; each distinct text is parsed once (departments repeat them).

    Returns one row per input with the FIELDS, `division_code`, `renamed_from`, `ok` and `reason`.
    """
    arr = addresses.combine_chunks() if isinstance(addresses, pa.ChunkedArray) else addresses
    enc = arr.cast(pa.string()).dictionary_encode()
    uniq = enc.dictionary.to_pylist()
    parsed = [parse_address(t, divisions, default=default) for t in uniq]
    parsed.append(parse_address(None, divisions))  # what a null row reads as
    cols: dict[str, pa.Array] = {
        c: pa.array([getattr(p, c) for p in parsed], pa.string())
        for c in (*FIELDS, "normalised", "division_code")
    }
    cols["ok"] = pa.array([p.ok for p in parsed], pa.bool_())
    cols["reason"] = pa.array([p.reason for p in parsed], pa.string())
    cols["renamed_from"] = pa.array([",".join(p.renamed_from) or None for p in parsed], pa.string())
    return pa.table(cols).take(enc.indices.fill_null(len(uniq)))
