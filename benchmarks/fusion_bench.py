"""Entity resolution: citybase fusion against Splink (as its docs configure it) and dedupe.

    python benchmarks/fusion_bench.py                       # every real set, all systems
    python benchmarks/fusion_bench.py --sets chicago,febrl4 --systems citybase,splink
    python benchmarks/fusion_bench.py --scale 1m             # + a ~1M-record sample city

Real sets (shared/data/entity_resolution, truth included): the Chicago early-childhood sites
(dedupe), FEBRL 1-3 (dedupe), FEBRL 4 (4a/4b link), Fodors-Zagats (link, 112 gold matches).
Pairwise figures count pairs put in one entity (link tasks: only pairs across the two sources);
cluster figures count entities reproduced exactly (Menestrina et al. 2010's exact-match cluster
P/R/F1, singletons included); B3 is the B-cubed F1 (per record, averaged). See
citybase.fusion.evaluate. Every system clusters at match probability 0.9. The scale run
resolves the sample city's person and enterprise records (citybase.sim at --scale) in a child
process, so that its peak RSS is its own.

Splink is configured from its own documentation: the FEBRL3 example (duckdb/febrl3) for FEBRL
1-3, the FEBRL4 example's detailed model for FEBRL 4; there are no Splink examples for the other
two, so they get the same recipe (name comparisons, Jaro-Winkler / Levenshtein on text, exact on
codes, prior from deterministic rules, u by sampling, EM per blocking rule). dedupe needs labelled
pairs (active learning); offline it is trained from truth-derived labels, which makes it a
*supervised* peer: its figures are marked so.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from citybase.fusion.benchsets import BenchSet, chicago, febrl, fodors_zagats
from citybase.fusion.evaluate import Scores, score
from citybase.fusion.features import uids
from citybase.fusion.resolve import resolve
from citybase.testing import shared_data

THRESHOLD = 0.9
Row = tuple[str, str, Scores | None, float, str]


def run_citybase(b: BenchSet) -> list[str]:
    res = resolve(b.records, b.rules)
    m = dict(zip(res.members["uid"].to_pylist(), res.members["entity_id"].to_pylist(), strict=True))
    return [m[u] for u in uids(b.records, b.rules).to_pylist()]


# -- Splink as its docs configure it ------------------------------------------------------------


def _splink_febrl(b: BenchSet) -> tuple[Any, list[Any], list[Any], list[Any], list[Any]]:
    import splink.comparison_library as cl
    from splink import block_on

    if b.name != "febrl4":  # docs/demos/examples/duckdb/febrl3
        blocking: list[Any] = [
            block_on(c) for c in ("soc_sec_id", "given_name", "surname", "date_of_birth", "postcode")
        ]
        comps = [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ]
        det = [
            block_on("soc_sec_id"),
            block_on("given_name", "surname", "date_of_birth"),
            "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
        ]
        return 0.9, blocking, comps, det, [block_on("date_of_birth"), block_on("postcode")]
    # docs/demos/examples/duckdb/febrl4, the detailed model
    blocking = [
        block_on("given_name", "surname"),
        "l.given_name = r.surname and l.surname = r.given_name",
        block_on("date_of_birth"),
        block_on("soc_sec_id"),
        block_on("state", "address_1"),
        block_on("street_number", "address_1"),
        block_on("postcode"),
    ]
    comps = [
        cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison(
            "date_of_birth", input_is_string=True, datetime_format="%Y%m%d", invalid_dates_as_null=True
        ),
        cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
        cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
        cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
    ]
    det = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
    return 0.8, blocking, comps, det, [block_on("date_of_birth"), block_on("postcode")]


def _splink_generic(b: BenchSet) -> tuple[Any, list[Any], list[Any], list[Any], list[Any]]:
    """The docs' recipe applied to sets without a Splink example (Chicago, Fodors-Zagats)."""
    import splink.comparison_library as cl
    from splink import block_on

    name, addr = ("name", "address") if b.name == "chicago" else ("name", "addr")
    comps = [
        cl.JaroWinklerAtThresholds(name, [0.92, 0.8]),
        cl.LevenshteinAtThresholds(addr, [1, 3]),
        cl.ExactMatch("phone"),
    ]
    comps.append(cl.ExactMatch("zip") if b.name == "chicago" else cl.ExactMatch("city"))
    blocking = [block_on("phone"), block_on(addr), block_on(name), block_on("substr(" + addr + ", 1, 5)")]
    det = [block_on(addr, name), block_on("phone")]
    return 0.8, blocking, comps, det, [block_on("phone"), block_on(addr), block_on(name)]


