"""C2SP tlog-witness: the add-checkpoint rules, refusing forks, persistence, and cosigning over a
real socket with uvicorn."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from citybase.ledger import Checkpoint, Ledger, NoteError, WitnessRef, leaf_hash, open_checkpoint, root_of
from citybase.ledger.merkle import EMPTY_ROOT, consistency_proof, memory_perfect
from citybase.ledger.note import Signer, Verifier, open_note
from citybase.ledger.witness import Witness, origin_hash, witness_app
from citybase.testing import free_port as _free_port

ORIGIN = "citybase.example/testcity"


class FakeLog:
    """A log in memory, to craft honest and forked checkpoints."""

    def __init__(self, signer: Signer, tag: bytes = b"") -> None:
        self.signer, self.tag = signer, tag
        self.leaves: list[bytes] = []

    def grow(self, n: int, tag: bytes | None = None) -> None:
        t = self.tag if tag is None else tag
        self.leaves += [leaf_hash(t + str(len(self.leaves) + i).encode()) for i in range(n)]

    def note(self, size: int | None = None) -> str:
        s = len(self.leaves) if size is None else size
        return Checkpoint(self.signer.name, s, root_of(self.leaves[:s])).sign(self.signer)

    def proof(self, old: int, new: int | None = None) -> list[str]:
        n = len(self.leaves) if new is None else new
        if old in (0, n):
            return []
        return [
            base64.b64encode(h).decode() for h in consistency_proof(old, n, memory_perfect(self.leaves[:n]))
        ]


def body(old: int, proof: list[str], note: str) -> bytes:
    return (f"old {old}\n" + "".join(p + "\n" for p in proof) + "\n" + note).encode()


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def witness(tmp_path: Path, signer: Signer) -> Iterator[Witness]:
    w = Witness(tmp_path / "w", "health.city.example/witness", [signer.verifier])
    yield w
    w.close()


@pytest.fixture
def client(witness: Witness) -> Iterator[TestClient]:
    with TestClient(witness_app(witness)) as c:
        yield c


def test_add_checkpoint_follows_the_spec(client: TestClient, witness: Witness, signer: Signer) -> None:
    log = FakeLog(signer)
    log.grow(10)
    r = client.post("/add-checkpoint", content=body(0, [], log.note()))
    assert r.status_code == 200, r.text
    assert r.text.startswith("— health.city.example/witness ") and r.text.endswith("\n")
    text = Checkpoint.parse(log.note()).format()
    assert open_note(text + "\n" + r.text, [witness.signer.verifier]).signed_by[witness.vkey] > 0
    # Wrong old size: 409 with the size it holds, in text/x.tlog.size.
    log.grow(5)
    r = client.post("/add-checkpoint", content=body(0, [], log.note()))
    assert (r.status_code, r.text, r.headers["content-type"]) == (409, "10\n", "text/x.tlog.size")
    r = client.post("/add-checkpoint", content=body(10, log.proof(10), log.note()))
    assert r.status_code == 200
    # Same size again: fine with the same root (empty proof).
    assert client.post("/add-checkpoint", content=body(15, [], log.note())).status_code == 200
    # The monitoring endpoint serves the latest cosigned checkpoint.
    r = client.get(f"/{origin_hash(ORIGIN)}/checkpoint")
    assert r.status_code == 200
    v = open_checkpoint(r.text, signer.verifier, [witness.signer.verifier], quorum=1)
    assert v.checkpoint.size == 15
    assert client.get(f"/{origin_hash('other')}/checkpoint").status_code == 404


def test_add_checkpoint_rejections(client: TestClient, signer: Signer) -> None:
    log = FakeLog(signer)
    log.grow(8)
    assert client.post("/add-checkpoint", content=body(0, [], log.note())).status_code == 200
    log.grow(4)
    good = log.proof(8)
    bad = [base64.b64encode(bytes(32)).decode(), *good[1:]]
    assert client.post("/add-checkpoint", content=body(8, bad, log.note())).status_code == 422
    assert client.post("/add-checkpoint", content=body(8, [], log.note())).status_code == 422
    # Signed by an unknown key for a known origin: 403; unknown origin: 404.
    impostor = FakeLog(Signer.generate(ORIGIN))
    impostor.grow(12)
    assert client.post("/add-checkpoint", content=body(8, good, impostor.note())).status_code == 403
    stranger = FakeLog(Signer.generate("citybase.example/elsewhere"))
    stranger.grow(3)
    assert client.post("/add-checkpoint", content=body(0, [], stranger.note())).status_code == 404
    # old above the checkpoint size: 400; malformed bodies: 400.
    assert client.post("/add-checkpoint", content=body(13, [], log.note())).status_code == 400
    for junk in [b"", b"old 8\n", b"old 08\n\n" + log.note().encode(), b"new 8\n\n" + log.note().encode()]:
        assert client.post("/add-checkpoint", content=junk).status_code == 400
    assert client.post("/add-checkpoint", content=body(8, good, log.note())).status_code == 200


def test_zero_size_and_proofs_from_zero(witness: Witness, signer: Signer) -> None:
    zero = Checkpoint(ORIGIN, 0, bytes(32)).sign(signer)
    assert witness.add_checkpoint(body(0, [], zero)).status == 422
    assert witness.add_checkpoint(body(0, [], Checkpoint(ORIGIN, 0, EMPTY_ROOT).sign(signer))).status == 200
    log = FakeLog(signer)
    log.grow(4)
    junk = [base64.b64encode(bytes(32)).decode()]
    assert witness.add_checkpoint(body(0, junk, log.note())).status == 422
    assert witness.add_checkpoint(body(0, [], log.note())).status == 200


def test_witness_refuses_a_fork_and_remembers_across_restarts(tmp_path: Path, signer: Signer) -> None:
    w = Witness(tmp_path / "w", "finance.city.example/witness", [signer.verifier])
    honest = FakeLog(signer, b"h")
    honest.grow(20)
    assert w.add_checkpoint(body(0, [], honest.note())).status == 200
    w.close()
    # Restarted witness: it still holds size 20 and its key.
    w = Witness(tmp_path / "w", "finance.city.example/witness", [signer.verifier])
    assert w.latest(ORIGIN) is not None and w.latest(ORIGIN)[0] == 20  # type: ignore[index]
    # A forked log: the same first 10 entries, different ones after: properly signed by the log key.
    fork = FakeLog(signer, b"h")
    fork.grow(10)
    fork.grow(15, tag=b"evil")
    for old, proof in [(20, []), (20, fork.proof(20) if len(fork.leaves) > 20 else [])]:
        a = w.add_checkpoint(body(old, proof, fork.note()))
        assert a.status == 422, a.body
    same_size_fork = FakeLog(signer, b"h")
    same_size_fork.grow(10)
    same_size_fork.grow(10, tag=b"evil")
    assert w.add_checkpoint(body(20, [], same_size_fork.note())).status == 422
    assert w.latest(ORIGIN)[0] == 20  # type: ignore[index]
    honest.grow(5)
    assert w.add_checkpoint(body(20, honest.proof(20), honest.note())).status == 200
    w.close()


@pytest.fixture
def live_witnesses(tmp_path: Path) -> Iterator[list[tuple[Witness, str]]]:
    """Two witnesses on real sockets; they follow the log key created in tmp_path/ledger."""
    signer_path = tmp_path / "ledger"
    with Ledger.open(signer_path, origin=ORIGIN):
        pass
    log_vkey = Verifier.from_vkey((signer_path / "log.vkey").read_text().strip())
    servers, out = [], []
    for k in range(2):
        w = Witness(tmp_path / f"w{k}", f"dept{k}.city.example/witness", [log_vkey])
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(witness_app(w), host="127.0.0.1", port=port, log_level="error")
        )
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        servers.append((server, th))
        out.append((w, f"{w.vkey}@http://127.0.0.1:{port}"))
    yield out
    for server, th in servers:
        server.should_exit = True
        th.join(10)
    for w, _ in out:
        w.close()


def test_log_gets_cosigned_over_http(tmp_path: Path, live_witnesses: list[tuple[Witness, str]]) -> None:
    refs = [WitnessRef.parse(spec) for _, spec in live_witnesses]
    wkeys = [r.verifier for r in refs]
    with Ledger.open(tmp_path / "ledger", witnesses=refs, interval=60) as lg:
        lg.append_many([("use", {"n": n}) for n in range(300)])
        lg.flush()
        v = open_checkpoint(lg.checkpoint_note(), lg.verifier, wkeys, quorum=2)
        assert v.checkpoint.size == 300 and len(v.cosigned_by) == 2
        lg.append_many([("use", {"n": n}) for n in range(300, 310)])
        lg.flush()  # second round: the witnesses check a consistency proof 300 -> 310
        v = open_checkpoint(lg.checkpoint_note(), lg.verifier, wkeys, quorum=2)
        assert v.checkpoint.size == 310
    for w, _ in live_witnesses:
        assert w.latest(ORIGIN)[0] == 310  # type: ignore[index]
    # A witness that lost track (we forget what it holds) is caught up through its 409 answer.
    (tmp_path / "ledger" / "witnesses.json").unlink()
    with Ledger.open(tmp_path / "ledger", witnesses=refs, interval=60) as lg:
        lg.append("use", {"n": 310})
        lg.flush()
        assert len(open_checkpoint(lg.checkpoint_note(), lg.verifier, wkeys, quorum=2).cosigned_by) == 2


def test_unreachable_witness_does_not_stop_the_log(tmp_path: Path) -> None:
    ghost = Signer.generate("ghost.example/w", 0x04)
    ref = WitnessRef.parse(f"{ghost.verifier.vkey}@http://127.0.0.1:{_free_port()}")
    with Ledger.open(tmp_path / "lg", origin=ORIGIN, witnesses=[ref], witness_timeout=0.5) as lg:
        lg.append("use", {"n": 1})
        assert lg.flush().size == 1
        with pytest.raises(NoteError):
            open_checkpoint(lg.checkpoint_note(), lg.verifier, [ref.verifier], quorum=1)


@pytest.mark.slow
def test_witness_command_serves_over_a_socket(tmp_path: Path, signer: Signer) -> None:
    import os
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    (tmp_path / "city.vkey").write_text(signer.verifier.vkey + "\n")
    code = "import typer; from citybase.cli.ledger import witness; typer.run(witness)"
    args = ["--root", str(tmp_path / "w"), "--name", "health.city.example/witness"]
    args += ["--log-key", str(tmp_path / "city.vkey"), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, "witness did not start"
                time.sleep(0.1)
        log = FakeLog(signer)
        log.grow(3)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/add-checkpoint", data=body(0, [], log.note()))
        with urllib.request.urlopen(req, timeout=10) as r:
            line = r.read().decode()
        wkey = (tmp_path / "w" / "witness.vkey").read_text().strip()
        text = Checkpoint.parse(log.note()).format()
        assert open_note(text + "\n" + line, [Verifier.from_vkey(wkey)]).signed_by[wkey] > 0
    finally:
        p.terminate()
        p.wait(10)
        assert p.stdout is not None
        out = p.stdout.read().decode()
        p.stdout.close()
    assert "witness key:" in out and "PRIVATE" not in out
