"""`citybase serve`: the HTTP API (and the background services the settings ask for)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from citybase.cli.main import app, console

log = logging.getLogger("citybase.api")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the only addresses an open NGSI-LD API may use.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Settings file (YAML/JSON); CITYBASE_* env wins.")
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", envvar="CITYBASE_ROOT", help="Folder of the embedded platform.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    mqtt: Annotated[str | None, typer.Option(help="MQTT broker URL to subscribe to.")] = None,
) -> None:
    """Serve the HTTP API: ingest, queries, sharing, NGSI-LD, ledger, console; OpenAPI at /docs."""
    import uvicorn

    from citybase.api import Settings, create_app
    from citybase.api.observe import configure_logging
    from citybase.errors import DeclarationError
    from citybase.platform import CityBase

    settings = Settings.load(config)
    overrides = {"root": root, "host": host, "port": port, "mqtt_url": mqtt}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.log_level, settings.log_json)
    if settings.ngsi_ld_open_on_loopback:
        if not is_loopback(settings.host):
            raise DeclarationError(
                f"ngsi_ld_open_on_loopback serves NGSI-LD without keys: only on a loopback address, "
                f"not {settings.host!r}"
            )
        log.warning(
            "THE NGSI-LD API IS OPEN WITHOUT API KEYS on %s:%s (ngsi_ld_open_on_loopback): for test "
            "suites only, never in production",
            settings.host,
            settings.port,
        )
    cb = CityBase.open(
        settings.root,
        meta_url=settings.meta_url,
        threads=settings.threads,
        memory_limit=settings.memory_limit,
    )
    console.print(f"citybase serving {settings.root} on http://{settings.host}:{settings.port} (docs: /docs)")
    try:
        uvicorn.run(
            create_app(cb, settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            limit_concurrency=1000,
        )
    finally:
        cb.close()
