"""Department records: the same people, firms and buildings as six departments hold them.

Public security keeps the clean master register of residents; social security, civil affairs,
market regulation, eco-environment and housing each hold their own copy, with the variations real
copies have (typos, traditional characters, missing fields, other phone and address forms, jittered
coordinates). Record order is shuffled and record ids are the department's own, so nothing in a data
file gives the true entity away: that goes to the truth tables only.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from citybase.sim import variants as var
from citybase.sim.declare import F, Output, Truth, link, spec, truth
from citybase.sim.entities import TODAY
from citybase.sim.rand import I64, Bool, Times, pick, stream
from citybase.sim.vocab import STR, Str, translate, vocab
from citybase.sim.world import World

_HUKOU_REFORM = np.datetime64("1985-07-01")  # resident identity cards from here on
_PERSONAL_NOTE = "personal data: masked when shared"


def _ids(prefix: str, n: int) -> Str:
    out: Str = np.strings.add(prefix, np.strings.zfill(np.arange(1, n + 1).astype(STR), 8))
    return out


def _take(rng: np.random.Generator, mask: Bool) -> I64:
    """The selected entity indices in a shuffled order (departments sort by their own keys)."""
    idx = np.flatnonzero(mask)
    out: I64 = rng.permutation(idx)
    return out


def _opt(values: Str, missing: Bool) -> pa.Array:
    return pa.array(values.astype(object), pa.string(), mask=missing)


def _dates(d: Times) -> pa.Array:
    return pa.array(d.astype("datetime64[D]"), pa.date32())


def _between(rng: np.random.Generator, lo: Times) -> Times:
    """A day between `lo` and TODAY, uniformly."""
    span = np.maximum((TODAY - lo).astype(np.int64), 1)
    out: Times = lo + (rng.random(len(lo)) * span).astype("timedelta64[D]")
    return out


def _person_address(w: World, who: I64, rng: np.random.Generator, mess: float) -> Str:
    p, b = w.people, w.buildings
    home = p.building[who]
    u, r = p.unit[who].astype(STR), p.room[who].astype(STR)
    districts = w.admin.districts["name"].to_numpy(dtype=STR)
    return var.addresses(
        district=districts[b.district[home]],
        district_short=w.admin.district_short[b.district[home]],
        street=w.street_of_building()[home],
        road=b.road[home],
        number=b.number[home],
        building_name=b.frame["name"].to_numpy(dtype=STR)[home],
        tails=[
            var.join(u, "单元", r, "室"),
            var.join(u, "单元", r),
            var.join("-", u, "-", r),
            var.join(u, "门", r),
        ],
        tail_p=[0.45, 0.25, 0.2, 0.1],
        rng=rng,
        mess=mess,
    )


def _firm_address(w: World, firm: I64, rng: np.random.Generator, mess: float) -> Str:
    e, b = w.enterprises, w.buildings
    at = e.building[firm]
    fl, rm = e.floor[firm].astype(STR), e.room[firm].astype(STR)
    districts = w.admin.districts["name"].to_numpy(dtype=STR)
    return var.addresses(
        district=districts[b.district[at]],
        district_short=w.admin.district_short[b.district[at]],
        street=w.street_of_building()[at],
        road=b.road[at],
        number=b.number[at],
        building_name=b.frame["name"].to_numpy(dtype=STR)[at],
        tails=[
            var.join(fl, "层", rm, "室"),
            var.join(rm, "室"),
            var.join(fl, "楼", rm),
            np.full(len(at), "", dtype=STR),
        ],
        tail_p=[0.4, 0.3, 0.2, 0.1],
        rng=rng,
        mess=mess,
    )


def _names(w: World, who: I64, rng: np.random.Generator, mess: float) -> Str:
    p = w.people
    return var.person_names(p.sur[who], p.g1[who], p.g2[who], rng, mess)


def _building_codes(w: World, idx: I64) -> Str:
    out: Str = w.buildings.frame["code"].to_numpy(dtype=STR)[idx]
    return out


def ps_residents(w: World) -> tuple[Output, Truth]:
    """Public security's resident register: the cleanest copy, the one others are matched to."""
    rng = stream(w.seed, "records", "ps")
    p = w.people
    who = _take(rng, rng.random(len(p.sur)) < 0.96)
    n = len(who)
    rid = _ids("GA", n)
    missing_phone = ~p.has_phone[who] | (rng.random(n) < 0.03)
    table = pa.table(
        {
            "record_id": rid.astype(object),
            "name": _names(w, who, rng, 0.15).astype(object),
            "gender": np.where(p.male[who], "男", "女").astype(object),
            "ethnicity": vocab().array("ethnicities")[p.ethnicity[who]].astype(object),
            "birth_date": _dates(p.birth[who]),
            "id_number": p.id_number[who].astype(object),
            "phone": _opt(var.phones(p.phone[who], rng, 0.1), missing_phone),
            "address": _person_address(w, who, rng, 0.1).astype(object),
            "registered_on": _dates(_between(rng, np.maximum(p.birth[who] + 30, _HUKOU_REFORM))),
        }
    )
    sp = spec(
        name="ps_residents",
        title="常住人口登记",
        description="Registered residents, as the public-security population register holds them.",
        department="public-security",
        system="population-registry",
        kind="records",
        fields=[
            F("record_id", required=True, description="register's own record number"),
            F("name", personal="name", required=True, description=_PERSONAL_NOTE),
            F("gender", enum=["男", "女"]),
            F("ethnicity"),
            F("birth_date", "date"),
            F("id_number", personal="id_number", required=True, description="GB 11643 identity number"),
            F("phone", personal="phone"),
            F("address", personal="address", description="registered residence"),
            F("registered_on", "date"),
        ],
        time_field="registered_on",
        address_field="address",
        key=["record_id"],
        sharing="conditional",
        update_cycle="daily",
    )
    out = Output(sp, table, "data/ps_residents.parquet", "parquet")
    links = link("ps_residents", rid, "address", "building", _building_codes(w, p.building[who]))
    return out, Truth(truth("ps_residents", rid, "person", p.entity_id[who]), links)


