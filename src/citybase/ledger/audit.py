"""Full audit of a ledger folder: rebuild the tree from the entry bundles, compare every stored tile
and the signed checkpoint root, and rehash the lake files that ingest entries list.

What a department's auditor runs on a copy of the folder: it trusts only the log's public key. It
streams a bundle at a time, so memory grows with size / 256 (the upper tile levels), not with size,
and by 24 bytes for each lake file deleted on purpose: a listed file that is missing is a problem
unless a `retire` entry lists it (merged away, its history expired: docs/adr/0009).
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citybase.errors import InputError
from citybase.ledger.checkpoint import open_checkpoint
from citybase.ledger.entry import INGEST, RETIRE, decode
from citybase.ledger.keys import read_vkey
from citybase.ledger.log import CHECKPOINT, VKEY_FILE
from citybase.ledger.merkle import EMPTY_ROOT, leaf_hash, range_hash, root_of
from citybase.ledger.note import NoteError, Verifier
from citybase.ledger.tiles import (
    ENTRIES,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileStore,
    decode_bundle,
    parse_tile_path,
    split_hashes,
    tile_levels,
    tile_path,
)


@dataclass
class AuditReport:
    """What the audit checked and every problem it found (empty `problems` means all good)."""

    size: int = 0
    entries: int = 0
    tiles: int = 0
    lake_files: int = 0
    #: Lake files that retire entries list as deleted on purpose.
    retired: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _path_digest(path: str) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "big")


def _diff(stored: list[bytes], want: list[bytes], start: int, width: int) -> list[int]:
    bad = [start + i for i, (a, b) in enumerate(zip(stored, want, strict=False)) if a != b]
    return bad if bad or len(stored) == width else [-1]


class _Auditor:
    def __init__(self, path: Path, size: int, lake_root: Path | None, rep: AuditReport) -> None:
        self.path, self.size, self.lake_root, self.rep = path, size, lake_root, rep
        self.store = TileStore(path, cache_tiles=0)
        self.checked: set[str] = set()
        self.upper: list[list[bytes]] = [[], []]  # levels[1] = roots of full level-0 tiles, ...
        self.last: list[bytes] = []  # the level-0 hashes of the rightmost (partial) tile
        # Listed lake files found missing (entry index, path digest), and the retired ones' digests.
        self.missing_at, self.missing = array("q"), array("Q")
        self.retired = array("Q")
        self.changed: list[tuple[int, str]] = []

    def _tile_files(self, level: int | str, n: int) -> list[tuple[str, int]]:
        """The stored files of tile n at a level: the full one and every partial width."""
        out = []
        full = tile_path(level, n)
        if (self.path / full).is_file():
            out.append((full, TILE_WIDTH))
        pdir = self.path / (full + ".p")
        if pdir.is_dir():
            out += [(f"{full}.p/{w.name}", int(w.name)) for w in pdir.iterdir() if w.name.isdigit()]
        return out

    def _compare(self, level: int | str, n: int, want: list[bytes], what: str) -> None:
        for rel, width in self._tile_files(level, n):
            if width > len(want):
                continue  # written by an integration the checkpoint does not cover yet
            self.checked.add(rel)
            self.rep.tiles += 1
            try:
                raw = (self.path / rel).read_bytes()
                stored = decode_bundle(raw) if level == ENTRIES else split_hashes(raw)
            except InputError as e:
                self.rep.problems.append(f"{rel}: {e}")
                continue
            bad = _diff(stored, want[:width], n * TILE_WIDTH, width)
            if bad:
                self.rep.problems.append(f"{rel}: {what} {bad[:5]} do not match the rebuilt tree")

    def entries(self) -> None:
        for t in range((self.size + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, self.size - t * TILE_WIDTH)
            try:
                bundle = self.store.read_bundle(t, width)
            except (OSError, InputError) as e:
                self.rep.problems.append(f"{tile_path(ENTRIES, t, width)}: {e}")
                bundle = [b""] * width
            self.rep.entries += len(bundle)
            leaves = [leaf_hash(e) for e in bundle]
            self._compare(ENTRIES, t, bundle, "entries")
            self._compare(0, t, leaves, "entries")
            if width == TILE_WIDTH:
                self.upper[1].append(root_of(leaves))
            else:
                self.last = leaves
            if self.lake_root is not None:
                for i, data in enumerate(bundle):
                    self._lake(t * TILE_WIDTH + i, data)

    def _lake(self, index: int, data: bytes) -> None:
        try:
            obj = decode(data)
        except (ValueError, InputError):
            self.rep.problems.append(f"entry {index}: not a ledger entry")
            return
        kind = obj.get("kind")
        if kind not in (INGEST, RETIRE) or self.lake_root is None:  # (no lake: entries still audited)
            return
        for f in obj["data"].get("files") or []:
            path = str(f.get("path", ""))
            if kind == RETIRE:
                self.retired.append(_path_digest(path))
                self.rep.retired += 1
                continue
            p = self.lake_root / path
            self.rep.lake_files += 1
            if not p.is_file():
                self.missing_at.append(index)
                self.missing.append(_path_digest(path))
            elif _sha256_file(p) != f.get("sha256"):
                self.changed.append((index, f"entry {index}: lake file {path} has changed (sha256)"))

    def lake_problems(self) -> None:
        """Report, in entry order, the changed lake files and the missing ones that no retire entry
        lists (their paths read again from their entries)."""
        out = self.changed
        gone = np.isin(np.frombuffer(self.missing, np.uint64), np.frombuffer(self.retired, np.uint64))
        for k in np.flatnonzero(~gone):
            index, digest = self.missing_at[k], self.missing[k]
            t = index // TILE_WIDTH
            bundle = self.store.read_bundle(t, min(TILE_WIDTH, self.size - t * TILE_WIDTH))
            files = decode(bundle[index % TILE_WIDTH])["data"]["files"]
            path = next(str(f.get("path")) for f in files if _path_digest(str(f.get("path", ""))) == digest)
            out.append((index, f"entry {index}: lake file {path} is missing"))
        self.rep.problems += [m for _, m in sorted(out)]

    def upper_levels(self) -> None:
        level = 1
        while self.upper[level]:
            hashes = self.upper[level]
            nxt = [
                root_of(hashes[k : k + TILE_WIDTH])
                for k in range(0, len(hashes) - TILE_WIDTH + 1, TILE_WIDTH)
            ]
            self.upper.append(nxt)
            for t in range((len(hashes) + TILE_WIDTH - 1) // TILE_WIDTH):
                self._compare(
                    level, t, hashes[t * TILE_WIDTH : (t + 1) * TILE_WIDTH], f"level-{level} hashes"
                )
            level += 1

    def root(self) -> bytes:
        if self.size == 0:
            return EMPTY_ROOT
        last_tile = self.size // TILE_WIDTH

        def perfect(height: int, index: int) -> bytes:
            level, r = divmod(height, TILE_HEIGHT)
            first = index << r
            if level == 0:  # below tile height only the rightmost partial tile is ever asked for
                off = first - last_tile * TILE_WIDTH
                return tile_levels(self.last[off : off + (1 << r)])[r][0]
            return tile_levels(self.upper[level][first : first + (1 << r)])[r][0]

        return range_hash(0, self.size, perfect)

    def strays(self) -> None:
        """Files under tile/ that no checkpointed tile accounts for: report the malformed ones."""
        for dirpath, _, files in os.walk(self.path / "tile"):
            for name in files:
                if name.startswith("."):
                    continue  # a temporary file left by a crash mid-integration, never served
                rel = os.path.relpath(os.path.join(dirpath, name), self.path).replace(os.sep, "/")
                if rel in self.checked:
                    continue
                try:
                    parse_tile_path(rel)
                except InputError:
                    self.rep.problems.append(f"{rel}: not a tile path")


def audit(path: Path, log_key: Verifier | None = None, lake_root: Path | None = None) -> AuditReport:
    """Audit the ledger folder `path` against `log_key` (default: the folder's own log.vkey, which
    only proves internal consistency; pass the key you trust to prove it is the log you know)."""
    path = Path(path)
    rep = AuditReport()
    key = log_key or read_vkey(path / VKEY_FILE)
    try:
        cp = open_checkpoint((path / CHECKPOINT).read_text(encoding="utf-8"), key).checkpoint
    except (NoteError, OSError) as e:
        rep.problems.append(f"checkpoint: {e}")
        return rep
    rep.size = cp.size
    a = _Auditor(path, cp.size, Path(lake_root) if lake_root is not None else None, rep)
    a.entries()
    a.lake_problems()
    a.upper_levels()
    if a.root() != cp.root:
        rep.problems.append("checkpoint: root hash does not match the tree rebuilt from the entries")
    a.strays()
    return rep
