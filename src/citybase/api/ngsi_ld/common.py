"""What every NGSI-LD route does to a request before the domain sees it, and to the answer after:
who acts for which tenant, which @context applies, media types, query parameters, JSON bodies.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from citybase.context.contexts import CORE_URL
from citybase.context.errors import (
    BadRequestData,
    InvalidRequest,
    NgsiError,
    NotAcceptable,
    UnsupportedMediaType,
)
from citybase.context.jsonld import ActiveContext
from citybase.context.service import ContextService

JSON = "application/json"
LD = "application/ld+json"
GEO = "application/geo+json"
MERGE = "application/merge-patch+json"
DEFAULT_TENANT = "default"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
Handler = Callable[..., Awaitable[Response]]
_LINK_RE = re.compile(r"<([^>]*)>\s*;(.*)")


class Router:
    """Collects plain Starlette routes with FastAPI-like decorators.

    NGSI-LD is mounted as a Starlette app of its own: its handlers read the request themselves
    (the spec's parameters do not fit declarative validation), and skipping FastAPI's dependency
    machinery and nested-router matching is most of the per-request cost (docs/adr/0004).
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def _add(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                response = await fn(request=request, **request.path_params)
                if method != "GET":  # acknowledge a write only once its group commit is on disk
                    await service_of(request).store.committed()
                return response

            self.routes.append(Route(path, endpoint, methods=[method], name=fn.__name__))
            return fn

        return deco

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("POST", path)

    def put(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("PUT", path)

    def patch(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("PATCH", path)

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("DELETE", path)


class Unauthorized(NgsiError):
    status, name, title = 401, "Unauthorized", "A valid API key is required"


class Forbidden(NgsiError):
    status, name, title = 403, "Forbidden", "The key does not act for this tenant"


@dataclass
class Call:
    """One NGSI-LD request, resolved: tenant, @context and the media type to answer in."""

    request: Request
    service: ContextService
    tenant: str
    context: Any  # the @context value as given (URL, list or object), None for the core
    ctx: ActiveContext
    accept: str

    def param(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def respond(
        self,
        body: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        with_context: bool = True,
    ) -> Response:
        """JSON in the negotiated media type: @context in the body for JSON-LD, a Link otherwise."""
        hdrs = dict(headers or {})
        media = self.accept
        if with_context and media == LD:
            ctx_value = self.context if self.context is not None else CORE_URL
            if isinstance(body, list):
                body = [{**b, "@context": ctx_value} if isinstance(b, dict) else b for b in body]
            elif isinstance(body, dict):
                body = {**body, "@context": ctx_value}
        elif with_context:
            hdrs["Link"] = link_header(self.context_url())
        if self.tenant != DEFAULT_TENANT:
            hdrs["NGSILD-Tenant"] = self.tenant
        return Response(dumps(body), status_code=status, media_type=media, headers=hdrs)

    def context_url(self) -> str:
        if isinstance(self.context, str):
            return self.context
        if isinstance(self.context, list) and len(self.context) == 1 and isinstance(self.context[0], str):
            return str(self.context[0])
        return CORE_URL


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def link_header(url: str) -> str:
    return f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'


def service_of(request: Request) -> ContextService:
    svc: ContextService = request.app.state.ngsi
    return svc


_LOOPBACK: dict[str, bool] = {}


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    known = _LOOPBACK.get(host)
    if known is None:
        try:
            known = ipaddress.ip_address(host).is_loopback
        except ValueError:
            known = host in ("testclient", "localhost")
        if len(_LOOPBACK) < 1024:
            _LOOPBACK[host] = known
    return known


def tenant_of(request: Request) -> str:
    """The tenant a request acts for: its key's department, or (open on loopback) its header."""
    header = request.headers.get("ngsild-tenant")
    settings = request.app.state.settings
    if getattr(settings, "ngsi_ld_open_on_loopback", False) and _loopback(request):
        return header or DEFAULT_TENANT
    auth = request.headers.get("authorization", "")
    key = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    who = request.app.state.cb.registry.authenticate(key) if key else None
    if who is None:
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")
    request.state.principal = who
    if header and header != who.department and not who.is_admin:
        raise Forbidden(f"this key acts for tenant {who.department}, not {header}")
    return header or str(who.department)


def parse_link(request: Request) -> str | None:
    """The @context URL of the request's Link header, if any."""
    raw = request.headers.get("link")
    if not raw:
        return None
    for part in raw.split(","):
        m = _LINK_RE.match(part.strip())
        if m and CONTEXT_REL in m.group(2):
            return m.group(1)
    raise BadRequestData("the Link header does not give a JSON-LD @context")


def negotiate(request: Request, allowed: Iterable[str] = (JSON, LD)) -> str:
    """The media type to answer in, from Accept (clause 6.3.6); 406 when none fits."""
    raw = request.headers.get("accept")
    if not raw:
        return JSON
    allowed = list(allowed)
    best: tuple[float, int, str] | None = None
    for i, part in enumerate(raw.split(",")):
        bits = [b.strip() for b in part.split(";")]
        media = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            chosen = JSON
        elif media in allowed:
            chosen = media
        else:
            continue
        key = (-q, i, chosen)
        if best is None or key < best:
            best = key
    if best is None:
        raise NotAcceptable(f"cannot answer in {raw}; use application/json or application/ld+json")
    return best[2]


def check_params(request: Request, allowed: Iterable[str]) -> None:
    """400 InvalidRequest for a query parameter this operation does not know (clause 6.3.x)."""
    known = set(allowed)
    for name in request.query_params:
        if name not in known:
            raise InvalidRequest(f"unknown query parameter {name!r}")


def begin(
    request: Request,
    *,
    params: Iterable[str] = (),
    accept: Iterable[str] = (JSON, LD),
    body_context: Any = None,
) -> Call:
    """A Call for a request without a body (or whose body's @context is `body_context`)."""
    service = service_of(request)
    tenant = tenant_of(request)
    check_params(request, params)
    media = negotiate(request, accept)
    link = parse_link(request)
    context: Any = body_context if body_context is not None else link
    ctx = service.contexts.active(context)
    return Call(request, service, tenant, context, ctx, media)


async def begin_with_body(
    request: Request,
    *,
    params: Iterable[str] = (),
    accept: Iterable[str] = (JSON, LD),
    merge: bool = False,
    batch: bool = False,
) -> tuple[Call, Any]:
    """A Call and the JSON body: the @context from the body (JSON-LD) or the Link header (JSON)."""
    service = service_of(request)
    tenant = tenant_of(request)
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    allowed_types = (JSON, LD, MERGE) if merge else (JSON, LD)
    if ctype not in allowed_types:
        raise UnsupportedMediaType(f"Content-Type {ctype or '(none)'} is not supported here")
    check_params(request, params)
    media = negotiate(request, accept)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
    if body is None:
        raise InvalidRequest("a JSON body is required")
    link = parse_link(request)
    context: Any = None
    if not batch and not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if batch:
        context = link if ctype != LD else None
    elif ctype == LD:
        if link is not None:
            raise BadRequestData("a JSON-LD request carries its @context in the body, not in Link")
        contexts = [
            b.get("@context") for b in (body if isinstance(body, list) else [body]) if isinstance(b, dict)
        ]
        if any(c is None for c in contexts) or not contexts:
            raise BadRequestData("a JSON-LD body needs an @context")
        context = contexts[0]
    else:
        items = body if isinstance(body, list) else [body]
        if any(isinstance(b, dict) and "@context" in b for b in items):
            raise BadRequestData("an application/json body may not carry @context; use Link")
        context = link
    ctx = service.contexts.active(context)
    return Call(request, service, tenant, context, ctx, media), body


def split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise BadRequestData("an empty list is not allowed")
    return items


def options_of(call: Call) -> set[str]:
    opts = set(split(call.param("options")) or [])
    known = {
        "keyValues",
        "simplified",
        "concise",
        "normalized",
        "sysAttrs",
        "noOverwrite",
        "replace",
        "update",
        "temporalValues",
        "aggregatedValues",
    }
    fmt = call.param("format")
    if fmt is not None and fmt not in known:
        raise InvalidRequest(f"unknown format {fmt!r}")
    bad = opts - known
    if bad:
        raise InvalidRequest(f"unknown options {sorted(bad)}")
    if fmt:
        opts = {
            o
            for o in opts
            if o
            not in ("keyValues", "simplified", "concise", "normalized", "temporalValues", "aggregatedValues")
        } | {fmt}
    return opts


def int_param(call: Call, name: str, default: int | None, *, minimum: int = 0) -> int | None:
    raw = call.param(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError as e:
        raise BadRequestData(f"{name} must be an integer") from e
    if v < minimum:
        raise BadRequestData(f"{name} must be at least {minimum}")
    return v


def no_content(
    call: Call | None = None, status: int = 204, headers: dict[str, str] | None = None
) -> Response:
    hdrs = dict(headers or {})
    if call is not None and call.tenant != DEFAULT_TENANT:
        hdrs["NGSILD-Tenant"] = call.tenant
    return Response(status_code=status, headers=hdrs)