def hrss_insured(w: World) -> tuple[Output, Truth]:
    """Social security's insured persons, with the employer as the employer reported it."""
    rng = stream(w.seed, "records", "hrss")
    p, e = w.people, w.enterprises
    age = p.age
    chance = np.where(age < 18, 0.0, np.where(age <= 65, 0.75, 0.5))
    who = _take(rng, rng.random(len(age)) < chance)
    n = len(who)
    rid = _ids("SB", n)
    employed = (age[who] <= 60) & (rng.random(n) < 0.7)
    firm = rng.integers(0, len(e.word), n)
    employer = var.enterprise_names(e.word[firm], e.industry[firm], e.form[firm], rng, 1.0)
    ids = p.id_number[who]
    ids = np.where(rng.random(n) < 0.3, np.strings.replace(ids, "X", "x"), ids).astype(STR)
    types = vocab().array("insurance_types")
    # employees: the employees' pension; others: the residents' pension, a few only unemployment or injury
    insurance = np.where(employed, 0, np.where(rng.random(n) < 0.8, 1, 2 + rng.integers(0, 2, n)))
    table = pa.table(
        {
            "record_id": rid.astype(object),
            "name": _names(w, who, rng, 1.0).astype(object),
            "id_number": _opt(ids, rng.random(n) < 0.04),
            "phone": _opt(var.phones(p.phone[who], rng, 1.0), ~p.has_phone[who] | (rng.random(n) < 0.08)),
            "address": _opt(_person_address(w, who, rng, 1.0), rng.random(n) < 0.05),
            "employer": _opt(employer, ~employed),
            "insurance_type": types[insurance].astype(object),
            "insured_since": _dates(
                _between(rng, np.maximum(p.birth[who] + 18 * 365, np.datetime64("1995-01-01")))
            ),
        }
    )
    sp = spec(
        name="hrss_insured",
        title="社会保险参保人员",
        description="Persons insured by the social-insurance system, with the employer as reported.",
        department="hrss",
        system="social-insurance",
        kind="records",
        fields=[
            F("record_id", required=True),
            F("name", personal="name", required=True),
            F("id_number", personal="id_number"),
            F("phone", personal="phone"),
            F("address", personal="address"),
            F("employer", description="employer's name as the employer reported it"),
            F("insurance_type", enum=types.tolist()),
            F("insured_since", "date"),
        ],
        time_field="insured_since",
        address_field="address",
        key=["record_id"],
        update_cycle="monthly",
    )
    out = Output(sp, table, "data/hrss_insured.parquet", "parquet")
    links = pa.concat_tables(
        [
            link("hrss_insured", rid, "address", "building", _building_codes(w, p.building[who])),
            link("hrss_insured", rid[employed], "employer", "enterprise", e.entity_id[firm[employed]]),
        ]
    )
    return out, Truth(truth("hrss_insured", rid, "person", p.entity_id[who]), links)


