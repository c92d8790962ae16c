"""What the server tells its operators: structured logs and Prometheus metrics.

Logs are one JSON object per line (time, level, logger, message and the event's fields); a request
is logged with its route, status, duration and acting department, never its key.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("citybase.api")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str = "info", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger("citybase")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class Metrics:
    """The server's metrics, on a registry of its own (one per app, so tests never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "citybase_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "citybase_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.ingested = Counter("citybase_ingest_rows", "Rows accepted", ["dataset", "source"], registry=r)
        self.quarantined = Counter(
            "citybase_quarantine_rows", "Rows quarantined", ["dataset", "source"], registry=r
        )
        self.lag = Gauge(
            "citybase_ingest_lag_seconds", "Age of the oldest row not yet in the lake", registry=r
        )
        self.pending = Gauge(
            "citybase_log_pending_rows", "Rows in the append log not yet in the lake", registry=r
        )
        self.flushes = Counter("citybase_flushes", "Moves of the append log into the lake", registry=r)
        self.maintained = Counter(
            "citybase_maintenance",
            "What maintenance did: files merged, rows copied by object, snapshots expired, "
            "files removed, orphans removed",
            ["action"],
            registry=r,
        )


def route_name(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def access_middleware(
    metrics: Metrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            dt = time.perf_counter() - t0
            route = route_name(request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(route).observe(dt)
            who = getattr(request.state, "principal", None)
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "route": route,
                        "status": status,
                        "ms": round(dt * 1000, 2),
                        "department": getattr(who, "department", None),
                    }
                },
            )

    return middleware
