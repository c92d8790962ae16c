"""Offline verification and the full audit: every kind of tampering is caught; the CLI on top."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citybase.cli.ledger import ledger_app
from citybase.ledger import Ledger, NoteError, ProofError, Signer, audit, verify_entry, verify_extends
from citybase.ledger.keys import read_vkey
from citybase.ledger.tiles import TileStore

ORIGIN = "citybase.example/testcity"
runner = CliRunner()


@pytest.fixture
def city(tmp_path: Path) -> Iterator[tuple[Ledger, Path]]:
    """A ledger with 600 entries, some of them ingests that list lake files under tmp_path/lake."""
    lake = tmp_path / "lake"
    (lake / "air").mkdir(parents=True)
    with Ledger.open(tmp_path / "base" / "ledger", origin=ORIGIN, interval=60) as lg:
        for b in range(3):
            f = lake / "air" / f"part-{b}.parquet"
            f.write_bytes(f"rows of batch {b}".encode() * 100)
            lg.append(
                "ingest",
                {
                    "dataset": "air",
                    "batch": f"batch-{b}",
                    "rows": 100,
                    "digest": hashlib.sha256(f"content {b}".encode()).hexdigest(),
                    "files": [
                        {
                            "path": f"air/part-{b}.parquet",
                            "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                        }
                    ],
                },
            )
        lg.append_many([("use", {"dataset": "air", "by": "health", "rows": n}) for n in range(597)])
        lg.flush()
        yield lg, lake


def test_proof_bundle_verifies_offline(city: tuple[Ledger, Path]) -> None:
    lg, _ = city
    bundle = json.loads(json.dumps(lg.proof_bundle(1)))  # through JSON, as a user would get it
    ep = verify_entry(bundle, lg.verifier)
    assert ep.index == 1 and ep.entry["data"]["batch"] == "batch-1"
    verify_entry(bundle, lg.verifier, entry=lg.entry(1))
    with pytest.raises(ProofError):
        verify_entry(bundle, lg.verifier, entry=lg.entry(2))
    with pytest.raises(ProofError):
        verify_entry({**bundle, "entry": bundle["entry"].replace('"rows":100', '"rows":101')}, lg.verifier)
    with pytest.raises(ProofError):
        verify_entry({**bundle, "index": 2}, lg.verifier)
    with pytest.raises(NoteError):
        verify_entry(bundle, Signer.generate(ORIGIN).verifier)  # not the log we trust
    with pytest.raises(NoteError):
        verify_entry(bundle, lg.verifier, quorum=1)  # no witness cosigned it


def test_proof_against_a_checkpoint_the_verifier_holds(city: tuple[Ledger, Path]) -> None:
    lg, _ = city
    held = lg.checkpoint_note()  # e.g. the one a department's witness cosigned at size 600
    lg.append_many([("use", {"n": n}) for n in range(50)])
    lg.flush()
    bundle = lg.proof_bundle(5, size=600)
    assert bundle["checkpoint"] is None and bundle["size"] == 600
    assert verify_entry(bundle, lg.verifier, checkpoint=held).index == 5
    with pytest.raises(ProofError, match="no checkpoint"):
        verify_entry(bundle, lg.verifier)
    with pytest.raises(ProofError, match="another tree size"):
        verify_entry(bundle, lg.verifier, checkpoint=lg.checkpoint_note())
    latest = lg.proof_bundle(5)
    assert latest["size"] == 650 and verify_entry(latest, lg.verifier).index == 5


def test_newer_checkpoint_extends_older(city: tuple[Ledger, Path]) -> None:
    lg, _ = city
    old_note = lg.checkpoint_note()
    lg.append("quarantine", {"dataset": "air", "rows": 3, "reasons": {"bad time": 3}})
    lg.flush()
    new_note = lg.checkpoint_note()
    o, n = verify_extends(old_note, new_note, lg.consistency_bundle(600), lg.verifier)
    assert (o.size, n.size) == (600, 601)
    # A checkpoint from a forked history does not verify against the real one.
    fork_signer = lg.signer  # even with the real key: the roots cannot both be explained
    from citybase.ledger.checkpoint import Checkpoint

    forged = Checkpoint(ORIGIN, 601, bytes(32)).sign(fork_signer)
    with pytest.raises(ProofError):
        verify_extends(old_note, forged, lg.consistency_bundle(600), lg.verifier)
    with pytest.raises(ProofError):
        verify_extends(old_note, new_note, {**lg.consistency_bundle(600), "old": 599}, lg.verifier)


def test_find_by_digest_batch_and_leaf_hash(city: tuple[Ledger, Path]) -> None:
    lg, _ = city
    digest = hashlib.sha256(b"content 1").hexdigest()  # 64 hex chars, like a leaf hash
    assert lg.find(digest) == [1] == lg.find("batch-1")
    from citybase.ledger import leaf_hash

    assert lg.find(leaf_hash(lg.entry(1)).hex()) == [1]
    assert lg.find(leaf_hash(lg.entry(1)).hex().upper()) == [1]


def test_clean_audit(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    rep = audit(lg.path, lg.verifier, lake)
    assert rep.ok, rep.problems
    assert (rep.size, rep.entries, rep.lake_files) == (600, 600, 3)
    assert rep.tiles >= 6  # 2 full + 1 partial level-0 tiles and the same bundles, + level 1


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


def test_audit_detects_a_changed_entry(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    bundle = TileStore(lg.path).path("entries", 0)
    bundle.write_bytes(bundle.read_bytes().replace(b'"rows":100', b'"rows":900', 1))
    rep = audit(lg.path, lg.verifier, lake)
    assert not rep.ok
    assert any("tile/0/000" in p and "[0]" in p for p in rep.problems), rep.problems
    assert any("root hash does not match" in p for p in rep.problems)


def test_audit_detects_a_changed_tile(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    _flip(TileStore(lg.path).path(0, 1), 32 * 7)
    rep = audit(lg.path, lg.verifier, lake)
    assert [p for p in rep.problems if "tile/0/001" in p and "263" in p], rep.problems


def test_audit_detects_a_changed_upper_tile(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    _flip(TileStore(lg.path).path(1, 0, 2), 0)
    assert any("tile/1/000.p/2" in p for p in audit(lg.path, lg.verifier, lake).problems)


def test_audit_detects_a_changed_lake_file(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    _flip(lake / "air" / "part-2.parquet", 10)
    (lake / "air" / "part-0.parquet").unlink()
    problems = audit(lg.path, lg.verifier, lake).problems
    assert problems == [
        "entry 0: lake file air/part-0.parquet is missing",
        "entry 2: lake file air/part-2.parquet has changed (sha256)",
    ]


def test_audit_detects_a_bad_checkpoint_signature(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    cp = lg.path / "checkpoint"
    text = cp.read_text()
    sig = text.rsplit(" ", 1)[1]
    cp.write_text(text.replace(sig, ("A" if sig[5] != "A" else "B").join([sig[:5], sig[6:]])))
    assert any(p.startswith("checkpoint:") for p in audit(lg.path, lg.verifier, lake).problems)
    # A checkpoint re-signed by another key is refused when the trusted key is given.
    from citybase.ledger.checkpoint import Checkpoint

    cp.write_text(Checkpoint.parse(text).sign(Signer.generate(ORIGIN)))
    assert audit(lg.path, lg.verifier, lake).problems[0].startswith("checkpoint:")


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_checkpoint_proof_verify_audit(city: tuple[Ledger, Path], tmp_path: Path) -> None:
    lg, lake = city
    root = lg.path.parent
    vkey = lg.verifier.vkey
    r = runner.invoke(ledger_app, ["checkpoint", "--root", str(root)])
    assert r.exit_code == 0 and lg.checkpoint_note() in r.output
    r = runner.invoke(
        ledger_app, ["proof", "--find", "batch-2", "--root", str(root), "-o", str(tmp_path / "p.json")]
    )
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p.json").read_text())["index"] == 2
    r = runner.invoke(ledger_app, ["verify", str(tmp_path / "p.json"), "--log-key", vkey])
    assert r.exit_code == 0 and "entry 2 (ingest) is in citybase.example/testcity" in r.output, r.output
    (tmp_path / "e.json").write_bytes(lg.entry(3))
    r = runner.invoke(
        ledger_app,
        ["verify", str(tmp_path / "p.json"), "--log-key", vkey, "--entry", str(tmp_path / "e.json")],
    )
    assert r.exit_code == 1 and "not the entry" in r.output
    r = runner.invoke(
        ledger_app, ["verify", str(tmp_path / "p.json"), "--log-key", Signer.generate(ORIGIN).verifier.vkey]
    )
    assert r.exit_code == 1
    # Consistency between two checkpoints, and a proof against the older one.
    (tmp_path / "old").write_text(lg.checkpoint_note())
    lg.append("revoke", {"grant": "g1"})
    lg.flush()
    (tmp_path / "new").write_text(lg.checkpoint_note())
    r = runner.invoke(
        ledger_app, ["proof", "--old", "600", "--root", str(root), "-o", str(tmp_path / "c.json")]
    )
    assert r.exit_code == 0
    r = runner.invoke(
        ledger_app,
        [
            "verify",
            "--log-key",
            str(lg.path / "log.vkey"),
            "--old",
            str(tmp_path / "old"),
            "--new",
            str(tmp_path / "new"),
            "--consistency",
            str(tmp_path / "c.json"),
        ],
    )
    assert r.exit_code == 0 and "size 601 extends the one of size 600" in r.output, r.output
    r = runner.invoke(
        ledger_app, ["proof", "7", "--size", "600", "--root", str(root), "-o", str(tmp_path / "p600.json")]
    )
    assert r.exit_code == 0, r.output
    args = ["verify", str(tmp_path / "p600.json"), "--log-key", vkey]
    assert runner.invoke(ledger_app, [*args, "--checkpoint", str(tmp_path / "old")]).exit_code == 0
    assert runner.invoke(ledger_app, [*args, "--checkpoint", str(tmp_path / "new")]).exit_code == 1
    r = runner.invoke(
        ledger_app,
        [
            "verify",
            "--log-key",
            vkey,
            "--old",
            str(tmp_path / "new"),
            "--new",
            str(tmp_path / "old"),
            "--consistency",
            str(tmp_path / "c.json"),
        ],
    )
    assert r.exit_code == 1
    # Audit, clean then tampered.
    r = runner.invoke(ledger_app, ["verify", "--audit", str(root), "--log-key", vkey, "--lake", str(lake)])
    assert r.exit_code == 0 and "audit passed" in r.output, r.output
    _flip(lake / "air" / "part-1.parquet", 0)
    r = runner.invoke(ledger_app, ["verify", "--audit", str(root), "--log-key", vkey, "--lake", str(lake)])
    assert r.exit_code == 1 and "part-1.parquet has changed" in r.output


def test_cli_help_and_keygen(tmp_path: Path) -> None:
    for cmd in ([], ["verify"], ["proof"], ["checkpoint"], ["keygen"]):
        r = runner.invoke(ledger_app, [*cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output
    r = runner.invoke(
        ledger_app, ["keygen", "health.city.example/witness", "--witness", "-o", str(tmp_path / "w.key")]
    )
    assert r.exit_code == 0 and r.output.startswith("health.city.example/witness+")
    assert (tmp_path / "w.key").stat().st_mode & 0o777 == 0o600
    assert runner.invoke(ledger_app, ["keygen", "x", "-o", str(tmp_path / "w.key")]).exit_code == 1
    assert runner.invoke(ledger_app, ["verify"]).exit_code == 1


def test_cli_refuses_a_malformed_key_cleanly(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("{}")
    r = runner.invoke(ledger_app, ["verify", str(tmp_path / "p.json"), "--log-key", "not+a+key"])
    assert r.exit_code == 1 and "bad verifier key" in r.output


@pytest.mark.slow
def test_audit_of_a_three_level_tree(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "lg", origin=ORIGIN, interval=60) as lg:
        for chunk in range(3):  # three integrations, so partial tiles of several widths exist
            lg.append_many([("use", {"n": chunk * 22_000 + n}) for n in range(22_000)])
            lg.flush()
        assert lg.tiles.path(1, 0).exists() and lg.tiles.path(2, 0, 1).exists()
    rep = audit(tmp_path / "lg", lg.verifier)
    assert rep.ok, rep.problems
    assert rep.entries == 66_000 and rep.tiles >= 2 * 257 + 2
    _flip(TileStore(tmp_path / "lg").path(1, 0), 32 * 200)
    assert any("tile/1/000:" in p and "level-1" in p for p in audit(tmp_path / "lg", lg.verifier).problems)


def test_a_verifier_key_on_the_command_line_is_read_as_written(
    city: tuple[Ledger, Path], tmp_path: Path
) -> None:
    """A vkey's base64 may end in "/" (about 1 key in 64): read as a path, it lost that "/" and
    `verify --log-key` called a good key malformed. Found by a CI run of the test above."""
    lg, _ = city
    keys = (Signer.generate(ORIGIN).verifier.vkey for _ in range(5000))
    vkey = next(k for k in keys if k.endswith("/"))
    assert read_vkey(vkey).vkey == vkey
    proof = str(tmp_path / "p.json")
    r = runner.invoke(ledger_app, ["proof", "--find", "batch-2", "--root", str(lg.path.parent), "-o", proof])
    assert r.exit_code == 0, r.output
    r = runner.invoke(ledger_app, ["verify", proof, "--log-key", vkey])
    assert r.exit_code == 1 and "not signed by any trusted key" in r.output  # read; not this log's key


def test_a_retired_lake_file_may_be_gone_and_only_a_retired_one(city: tuple[Ledger, Path]) -> None:
    lg, lake = city
    lg.append("retire", {"batch": "retire-1", "part": 0, "files": [{"path": "air/part-0.parquet"}]})
    lg.flush()
    (lake / "air" / "part-0.parquet").unlink()
    (lake / "air" / "part-1.parquet").unlink()
    rep = audit(lg.path, lg.verifier, lake)
    assert rep.problems == ["entry 1: lake file air/part-1.parquet is missing"]
    assert (rep.retired, rep.lake_files) == (1, 3)