def civil_assistance(w: World) -> tuple[Output, Truth]:
    """Civil affairs' social assistance, exported as CSV with slashed dates (declared by `format`)."""
    rng = stream(w.seed, "records", "civil")
    p = w.people
    age = p.age
    who = _take(rng, rng.random(len(age)) < np.where(age >= 70, 0.35, np.where(age >= 18, 0.03, 0.0)))
    n = len(who)
    rid = _ids("MZ", n)
    kinds = vocab().array("assistance_types")
    kind = np.where(age[who] >= 80, 1, pick(rng, n, [0.45, 0.1, 0.25, 0.1, 0.1]))
    amount = np.array([1395.0, 500.0, 300.0, 1200.0, 2093.0])[kind] * rng.choice([0.5, 1.0], n, p=[0.3, 0.7])
    approved = TODAY - rng.integers(10, 2500, n).astype("timedelta64[D]")
    approved_txt = np.strings.replace(np.datetime_as_string(approved, unit="D").astype(STR), "-", "/")
    table = pa.table(
        {
            "record_id": rid.astype(object),
            "applicant_name": _names(w, who, rng, 1.0).astype(object),
            "id_card_no": _opt(p.id_number[who], rng.random(n) < 0.03),
            "contact_phone": _opt(
                var.phones(p.phone[who], rng, 1.0), ~p.has_phone[who] | (rng.random(n) < 0.15)
            ),
            "home_address": _person_address(w, who, rng, 1.0).astype(object),
            "assistance_type": kinds[kind].astype(object),
            "monthly_amount": pa.array(np.round(amount, 2), pa.float64()),
            "approved_on": approved_txt.astype(object),
        }
    )
    sp = spec(
        name="civil_assistance",
        title="社会救助对象",
        description="Recipients of social assistance and old-age allowances (civil affairs).",
        department="civil-affairs",
        system="social-assistance",
        kind="records",
        fields=[
            F("record_id", required=True),
            F("applicant_name", personal="name", required=True),
            F("id_card_no", personal="id_number"),
            F("contact_phone", personal="phone"),
            F("home_address", personal="address"),
            F("assistance_type", enum=kinds.tolist()),
            F("monthly_amount", "float", unit="CNY", min=0),
            F("approved_on", "date", format="%Y/%m/%d"),
        ],
        time_field="approved_on",
        address_field="home_address",
        key=["record_id"],
        sharing="conditional",
        update_cycle="monthly",
    )
    out = Output(sp, table, "data/civil_assistance.csv", "csv")
    links = link("civil_assistance", rid, "home_address", "building", _building_codes(w, p.building[who]))
    return out, Truth(truth("civil_assistance", rid, "person", p.entity_id[who]), links)


