"""Clustering scored pairs into entities: connected components over the accepted edges.

Numpy only (no graph library): label propagation with pointer jumping, linear in the number of
edges per round and a handful of rounds on record-linkage graphs, so a million records cluster in
about a second. Where two records must stay apart (a person rejected the pair, or the records
differ on an exclusive field: two valid identity numbers, two sites' addresses), a greedy
union-find (strongest edges first) keeps them apart, redone only inside the components that hold
such a pair.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]


def connected_components(n: int, left: I64, right: I64) -> I64:
    """Component label (the smallest member index) of each of `n` nodes, given undirected edges.

    >>> connected_components(5, np.array([0, 3]), np.array([1, 4])).tolist()
    [0, 0, 2, 3, 3]
    """
    parent = np.arange(n, dtype=np.int64)
    left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
    while True:
        pl, pr = parent[left], parent[right]
        lo, hi = np.minimum(pl, pr), np.maximum(pl, pr)
        moved = lo != hi
        if not moved.any():
            return parent
        np.minimum.at(parent, hi[moved], lo[moved])  # hook the larger root under the smaller
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def constrained_components(
    n: int, left: I64, right: I64, weight: NDArray[np.float64], cannot: list[tuple[int, int]]
) -> I64:
    """Connected components that never join two nodes of a cannot-link pair (a rejected review).

    Edges are taken strongest first, and an edge that would put both ends of a cannot-link pair in
    one component is skipped, so a rejection holds transitively, not only for its own edge.
    Without cannot-links this is `connected_components`.

    >>> left, right, weight = np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.95])
    >>> constrained_components(3, left, right, weight, [(0, 2)]).tolist()
    [0, 1, 1]
    """
    if not cannot:
        return connected_components(n, left, right)
    parent = list(range(n))
    banned: dict[int, set[int]] = {}
    for a, b in cannot:
        banned.setdefault(a, set()).add(b)
        banned.setdefault(b, set()).add(a)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in np.argsort(-weight, kind="stable").tolist():
        ra, rb = root(int(left[i])), root(int(right[i]))
        if ra == rb:
            continue
        ba, bb = banned.get(ra, set()), banned.get(rb, set())
        if any(root(x) == rb for x in ba) or any(root(x) == ra for x in bb):
            continue
        lo, hi = min(ra, rb), max(ra, rb)
        parent[hi] = lo
        if ba or bb:
            banned[lo] = ba | bb
    roots = np.fromiter((root(x) for x in range(n)), np.int64, n)
    return roots


def separate(
    labels: I64, left: I64, right: I64, weight: NDArray[np.float64], cannot: list[tuple[int, int]]
) -> I64:
    """`labels` (components) with the components that hold a cannot-link pair clustered again.

    Only those components are redone (`constrained_components` on their own edges), so the cost
    follows the conflicts, not the size of the graph. Labels stay the smallest member index.

    >>> labels = np.array([0, 0, 0, 3])
    >>> left, right, weight = np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.9])
    >>> separate(labels, left, right, weight, [(0, 2)]).tolist()
    [0, 0, 2, 3]
    """
    pairs = [(a, b) for a, b in cannot if labels[a] == labels[b]]
    if not pairs:
        return labels
    hit = np.isin(labels, np.unique(labels[np.array([a for a, _ in pairs])]))
    nodes = np.flatnonzero(hit)
    local = np.full(len(labels), -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    inside = hit[left] & hit[right]
    sub = constrained_components(
        len(nodes),
        local[left[inside]],
        local[right[inside]],
        weight[inside],
        [(int(local[a]), int(local[b])) for a, b in pairs],
    )
    out = labels.copy()
    out[nodes] = nodes[sub]
    return out
