"""The ledger log: appends, integration into tiles, proofs from storage, concurrency, crash safety,
and the tlog-tiles HTTP routes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from citybase.errors import Conflict, InputError, NotFound
from citybase.ledger import Ledger, LogView, leaf_hash, root_of, verify_consistency, verify_inclusion
from citybase.ledger.http import ledger_routes
from citybase.ledger.tiles import TILE_WIDTH, tiles_for_size

ORIGIN = "citybase.example/testcity"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger", origin=ORIGIN, interval=0.05) as lg:
        yield lg


def test_append_flush_and_read_back(ledger: Ledger) -> None:
    assert ledger.checkpoint().size == 0
    i = ledger.append("ingest", {"dataset": "air", "rows": 10, "digest": "d1", "batch": "b1"})
    j = ledger.append("grant", {"id": "g1", "dataset": "air", "to": "health"})
    assert (i, j) == (0, 1)
    cp = ledger.flush()
    assert cp.size == 2 and cp.origin == ORIGIN
    e = json.loads(ledger.entry(0))
    assert e["kind"] == "ingest" and e["data"]["rows"] == 10 and e["time"].endswith("Z")
    assert (
        ledger.entry(0)
        == b'{"data":{"batch":"b1","dataset":"air","digest":"d1","rows":10},"kind":"ingest","time":"%s"}'
        % e["time"].encode()
    )
    assert ledger.find("b1") == [0] and ledger.find("g1") == [1] and ledger.find("nope") == []
    assert ledger.find(leaf_hash(ledger.entry(1)).hex()) == [1]
    assert cp.root == root_of([leaf_hash(ledger.entry(0)), leaf_hash(ledger.entry(1))])
    with pytest.raises(NotFound):
        ledger.entry(2)


def test_bad_payloads_are_refused(ledger: Ledger) -> None:
    # A payload may use any field name: the ledger's own kind and time cannot be overridden.
    i = ledger.append("use", {"kind": "sql", "time": "forged"})
    ledger.flush()
    assert json.loads(ledger.entry(i))["kind"] == "use"
    assert json.loads(ledger.entry(i))["data"] == {"kind": "sql", "time": "forged"}
    with pytest.raises(InputError):
        ledger.append("use", {"x": float("nan")})
    with pytest.raises(InputError, match="over 65535"):
        ledger.append("use", {"x": "a" * 70_000})
    with pytest.raises(InputError):
        ledger.append("", {})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(1, 700), min_size=1, max_size=5))
def test_stored_tiles_give_the_right_roots_and_proofs(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int]
) -> None:
    path = tmp_path_factory.mktemp("lg")
    leaves: list[bytes] = []
    roots: dict[int, bytes] = {}
    with Ledger.open(path, origin=ORIGIN, interval=60) as lg:
        for n in batches:  # integrate batch by batch: partial tiles get extended across integrations
            lg.append_many([("use", {"n": len(leaves) + k}) for k in range(n)])
            cp = lg.flush()
            leaves = [leaf_hash(lg.entry(i)) for i in range(cp.size)]
            assert cp.root == root_of(leaves)
            roots[cp.size] = cp.root
        size = len(leaves)
        for i in sorted({0, size - 1, size // 2, min(255, size - 1), min(256, size - 1)}):
            verify_inclusion(i, size, leaves[i], lg.inclusion_proof(i), roots[size])
        for old in roots:
            if old < size:
                verify_consistency(old, size, roots[old], roots[size], lg.consistency_proof(old))
            # Proofs against older published sizes come from the same tiles.
            verify_inclusion(old - 1, old, leaves[old - 1], lg.inclusion_proof(old - 1, old), roots[old])
        for ref in tiles_for_size(size):  # the partial tiles the spec requires for this size exist
            assert lg.tiles.path(ref.level, ref.n, ref.width).exists()
        for t in range(size // TILE_WIDTH):
            assert lg.tiles.path(0, t).stat().st_size == 8192
            assert not lg.tiles.path(0, t, 1).parent.exists()  # partials pruned once full


def test_proofs_for_an_older_size_survive_partial_tile_pruning(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "lg", origin=ORIGIN, interval=60) as lg:
        lg.append_many([("use", {"n": n}) for n in range(100)])
        cp100 = lg.flush()
        view = LogView(lg.path)  # a reader in another process: its own (empty) tile cache
        lg.append_many([("use", {"n": n}) for n in range(100, 300)])
        lg.flush()
        assert not lg.tiles.path(0, 0, 100).exists()  # pruned: the full tile 0 exists now
        leaf = leaf_hash(view.entry(99))
        verify_inclusion(99, 100, leaf, view.inclusion_proof(99, 100), cp100.root)
        assert view.root(100) == cp100.root


def test_integrated_rows_leave_the_pending_table(ledger: Ledger) -> None:
    import sqlite3

    ledger.append_many([("use", {"n": n}) for n in range(10)])
    ledger.flush()
    deadline = time.monotonic() + 5
    con = sqlite3.connect(ledger.path / "ledger.db")
    try:
        while con.execute("SELECT count(*) FROM pending").fetchone()[0]:
            assert time.monotonic() < deadline, "the sequencer never trimmed integrated rows"
            time.sleep(0.02)
    finally:
        con.close()
    assert ledger.find("nope") == [] and ledger.size == 10


def test_concurrent_appends_from_threads(ledger: Ledger) -> None:
    got: dict[int, tuple[int, int]] = {}
    lock = threading.Lock()

    def worker(t: int) -> None:
        for k in range(200):
            i = ledger.append("use", {"thread": t, "k": k})
            with lock:
                assert i not in got
                got[i] = (t, k)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    cp = ledger.flush()
    assert cp.size == 1600 and sorted(got) == list(range(1600))
    for i, (t, k) in got.items():
        e = json.loads(ledger.entry(i))
        assert (e["data"]["thread"], e["data"]["k"]) == (t, k)


def test_checkpoints_are_published_without_flush(ledger: Ledger) -> None:
    ledger.append("use", {"n": 1})
    # The integrator ticks every 0.05 s here; the slack is for fsync latency on a loaded machine
    # (benchmarks/ledger_bench.py measures the real gap between checkpoints under load).
    deadline = time.monotonic() + 3.0
    while ledger.checkpoint().size < 1:
        assert time.monotonic() < deadline, "no checkpoint published after an append"
        time.sleep(0.01)


def test_reopen_continues_and_single_writer(tmp_path: Path) -> None:
    path = tmp_path / "lg"
    with pytest.raises(InputError, match="origin"):
        Ledger.open(path)
    with Ledger.open(path, origin=ORIGIN) as lg:
        lg.append_many([("use", {"n": n}) for n in range(300)])
        with pytest.raises(Conflict):
            Ledger.open(path)
    with pytest.raises(Conflict):
        Ledger.open(path, origin="citybase.example/else")
    with Ledger.open(path) as lg:
        assert lg.size == 300  # close() integrated what was pending
        assert lg.append("use", {"n": 300}) == 300
        assert lg.flush().size == 301
    view = LogView(path)  # readers need no lock
    assert view.size == 301 and json.loads(view.entry(300))["data"]["n"] == 300


CHILD = textwrap.dedent(
    """
    import sys, threading
    from citybase.ledger import Ledger
    lg = Ledger.open(sys.argv[1], origin="citybase.example/crash", interval=0.01)
    out, r = sys.stdout, sys.argv[2]
    lock = threading.Lock()
    def worker(t):
        k = 0
        while True:
            if t == 0:
                ids = lg.append_many([("use", {"id": f"{r}-{t}-{k}-{j}"}) for j in range(50)])
                lines = [f"{i} {r}-{t}-{k}-{j}" for j, i in enumerate(ids)]
            else:
                lines = [f"{lg.append('use', {'id': f'{r}-{t}-{k}'})} {r}-{t}-{k}"]
            with lock:
                out.write("\\n".join(lines) + "\\n")
                out.flush()
            k += 1
    for t in range(4):
        threading.Thread(target=worker, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.slow
def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "lg"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    for rnd in range(2):  # the second round also recovers on top of a crashed first one
        p = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(rnd)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert p.stdout is not None
        acked: dict[int, str] = {}
        deadline = time.monotonic() + 30
        while len(acked) < 3000 and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            index, ident = line.split()
            acked[int(index)] = ident
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        assert len(acked) >= 3000, "the child did not acknowledge appends"
        with Ledger.open(path) as lg:
            cp = lg.flush()
            assert cp.size >= max(acked) + 1
            ids = [json.loads(e)["data"]["id"] for _, e in lg.entries()]
            assert len(ids) == cp.size and len(set(ids)) == len(ids), "an entry was integrated twice"
            for n, ident in acked.items():
                assert ids[n] == ident
            assert root_of([leaf_hash(e) for _, e in lg.entries()]) == cp.root


# --- HTTP --------------------------------------------------------------------------------------------


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    ledger.append_many([("ingest", {"batch": f"b{n}", "n": n}) for n in range(300)])
    ledger.flush()
    app = Starlette(routes=[Mount("/ledger", routes=ledger_routes(ledger))])
    with TestClient(app) as c:
        yield c


def test_http_serves_checkpoint_tiles_and_bundles(client: TestClient, ledger: Ledger) -> None:
    r = client.get("/ledger/checkpoint")
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == ledger.checkpoint_note() and "no-cache" in r.headers["cache-control"]
    r = client.get("/ledger/tile/0/000")
    assert r.status_code == 200 and len(r.content) == 8192
    assert r.headers["content-type"] == "application/octet-stream"
    assert "immutable" in r.headers["cache-control"]
    assert r.content[:32] == leaf_hash(ledger.entry(0))
    r = client.get("/ledger/tile/0/001.p/44")
    assert r.status_code == 200 and len(r.content) == 44 * 32
    assert client.get("/ledger/tile/1/000.p/1").content == root_of(
        [leaf_hash(ledger.entry(i)) for i in range(256)]
    )
    r = client.get("/ledger/tile/entries/001.p/44", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content[2:].startswith(b'{"data":{"batch":"b256"')
    assert client.get("/ledger/tile/0/002").status_code == 404
    for bad in ["/ledger/tile/0/../log.key", "/ledger/tile/0/0", "/ledger/tile/0/000.p/256"]:
        assert client.get(bad).status_code in (400, 404)


def test_http_proofs(client: TestClient, ledger: Ledger) -> None:
    cp = ledger.checkpoint()
    for q in ("index=257", "key=b257", f"hash={leaf_hash(ledger.entry(257)).hex()}"):
        r = client.get(f"/ledger/proof?{q}")
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["index"] == 257 and b["size"] == cp.size and b["checkpoint"] == ledger.checkpoint_note()
        proof = [base64.b64decode(h) for h in b["inclusion"]]
        verify_inclusion(257, cp.size, leaf_hash(b["entry"].encode()), proof, cp.root)
    r = client.get("/ledger/proof?old=100")
    assert r.status_code == 200 and r.json()["old"] == 100 and r.json()["new"] == 300
    assert client.get("/ledger/proof?index=300").status_code == 404
    assert client.get("/ledger/proof?key=missing").status_code == 404
    assert client.get("/ledger/proof?index=x").status_code == 400
    assert client.get("/ledger/proof").status_code == 400
