"""`citybase departments`, `citybase systems`, `citybase keys`: who may act on the platform."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from citybase.cli.main import DEFAULT_ROOT, Root, _open, app, console, print_table
from citybase.registry import Role

departments_app = typer.Typer(help="Departments (tenants) of the platform.", no_args_is_help=True)
systems_app = typer.Typer(help="Information systems of the departments.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: issue, list, rotate, revoke.", no_args_is_help=True)
app.add_typer(departments_app, name="departments")
app.add_typer(systems_app, name="systems")
app.add_typer(keys_app, name="keys")


@departments_app.command("add")
def add_department(
    id: Annotated[str, typer.Argument(help="Short id, e.g. ps.")],
    name: Annotated[str | None, typer.Argument(help="Full name.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Register a department (idempotent)."""
    with _open(root) as cb:
        d = cb.registry.add_department(id, name)
        console.print(f"department [bold]{d.id}[/bold] ({d.name})")


@departments_app.command("list")
def list_departments(root: Root = DEFAULT_ROOT) -> None:
    """List departments."""
    with _open(root) as cb:
        rows = [{"id": d.id, "name": d.name} for d in cb.registry.departments()]
        print_table(
            pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("name", pa.string())]))
        )


@systems_app.command("add")
def add_system(
    department: Annotated[str, typer.Argument(help="Owning department.")],
    id: Annotated[str, typer.Argument(help="Short id of the system.")],
    name: Annotated[str | None, typer.Argument(help="Full name.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Register an information system of a department (idempotent)."""
    with _open(root) as cb:
        s = cb.registry.add_system(department, id, name)
        console.print(f"system [bold]{s.id}[/bold] of {s.department} ({s.name})")


@systems_app.command("list")
def list_systems(
    department: Annotated[str | None, typer.Option(help="Only this department's.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """List information systems."""
    with _open(root) as cb:
        rows = [
            {"id": s.id, "department": s.department, "name": s.name} for s in cb.registry.systems(department)
        ]
        print_table(pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())}))


@keys_app.command("issue")
def issue(
    department: Annotated[str, typer.Argument(help="The department the key acts for.")],
    role: Annotated[Role, typer.Option(help="member, or admin for the platform operator.")] = Role.MEMBER,
    system: Annotated[str | None, typer.Option(help="Bind the key to one information system.")] = None,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
    expires: Annotated[datetime | None, typer.Option(help="Expiry (UTC).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the key to this file (mode 0600) instead of printing it.")
    ] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Issue an API key. The key is shown once; only its hash is kept."""
    with _open(root) as cb:
        k = cb.registry.issue_key(department, role=role, system=system, label=label, expires_at=expires)
    if out is not None:
        out.touch(mode=0o600)
        out.write_text(k.key + "\n")
        console.print(f"key {k.info.key_id} for {department} written to {out}")
    else:
        console.print(f"key {k.info.key_id} for {department} ({k.info.role.value}); store it now:")
        typer.echo(k.key)


@keys_app.command("list")
def list_keys(
    department: Annotated[str | None, typer.Option(help="Only this department's.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """List keys (never their secrets)."""
    with _open(root) as cb:
        rows = [
            {
                "key_id": k.key_id,
                "department": k.department,
                "system": k.system,
                "role": k.role.value,
                "label": k.label,
                "created_at": k.created_at,
                "expires_at": k.expires_at,
                "active": k.active,
            }
            for k in cb.registry.keys(department)
        ]
        print_table(pa.Table.from_pylist(rows) if rows else pa.table({"key_id": pa.array([], pa.string())}))


@keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key to replace.")], root: Root = DEFAULT_ROOT
) -> None:
    """Issue a replacement key and revoke the old one at once."""
    with _open(root) as cb:
        k = cb.registry.rotate_key(key_id)
    console.print(f"key {key_id} revoked; new key {k.info.key_id}; store it now:")
    typer.echo(k.key)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key to revoke.")], root: Root = DEFAULT_ROOT
) -> None:
    """Revoke a key: the next request with it gets 401."""
    with _open(root) as cb:
        cb.registry.revoke_key(key_id)
    console.print(f"key {key_id} revoked")
