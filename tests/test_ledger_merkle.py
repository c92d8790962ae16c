"""RFC 6962 hashing and proofs: the transparency-dev vectors, and brute force for many sizes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybase.errors import InputError
from citybase.ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    memory_perfect,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from citybase.ledger.tiles import (
    TileRef,
    bundle_entry,
    decode_bundle,
    encode_bundle,
    encode_index,
    parse_tile_path,
    tile_path,
    tiles_for_size,
)
from citybase.testing import shared_data


def _vectors_dir() -> Path | None:
    data = shared_data()
    d = data.parent / "vectors" / "rfc6962" / "testdata" if data else None
    return d if d and d.is_dir() else None


VECTORS = _vectors_dir()


def _files(kind: str) -> list[Path]:
    return sorted(VECTORS.glob(f"{kind}/**/*.json")) if VECTORS else []


def _b(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


needs_vectors = pytest.mark.skipif(
    VECTORS is None, reason="../shared/vectors is absent: the RFC 6962 vectors live there"
)


@needs_vectors
@pytest.mark.parametrize("path", _files("inclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vectors(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    args = (v["leafIdx"], v["treeSize"], _b(v["leafHash"]), [_b(p) for p in v["proof"] or []], _b(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@needs_vectors
@pytest.mark.parametrize("path", _files("consistency"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vectors(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _b(v["root1"]), _b(v["root2"]), [_b(p) for p in v["proof"] or []])
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


@needs_vectors
def test_vectors_are_all_there() -> None:
    # A silently empty glob would make the two tests above vacuous.
    assert len(_files("inclusion")) > 50 and len(_files("consistency")) > 50


def test_known_hashes() -> None:
    assert EMPTY_ROOT.hex().startswith("e3b0c442") and EMPTY_ROOT.hex().endswith("b855")
    assert leaf_hash(b"").hex().startswith("6e340b9c") and leaf_hash(b"").hex().endswith("a01d")
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


# --- brute force: the RFC 6962 recursive definitions, written out literally --------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return leaf_hash(d[0])
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    return [*path(m, d[:k]), mth(d[k:])] if m < k else [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_proofs_match_the_rfc_definitions(size: int, data: st.DataObject) -> None:
    d = [i.to_bytes(4, "big") for i in range(size)]
    leaves = [leaf_hash(x) for x in d]
    perfect = memory_perfect(leaves)
    root = mth(d)
    assert root_of(leaves) == root
    i = data.draw(st.integers(0, size - 1))
    p = inclusion_proof(i, size, perfect)
    assert p == path(i, d)
    verify_inclusion(i, size, leaves[i], p, root)
    m = data.draw(st.integers(1, size))
    c = consistency_proof(m, size, perfect)
    assert c == (subproof(m, d, True) if m < size else [])
    verify_consistency(m, size, mth(d[:m]), root, c)
    if c:  # any flipped bit breaks it
        bad = [c[0][:-1] + bytes([c[0][-1] ^ 1]), *c[1:]]
        with pytest.raises(ProofError):
            verify_consistency(m, size, mth(d[:m]), root, bad)
    if size > 1:
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf_hash(b"not it"), p, root)


def test_every_pair_for_small_trees() -> None:
    for size in range(1, 40):
        d = [bytes([i]) for i in range(size)]
        leaves = [leaf_hash(x) for x in d]
        perfect = memory_perfect(leaves)
        for i in range(size):
            assert inclusion_proof(i, size, perfect) == path(i, d)
        for m in range(1, size):
            assert consistency_proof(m, size, perfect) == subproof(m, d, True)


def test_no_proofs_outside_the_tree() -> None:
    perfect = memory_perfect([leaf_hash(b"x")])
    with pytest.raises(ProofError):
        inclusion_proof(1, 1, perfect)
    with pytest.raises(ProofError):
        consistency_proof(0, 1, perfect)


# --- tlog-tiles paths and bundles -------------------------------------------------------------------


def test_tile_paths_follow_the_spec_examples() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000"
    assert encode_index(1000) == "x001/000"
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert tile_path("entries", 273, 112) == "tile/entries/273.p/112"
    assert parse_tile_path("tile/0/x001/x234/067.p/112") == TileRef(0, 1234067, 112)
    assert parse_tile_path("tile/entries/005") == TileRef("entries", 5, 256)


@pytest.mark.parametrize(
    "bad",
    [
        "tile/00/000",
        "tile/64/000",
        "tile/0/1",
        "tile/0/x1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/../../log.key",
        "tile/0/001/000",
        "checkpoint",
    ],
)
def test_tile_paths_are_parsed_strictly(bad: str) -> None:
    with pytest.raises(InputError):
        parse_tile_path(bad)


def test_partial_tiles_for_the_spec_example() -> None:
    # "a tree of size 70,000 ... one partial level 0 tile of width 112, ... level 1 ... width 17,
    # and one partial level 2 tile of width 1"; size 256: a partial level 1 tile of width 1.
    assert tiles_for_size(70_000) == [TileRef(0, 273, 112), TileRef(1, 1, 17), TileRef(2, 0, 1)]
    assert tiles_for_size(256) == [TileRef(1, 0, 1)]


def test_entry_bundles_are_uint16_length_prefixed() -> None:
    b = encode_bundle([b"", b"a", b"x" * 300])
    assert b[:5] == bytes.fromhex("0000000161")
    assert decode_bundle(b) == [b"", b"a", b"x" * 300]
    with pytest.raises(InputError):
        decode_bundle(b[:-1])
    with pytest.raises(InputError):
        encode_bundle([b"x" * 65536])


@given(st.lists(st.binary(max_size=600), min_size=1, max_size=40), st.data())
@settings(max_examples=200, deadline=None)
def test_one_entry_of_a_bundle_is_the_same_as_from_the_whole(entries: list[bytes], data: Any) -> None:
    b = encode_bundle(entries)
    for i, e in enumerate(entries):
        assert bundle_entry(b, i) == e
    # Cut anywhere inside the records up to entry i: entry i cannot be read.
    i = data.draw(st.integers(0, len(entries) - 1))
    end = sum(2 + len(e) for e in entries[: i + 1])
    cut = data.draw(st.integers(0, end - 1))
    with pytest.raises(InputError):
        bundle_entry(b[:cut], i)
