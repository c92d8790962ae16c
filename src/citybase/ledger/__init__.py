"""The tamper-evident ledger: every ingest, grant, revocation, data use and quarantine, in an
append-only RFC 6962 Merkle log stored and served as C2SP tlog-tiles, with signed checkpoints,
offline proofs, a full audit, and witness cosigning by the departments (C2SP tlog-witness).

A leaf of the platform: it imports nothing of citybase but `citybase.errors`, so any box may write
to it. See docs/ledger.md.
"""

from __future__ import annotations

from citybase.ledger.audit import AuditReport, audit
from citybase.ledger.checkpoint import Checkpoint, Verified, open_checkpoint
from citybase.ledger.cosign import WitnessRef, cosign
from citybase.ledger.entry import GRANT, INGEST, QUARANTINE, RETIRE, REVOKE, USE
from citybase.ledger.log import Ledger, LogView
from citybase.ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from citybase.ledger.note import NoteError, Signer, Verifier, open_note, sign_note
from citybase.ledger.verify import EntryProof, verify_entry, verify_extends

__all__ = [
    "EMPTY_ROOT",
    "GRANT",
    "INGEST",
    "QUARANTINE",
    "RETIRE",
    "REVOKE",
    "USE",
    "AuditReport",
    "Checkpoint",
    "EntryProof",
    "Ledger",
    "LogView",
    "NoteError",
    "ProofError",
    "Signer",
    "Verified",
    "Verifier",
    "WitnessRef",
    "audit",
    "consistency_proof",
    "cosign",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "root_of",
    "sign_note",
    "verify_consistency",
    "verify_entry",
    "verify_extends",
    "verify_inclusion",
]
