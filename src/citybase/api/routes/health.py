"""Liveness, readiness (no key needed) and Prometheus metrics (operator's key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from citybase.api.auth import Admin

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is up")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The lake and the metadata database answer")
def ready(request: Request) -> JSONResponse:
    cb = request.app.state.cb
    checks: dict[str, str] = {}
    try:
        cb.lake.cursor().execute("SELECT 1").fetchone()
        checks["lake"] = "ok"
    except Exception as e:  # a readiness probe reports, it does not raise
        checks["lake"] = type(e).__name__
    try:
        with cb.meta.connect() as c:
            c.execute(text("SELECT 1"))
        checks["meta"] = "ok"
    except Exception as e:
        checks["meta"] = type(e).__name__
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request, _: Admin) -> Response:
    m = request.app.state.metrics
    cb = request.app.state.cb
    m.lag.set(cb.log.oldest_age())
    m.pending.set(cb.log.pending()[1])
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
