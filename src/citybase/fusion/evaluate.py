"""Accuracy of a resolution against ground truth: pairwise and cluster precision, recall, F1.

Pairwise counts every pair of records put in one entity (for link tasks only pairs across
sources); cluster-level counts predicted entities that are exactly a true entity (precision) and
true entities reproduced exactly (recall), singletons included.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    pair_p: float
    pair_r: float
    pair_f1: float
    cluster_p: float
    cluster_r: float
    cluster_f1: float


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _pairs(groups: Counter[tuple[object, ...]], key_len: int, sources: bool) -> int:
    """Pairs inside groups; with sources, groups are keyed (..., source) and only cross pairs count."""
    if not sources:
        return sum(n * (n - 1) // 2 for n in groups.values())
    per: dict[tuple[object, ...], list[int]] = {}
    for k, n in groups.items():
        per.setdefault(k[:key_len], []).append(n)
    total = 0
    for ns in per.values():
        s = sum(ns)
        total += (s * s - sum(n * n for n in ns)) // 2
    return total


def score(
    pred: list[str] | np.ndarray, truth: list[str] | np.ndarray, source: list[str] | None = None
) -> Scores:
    """Scores of predicted entity ids against true ids, row-aligned.

    >>> s = score(["a", "a", "b"], ["x", "x", "x"])
    >>> round(s.pair_p, 2), round(s.pair_r, 2), s.cluster_r
    (1.0, 0.33, 0.0)
    """
    pred, truth = [str(x) for x in pred], [str(x) for x in truth]
    src = [str(x) for x in source] if source is not None else None
    if src is None:
        both: Counter[tuple[object, ...]] = Counter(zip(pred, truth, strict=True))
        p_all: Counter[tuple[object, ...]] = Counter((x,) for x in pred)
        t_all: Counter[tuple[object, ...]] = Counter((x,) for x in truth)
        tp = _pairs(both, 2, False)
        pp, tt = _pairs(p_all, 1, False), _pairs(t_all, 1, False)
    else:
        tp = _pairs(Counter(zip(pred, truth, src, strict=True)), 2, True)
        pp = _pairs(Counter(zip(pred, src, strict=True)), 1, True)
        tt = _pairs(Counter(zip(truth, src, strict=True)), 1, True)
    pair_p = tp / pp if pp else 1.0
    pair_r = tp / tt if tt else 1.0
    pset: dict[str, set[int]] = {}
    tset: dict[str, set[int]] = {}
    for i, (a, b) in enumerate(zip(pred, truth, strict=True)):
        pset.setdefault(a, set()).add(i)
        tset.setdefault(b, set()).add(i)
    true_clusters = {frozenset(v) for v in tset.values()}
    exact = sum(1 for v in pset.values() if frozenset(v) in true_clusters)
    cp, cr = exact / max(len(pset), 1), exact / max(len(tset), 1)
    return Scores(pair_p, pair_r, _f1(pair_p, pair_r), cp, cr, _f1(cp, cr))
