"""The national administrative divisions (province / city / district / township) and their renames.

Read from the folder a city configures (the NBS 2023 codes as CSV, optionally the CPCA centroids),
never bundled: codes change every year and each city points at the edition it uses. Lookups accept
the full name (朝阳区), the short one people write (朝阳), and names of divisions that were merged
or renamed (崇文区 -> 东城区 in 2010), which old records still carry.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from citybase.errors import InputError

Level = Literal["province", "city", "district", "street"]
LEVELS: tuple[Level, ...] = ("province", "city", "district", "street")
MUNICIPALITIES = frozenset({"11", "12", "31", "50"})

# Merged or renamed divisions that old records still carry: old name -> (new code, year). Only
# names that no longer exist; a county that became a district of the same name (密云县 -> 密云区)
# is also caught generically by `Divisions.find`.
RENAMED: dict[str, tuple[str, int]] = {
    "崇文区": ("110101", 2010),
    "宣武区": ("110102", 2010),
    "燕山区": ("110111", 1986),
    "通县": ("110112", 1997),
    "塘沽区": ("120116", 2009),
    "汉沽区": ("120116", 2009),
    "大港区": ("120116", 2009),
    "蓟县": ("120119", 2016),
    "卢湾区": ("310101", 2011),
    "南市区": ("310101", 2000),
    "闸北区": ("310106", 2015),
    "南汇区": ("310115", 2009),
    "川沙县": ("310115", 1993),
    "襄樊市": ("420600", 2010),
    "思茅市": ("530800", 2007),
    "巢湖市": ("340181", 2011),
}

_SUFFIXES: dict[Level, tuple[str, ...]] = {
    "province": ("维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市"),
    "city": ("地区", "盟", "市"),
    "district": ("区", "县", "市", "旗"),
    "street": ("街道办事处", "街道", "地区", "镇", "乡"),
}
# A short name must not be the start of a road or place name: 朝阳路 is a road, not 朝阳区.
_ROADLIKE = ("路", "街", "道", "巷", "里", "弄", "胡同", "区", "县")
_NOT_AFTER_SHORT = set("路街道巷里弄桥门村庄园大小东西南北中区县")


@dataclass(frozen=True)
class Division:
    code: str  # NBS code: 2 (province), 4 (city), 6 (district), 9 (township) digits
    name: str
    level: Level
    lon: float | None = None
    lat: float | None = None

    @property
    def province_code(self) -> str:
        return self.code[:2]

    def parent_code(self) -> str | None:
        return {"province": None, "city": self.code[:2], "district": self.code[:4], "street": self.code[:6]}[
            self.level
        ]


@dataclass(frozen=True)
class Found:
    division: Division
    length: int  # characters of the text it took
    renamed_from: str | None = None


def short_name(name: str, level: Level) -> str | None:
    """The name without its level word, when what is left is still a name (2+ characters).

    >>> short_name("朝阳区", "district"), short_name("广西壮族自治区", "province")
    ('朝阳', '广西')
    >>> short_name("东区", "district") is None
    True
    """
    for suf in _SUFFIXES[level]:
        if name.endswith(suf) and len(name) - len(suf) >= 2:
            base = name[: -len(suf)]
            if level == "city" and "族自治州" in name:
                return None
            return base
    if level == "city" and name.endswith("自治州"):
        return name[:2]
    return None


class Divisions:
    """An index of division names per level, with parents, short names and renames.

    >>> from citybase.testing import shared_data
    >>> d = Divisions.load(shared_data() / "geometries" / "china_admin")  # doctest: +SKIP
    >>> d.find("朝阳区建国路", 0, "district", within="11").division.code  # doctest: +SKIP
    '110105'
    """

    def __init__(self, divisions: list[Division]):
        self.by_code: dict[str, Division] = {d.code: d for d in divisions}
        self._full: dict[Level, dict[str, list[Division]]] = {lv: defaultdict(list) for lv in LEVELS}
        self._short: dict[Level, dict[str, list[Division]]] = {lv: defaultdict(list) for lv in LEVELS}
        for d in divisions:
            self._full[d.level][d.name].append(d)
            s = short_name(d.name, d.level)
            if s and not s.endswith(_ROADLIKE):  # 淮海中路街道 is written 淮海中路: that is the road
                self._short[d.level][s].append(d)
        self._max = {lv: max((len(n) for n in self._full[lv]), default=0) for lv in LEVELS}
        self._cache: dict[tuple[str, Level, str | None], object] = {}

    def overlay(self, divisions: list[Division]) -> Divisions:
        """A copy where the city's own layers replace the national entries with the same codes.

        A city's model (its district and street layers) is newer than any national edition, and
        a sample city's names are its own.
        """
        merged = dict(self.by_code)
        merged.update({d.code: d for d in divisions})
        return Divisions(list(merged.values()))

    @classmethod
    def load(cls, folder: str | Path) -> Divisions:
        """Read nbs2023_{provinces,cities,areas,streets}.csv (and centroids from cpca_*.csv if there)."""
        folder = Path(folder)
        files = {
            "province": folder / "nbs2023_provinces.csv",
            "city": folder / "nbs2023_cities.csv",
            "district": folder / "nbs2023_areas.csv",
            "street": folder / "nbs2023_streets.csv",
        }
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise InputError(f"division table incomplete, missing: {', '.join(missing)}")
        coords: dict[str, tuple[float, float]] = {}
        for p in folder.glob("cpca_*.csv"):
            with p.open(encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    if row["longitude"] and row["latitude"]:
                        coords[row["adcode"][:12]] = (float(row["longitude"]), float(row["latitude"]))
        out: list[Division] = []
        level: Level
        for level, p in files.items():  # type: ignore[assignment]
            with p.open(encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    code = row["code"]
                    if level == "city" and row["name"] in ("市辖区", "县"):
                        continue  # a municipality's city level exists only in codes, never in text
                    xy = coords.get(code.ljust(12, "0"))
                    lon, lat = xy if xy else (None, None)
                    out.append(Division(code, row["name"], level, lon, lat))
        return cls(out)

    def find(self, text: str, pos: int, level: Level, within: str | None = None) -> Found | None:
        """The longest division of `level` named at `text[pos:]`, under the code prefix `within`."""
        # only the next few characters matter: cache on them (addresses share their heads)
        window = text[pos : pos + self._max[level] + 1]
        key = (window, level, within)
        hit = self._cache.get(key, self._cache)
        if hit is self._cache:
            hit = self._find(window, 0, level, within)
            if len(self._cache) > 1 << 18:
                self._cache.clear()
            self._cache[key] = hit
        return hit  # type: ignore[return-value]

    def _find(self, text: str, pos: int, level: Level, within: str | None) -> Found | None:
        end = min(len(text), pos + self._max[level])
        for stop in range(end, pos + 1, -1):
            word = text[pos:stop]
            hit = self._pick(self._full[level].get(word, ()), within)
            if hit:
                return Found(hit, stop - pos)
            renamed = RENAMED.get(word)
            if renamed and (within is None or renamed[0].startswith(within)):
                new = self.by_code.get(renamed[0])
                if new is not None and new.level == level:
                    return Found(new, stop - pos, renamed_from=word)
            if level == "district" and word.endswith("县"):  # county -> district or county-level city
                for suf in ("区", "市"):
                    hit = self._pick(self._full[level].get(word[:-1] + suf, ()), within)
                    if hit:
                        return Found(hit, stop - pos, renamed_from=word)
        for stop in range(end, pos + 1, -1):
            word = text[pos:stop]
            if stop < len(text) and text[stop] in _NOT_AFTER_SHORT:
                continue
            hit = self._pick(self._short[level].get(word, ()), within)
            if hit:
                return Found(hit, stop - pos)
        return None

    @staticmethod
    def _pick(cands: list[Division] | tuple[()], within: str | None) -> Division | None:
        if within is not None:
            cands = [d for d in cands if d.code.startswith(within)]
        return cands[0] if len(cands) == 1 else None  # ambiguous without a parent: no guess
