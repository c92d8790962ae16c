"""The review queue: pairs the model is unsure about, for a person to accept or reject.

Pairs scored between the review and match thresholds are stored (not linked); a decision is kept
in the store and wins over the model on every later run: an accepted pair is linked whatever its
score, a rejected pair never ends up in one entity (not even through a chain of other records) and
is never asked about again.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

from citybase.errors import NotFound
from citybase.fusion.store import REVIEW_SCHEMA, EntityStore


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


class ReviewQueue:
    """Pending and decided pairs of one store.

    >>> import tempfile
    >>> q = ReviewQueue(EntityStore(tempfile.mkdtemp()))
    >>> q.pending().num_rows
    0
    """

    def __init__(self, store: EntityStore):
        self.store = store

    def pending(self, entity_type: str | None = None) -> pa.Table:
        """Undecided pairs, most uncertain (closest to 0.5) first."""
        t = self.store.reviews()
        mask = pc.equal(t["status"], "pending")
        if entity_type is not None:
            mask = pc.and_(mask, pc.equal(t["entity_type"], entity_type))
        t = t.filter(mask)
        dist = pc.abs(pc.subtract(t["match_probability"], 0.5))
        return t.take(pc.sort_indices(dist))

    def decisions(self, entity_type: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(accepted, rejected) pairs of one entity type, each as an ordered uid pair."""
        t = self.store.reviews().filter(pc.equal(self.store.reviews()["entity_type"], entity_type))
        acc: set[tuple[str, str]] = set()
        rej: set[tuple[str, str]] = set()
        for a, b, s in zip(
            t["uid_l"].to_pylist(), t["uid_r"].to_pylist(), t["status"].to_pylist(), strict=True
        ):
            if s == "accepted":
                acc.add(_ordered(a, b))
            elif s == "rejected":
                rej.add(_ordered(a, b))
        return acc, rej

    def enqueue(self, entity_type: str, pairs: pa.Table) -> int:
        """Add undecided pairs (uid_l, uid_r, match_probability); returns how many were new."""
        t = self.store.reviews()
        known = {
            (e, *_ordered(a, b))
            for e, a, b in zip(
                t["entity_type"].to_pylist(), t["uid_l"].to_pylist(), t["uid_r"].to_pylist(), strict=True
            )
        }
        rows = []
        for a, b, p in zip(
            pairs["uid_l"].to_pylist(),
            pairs["uid_r"].to_pylist(),
            pairs["match_probability"].to_pylist(),
            strict=True,
        ):
            a, b = _ordered(a, b)
            if (entity_type, a, b) not in known:
                known.add((entity_type, a, b))
                rows.append((entity_type, a, b, p, "pending", None))
        if rows:
            new = pa.table(list(zip(*rows, strict=True)), schema=REVIEW_SCHEMA)
            self.store.write_reviews(pa.concat_tables([t, new]))
        return len(rows)

    def accept(self, uid_a: str, uid_b: str) -> None:
        """The two records are the same entity: linked on the next run, whatever the model says."""
        self._decide(uid_a, uid_b, "accepted")

    def reject(self, uid_a: str, uid_b: str) -> None:
        """The two records are different entities: never put in one entity again."""
        self._decide(uid_a, uid_b, "rejected")

    def _decide(self, uid_a: str, uid_b: str, status: str) -> None:
        """Decide a queued pair, or any two resolved records (to split or join an entity by hand)."""
        a, b = _ordered(uid_a, uid_b)
        t = self.store.reviews()
        hit = pc.and_(pc.equal(t["uid_l"], a), pc.equal(t["uid_r"], b))
        now = time.time()
        if not pc.any(hit).as_py():
            ids = self.store.ids()
            known = ids.filter(pc.is_in(ids["uid"], pa.array([a, b])))
            types = set(known["entity_type"].to_pylist())
            if known.num_rows < 2 or len(types) != 1:
                raise NotFound(f"no review pair {a!r} / {b!r}, and not two resolved records of one type")
            row = pa.table(
                [[types.pop()], [a], [b], pa.array([None], pa.float64()), [status], [now]],
                schema=REVIEW_SCHEMA,
            )
            self.store.write_reviews(pa.concat_tables([t, row]))
            return
        status_col = pc.if_else(hit, pa.scalar(status), t["status"])
        at = pc.if_else(hit, pa.scalar(now, pa.float64()), t["decided_at"])
        t = t.set_column(t.schema.get_field_index("status"), "status", status_col)
        t = t.set_column(t.schema.get_field_index("decided_at"), "decided_at", at)
        self.store.write_reviews(t)
