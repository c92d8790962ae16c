"""`EntityStore`: the persisted record -> entity id map, merges, review decisions and models.

Entity ids must outlive runs: applications keep them. A new cluster's id is derived from its
earliest member record (a hash of its uid), an existing cluster keeps the id most of its members
already had, and when clusters merge the survivor is the id with the most members (the absorbed
ids are recorded, so old references can be redirected).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybase.errors import NotFound

_MAP_SCHEMA = pa.schema([("uid", pa.string()), ("entity_id", pa.string()), ("entity_type", pa.string())])
_MERGE_SCHEMA = pa.schema(
    [("run", pa.int64()), ("entity_type", pa.string()), ("absorbed", pa.string()), ("survivor", pa.string())]
)
REVIEW_SCHEMA = pa.schema(
    [
        ("entity_type", pa.string()),
        ("uid_l", pa.string()),
        ("uid_r", pa.string()),
        ("match_probability", pa.float64()),
        ("status", pa.string()),  # pending, accepted, rejected
        ("decided_at", pa.float64()),
    ]
)


def new_entity_id(prefix: str, uid: str) -> str:
    """The id a new entity gets from its earliest member: stable across runs and machines."""
    return f"{prefix}-{hashlib.sha1(uid.encode()).hexdigest()[:12]}"


class EntityStore:
    """A folder of Parquet tables (ids, merges, reviews), prepared records and trained models.

    >>> import tempfile
    >>> s = EntityStore(tempfile.mkdtemp())
    >>> s.ids("person").num_rows
    0
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    # -- tables ---------------------------------------------------------------------------

    def _read(self, name: str, schema: pa.Schema) -> pa.Table:
        p = self.path / f"{name}.parquet"
        return pq.read_table(p) if p.is_file() else schema.empty_table()

    def _write(self, name: str, table: pa.Table) -> None:
        tmp = self.path / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(self.path / f"{name}.parquet")  # atomic: a crash leaves the old table

    def ids(self, entity_type: str | None = None) -> pa.Table:
        """uid -> entity_id for every record resolved so far (of one type, or all)."""
        t = self._read("ids", _MAP_SCHEMA)
        if entity_type is None:
            return t
        return t.filter(pc.equal(t["entity_type"], entity_type))

    def merges(self) -> pa.Table:
        return self._read("merges", _MERGE_SCHEMA)

    def reviews(self) -> pa.Table:
        return self._read("reviews", REVIEW_SCHEMA)

    def write_reviews(self, table: pa.Table) -> None:
        self._write("reviews", table.cast(REVIEW_SCHEMA))

    def surviving(self, entity_id: str) -> str:
        """The id an entity has now, following recorded merges."""
        m = dict(
            zip(self.merges()["absorbed"].to_pylist(), self.merges()["survivor"].to_pylist(), strict=True)
        )
        seen = set()
        while entity_id in m and entity_id not in seen:
            seen.add(entity_id)
            entity_id = m[entity_id]
        return entity_id

    def entity_types(self) -> list[str]:
        d = self.path / "entities"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def table(self, entity_type: str, name: str) -> pa.Table:
        """A saved result table: members, entities, pairs, golden or provenance."""
        p = self.path / "entities" / entity_type / f"{name}.parquet"
        if not p.is_file():
            raise NotFound(f"no {name} table for entity type {entity_type!r} in {self.path}")
        return pq.read_table(p)

    def profile(self, entity_id: str) -> dict[str, pa.Table]:
        """Everything about one entity: its golden record, the field provenance, member records
        (raw, as the departments hold them) and pairs. Merged-away ids are followed.
        """
        eid = self.surviving(entity_id)
        for et in self.entity_types():
            members = self.table(et, "members")
            mine = members.filter(pc.equal(members["entity_id"], eid))
            if mine.num_rows == 0:
                continue
            out = {"members": mine}
            for name in ("golden", "provenance"):
                t = self.table(et, name)
                out[name] = t.filter(pc.equal(t["entity_id"], eid))
            stored = self.records(et)
            if stored is not None:
                raw = stored[1]
                from citybase.fusion.features import UID

                if UID in raw.column_names:
                    out["records"] = raw.filter(pc.is_in(raw[UID], mine[UID]))
            return out
        raise NotFound(f"no entity {entity_id!r}")

    # -- per-type artefacts for incremental runs ---------------------------------------------

    def save_model(self, entity_type: str, model: dict[str, Any]) -> None:
        (self.path / f"model_{entity_type}.json").write_text(json.dumps(model), encoding="utf-8")

    def model(self, entity_type: str) -> dict[str, Any] | None:
        p = self.path / f"model_{entity_type}.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None  # type: ignore[no-any-return]

    def save_records(self, entity_type: str, prepared: pa.Table, raw: pa.Table) -> None:
        self._write(f"prepared_{entity_type}", prepared)
        self._write(f"records_{entity_type}", raw)

    def records(self, entity_type: str) -> tuple[pa.Table, pa.Table] | None:
        p = self.path / f"prepared_{entity_type}.parquet"
        if not p.is_file():
            return None
        return pq.read_table(p), pq.read_table(self.path / f"records_{entity_type}.parquet")

    # -- id assignment --------------------------------------------------------------------

    def assign(self, entity_type: str, prefix: str, uids: list[str], labels: np.ndarray) -> list[str]:
        """Entity ids for clustered records (label per uid), keeping ids stable; saves the map."""
        old = self.ids()
        old_map = dict(zip(old["uid"].to_pylist(), old["entity_id"].to_pylist(), strict=True))
        df = pd.DataFrame({"uid": uids, "label": labels})
        df["old"] = df["uid"].map(old_map)
        votes = df.dropna(subset=["old"]).groupby(["label", "old"]).size().rename("n").reset_index()
        # each old id goes to the cluster holding most of its records (ties: the lower label)
        votes = votes.sort_values(["old", "n", "label"], ascending=[True, False, True])
        home = votes.drop_duplicates("old")
        # each cluster keeps the old id with most of its records (ties: the smaller id)
        home = home.sort_values(["label", "n", "old"], ascending=[True, False, True])
        survivor = home.drop_duplicates("label").set_index("label")["old"]
        absorbed = home[~home["old"].isin(survivor.values)]
        merges = pd.DataFrame(
            {"absorbed": absorbed["old"].values, "survivor": survivor.loc[absorbed["label"]].values}
        )
        first = df.sort_values("uid").drop_duplicates("label").set_index("label")["uid"]
        taken = set(old_map.values())
        eid: dict[int, str] = {int(k): str(v) for k, v in survivor.items()}  # type: ignore[call-overload]
        for label, uid in first.items():
            if int(label) in eid:  # type: ignore[call-overload]
                continue
            candidate, k = new_entity_id(prefix, str(uid)), 1
            while candidate in taken:  # a split-off part whose first record named a kept id
                candidate, k = new_entity_id(prefix, f"{uid}#{k}"), k + 1
            taken.add(candidate)
            eid[int(label)] = candidate  # type: ignore[call-overload]
        out = [eid[int(x)] for x in df["label"].to_numpy()]
        keep = old.filter(pc.invert(pc.is_in(old["uid"], pa.array(uids, pa.string()))))
        new = pa.table(
            {"uid": pa.array(uids, pa.string()), "entity_id": out, "entity_type": [entity_type] * len(uids)}
        )
        self._write("ids", pa.concat_tables([keep, new.cast(_MAP_SCHEMA)]))
        if len(merges):
            run = int(time.time())
            m = pa.table(
                {
                    "run": [run] * len(merges),
                    "entity_type": [entity_type] * len(merges),
                    "absorbed": merges["absorbed"].astype(str).tolist(),
                    "survivor": merges["survivor"].astype(str).tolist(),
                }
            )
            self._write("merges", pa.concat_tables([self.merges(), m.cast(_MERGE_SCHEMA)]))
        return out