def _clean(b: BenchSet) -> pa.Table:
    """What the Splink examples do to the data: trim, lower-case text, strip punctuation."""
    con = duckdb.connect()
    t = b.records
    con.register("t", t)
    cols = ", ".join(
        f"nullif(trim(regexp_replace(lower(\"{c}\"), '[^a-z0-9 ]', ' ', 'g')), '') as \"{c}\""
        if c not in ("record_id", "source")
        else f'"{c}"'
        for c in t.column_names
    )
    out = con.sql(f"select source || '|' || record_id as uid, {cols} from t").arrow().read_all()
    con.close()
    return out


def run_splink(b: BenchSet) -> list[str]:
    import splink
    from splink import Linker, SettingsCreator

    recall, blocking, comps, det, em = (_splink_febrl if b.name.startswith("febrl") else _splink_generic)(b)
    data = _clean(b)
    con = duckdb.connect()
    db = splink.DuckDBAPI(connection=con)
    frames: Any
    if b.link:
        frames = [
            db.register(data.filter(pa.compute.equal(data["source"], s)), table_name=f"src_{i}")
            for i, s in enumerate(pa.compute.unique(data["source"]).to_pylist())
        ]
    else:
        frames = db.register(data)
    settings = SettingsCreator(
        unique_id_column_name="uid",
        link_type="link_only" if b.link else "dedupe_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=comps,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linker = Linker(frames, settings, log_level=logging.WARNING)
        linker.training.estimate_probability_two_random_records_match(det, recall=recall)
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
        for rule in em:
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(rule)
            except Exception as e:
                print(f"  splink EM on {rule} failed: {e}", file=sys.stderr)
        pred = linker.inference.predict(threshold_match_probability=0.2)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, THRESHOLD)
        cl_ = clusters.as_duckdbpyrelation().select("uid, cluster_id").arrow().read_all()
    m = dict(zip(cl_["uid"].to_pylist(), cl_["cluster_id"].to_pylist(), strict=True))
    con.close()
    return [m[u] for u in data["uid"].to_pylist()]


# -- dedupe (supervised from truth labels) ------------------------------------------------------


def run_dedupe(b: BenchSet, labels: int = 60) -> list[str]:
    import importlib

    dedupe: Any = importlib.import_module("dedupe")  # untyped API: TypedDicts of Mappings

    data = _clean(b)
    rows = data.to_pylist()
    fields = [c for c in data.column_names if c not in ("uid", "record_id", "source")]
    recs = {r["uid"]: {f: r[f] for f in fields} for r in rows}
    truth = dict(zip(uids(b.records, b.rules).to_pylist(), b.truth, strict=True))
    variables = [dedupe.variables.String(f, has_missing=True) for f in fields]
    rng = random.Random(1)
    by_truth: dict[str, list[str]] = {}
    for u, t in truth.items():
        by_truth.setdefault(t, []).append(u)
    groups = [g for g in by_truth.values() if len(g) > 1]
    keys = list(recs)
    if b.link:
        srcs = sorted({r["source"] for r in rows})
        left = {r["uid"]: recs[r["uid"]] for r in rows if r["source"] == srcs[0]}
        right = {r["uid"]: recs[r["uid"]] for r in rows if r["source"] == srcs[1]}
        match: list[Any] = []
        for g in rng.sample(groups, min(labels, len(groups))):
            ls, rs = [u for u in g if u in left], [u for u in g if u in right]
            if ls and rs:
                match.append((left[ls[0]], right[rs[0]]))
        distinct: list[Any] = []
        lk, rk = list(left), list(right)
        while len(distinct) < labels:
            a, c = rng.choice(lk), rng.choice(rk)
            if truth[a] != truth[c]:
                distinct.append((left[a], right[c]))
        linker = dedupe.RecordLink(variables, num_cores=1)
        linker.prepare_training(left, right, sample_size=5000)
        linker.mark_pairs({"match": match, "distinct": distinct})
        linker.train()
        pairs = linker.join(left, right, threshold=0.5)
        ent = {u: u for u in keys}
        for (a, c), _score in pairs:
            ent[c] = a
        return [ent[u] for u in data["uid"].to_pylist()]
    match = [(recs[g[0]], recs[g[1]]) for g in rng.sample(groups, min(labels, len(groups)))]
    distinct = []
    while len(distinct) < labels:
        a, c = rng.choice(keys), rng.choice(keys)
        if truth[a] != truth[c]:
            distinct.append((recs[a], recs[c]))
    d = dedupe.Dedupe(variables, num_cores=1)
    d.prepare_training(recs, sample_size=5000)
    d.mark_pairs({"match": match, "distinct": distinct})
    d.train()
    clusters = d.partition(recs, threshold=0.5)
    ent = {}
    for i, (members, _scores) in enumerate(clusters):
        for u in members:
            ent[u] = str(i)
    return [ent.get(u, u) for u in data["uid"].to_pylist()]


