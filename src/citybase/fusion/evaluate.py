"""Accuracy of a resolution against ground truth: pairwise, cluster and B-cubed P, R, F1.

The three standard measures of entity-resolution results (Menestrina, Whang and Garcia-Molina,
"Evaluating entity resolution results", PVLDB 3(1), 2010):

- **pairwise**: precision = pairs of records put in one entity that are truly one entity / pairs
  put in one entity; recall = those / pairs truly in one entity (for link tasks only pairs across
  sources count). Splink's `accuracy_analysis_from_labels_column` is this measure on scored pairs.
- **cluster** (exact match, Menestrina et al.'s "cluster F1"): precision = predicted entities that
  are exactly a true entity / predicted entities; recall = true entities reproduced exactly / true
  entities; singletons included on both sides. One wrong record makes its whole entity wrong, so
  this is the strictest of the three.
- **B-cubed** (Bagga and Baldwin 1998): per record, the share of its predicted entity that is truly
  its entity (precision) and the share of its true entity that it was put with (recall), averaged
  over records.

Splink itself has no truth-based cluster measure (its cluster metrics are graph statistics
without labels).
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
    b3_p: float = 0.0
    b3_r: float = 0.0
    b3_f1: float = 0.0


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
    >>> round(s.pair_p, 2), round(s.pair_r, 2), s.cluster_r, round(s.b3_r, 2)
    (1.0, 0.33, 0.0, 0.56)
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
    n = max(len(pred), 1)
    cells = Counter(zip(pred, truth, strict=True))
    b3p = sum(c * c / len(pset[a]) for (a, _), c in cells.items()) / n
    b3r = sum(c * c / len(tset[b]) for (_, b), c in cells.items()) / n
    return Scores(pair_p, pair_r, _f1(pair_p, pair_r), cp, cr, _f1(cp, cr), b3p, b3r, _f1(b3p, b3r))
