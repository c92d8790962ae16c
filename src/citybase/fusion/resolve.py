"""`resolve`: department records -> city entities with stable ids, golden records and pairs.

Splink (DuckDB backend) does the Fellegi-Sunter part: blocking, u by random sampling, m by EM
without labels, scoring. We add what a city needs around it: normalised Chinese fields, the review
band and its decisions, clustering with those decisions, stable ids across runs, incremental
additions scored against the stored model, and golden records with provenance.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybase.errors import InputError, MissingDependency
from citybase.fusion.cluster import constrained_components, separate
from citybase.fusion.features import (
    UID,
    AddressContext,
    comparisons,
    exclusive_conflicts,
    prepare,
    uids,
)
from citybase.fusion.golden import golden_records
from citybase.fusion.review import ReviewQueue, _ordered
from citybase.fusion.rules import BlockingRule, MatchRules
from citybase.fusion.store import EntityStore

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
PAIR_COLUMNS = ["uid_l", "uid_r", "match_probability", "match_weight"]


@dataclass
class Resolution:
    """The result of one run for one entity type; every table is Arrow.

    - `members`: uid, entity_id (record -> entity link, the provenance of every entity)
    - `entities`: entity_id, entity_type, size, sources
    - `pairs`: scored candidate pairs at or above the review threshold, with `decision`
    - `review`: the pending pairs of the uncertain band
    - `golden` / `provenance`: best values per entity, and where each came from
    - `prepared`: the normalised records (address keys, coordinates) that links use
    """

    entity_type: str
    members: pa.Table
    entities: pa.Table
    pairs: pa.Table
    review: pa.Table
    golden: pa.Table
    provenance: pa.Table
    prepared: pa.Table
    model: dict[str, Any]

    def save(self, folder: str | Path) -> Path:
        """Write the tables as Parquet under folder/<entity_type>/ (the lake picks them up there)."""
        out = Path(folder) / self.entity_type
        out.mkdir(parents=True, exist_ok=True)
        for name in ("members", "entities", "pairs", "golden", "provenance"):
            pq.write_table(getattr(self, name), out / f"{name}.parquet")
        return out


def _splink() -> Any:
    try:
        import splink
    except ImportError as e:  # pragma: no cover - splink is a dependency of the fusion box
        raise MissingDependency("entity resolution needs splink: pip install 'splink==5.0.0'") from e
    return splink


def _block(rule: BlockingRule) -> Any:
    from splink import block_on

    return rule if isinstance(rule, str) else block_on(*rule)


def _settings(rules: MatchRules) -> Any:
    from splink import SettingsCreator

    return SettingsCreator(
        unique_id_column_name=UID,
        link_type=rules.link_type,
        blocking_rules_to_generate_predictions=[_block(b) for b in rules.blocking],
        comparisons=comparisons(rules),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def _frames(db_api: Any, prepared: pa.Table, rules: MatchRules) -> Any:
    """One registered frame (dedupe) or one per source (linking), as Splink wants them."""
    if rules.link_type == "dedupe_only":
        return db_api.register(
            prepared.drop_columns(["source_dataset"])
            if "source_dataset" in prepared.column_names
            else prepared
        )
    if "source_dataset" not in prepared.column_names:
        raise InputError(f"link_type {rules.link_type} needs a source column ({rules.source!r})")
    frames = []
    for i, s in enumerate(pc.unique(prepared["source_dataset"]).to_pylist()):
        part = prepared.filter(pc.equal(prepared["source_dataset"], s)).drop_columns(["source_dataset"])
        frames.append(db_api.register(part, table_name=f"source_{i}"))
    return frames


def _pairs(pred: Any) -> pa.Table:
    t = pred.as_duckdbpyrelation().select(", ".join(PAIR_COLUMNS)).arrow().read_all()
    return t.cast(
        pa.schema(
            [
                ("uid_l", pa.string()),
                ("uid_r", pa.string()),
                ("match_probability", pa.float64()),
                ("match_weight", pa.float64()),
            ]
        )
    )


def train_and_score(
    prepared: pa.Table, rules: MatchRules, *, seed: int = 42
) -> tuple[pa.Table, dict[str, Any]]:
    """Train m/u without labels, score the blocked pairs; pairs >= review threshold, and the model."""
    splink = _splink()
    con = duckdb.connect()
    db_api = splink.DuckDBAPI(connection=con)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Splink's chart and convergence notices are not errors here
        linker = splink.Linker(_frames(db_api, prepared, rules), _settings(rules), log_level=logging.WARNING)
        det = rules.deterministic or rules.blocking[:1]
        try:
            linker.training.estimate_probability_two_random_records_match(
                [_block(b) for b in det], recall=rules.deterministic_recall
            )
        except Exception as e:
            log.warning("prior not estimated (%s); using Splink's default", e)
        if not linker._settings_obj._probability_two_random_records_match > 0:
            # no near-certain pair at all (a register without duplicates): one match per record
            n = max(prepared.num_rows, 2)
            linker._settings_obj._probability_two_random_records_match = 1.0 / (n * (n - 1) / 2)
        linker.training.estimate_u_using_random_sampling(max_pairs=rules.u_max_pairs, seed=seed)
        for b in rules.training_blocking or rules.blocking:
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    _block(b), estimate_without_term_frequencies=True
                )
            except Exception as e:
                log.warning("EM pass %s skipped: %s", b, e)
        _refine_u(linker, con, prepared, rules, seed)
        pred = linker.inference.predict(threshold_match_probability=rules.review_threshold)
        pairs = _pairs(pred)
        model = linker.misc.save_model_to_json()
    con.close()
    return pairs, model


U_ROUNDS = 50  # at most; each round is a pass over the sampled pairs' levels (numpy)


def _refine_u(linker: Any, con: Any, prepared: pa.Table, rules: MatchRules, seed: int) -> None:
    """u from random pairs weighted by how unlikely each is to be a match (an E-step on them).

    `estimate_u_using_random_sampling` counts every random pair as a non-match, but a share
    lambda (the prior) are matches, and they sit in the agreeing levels. Where records have
    several duplicates each (the Chicago sites: three records per site, lambda = 1e-3), the
    matches are most of the random pairs that agree exactly, and an exact address looks fifty
    times commoner among non-matches than it is, so agreement counts for too little. Here the
    trained model scores the same kind of random sample, and each pair counts towards u by its
    probability of *not* being a match, in rounds until u settles (the probabilities move with
    u). A level seen only among matches gets half a pair's worth. Where duplicates are rare (a million
    people, lambda = 1e-6) nothing moves.
    """
    settings = linker._settings_obj
    lam = float(settings._probability_two_random_records_match)
    comps = settings.comparisons
    if not 0 < lam < 1 or not comps:
        return
    n = prepared.num_rows
    rows = int(min(n, 0.5 * ((8 * rules.u_max_pairs + 1) ** 0.5 + 1)))
    rng = np.random.default_rng(seed)
    sample = prepared.take(pa.array(np.sort(rng.choice(n, size=rows, replace=False))))
    cols = [c for c in sample.column_names if c not in (UID, "source_dataset")]
    con.register("__u_sample", sample.append_column("__i", pa.array(np.arange(rows, dtype=np.int64))))
    gammas: list[str] = []
    for comp in comps:
        whens = " ".join(
            f"when {lev.sql_condition} then {i}"
            for i, lev in enumerate(comp.comparison_levels)
            if lev.sql_condition.strip().upper() != "ELSE"
        )
        gammas.append(f"(case {whens} else {len(comp.comparison_levels) - 1} end)::tinyint as g{len(gammas)}")
    pairs_on = "l.__i < r.__i"
    if rules.link_type == "link_only" and "source_dataset" in sample.column_names:
        pairs_on += " and l.source_dataset <> r.source_dataset"
    select = ", ".join([f'l."{c}" as "{c}_l", r."{c}" as "{c}_r"' for c in cols])
    g = con.sql(
        f"select {', '.join(gammas)} from (select {select} from __u_sample l join __u_sample r on {pairs_on})"
    ).fetchnumpy()
    con.unregister("__u_sample")
    levels = [comp.comparison_levels for comp in comps]
    codes = [np.asarray(g[f"g{k}"], dtype=np.int64) for k in range(len(comps))]
    if not len(codes[0]):
        return
    floor = 0.5 / len(codes[0])
    for _ in range(U_ROUNDS):
        before = [[lev.u_probability for lev in lv if not lev.is_null_level] for lv in levels]
        log_bf = np.zeros(len(codes[0]))
        for lv, code in zip(levels, codes, strict=True):
            table = np.array(
                [
                    0.0
                    if lev.is_null_level or lev.m_probability is None or lev.u_probability is None
                    else np.log(max(lev.m_probability, 1e-12) / max(lev.u_probability, 1e-12))
                    for lev in lv
                ]
            )
            log_bf += table[code]
        odds = np.log(lam / (1 - lam)) + log_bf
        nonmatch = 1.0 / (1.0 + np.exp(np.clip(odds, -700, 700)))
        for lv, code in zip(levels, codes, strict=True):
            weight = np.bincount(code, weights=nonmatch, minlength=len(lv))
            real = [i for i, lev in enumerate(lv) if not lev.is_null_level]
            total = weight[real].sum()
            if total <= 0:
                continue
            for i in real:
                lev = lv[i]
                if lev._fix_u_probability or not lev._u_is_trained:
                    continue
                lev.u_probability = float(min(max(weight[i] / total, floor), 1.0))
        after = [[lev.u_probability for lev in lv if not lev.is_null_level] for lv in levels]
        change = max(
            abs(np.log(max(a or floor, floor) / max(b or floor, floor)))
            for xs, ys in zip(after, before, strict=True)
            for a, b in zip(xs, ys, strict=True)
        )
        if change < 0.01:  # every u within 1% of the last round's
            break


def score_new(new: pa.Table, existing: pa.Table, rules: MatchRules, model: dict[str, Any]) -> pa.Table:
    """Score new records against each other and against the stored records with a stored model."""
    splink = _splink()
    con = duckdb.connect()
    db_api = splink.DuckDBAPI(connection=con)
    drop = [c for c in ("source_dataset",) if c in new.column_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdf_new = db_api.register(new.drop_columns(drop), table_name="new_records")
        sdf_old = db_api.register(existing.drop_columns(drop), table_name="existing_records")
        linker = splink.Linker(sdf_old, model | {"link_type": "dedupe_only"}, log_level=logging.WARNING)
        tables = [
            _pairs(
                linker.inference.predict_within(sdf_new, threshold_match_probability=rules.review_threshold)
            ),
        ]
        if existing.num_rows:
            between = linker.inference.predict_between(
                sdf_new, sdf_old, link_type="link_only", threshold_match_probability=rules.review_threshold
            )
            tables.append(_pairs(between))
    con.close()
    return pa.concat_tables(tables)


def _decide(pairs: pa.Table, rules: MatchRules, queue: ReviewQueue | None) -> tuple[pa.Table, pa.Table]:
    """Pairs with their decision (link / review / rejected / accepted) and the new review band."""
    acc, rej = queue.decisions(rules.entity_type) if queue else (set(), set())
    p = pairs["match_probability"].to_numpy(zero_copy_only=False)
    decision = np.where(p >= rules.match_threshold, "link", "review").astype(object)
    if acc or rej:
        keys = [
            _ordered(a, b)
            for a, b in zip(pairs["uid_l"].to_pylist(), pairs["uid_r"].to_pylist(), strict=True)
        ]
        for i, k in enumerate(keys):
            if k in acc:
                decision[i] = "accepted"
            elif k in rej:
                decision[i] = "rejected"
    pairs = pairs.append_column("decision", pa.array(decision, pa.string()))
    band = pairs.filter(pc.equal(pairs["decision"], "review"))
    return pairs, band


def _cluster(
    all_uids: pa.Array,
    pairs: pa.Table,
    accepted: set[tuple[str, str]],
    rejected: set[tuple[str, str]],
    prepared: pa.Table,
    rules: MatchRules,
) -> np.ndarray:
    """Entities: linked and accepted pairs joined, rejected pairs and exclusive conflicts apart."""
    linked = pairs.filter(pc.is_in(pairs["decision"], pa.array(["link", "accepted"])))
    left = pa.concat_arrays(
        [linked["uid_l"].combine_chunks(), pa.array([a for a, _ in accepted], pa.string())]
    )
    right = pa.concat_arrays(
        [linked["uid_r"].combine_chunks(), pa.array([b for _, b in accepted], pa.string())]
    )
    weight = np.concatenate(
        [linked["match_probability"].to_numpy(zero_copy_only=False), np.full(len(accepted), 2.0)]
    )  # accepted pairs first: a person's decision outranks the model
    li = pc.index_in(left, value_set=all_uids).fill_null(-1).to_numpy().astype(np.int64)
    ri = pc.index_in(right, value_set=all_uids).fill_null(-1).to_numpy().astype(np.int64)
    keep = (li >= 0) & (ri >= 0)
    cannot: list[tuple[int, int]] = []
    if rejected:
        index = {u: i for i, u in enumerate(all_uids.to_pylist())}
        cannot = [(index[a], index[b]) for a, b in rejected if a in index and b in index]
    is_accepted = np.arange(len(li)) >= len(li) - len(accepted)
    li, ri, weight, is_accepted = li[keep], ri[keep], weight[keep], is_accepted[keep]
    labels = constrained_components(len(all_uids), li, ri, weight, cannot)
    conflicts = exclusive_conflicts(prepared, rules, labels)
    if not conflicts:
        return labels
    pairs_kept = zip(li[is_accepted].tolist(), ri[is_accepted].tolist(), strict=True)
    kept = {(min(a, b), max(a, b)) for a, b in pairs_kept}
    conflicts = [(a, b) for a, b in conflicts if (min(a, b), max(a, b)) not in kept]  # a person said so
    return separate(labels, li, ri, weight, cannot + conflicts)


def _assemble(
    rules: MatchRules,
    raw: pa.Table,
    prepared: pa.Table,
    pairs: pa.Table,
    store: EntityStore | None,
    queue: ReviewQueue | None,
    band: pa.Table,
    model: dict[str, Any],
) -> Resolution:
    uid_array = prepared[UID].combine_chunks()
    all_uids = uid_array.to_pylist()
    accepted, rejected = queue.decisions(rules.entity_type) if queue else (set(), set())
    labels = _cluster(uid_array, pairs, accepted, rejected, prepared, rules)
    if store is not None:
        ids = store.assign(rules.entity_type, rules.id_prefix, all_uids, labels)
        if queue is not None:
            queue.enqueue(rules.entity_type, band.select(["uid_l", "uid_r", "match_probability"]))
    else:
        from citybase.fusion.store import new_entity_id

        first = pd.DataFrame({"uid": all_uids, "label": labels}).groupby("label")["uid"].min()
        eid = {int(k): new_entity_id(rules.id_prefix, str(u)) for k, u in first.items()}  # type: ignore[call-overload]
        ids = [eid[lab] for lab in labels.tolist()]
    members = pa.table({UID: pa.array(all_uids, pa.string()), "entity_id": pa.array(ids, pa.string())})
    if "source_dataset" in prepared.column_names:
        members = members.append_column("source", prepared["source_dataset"])
    con = duckdb.connect()
    con.register("m", members)
    src = "list(distinct source order by source)" if "source" in members.column_names else "[]::varchar[]"
    entities = (
        con.sql(
            f"select entity_id, '{rules.entity_type}' as entity_type, count(*) as size, {src} as sources"
            " from m group by entity_id order by entity_id"
        )
        .arrow()
        .read_all()
    )
    con.close()
    golden, provenance = golden_records(_with_uid(raw, rules), members, rules)
    review = queue.pending(rules.entity_type) if queue else band
    return Resolution(
        rules.entity_type, members, entities, pairs, review, golden, provenance, prepared, model
    )


def resolve(
    records: pa.Table,
    rules: MatchRules,
    *,
    addresses: AddressContext | None = None,
    store: EntityStore | None = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> Resolution:
    """Resolve all records of one entity type from scratch (training included).

    With a `store`, ids already given to records are kept, review decisions are applied, the
    uncertain band is queued, and the model and records are saved for `resolve_incremental`.
    """
    say = progress or (lambda _s: None)
    _check(records, rules)
    say("normalising fields")
    prepared = prepare(records, rules, addresses)
    say("training and scoring")
    pairs, model = train_and_score(prepared, rules, seed=seed)
    queue = ReviewQueue(store) if store else None
    pairs, band = _decide(pairs, rules, queue)
    say("clustering")
    res = _assemble(rules, records, prepared, pairs, store, queue, band, model)
    if store is not None:
        store.save_model(rules.entity_type, model)
        store.save_records(rules.entity_type, prepared, _with_uid(records, rules))
        _save_pairs(store, rules, pairs.select(PAIR_COLUMNS))
        res.save(store.path / "entities")
    return res


def resolve_incremental(
    records: pa.Table,
    rules: MatchRules,
    store: EntityStore,
    *,
    addresses: AddressContext | None = None,
    progress: Progress | None = None,
) -> Resolution:
    """Add new records: score them (only them) with the stored model, keep every existing id.

    Existing pairs are kept as stored; new records join the entity they match or start their own.
    """
    say = progress or (lambda _s: None)
    model = store.model(rules.entity_type)
    stored = store.records(rules.entity_type)
    if model is None or stored is None:
        return resolve(records, rules, addresses=addresses, store=store, progress=progress)
    _check(records, rules)
    old_prepared, old_raw = stored
    new_prepared = prepare(records, rules, addresses)
    known = pc.is_in(new_prepared[UID], old_prepared[UID])
    if pc.any(known).as_py():
        raise InputError("records already resolved were given as new; use resolve() to re-run them")
    say("scoring new records")
    new_pairs = score_new(new_prepared, old_prepared, rules, model)
    old_pairs = _stored_pairs(store, rules)
    pairs = pa.concat_tables([old_pairs, new_pairs.select(old_pairs.column_names)])
    queue = ReviewQueue(store)
    pairs, band = _decide(pairs.select(PAIR_COLUMNS), rules, queue)
    prepared = pa.concat_tables([old_prepared, new_prepared], promote_options="permissive")
    raw = pa.concat_tables([old_raw, _with_uid(records, rules)], promote_options="permissive")
    say("clustering")
    res = _assemble(rules, raw, prepared, pairs, store, queue, band, model)
    store.save_records(rules.entity_type, prepared, raw)
    _save_pairs(store, rules, pairs.select(PAIR_COLUMNS))
    res.save(store.path / "entities")
    return res


def _with_uid(records: pa.Table, rules: MatchRules) -> pa.Table:
    return records if UID in records.column_names else records.append_column(UID, uids(records, rules))


def _check(records: pa.Table, rules: MatchRules) -> None:
    need = {rules.record_id} | {f.name for f in rules.fields if f.kind != "geo"}
    need |= {c for f in rules.fields if f.kind == "geo" for c in (f.lon, f.lat) if c}
    missing = sorted(need - set(records.column_names))
    if missing:
        raise InputError(
            f"records lack the columns the {rules.entity_type} rules compare: {', '.join(missing)}"
        )


def _stored_pairs(store: EntityStore, rules: MatchRules) -> pa.Table:
    p = store.path / f"pairs_{rules.entity_type}.parquet"
    if p.is_file():
        return pq.read_table(p)
    return pa.schema(
        [
            ("uid_l", pa.string()),
            ("uid_r", pa.string()),
            ("match_probability", pa.float64()),
            ("match_weight", pa.float64()),
        ]
    ).empty_table()


def _save_pairs(store: EntityStore, rules: MatchRules, pairs: pa.Table) -> None:
    pq.write_table(pairs, store.path / f"pairs_{rules.entity_type}.parquet")