SYSTEMS: dict[str, Callable[[BenchSet], list[str]]] = {
    "citybase": run_citybase,
    "splink": run_splink,
    "dedupe": run_dedupe,
}


def load_set(name: str, root: Path) -> BenchSet:
    if name == "chicago":
        return chicago(root)
    if name == "fodors_zagats":
        return fodors_zagats(root)
    return febrl(root, name.removeprefix("febrl"))


# -- the ~1M-record sample city -------------------------------------------------------------------


def scale_run(folder: Path) -> dict[str, Any]:
    """Resolve the sample city's people and firms (in the child process); figures as JSON."""
    from citybase.fusion import sample

    out: dict[str, Any] = {"phases": {}}
    t0 = time.perf_counter()
    ctx = sample.address_context(folder)
    out["phases"]["divisions+reference"] = time.perf_counter() - t0
    truth = sample.truth(folder)
    n = 0
    for recs, rules in (
        (sample.people(folder), sample.PERSON_RULES),
        (sample.enterprises(folder), sample.ENTERPRISE_RULES),
    ):
        t = time.perf_counter()
        state: list[Any] = [t, None]  # when the current phase began, and its name

        def phase(name: str, kind: str = rules.entity_type, state: list[Any] = state) -> None:
            now = time.perf_counter()
            if state[1] is not None:  # the phase that just ended, with its duration
                out["phases"][f"{kind}: {state[1]}"] = now - state[0]
            state[0], state[1] = now, name

        res = resolve(recs, rules, addresses=ctx, progress=phase)
        phase("end")
        m = dict(zip(res.members["uid"].to_pylist(), res.members["entity_id"].to_pylist(), strict=True))
        us = uids(recs, rules).to_pylist()
        s = score([m[u] for u in us], [truth[u] for u in us])
        out[rules.entity_type] = {
            "records": recs.num_rows,
            "seconds": time.perf_counter() - t,
            "scores": s.__dict__,
        }
        n += recs.num_rows
    out["records"] = n
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


SCALES = {
    "tiny": {"people": 300, "enterprises": 60, "buildings": 300},
    "default": {},
    "1m": {"people": 600_000, "enterprises": 50_000, "buildings": 20_000},
}


def make_city(scale: str, folder: Path) -> None:
    from citybase.sim import SimScale, simulate

    extra = {
        "hotline_events": 10,
        "aq_stations": 1,
        "traffic_detectors": 1,
        "series_days": 1,
        "vehicles": 1,
        "track_minutes": 1,
    }
    simulate(folder, scale=SimScale(**{**extra, **SCALES[scale]}) if scale != "tiny" else SimScale.tiny())


def one(name: str, system: str) -> dict[str, Any]:
    """One system on one set (in a child process: its own peak RSS, and a cap on its memory)."""
    root = shared_data()
    assert root is not None
    b = load_set(name, root)
    t = time.perf_counter()
    pred = SYSTEMS[system](b)
    secs = time.perf_counter() - t
    s = score(pred, b.truth, b.records["source"].to_pylist() if b.link else None)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"scores": s.__dict__, "seconds": secs, "peak_rss_mb": rss}


