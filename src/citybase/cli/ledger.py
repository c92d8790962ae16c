"""`citybase ledger ...` and `citybase witness`: inspect, prove, verify and audit the ledger, and run
a department's witness. Verification commands work offline from files and trusted keys."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from citybase.errors import CitybaseError
from citybase.ledger.log import LogView
from citybase.ledger.note import NoteError, Verifier

ledger_app = typer.Typer(
    help="The tamper-evident ledger: checkpoints, proofs, offline verification, audits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

Root = Annotated[
    Path,
    typer.Option(
        "--root", envvar="CITYBASE_ROOT", help="Folder of the embedded platform (ledger in ROOT/ledger)."
    ),
]
DEFAULT_ROOT = Path(".citybase")
LogKey = Annotated[
    str | None,
    typer.Option(
        "--log-key",
        envvar="CITYBASE_LOG_KEY",
        help="The log's verifier key (name+id+key) or a file holding it. Trust it from a source you trust.",
    ),
]
WitnessKeys = Annotated[
    list[str] | None,
    typer.Option("--witness-key", help="A witness verifier key (or file) whose cosignature counts; repeat."),
]
Quorum = Annotated[int, typer.Option(help="Witness cosignatures required on the (newer) checkpoint.")]


def _fail(msg: str) -> NoReturn:
    err.print(f"[red]✗ {msg}[/red]")
    raise typer.Exit(1)


def _view(root: Path) -> LogView:
    path = root / "ledger" if (root / "ledger").is_dir() else root
    if not (path / "log.vkey").exists():
        _fail(f"no ledger in {path}")
    return LogView(path)


def _key(spec: str) -> Verifier:
    from citybase.ledger.keys import read_vkey

    try:
        return read_vkey(spec)
    except (NoteError, OSError) as e:
        _fail(f"bad verifier key {spec!r}: {e}")


@ledger_app.command()
def checkpoint(root: Root = DEFAULT_ROOT) -> None:
    """Print the latest signed checkpoint (the tree head every proof is checked against)."""
    view = _view(root)
    try:
        note = view.checkpoint_note()
        cp = view.checkpoint()
    except CitybaseError as e:
        _fail(str(e))
    console.print(f"[dim]origin[/dim] {cp.origin}   [dim]size[/dim] {cp.size:,}")
    typer.echo(note, nl=False)


@ledger_app.command()
def proof(
    index: Annotated[int | None, typer.Argument(help="Entry index.")] = None,
    find: Annotated[
        str | None, typer.Option("--find", help="Locate the entry by leaf hash (hex), batch, digest or id.")
    ] = None,
    old: Annotated[
        int | None, typer.Option("--old", help="Instead: a consistency proof from this tree size to now.")
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Prove against this older published tree size (verify with your own --checkpoint)."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the JSON here.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Write a self-contained proof (JSON): entry + inclusion proof + signed checkpoint, or with
    --old a consistency proof. Hand it to anyone; they check it with `citybase ledger verify`."""
    view = _view(root)
    try:
        if old is not None:
            doc = view.consistency_bundle(old)
        else:
            if index is None:
                if not find:
                    _fail("give an INDEX or --find KEY")
                found = view.find(str(find).lower() if len(str(find)) == 64 else str(find))
                if not found:
                    _fail(f"no ledger entry for {find!r}")
                index = found[0]
            doc = view.proof_bundle(index, size)
    except CitybaseError as e:
        _fail(str(e))
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"[green]wrote {output}[/green]")
    else:
        typer.echo(text, nl=False)


