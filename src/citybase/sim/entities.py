"""The true people and enterprises of the sample city: what the department records describe.

These are the ground truth of fusion. Departments only ever see variants of them (records.py);
the true entity ids are written to out/truth/, never into the data files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from citybase.sim.buildings import USES, Buildings
from citybase.sim.ids import credit_codes, id_numbers, mobile_numbers
from citybase.sim.rand import F64, I64, Bool, pick, stream, weighted_choice
from citybase.sim.vocab import STR, Str, vocab, words

TODAY = np.datetime64("2025-03-01", "D")
# Birthplace codes of residents registered elsewhere (Hebei, Shandong, Henan, ... capitals' districts).
_ELSEWHERE = np.array([130102, 130602, 370102, 410105, 210102, 510107, 420106, 140105, 230103, 320102,
                       120101, 340104, 360102, 430102, 610102], dtype=np.int64)  # fmt: skip


def _entity_ids(prefix: str, n: int) -> Str:
    out: Str = np.strings.add(prefix, np.strings.zfill(np.arange(1, n + 1).astype(STR), 7))
    return out


@dataclass(frozen=True)
class People:
    entity_id: Str
    sur: I64
    g1: I64
    g2: I64  # -1: a two-character name
    male: Bool
    birth: NDArray[np.datetime64]
    ethnicity: I64
    id_number: Str
    phone: Str
    has_phone: Bool  # children have none
    building: I64  # home: index into the buildings
    unit: I64
    room: I64  # floor * 100 + door, e.g. 1502

    @property
    def age(self) -> I64:
        out: I64 = ((TODAY - self.birth).astype(np.int64) / 365.25).astype(np.int64)
        return out


def build_people(n: int, buildings: Buildings, district_codes: Str, seed: int) -> People:
    rng = stream(seed, "people")
    v = vocab()
    s_w = (1.0 / (np.arange(len(v.surnames)) + 3.0)).astype(np.float64)
    sur = pick(rng, n, s_w)
    g1 = rng.integers(0, len(v.given), n)
    g2 = np.where(rng.random(n) < 0.72, rng.integers(0, len(v.given), n), -1)
    male = rng.random(n) < 0.51
    # A city pyramid: few children, a bulge of working age, a long tail of the old.
    ages = np.arange(96)
    age_w = np.interp(ages, [0, 18, 25, 35, 50, 60, 75, 95], [0.6, 0.7, 1.3, 1.5, 1.2, 1.0, 0.6, 0.05])
    age = pick(rng, n, age_w.astype(np.float64))
    birth = TODAY - (age * 365.25 + rng.uniform(0, 365, n)).astype("timedelta64[D]")
    residential = np.flatnonzero(buildings.use == 0)
    floors = buildings.frame["floors"].to_numpy()
    home = residential[pick(rng, n, floors[residential].astype(np.float64))]
    unit = rng.integers(1, 7, n)
    room = rng.integers(1, floors[home] + 1) * 100 + rng.integers(1, 5, n)
    local = rng.random(n) < 0.78
    region = np.where(
        local,
        district_codes[buildings.district[home]].astype(np.int64),
        _ELSEWHERE[rng.integers(0, len(_ELSEWHERE), n)],
    )
    ids = id_numbers(region, birth, rng.integers(0, 500, n), male)
    ethnicity = pick(rng, n, v.raw["ethnicity_weights"])
    return People(
        entity_id=_entity_ids("P", n),
        sur=sur,
        g1=g1,
        g2=g2,
        male=male,
        birth=birth,
        ethnicity=ethnicity,
        id_number=ids,
        phone=mobile_numbers(rng, n),
        has_phone=age >= 14,
        building=home,
        unit=unit,
        room=room,
    )


@dataclass(frozen=True)
class Enterprises:
    entity_id: Str
    word: Str  # trade name (字号)
    industry: Str
    form: Str  # legal form
    uscc: Str
    legal_person: I64  # index into People
    building: I64  # registered at: index into the buildings
    floor: I64
    room: I64
    established: NDArray[np.datetime64]
    capital: F64  # registered capital, 10k CNY
    polluting: Bool

    @property
    def name(self) -> Str:
        out: Str = np.strings.add(np.strings.add(np.strings.add("北京", self.word), self.industry), self.form)
        return out


def build_enterprises(
    n: int, people: People, buildings: Buildings, district_codes: Str, seed: int
) -> Enterprises:
    rng = stream(seed, "enterprises")
    v = vocab()
    industries = v.array("industries")
    industry = industries[rng.integers(0, len(industries), n)]
    forms = v.array("legal_forms")
    form = forms[pick(rng, n, v.raw["legal_form_weights"])]
    use = buildings.use
    fit = np.isin(use, [USES.index("office"), USES.index("commercial"), USES.index("industrial")])
    host_w = np.where(fit, buildings.frame["floors"].to_numpy(np.float64) + 2, 0.0)
    building = pick(rng, n, host_w)
    adults = np.flatnonzero((people.age >= 25) & (people.age <= 70))
    legal = adults[weighted_choice(rng, np.ones(len(adults)), min(n, len(adults)))]
    if len(legal) < n:  # a tiny city has more firms than adults: some run several
        legal = np.resize(legal, n)
    floors = buildings.frame["floors"].to_numpy()[building]
    floor = rng.integers(1, floors + 1)
    region = district_codes[buildings.district[building]].astype(np.int64)
    established = np.datetime64("1993-01-01") + rng.integers(0, 11_700, n).astype("timedelta64[D]")
    capital: F64 = np.round(np.exp(rng.normal(5.5, 1.6, n)), 2).astype(np.float64)
    polluting = np.isin(industry, v.array("polluting")) & (rng.random(n) < 0.8)
    return Enterprises(
        entity_id=_entity_ids("E", n),
        word=words(rng, n),
        industry=industry,
        form=form,
        uscc=credit_codes(region, rng),
        legal_person=legal,
        building=building,
        floor=floor,
        room=floor * 100 + rng.integers(1, 20, n),
        established=established,
        capital=capital,
        polluting=polluting,
    )