def one_in_child(name: str, system: str, memory_gb: float, timeout: int) -> Row:
    def cap() -> None:  # a peer that runs away (dedupe took 22 GB on FEBRL 2) must not take the machine
        lim = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, system],
            capture_output=True, text=True, timeout=timeout, preexec_fn=cap,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return (name, system, None, time.perf_counter() - t, f"gave up after {timeout} s")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return (name, system, None, time.perf_counter() - t, f"failed: {last}"[:100])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    note = "supervised, 60+60 truth labels; " if system == "dedupe" else ""
    return (
        name,
        system,
        Scores(**out["scores"]),
        out["seconds"],
        f"{note}peak RSS {out['peak_rss_mb']:.0f} MB",
    )


HEADS = ("pairP", "pairR", "pairF1", "clP", "clR", "clF1", "B3F1")


def _print_row(row: Row) -> None:
    name, system, sc, secs, note = row
    vals = (
        [None] * len(HEADS)
        if sc is None
        else [sc.pair_p, sc.pair_r, sc.pair_f1, sc.cluster_p, sc.cluster_r, sc.cluster_f1, sc.b3_f1]
    )
    print(f"{name:<28} {system:<9} {' '.join(fmt(v) for v in vals)} {secs:7.1f}  {note}", flush=True)


def fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="chicago,febrl1,febrl2,febrl3,febrl4,fodors_zagats")
    ap.add_argument("--systems", default="citybase,splink,dedupe")
    ap.add_argument("--scale", choices=sorted(SCALES), help="also resolve a sample city of this size")
    ap.add_argument("--sim-dir", type=Path, help="reuse (or write) the sample city here")
    ap.add_argument("--memory-gb", type=float, default=8.0, help="address-space cap of each run (GB)")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds before a run is given up")
    ap.add_argument("--scale-run", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=2, metavar=("SET", "SYSTEM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.scale_run:
        print(json.dumps(scale_run(args.scale_run)))
        return
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    root = shared_data()
    rows: list[Row] = []
    sets = [s for s in args.sets.split(",") if s]
    if sets and root is None:
        print("shared/data is absent: real sets skipped", file=sys.stderr)
        sets = []
    print(f"{'dataset':<28} {'system':<9} " + " ".join(f"{h:>6}" for h in HEADS) + f" {'time s':>7}  note")
    for name in sets:
        for system in args.systems.split(","):
            rows.append(one_in_child(name, system, args.memory_gb, args.timeout))
            _print_row(rows[-1])
    scale_out = None
    if args.scale:
        folder = args.sim_dir or Path(tempfile.mkdtemp(prefix="citybase-fusion-"))
        if not (folder / "manifest.json").is_file():
            t = time.perf_counter()
            make_city(args.scale, folder)
            print(f"  sample city written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        proc = subprocess.run(
            [sys.executable, __file__, "--scale-run", str(folder)], capture_output=True, text=True, check=True
        )
        scale_out = json.loads(proc.stdout.strip().splitlines()[-1])
        for kind in ("person", "enterprise"):
            k = scale_out[kind]
            rows.append(
                (
                    f"sim-{args.scale} {kind} ({k['records']:,})",
                    "citybase",
                    Scores(**k["scores"]),
                    k["seconds"],
                    "",
                )
            )
    print(f"\n{'dataset':<28} {'system':<9} " + " ".join(f"{h:>6}" for h in HEADS) + f" {'time s':>7}  note")
    for row in rows:
        _print_row(row)
    print(
        "\npair: pairs of records in one entity; cl: entities reproduced exactly (Menestrina et al."
        " 2010, singletons included); B3: B-cubed F1"
    )
    if scale_out:
        print(
            f"\nsample city: {scale_out['records']:,} records resolved in {scale_out['seconds']:.1f} s wall"
            f" ({scale_out['cpu_seconds']:.1f} s CPU), peak RSS {scale_out['peak_rss_mb']:.0f} MB"
        )
        for k, v in scale_out["phases"].items():
            print(f"  {k:<40} {v:7.1f} s")


if __name__ == "__main__":
    main()
