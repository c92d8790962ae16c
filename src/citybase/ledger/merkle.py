"""RFC 6962/9162 Merkle tree hashing, proof construction and proof verification.

Construction is written against a `perfect(height, index)` oracle (the hash of one aligned, full
subtree) so that the same code serves proofs from stored tiles, from memory, or from a brute-force
tree in tests. Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from citybase.errors import CitybaseError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# perfect(height, index): hash of the full subtree over leaves [index * 2**height, (index+1) * 2**height).
Perfect = Callable[[int, int], bytes]


class ProofError(CitybaseError, ValueError):
    """A proof or root does not verify: the log or the data has been tampered with, or mixed up."""

    status = 422
    code = "invalid_proof"


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data). The 0x00 prefix keeps leaves and nodes apart.

    >>> leaf_hash(b"").hex()[:8]
    '6e340b9c'
    """
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash over already-hashed leaves (an empty list gives the empty-tree root).

    >>> root_of([]).hex()[:8]
    'e3b0c442'
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Fold pairwise bottom-up; an odd last node is carried up unchanged, which is exactly RFC 6962's
    # left-heavy split for a list.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def range_hash(start: int, end: int, perfect: Perfect) -> bytes:
    """MTH(D[start:end]) for a range that is a node of some tree (start aligned to the split)."""
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return perfect(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(range_hash(start, start + k, perfect), range_hash(start + k, end, perfect))


def inclusion_proof(index: int, size: int, perfect: Perfect) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:size]), leaf-side hash first."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    out: list[bytes] = []
    start, end = 0, size
    # Walk down from the root; collect siblings, then reverse so the proof starts at the leaf.
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append(range_hash(start + k, end, perfect))
            end = start + k
        else:
            out.append(range_hash(start, start + k, perfect))
            start = start + k
    out.reverse()
    return out


def consistency_proof(old: int, new: int, perfect: Perfect) -> list[bytes]:
    """RFC 6962 PROOF(old, D[0:new]); only defined for 0 < old <= new (empty when equal)."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    out: list[bytes] = []
    m, start, end, whole = old, 0, new, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                out.append(range_hash(start, end, perfect))
            break
        k = _split(n)
        if m <= k:
            out.append(range_hash(start + k, end, perfect))
            end = start + k
        else:
            out.append(range_hash(start, start + k, perfect))
            m, start, whole = m - k, start + k, False
    out.reverse()
    return out


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check an inclusion proof (RFC 9162 2.1.3.2); raise ProofError if it does not verify."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check a consistency proof (RFC 9162 2.1.4.2); raise ProofError if it does not verify.

    Proofs from size 0 are rejected: RFC 9162 defines them only for 0 < old <= new (the empty tree is
    trivially consistent with every tree, so a caller that accepts it must decide so explicitly).
    """
    if old <= 0 or new < old:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old == new:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise ProofError("consistency proof does not lead to both roots")


def memory_perfect(leaves: Sequence[bytes]) -> Perfect:
    """A `perfect` oracle over leaf hashes held in memory (tests, small trees, audits)."""
    levels: list[list[bytes]] = [list(leaves)]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)])

    def perfect(height: int, index: int) -> bytes:
        return levels[height][index]

    return perfect
