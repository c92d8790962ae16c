"""C2SP signed-note, tlog-checkpoint and tlog-cosignature: known answers and the rejection rules."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from citybase.errors import Conflict
from citybase.ledger.checkpoint import Checkpoint, open_checkpoint
from citybase.ledger.keys import load_or_create
from citybase.ledger.merkle import EMPTY_ROOT
from citybase.ledger.note import (
    COSIGNATURE_V1,
    EM_DASH,
    NoteError,
    Signer,
    Verifier,
    cosigned_message,
    key_id,
    open_note,
    sign_note,
)

# From golang.org/x/mod/sumdb/note (the reference implementation), used as data: Ed25519 is
# deterministic, so the same key and text must give this exact signature line.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# From the C2SP signed-note spec, "Verifier keys / Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_go_reference_known_answer() -> None:
    s = Signer.from_skey(GO_SKEY)
    assert s.key_id == 0xC74F20A3
    assert s.skey == GO_SKEY
    assert s.verifier.vkey == GO_VKEY
    assert sign_note(GO_TEXT, [s]) == GO_TEXT + "\n" + GO_SIG
    assert open_note(GO_TEXT + "\n" + GO_SIG, [Verifier.from_vkey(GO_VKEY)]).text == GO_TEXT


def test_spec_example_vkey_and_note() -> None:
    v = Verifier.from_vkey(SPEC_VKEY)
    assert (v.name, v.key_id) == ("example.com/foo", 0x530D903A)
    assert v.key_id == key_id("example.com/foo", 0x01, base64.b64decode(SPEC_VKEY.split("+", 2)[2])[1:])
    assert open_note(SPEC_NOTE, [v]).text == "This is an example message.\n"
    with pytest.raises(NoteError):  # one changed letter in the text
        open_note(SPEC_NOTE.replace("example message", "example massage"), [v])


@pytest.mark.parametrize(
    "vkey",
    [
        SPEC_VKEY.replace("530d903a", "530d903b"),  # wrong key id
        SPEC_VKEY.replace("example.com/foo", "example.com/bar"),  # name not in the key id
        "example.com/foo+530d903a",
        "example.com/foo+530d903a+!!!",
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        Verifier.from_vkey(vkey)


def test_signature_rules() -> None:
    a, b = Signer.generate("a.example/log"), Signer.generate("b.example/log")
    note = sign_note("hello\n", [a, b])
    assert open_note(note, [a.verifier]).signed_by == {a.verifier.vkey: 0}  # b unknown: ignored
    with pytest.raises(NoteError, match="not signed by any trusted key"):
        open_note(sign_note("hello\n", [b]), [a.verifier])
    # A signature line with the right name and id but a wrong signature rejects the whole note.
    forged = "hello\n\n" + b.signature_line("other\n").replace("b.example/log", "a.example/log", 1)
    forged = forged.replace(
        forged.split(" ")[-1],
        base64.b64encode(a.key_id.to_bytes(4, "big") + b.sign("x\n")[4:]).decode() + "\n",
    )
    with pytest.raises(NoteError, match="does not verify"):
        open_note(forged + a.signature_line("hello\n"), [a.verifier])
    for malformed in [
        "hello\n",
        "hello\n\n",
        "hel\x01lo\n\n" + a.signature_line("hel\x01lo\n"),
        "hello\n\nnot a sig\n",
    ]:
        with pytest.raises(NoteError):
            open_note(malformed, [a.verifier])


def test_cosignature_v1_message_and_timestamp() -> None:
    w = Signer.generate("witness.example/w1", COSIGNATURE_V1)
    body = Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    ).format()
    assert cosigned_message(body, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    sig = w.sign(body, timestamp=1679315147)
    assert len(sig) == 4 + 8 + 64 and sig[4:12] == (1679315147).to_bytes(8, "big")
    # The key id of a cosigner commits to type 0x04, so the same key as 0x01 is a different key.
    assert w.key_id != key_id(w.name, 0x01, w.verifier.public.public_bytes_raw())
    assert base64.b64decode(w.verifier.vkey.split("+", 2)[2])[0] == 0x04
    opened = open_note(body + "\n" + f"{EM_DASH} {w.name} {base64.b64encode(sig).decode()}\n", [w.verifier])
    assert opened.signed_by == {w.verifier.vkey: 1679315147}
    tampered = sig[:4] + (1679315148).to_bytes(8, "big") + sig[12:]
    with pytest.raises(NoteError):
        open_note(body + "\n" + f"{EM_DASH} {w.name} {base64.b64encode(tampered).decode()}\n", [w.verifier])


def test_checkpoint_format_and_parse() -> None:
    cp = Checkpoint(
        "citybase.example/demo", 20852163, base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    )
    assert cp.format() == "citybase.example/demo\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert Checkpoint.parse(cp.format()) == cp
    assert Checkpoint.parse("o\n0\n" + base64.b64encode(EMPTY_ROOT).decode() + "\next\n").extensions == (
        "ext",
    )
    for bad in [
        "o\n01\nAAAA\n",
        "o\n1\n",
        "o\n1\n" + "A" * 44 + "\n\n",
        "o\n-1\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",
    ]:
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_open_checkpoint_checks_key_origin_and_quorum() -> None:
    log = Signer.generate("citybase.example/demo")
    other = Signer.generate("citybase.example/other")
    w1, w2 = (Signer.generate(f"w{i}.example", COSIGNATURE_V1) for i in (1, 2))
    cp = Checkpoint("citybase.example/demo", 3, bytes(32))
    note = cp.sign(log) + w1.signature_line(cp.format())
    v = open_checkpoint(note, log.verifier, [w1.verifier, w2.verifier], quorum=1)
    assert v.checkpoint == cp and list(v.cosigned_by) == [w1.verifier.vkey]
    with pytest.raises(NoteError, match="2 required"):
        open_checkpoint(note, log.verifier, [w1.verifier, w2.verifier], quorum=2)
    with pytest.raises(NoteError):
        open_checkpoint(Checkpoint("citybase.example/demo", 3, bytes(32)).sign(other), log.verifier)
    wrong_origin = Checkpoint("citybase.example/other", 3, bytes(32)).sign(log)
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(wrong_origin, log.verifier)
    with pytest.raises(NoteError):  # a witness signature alone is not the log's
        open_checkpoint(cp.format() + "\n" + w1.signature_line(cp.format()), log.verifier, [w1.verifier])


def test_key_files_are_private_and_stable(tmp_path: Path) -> None:
    s = load_or_create(tmp_path / "log.key", "citybase.example/demo")
    assert stat.S_IMODE((tmp_path / "log.key").stat().st_mode) == 0o600
    assert (tmp_path / "log.vkey").read_text().strip() == s.verifier.vkey
    assert load_or_create(tmp_path / "log.key", "citybase.example/demo").skey == s.skey
    assert s.skey not in repr(s)
    with pytest.raises(Conflict):
        load_or_create(tmp_path / "log.key", "citybase.example/else")
    os.chmod(tmp_path / "log.key", 0o644)
    with pytest.raises(Conflict, match="readable by others"):
        load_or_create(tmp_path / "log.key", "citybase.example/demo")
