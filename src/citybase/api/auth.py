"""Who is asking: the API key of a request, verified against the registry.

A key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Missing or wrong: 401, the same
answer and the same work whether the key id exists or not. Right key, no right: 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from citybase.errors import CitybaseError, Forbidden
from citybase.registry import Principal

_bearer = HTTPBearer(auto_error=False, description="An API key issued by the platform operator.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, as a header.")


class Unauthorized(CitybaseError):
    status = 401
    code = "unauthorized"


def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The principal of the request's key, or 401."""
    key = bearer.credentials if bearer is not None else header
    who: Principal | None = request.app.state.cb.registry.authenticate(key) if key else None
    if who is None:
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")
    request.state.principal = who
    return who


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The principal, if it is the platform operator; else 403."""
    if not who.is_admin:
        raise Forbidden("this needs the platform operator's key")
    return who


Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