@ledger_app.command()
def verify(
    proof_file: Annotated[
        Path | None, typer.Argument(help="A proof bundle from `citybase ledger proof` or GET /ledger/proof.")
    ] = None,
    log_key: LogKey = None,
    witness_key: WitnessKeys = None,
    quorum: Quorum = 0,
    entry: Annotated[
        Path | None, typer.Option(help="The entry as you hold it (bytes); it must be the one proven.")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="A signed checkpoint you hold (e.g. from your witness) to check against."
        ),
    ] = None,
    old: Annotated[Path | None, typer.Option(help="An older signed checkpoint you trust.")] = None,
    new: Annotated[
        Path | None, typer.Option(help="A newer signed checkpoint that must extend --old.")
    ] = None,
    consistency: Annotated[
        Path | None, typer.Option(help="Consistency proof JSON (`citybase ledger proof --old N`).")
    ] = None,
    audit: Annotated[
        Path | None, typer.Option("--audit", help="Fully audit this ledger folder (or platform root).")
    ] = None,
    lake: Annotated[
        Path | None, typer.Option(help="With --audit: rehash the lake files ingest entries list, under here.")
    ] = None,
) -> None:
    """Verify OFFLINE: an entry is in the log (PROOF_FILE), a newer checkpoint extends an older one
    (--old/--new/--consistency), or everything in a ledger folder (--audit)."""
    from citybase.ledger.audit import audit as run_audit
    from citybase.ledger.verify import verify_entry, verify_extends

    if proof_file is None and old is None and audit is None:
        _fail("nothing to verify: give PROOF_FILE, --old/--new/--consistency, or --audit")
    wkeys = [_key(k) for k in witness_key or []]
    try:
        lkey = _key(log_key) if log_key else None
        if audit is not None:
            path = audit / "ledger" if (audit / "ledger" / "log.vkey").exists() else audit
            if lkey is None:
                err.print(
                    "[yellow]no --log-key: checking against the folder's own key (consistency only)[/yellow]"
                )
            rep = run_audit(path, lkey, lake)
            t = Table(title=f"audit of {path}", header_style="bold cyan")
            for c in ("tree size", "entries", "tiles checked", "lake files", "retired files"):
                t.add_column(c, justify="right")
            t.add_row(*(f"{n:,}" for n in (rep.size, rep.entries, rep.tiles, rep.lake_files, rep.retired)))
            console.print(t)
            for p in rep.problems:
                err.print(f"[red]✗ {p}[/red]")
            if not rep.ok:
                raise typer.Exit(1)
            console.print("[green]✓ audit passed: every entry, tile and checkpoint root agrees[/green]")
        if proof_file is not None:
            if lkey is None:
                _fail("--log-key is required to verify proofs")
            bundle = json.loads(proof_file.read_text(encoding="utf-8"))
            ep = verify_entry(
                bundle,
                lkey,
                wkeys,
                quorum,
                entry.read_bytes() if entry else None,
                checkpoint.read_text(encoding="utf-8") if checkpoint else None,
            )
            cp = ep.checkpoint.checkpoint
            console.print(
                f"[green]✓ entry {ep.index:,} ({ep.entry.get('kind')}) is in {cp.origin} at size {cp.size:,}"
                + (f", cosigned by {len(ep.checkpoint.cosigned_by)} witness(es)" if wkeys else "")
                + "[/green]"
            )
        if old is not None:
            if lkey is None:
                _fail("--log-key is required to verify proofs")
            if new is None or consistency is None:
                _fail("--old needs --new and --consistency")
            else:
                o, n = verify_extends(
                    old.read_text(encoding="utf-8"),
                    new.read_text(encoding="utf-8"),
                    json.loads(consistency.read_text(encoding="utf-8")),
                    lkey,
                    wkeys,
                    quorum,
                )
                console.print(
                    f"[green]✓ checkpoint of size {n.size:,} extends the one of size {o.size:,}[/green]"
                )
    except (CitybaseError, NoteError, OSError, ValueError, KeyError) as e:
        _fail(f"{type(e).__name__}: {e}")


@ledger_app.command()
def keygen(
    name: Annotated[str, typer.Argument(help="Key name, e.g. health.city.example/witness.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Private key file (created mode 0600).")],
    witness: Annotated[bool, typer.Option(help="A witness (cosignature, type 0x04) key.")] = False,
) -> None:
    """Create a signing key file and print its verifier key (share the vkey, never the file)."""
    from citybase.ledger.keys import load_or_create
    from citybase.ledger.note import COSIGNATURE_V1, ED25519

    if output.exists():
        _fail(f"{output} exists; not overwriting a key")
    s = load_or_create(output, name, COSIGNATURE_V1 if witness else ED25519)
    typer.echo(s.verifier.vkey)


def witness(
    root: Annotated[
        Path, typer.Option("--root", help="Witness state folder (key and cosigned checkpoints).")
    ],
    log_key: Annotated[
        list[str],
        typer.Option("--log-key", help="Verifier key (or file) of a log this witness follows; repeat."),
    ],
    name: Annotated[str | None, typer.Option(help="Witness key name (default: <hostname>/witness).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7380,
) -> None:
    """Run a C2SP tlog-witness: cosign each city log checkpoint that extends the last one cosigned.

    So the platform cannot show departments different histories.
    """
    import uvicorn

    from citybase.ledger.witness import Witness, witness_app

    w = Witness(root, name or f"{socket.gethostname()}/witness", [_key(k) for k in log_key])
    console.print(f"witness key: [bold]{w.vkey}[/bold]")
    console.print(f"following: {', '.join(sorted(w.logs))}")
    console.print(f"submission URL: http://{host}:{port}  (logs add `{w.vkey}@http://{host}:{port}`)")
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(witness_app(w), host=host, port=port, log_level="info")
