"""Offline verification: an entry is in the log, a newer checkpoint extends an older one.

Needs nothing but the documents and the trusted keys: no ledger folder, no network.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from citybase.ledger.checkpoint import Checkpoint, Verified, open_checkpoint
from citybase.ledger.entry import decode
from citybase.ledger.merkle import EMPTY_ROOT, ProofError, leaf_hash, verify_consistency, verify_inclusion
from citybase.ledger.note import Verifier


def _hashes(items: Any) -> list[bytes]:
    if not isinstance(items, list):
        raise ProofError("proof hashes must be a list")
    try:
        return [base64.b64decode(h, validate=True) for h in items]
    except (binascii.Error, TypeError) as e:
        raise ProofError("proof hashes must be base64") from e


@dataclass(frozen=True)
class EntryProof:
    """A verified entry: where it sits, what it says, and the checkpoint that commits to it."""

    index: int
    entry: dict[str, Any]
    checkpoint: Verified


def verify_entry(
    bundle: dict[str, Any],
    log_key: Verifier,
    witness_keys: list[Verifier] | None = None,
    quorum: int = 0,
    entry: bytes | None = None,
    checkpoint: str | None = None,
) -> EntryProof:
    """Check a proof bundle (from `Ledger.proof_bundle`, `GET proof` or `citybase ledger proof`).

    `entry`, when given, is the entry as the relying party holds it; it must be the one proven.
    `checkpoint`, when given, is a signed checkpoint the relying party holds (e.g. one cosigned by
    its own witness); it replaces the bundle's and must be of the proof's size.
    Raises ProofError or NoteError.
    """
    note = checkpoint if checkpoint is not None else bundle.get("checkpoint")
    if not note:
        raise ProofError("no checkpoint to verify against: the bundle has none, give one")
    vc = open_checkpoint(str(note), log_key, witness_keys, quorum)
    data = entry if entry is not None else str(bundle["entry"]).encode("utf-8")
    if entry is not None and "entry" in bundle and bundle["entry"].encode("utf-8") != entry:
        raise ProofError("the entry given is not the entry in the proof bundle")
    if int(bundle["size"]) != vc.checkpoint.size:
        raise ProofError("proof is for another tree size than the checkpoint")
    verify_inclusion(
        int(bundle["index"]),
        vc.checkpoint.size,
        leaf_hash(data),
        _hashes(bundle["inclusion"]),
        vc.checkpoint.root,
    )
    return EntryProof(int(bundle["index"]), decode(data), vc)


def verify_extends(
    old_note: str,
    new_note: str,
    proof: dict[str, Any] | list[str],
    log_key: Verifier,
    witness_keys: list[Verifier] | None = None,
    quorum: int = 0,
) -> tuple[Checkpoint, Checkpoint]:
    """Check that the checkpoint `new_note` extends `old_note` (both signed by the log; the newer one
    cosigned by `quorum` witnesses) with a consistency proof (a bundle or a list of base64 hashes)."""
    old = open_checkpoint(old_note, log_key).checkpoint
    new = open_checkpoint(new_note, log_key, witness_keys, quorum).checkpoint
    hashes = _hashes(proof["consistency"] if isinstance(proof, dict) else proof)
    if isinstance(proof, dict) and (int(proof["old"]), int(proof["new"])) != (old.size, new.size):
        raise ProofError("consistency proof is for other tree sizes than the checkpoints")
    if old.size == 0:  # the empty tree is a prefix of every tree
        if old.root != EMPTY_ROOT or hashes:
            raise ProofError("a size-0 checkpoint must have the empty root and an empty proof")
        return old, new
    verify_consistency(old.size, new.size, old.root, new.root, hashes)
    return old, new