def market_enterprises(w: World) -> tuple[Output, Truth]:
    """Market regulation's enterprise register: the master copy of firms."""
    rng = stream(w.seed, "records", "market")
    e, p = w.enterprises, w.people
    firm = _take(rng, np.ones(len(e.word), dtype=bool))
    n = len(firm)
    rid = _ids("SC", n)
    v = vocab()
    status = v.array("enterprise_status")[pick(rng, n, v.raw["enterprise_status_weights"])]
    table = pa.table(
        {
            "record_id": rid.astype(object),
            "enterprise_name": var.enterprise_names(
                e.word[firm], e.industry[firm], e.form[firm], rng, 0.05
            ).astype(object),
            "uscc": e.uscc[firm].astype(object),
            "legal_person": _names(w, e.legal_person[firm], rng, 0.2).astype(object),
            "registered_address": _firm_address(w, firm, rng, 0.15).astype(object),
            "established_on": _dates(e.established[firm]),
            "registered_capital": pa.array(e.capital[firm], pa.float64()),
            "industry": e.industry[firm].astype(object),
            "status": status.astype(object),
        }
    )
    sp = spec(
        name="market_enterprises",
        title="企业登记信息",
        description="Registered enterprises with their unified social credit codes (market regulation).",
        department="market-regulation",
        system="enterprise-registry",
        kind="records",
        fields=[
            F("record_id", required=True),
            F("enterprise_name", required=True),
            F("uscc", required=True, description="GB 32100 unified social credit code"),
            F("legal_person", personal="name"),
            F("registered_address"),
            F("established_on", "date"),
            F("registered_capital", "float", unit="10k CNY", min=0),
            F("industry"),
            F("status", enum=v.array("enterprise_status").tolist()),
        ],
        time_field="established_on",
        address_field="registered_address",
        key=["record_id"],
        sharing="unconditional",
        update_cycle="daily",
    )
    out = Output(sp, table, "data/market_enterprises.parquet", "parquet")
    links = pa.concat_tables(
        [
            link("market_enterprises", rid, "legal_person", "person", p.entity_id[e.legal_person[firm]]),
            link(
                "market_enterprises",
                rid,
                "registered_address",
                "building",
                _building_codes(w, e.building[firm]),
            ),
        ]
    )
    return out, Truth(truth("market_enterprises", rid, "enterprise", e.entity_id[firm]), links)


def eco_pollutant_permits(w: World) -> tuple[Output, Truth]:
    """Eco-environment's pollutant discharge permits: short names, codes often left out, facility points."""
    rng = stream(w.seed, "records", "eco")
    e, p, b = w.enterprises, w.people, w.buildings
    firm = _take(rng, e.polluting)
    n = len(firm)
    rid = _ids("HB", n)
    jitter = rng.normal(0, 25.0, (n, 2))
    lon, lat = w.frame.to_lonlat(
        b.centroid[e.building[firm], 0] + jitter[:, 0], b.centroid[e.building[firm], 1] + jitter[:, 1]
    )
    letters = np.array(list("VPUWQ"), dtype=STR)
    permit = var.join(
        e.uscc[firm], np.strings.zfill(rng.integers(1, 4, n).astype(STR), 3), letters[rng.integers(0, 5, n)]
    )
    types = vocab().array("permit_types")
    table = pa.table(
        {
            "record_id": rid.astype(object),
            "permit_no": permit.astype(object),
            "unit_name": var.enterprise_names(e.word[firm], e.industry[firm], e.form[firm], rng, 1.0).astype(
                object
            ),
            "uscc": _opt(e.uscc[firm], rng.random(n) < 0.2),
            "legal_person": _opt(_names(w, e.legal_person[firm], rng, 1.0), rng.random(n) < 0.1),
            "address": _firm_address(w, firm, rng, 1.0).astype(object),
            "longitude": pa.array(np.round(lon, 6), pa.float64()),
            "latitude": pa.array(np.round(lat, 6), pa.float64()),
            "industry": e.industry[firm].astype(object),
            "permit_type": types[pick(rng, n, [0.2, 0.5, 0.3])].astype(object),
            "valid_until": _dates(TODAY + rng.integers(-200, 1800, n).astype("timedelta64[D]")),
        }
    )
    sp = spec(
        name="eco_pollutant_permits",
        title="排污许可信息",
        description="Pollutant discharge permits and the permitted facilities' locations (eco-environment).",
        department="eco-env",
        system="pollutant-permits",
        kind="records",
        fields=[
            F("record_id", required=True),
            F("permit_no", required=True),
            F("unit_name", required=True, description="permit holder as written on the permit"),
            F("uscc"),
            F("legal_person", personal="name"),
            F("address"),
            F("longitude", "float", unit="degree", min=-180, max=180),
            F("latitude", "float", unit="degree", min=-90, max=90),
            F("industry"),
            F("permit_type", enum=types.tolist()),
            F("valid_until", "date"),
        ],
        time_field="valid_until",
        geometry={"lon": "longitude", "lat": "latitude"},
        address_field="address",
        key=["record_id"],
        sharing="unconditional",
        update_cycle="monthly",
    )
    out = Output(sp, table, "data/eco_pollutant_permits.csv", "csv")
    links = pa.concat_tables(
        [
            link("eco_pollutant_permits", rid, "legal_person", "person", p.entity_id[e.legal_person[firm]]),
            link("eco_pollutant_permits", rid, "address", "building", _building_codes(w, e.building[firm])),
        ]
    )
    return out, Truth(truth("eco_pollutant_permits", rid, "enterprise", e.entity_id[firm]), links)


