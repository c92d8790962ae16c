"""The ASGI application: `create_app(citybase, settings)`.

One process serves everything on the embedded default. A background thread moves the append log
into the lake every `flush_interval` seconds, so an acknowledged row is durable at once and
queryable within about that interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.applications import Starlette

from citybase import __version__
from citybase.api import ngsi_ld
from citybase.api.observe import Metrics, access_middleware
from citybase.api.routes import datasets, fusion, health, ingest, iot, ops, registry, share
from citybase.api.settings import Settings
from citybase.console.routes import router as console_router
from citybase.errors import CitybaseError
from citybase.ledger.http import ledger_routes

if TYPE_CHECKING:
    from citybase.platform import CityBase

log = logging.getLogger("citybase.api")

DESCRIPTION = """The shared data base of a digital-twin city.

Every endpoint but `/health` and `/ready` needs an API key (`Authorization: Bearer <key>`); a key acts
for one department. Errors are `{"error": <code>, "detail": <message>}` with the HTTP status.
"""


class Service(Protocol):
    """Something that runs beside the HTTP API for the server's lifetime (the MQTT bridge...)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def services(cb: CityBase, settings: Settings, metrics: Metrics) -> list[Service]:
    """The background services the settings ask for, besides the flusher."""
    out: list[Service] = []
    if settings.mqtt_url:
        from citybase.iot.bridge import MqttBridge

        out.append(MqttBridge(cb, settings.mqtt_url, metrics=metrics))
    return out


class Maintainer:
    """Merges the lake's small files on its own timer, in its own thread: a merge never holds up
    a flush (and so never the ingest lag) for longer than one table's merge; and forgets the
    history older than `history` seconds (None: none). Then joins the records that landed since
    to the city's entities (cb.fusion.update), off the ingest path."""

    def __init__(self, cb: CityBase, metrics: Metrics, interval: float, history: float | None):
        self.cb, self.metrics, self.interval = cb, metrics, interval
        self.history = None if history is None else timedelta(seconds=history)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citybase-maintainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                done = asdict(self.cb.maintain(self.history))
                for action, n in done.items():
                    self.metrics.maintained.labels(action).inc(n)
                if any(done.values()):
                    log.info("maintenance: %s", ", ".join(f"{n} {action}" for action, n in done.items()))
            except Exception:  # maintenance is an optimisation: the lake is correct without it
                log.exception("merging small files or expiring history failed; the lake stays as it was")
            try:
                self.cb.fusion.update()
            except Exception:  # the new records wait in the lake; the next turn tries again
                log.exception("joining new records to the city's entities failed")


class Flusher:
    """Moves the append log into the lake on a timer, and reports lag to the metrics."""

    def __init__(self, cb: CityBase, metrics: Metrics, interval: float):
        self.cb, self.metrics, self.interval = cb, metrics, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citybase-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()
        self.tick()

    def tick(self) -> None:
        try:
            self.metrics.lag.set(self.cb.log.oldest_age())
            self.metrics.pending.set(self.cb.log.pending()[1])
            if self.cb.flush():
                self.metrics.flushes.inc()
            self.cb.share.usage.flush()  # an idle server's uses still reach the meter and the ledger
            self.metrics.lag.set(self.cb.log.oldest_age())
            self.metrics.pending.set(self.cb.log.pending()[1])
        except Exception:  # keep flushing: the rows stay durable in the log meanwhile
            log.exception("flush failed; the rows stay in the append log and are retried")


def _error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CitybaseError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=exc.status, headers=headers)


def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"where": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]
    return JSONResponse({"error": "invalid_request", "detail": errors}, status_code=422)


def create_app(cb: CityBase, settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    """The HTTP API over a platform. With `background`, the log is flushed into the lake on a timer."""
    settings = settings or Settings(root=cb.root)
    metrics = Metrics()
    running: list[Service] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            running[:] = [
                Flusher(cb, metrics, settings.flush_interval),
                Maintainer(cb, metrics, settings.maintain_interval, settings.history),
                *services(cb, settings, metrics),
            ]
            for s in running:
                s.start()
        try:
            yield
        finally:
            for s in reversed(running):
                s.stop()
            app.state.ngsi.close()  # last writes, queued history, pending notifications

    app = FastAPI(
        title="citybase",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        # FastAPI's own OpenTelemetry checks the providers on every request: only when asked for.
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.cb = cb
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.flusher = Flusher(cb, metrics, settings.flush_interval)  # for a flush on demand
    app.add_exception_handler(CitybaseError, _error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.middleware("http")(access_middleware(metrics))
    for module in (health, registry, datasets, ingest, share, iot, ops, fusion):
        app.include_router(module.router)
    app.include_router(console_router)
    ngsi_ld.install(app)
    # The ledger as C2SP tlog-tiles (public, as a transparency log is: entries hold no row data).
    app.mount("/ledger", Starlette(routes=ledger_routes(cb.ledger)))
    return app
