"""`citybase iot`: devices, rules, the devices' latest state, and the MQTT bridge run on its own.

A thin shell over `citybase.iot`; every command takes `--root` (or CITYBASE_ROOT).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from citybase.errors import CitybaseError, InputError, invalid

iot_app = typer.Typer(
    help="IoT devices over MQTT: registry, rules, latest state, and the bridge.", no_args_is_help=True
)
devices_app = typer.Typer(help="The device registry.", no_args_is_help=True)
rules_app = typer.Typer(help="Threshold rules that raise alarms (dataset iot_alarms).", no_args_is_help=True)
iot_app.add_typer(devices_app, name="devices")
iot_app.add_typer(rules_app, name="rules")

console = Console()
err = Console(stderr=True)

Root = Annotated[
    Path, typer.Option("--root", envvar="CITYBASE_ROOT", help="Folder of the embedded platform.")
]
DEFAULT_ROOT = Path(".citybase")
Department = Annotated[str | None, typer.Option("--department", help="Only this department's.")]


def _open(root: Path) -> Any:
    from citybase.platform import CityBase

    return CityBase.open(root)


def _fail(e: CitybaseError) -> typer.Exit:
    err.print(f"[red]error:[/red] {e}")
    return typer.Exit(1)


def _payload(items: list[str]) -> dict[str, dict[str, Any]]:
    """`key=field` or `key=field*scale` -> the device's payload schema."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, target = item.partition("=")
        if not sep or not key or not target:
            raise InputError(f"--map {item!r}: expected KEY=FIELD or KEY=FIELD*SCALE")
        field, _, scale = target.partition("*")
        try:
            out[key] = {"field": field, "scale": float(scale) if scale else 1.0}
        except ValueError:
            raise InputError(f"--map {item!r}: scale {scale!r} is not a number") from None
    return out


# -- devices ----------------------------------------------------------------------------------


@devices_app.command("add")
def devices_add(
    device_id: Annotated[str, typer.Argument(help="Device id (its MQTT topic's <device_id>).")],
    type: Annotated[str, typer.Option("--type", help="Device type, e.g. air_quality.")],
    department: Annotated[str, typer.Option("--department", help="Owning department.")],
    dataset: Annotated[str, typer.Option("--dataset", help="The series dataset it feeds.")],
    lon: Annotated[float, typer.Option("--lon", help="Longitude (WGS 84).")],
    lat: Annotated[float, typer.Option("--lat", help="Latitude (WGS 84).")],
    map: Annotated[list[str], typer.Option("--map", help="Payload key to field: KEY=FIELD[*SCALE].")],
    root: Root = DEFAULT_ROOT,
) -> None:
    """Register (or update) one device."""
    from pydantic import ValidationError

    from citybase.iot.devices import Device, DeviceRegistry, check_device

    try:
        dev = Device.model_validate(
            dict(
                id=device_id,
                type=type,
                department=department,
                dataset=dataset,
                lon=lon,
                lat=lat,
                payload=_payload(map),
            )
        )
        with _open(root) as cb:
            check_device(dev, cb.datasets.get(dev.dataset))
            DeviceRegistry(cb.meta).add(dev)
    except ValidationError as e:
        raise _fail(invalid("the options", "device", e)) from e
    except CitybaseError as e:
        raise _fail(e) from e
    console.print(f"device [bold]{dev.id}[/bold] registered: {dev.dataset} ({dev.department})")


@devices_app.command("import")
def devices_import(
    file: Annotated[Path, typer.Argument(help="YAML/JSON: `devices: [...]` (see docs/iot.md).")],
    root: Root = DEFAULT_ROOT,
) -> None:
    """Register every device of a file; all are checked before any is stored."""
    from citybase.iot.devices import DeviceRegistry, check_device, read_devices

    try:
        devices = read_devices(file)
        with _open(root) as cb:
            for d in devices:
                check_device(d, cb.datasets.get(d.dataset))
            reg = DeviceRegistry(cb.meta)
            for d in devices:
                reg.add(d)
    except CitybaseError as e:
        raise _fail(e) from e
    console.print(f"{len(devices)} devices registered from {file}")


@devices_app.command("list")
def devices_list(department: Department = None, root: Root = DEFAULT_ROOT) -> None:
    """List registered devices."""
    import pyarrow as pa

    from citybase.cli.main import print_table
    from citybase.iot.devices import DeviceRegistry

    with _open(root) as cb:
        devs = DeviceRegistry(cb.meta).list(department)
    rows = [
        {
            "id": d.id,
            "type": d.type,
            "department": d.department,
            "dataset": d.dataset,
            "lon": d.lon,
            "lat": d.lat,
            "payload": ", ".join(f"{k}->{p.field}" for k, p in d.payload.items()),
        }
        for d in devs
    ]
    print_table(
        pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())}), "devices"
    )


