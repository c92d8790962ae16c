"""NGSI-LD (ETSI GS CIM 009 v1.9.1) under /ngsi-ld/v1.

`install(app)` builds the platform's ContextService (app.state.ngsi), mounts the routes and maps
NGSI-LD errors to ProblemDetails. The domain lives in `citybase.context`; these modules only
translate HTTP.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from citybase.context.contexts import ContextRegistry
from citybase.context.errors import NgsiError
from citybase.context.service import ContextService

log = logging.getLogger("citybase.api.ngsi_ld")
PREFIX = "/ngsi-ld/v1"
_EMPTY_ID = re.compile(r"^/(temporal/)?(entities|subscriptions)(/[^/]+)*//")


def _problem(request: Request | None, exc: Exception) -> Response:
    assert isinstance(exc, NgsiError)
    body: dict[str, Any] = exc.problem()
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "ResourceNotFound", 405: "OperationNotSupported"}
    name = names.get(exc.status_code, "InvalidRequest")
    body = {
        "type": f"https://uri.etsi.org/ngsi-ld/errors/{name}",
        "title": str(exc.detail),
        "detail": f"{request.method} {request.url.path}: {exc.detail}",
    }
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def context_registry(settings: Any) -> ContextRegistry:
    """The @context registry the settings ask for: contexts preloaded from files, remote fetch."""
    reg = ContextRegistry(
        allow_remote=bool(getattr(settings, "ngsi_ld_fetch_contexts", False)),
        base_url=f"http://{getattr(settings, 'host', '127.0.0.1')}:{getattr(settings, 'port', 0)}",
    )
    contexts = getattr(settings, "ngsi_ld_contexts", None) or {}
    for url, path in dict(contexts).items():
        reg.load_file(url, path)
    return reg


def load_context_map(reg: ContextRegistry, path: str | Path) -> int:
    """Register the contexts of a JSON map file {url: file path, relative to the map}."""
    p = Path(path)
    mapping = json.loads(p.read_text("utf-8"))
    for url, file in mapping.items():
        reg.load_file(url, p.parent / file)
    return len(mapping)


class TrailingSlash:
    """Treat `/ngsi-ld/v1/entities/` as `/ngsi-ld/v1/entities` (the ETSI suite writes both), without
    a redirect round trip."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(PREFIX) and _EMPTY_ID.match(path[len(PREFIX) :]):
                from citybase.context.errors import BadRequestData

                resp = _problem(None, BadRequestData(f"{path}: an id is missing from the path"))
                await resp(scope, receive, send)
                return
            if path.startswith(PREFIX) and len(path) > len(PREFIX) + 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/")
                scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


class Dispatch:
    """Send /ngsi-ld/v1 requests straight to the NGSI-LD app, recording the same request metrics
    as the platform's access middleware but without its per-request task group and log line
    (about a third of the cost of a GET; docs/adr/0004). Other paths go on unchanged."""

    def __init__(self, app: Any, ngsi: Any, metrics: Any) -> None:
        self.app, self.ngsi, self.metrics = app, ngsi, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + PREFIX
        try:
            await self.ngsi(child, receive, sending)
        finally:
            if self.metrics is not None:
                self.metrics.requests.labels(scope["method"], PREFIX, str(status[0])).inc()
                self.metrics.latency.labels(PREFIX).observe(time.perf_counter() - t0)


def install(app: FastAPI) -> None:
    """Mount the NGSI-LD routes and their spec-exact error handling on the app."""
    from citybase.api.ngsi_ld import batch, contexts, entities, registrations, subscriptions, temporal, types

    settings = app.state.settings
    cb = app.state.cb
    service = ContextService(cb.meta, contexts=context_registry(settings), platform=cb)
    app.state.ngsi = service
    fusion = getattr(cb, "fusion", None)
    if fusion is not None:  # the fused city entities, read-only and through grants (docs/fusion.md)
        service.providers.append(fusion.ngsi)
    if getattr(settings, "ngsi_ld_open_on_loopback", False):
        host = str(getattr(settings, "host", ""))
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("ngsi_ld_open_on_loopback needs host 127.0.0.1, ::1 or localhost")
        log.warning("NGSI-LD API is OPEN WITHOUT API KEYS on loopback (%s): test use only", host)
    routes = [
        r
        for m in (entities, batch, types, temporal, subscriptions, contexts, registrations)
        for r in m.router.routes
    ]
    sub = Starlette(routes=routes, exception_handlers={NgsiError: _problem, HTTPException: _http})
    sub.state = app.state  # handlers read app.state.cb / settings / ngsi through request.app
    app.add_middleware(Dispatch, ngsi=TrailingSlash(sub), metrics=getattr(app.state, "metrics", None))