def housing_buildings(w: World) -> tuple[Output, Truth]:
    """Housing's building register: names and addresses as surveyed, points a few metres off."""
    rng = stream(w.seed, "records", "housing")
    b = w.buildings
    nb = len(b.use)
    which = _take(rng, rng.random(nb) < 0.92)
    n = len(which)
    rid = _ids("ZJ", n)
    v = vocab()
    name = b.frame["name"].to_numpy(dtype=STR)[which]
    name = var.traditional(name, rng.random(n) < 0.03)
    typo = var.join(
        np.strings.slice(name, 0, 1),
        translate(np.strings.slice(name, 1, 2), v.typo),
        np.strings.slice(name, 2, None),
    )
    name = np.where(rng.random(n) < 0.03, typo, name).astype(STR)
    districts = w.admin.districts["name"].to_numpy(dtype=STR)
    address = var.addresses(
        district=districts[b.district[which]],
        district_short=w.admin.district_short[b.district[which]],
        street=w.street_of_building()[which],
        road=b.road[which],
        number=b.number[which],
        building_name=name,
        tails=[np.full(n, "", dtype=STR)],
        tail_p=[1.0],
        rng=rng,
        mess=0.8,
    )
    floors = b.frame["floors"].to_numpy()[which] + np.where(rng.random(n) < 0.03, rng.choice([-1, 1], n), 0)
    off = rng.normal(0, 8.0, (n, 2))
    lon, lat = w.frame.to_lonlat(b.centroid[which, 0] + off[:, 0], b.centroid[which, 1] + off[:, 1])
    uses = np.array(
        [
            v.raw["use_zh"][u]
            for u in ("residential", "office", "commercial", "industrial", "education", "health", "public")
        ],
        dtype=STR,
    )
    structures = v.array("structures")
    table = pa.table(
        {
            "record_id": rid.astype(object),
            "building_name": name.astype(object),
            "address": address.astype(object),
            "floors": pa.array(floors, pa.int64(), mask=rng.random(n) < 0.05),
            "use": uses[b.use[which]].astype(object),
            "structure": structures[pick(rng, n, [0.55, 0.25, 0.1, 0.1])].astype(object),
            "year_built": pa.array(b.frame["year_built"].to_numpy()[which], pa.int64()),
            "longitude": pa.array(np.round(lon, 7), pa.float64()),
            "latitude": pa.array(np.round(lat, 7), pa.float64()),
        }
    )
    sp = spec(
        name="housing_buildings",
        title="房屋建筑信息",
        description="Buildings as the housing department surveyed them; points are a few metres off.",
        department="housing",
        system="building-registry",
        kind="records",
        fields=[
            F("record_id", required=True),
            F("building_name"),
            F("address"),
            F("floors", "int", min=1, max=120),
            F("use", enum=uses.tolist()),
            F("structure", enum=structures.tolist()),
            F("year_built", "int", min=1900, max=2030),
            F("longitude", "float", unit="degree", min=-180, max=180),
            F("latitude", "float", unit="degree", min=-90, max=90),
        ],
        geometry={"lon": "longitude", "lat": "latitude"},
        address_field="address",
        key=["record_id"],
        sharing="unconditional",
        update_cycle="quarterly",
    )
    out = Output(sp, table, "data/housing_buildings.parquet", "parquet")
    codes = _building_codes(w, which)
    empty = link("housing_buildings", rid[:0], "address", "building", codes[:0])
    return out, Truth(truth("housing_buildings", rid, "building", codes), empty)


ALL = (
    ps_residents,
    hrss_insured,
    civil_assistance,
    market_enterprises,
    eco_pollutant_permits,
    housing_buildings,
)