@devices_app.command("remove")
def devices_remove(
    device_id: Annotated[str, typer.Argument(help="Device id.")], root: Root = DEFAULT_ROOT
) -> None:
    """Remove a device (its stored readings stay)."""
    from citybase.iot.devices import DeviceRegistry

    try:
        with _open(root) as cb:
            DeviceRegistry(cb.meta).remove(device_id)
    except CitybaseError as e:
        raise _fail(e) from e
    console.print(f"device {device_id} removed")


# -- rules ------------------------------------------------------------------------------------


@rules_app.command("import")
def rules_import(
    file: Annotated[Path, typer.Argument(help="YAML/JSON: `rules: [...]` (see docs/iot.md).")],
    root: Root = DEFAULT_ROOT,
) -> None:
    """Add (or replace) every rule of a file; all are checked before any is stored."""
    from citybase.iot.rules import RuleBook, check_rule, read_rules

    try:
        with _open(root) as cb:
            rules = [check_rule(r, cb.datasets.get(r.dataset)) for r in read_rules(file)]
            book = RuleBook(cb.meta)
            for r in rules:
                book.add(r)
    except CitybaseError as e:
        raise _fail(e) from e
    console.print(f"{len(rules)} rules stored from {file}")


@rules_app.command("list")
def rules_list(department: Department = None, root: Root = DEFAULT_ROOT) -> None:
    """List threshold rules."""
    import pyarrow as pa

    from citybase.cli.main import print_table
    from citybase.iot.rules import RuleBook

    with _open(root) as cb:
        rules = RuleBook(cb.meta).list(department)
    rows = [
        r.model_dump(include={"id", "dataset", "field", "op", "value", "hysteresis", "severity"})
        for r in rules
    ]
    print_table(pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())}), "rules")


@rules_app.command("remove")
def rules_remove(rule_id: Annotated[str, typer.Argument(help="Rule id.")], root: Root = DEFAULT_ROOT) -> None:
    """Remove a rule (alarms it raised stay)."""
    from citybase.iot.rules import RuleBook

    try:
        with _open(root) as cb:
            RuleBook(cb.meta).remove(rule_id)
    except CitybaseError as e:
        raise _fail(e) from e
    console.print(f"rule {rule_id} removed")


# -- state and the bridge ---------------------------------------------------------------------


@iot_app.command("state")
def state(
    department: Department = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per device.")] = False,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Each device's latest reading, with its place keys (the digital twin's current state)."""
    from citybase.cli.main import print_table
    from citybase.iot.state import latest_state

    with _open(root) as cb:
        t = latest_state(cb, department)
    if as_json:
        for r in t.to_pylist():
            console.print_json(json.dumps(r, default=str))
    else:
        print_table(t, "latest state")


@iot_app.command("bridge")
def bridge(
    url: Annotated[
        str, typer.Option("--url", envvar="CITYBASE_MQTT_URL", help="mqtt://[user:pass@]host:port")
    ],
    client_id: Annotated[str, typer.Option("--client-id", help="Fixed id: the broker's session.")] = (
        "citybase-bridge"
    ),
    batch_ms: Annotated[float, typer.Option("--batch-ms", help="Gather messages this long.")] = 20.0,
    flush_interval: Annotated[float, typer.Option("--flush-interval", help="Seconds between flushes.")] = 1.0,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Run the MQTT bridge (and a flusher) on its own until Ctrl-C; `citybase serve` runs it too."""
    from citybase.iot.bridge import MqttBridge

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _open(root) as cb:
        b = MqttBridge(cb, url, client_id=client_id, batch_ms=batch_ms)
        b.start()
        console.print(f"bridge {client_id} -> {b.broker.redacted}; Ctrl-C to stop")
        try:
            while not stop.wait(flush_interval):
                try:
                    cb.flush()
                except Exception as e:  # the rows stay durable in the log; retried next time
                    err.print(f"[yellow]flush failed, retrying:[/yellow] {e}")
        except KeyboardInterrupt:
            pass
        finally:
            b.stop()
        s = b.stats
        console.print(f"stored {s.stored}, quarantined {s.quarantined}, alarms {s.alarms}")
