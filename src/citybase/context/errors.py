"""NGSI-LD errors: each carries its spec problem type (clause 5.5.2) and HTTP status.

The HTTP layer turns them into ProblemDetails (RFC 7807) bodies; the domain only says what went wrong.
"""

from __future__ import annotations

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiError(Exception):
    """Base of every NGSI-LD error; `type` is the spec URI, `title` its fixed short text."""

    status: int = 500
    name: str = "InternalError"
    title: str = "Internal error"

    def __init__(self, detail: str, *, entity_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.entity_id = entity_id

    @property
    def type(self) -> str:
        return ERRORS + self.name

    def problem(self) -> dict[str, object]:
        """The ProblemDetails body of this error."""
        return {"type": self.type, "title": self.title, "detail": self.detail}


class InvalidRequest(NgsiError):
    status, name, title = (
        400,
        "InvalidRequest",
        "The request associated to the operation is syntactically invalid",
    )


class BadRequestData(NgsiError):
    status, name, title = (
        400,
        "BadRequestData",
        "The request includes input data which does not meet the requirements of the operation",
    )


class AlreadyExists(NgsiError):
    status, name, title = 409, "AlreadyExists", "The referred element already exists"


class OperationNotSupported(NgsiError):
    status, name, title = 422, "OperationNotSupported", "The operation is not supported"


class ResourceNotFound(NgsiError):
    status, name, title = 404, "ResourceNotFound", "The referred resource has not been found"


class LdContextNotAvailable(NgsiError):
    status, name, title = (
        503,
        "LdContextNotAvailable",
        "A remote JSON-LD @context referenced in a request cannot be retrieved",
    )


class NoMultiTenantSupport(NgsiError):
    status, name, title = 501, "NoMultiTenantSupport", "The broker does not support multiple tenants"


class NonexistentTenant(NgsiError):
    status, name, title = 404, "NonexistentTenant", "The addressed tenant does not exist"


class TooManyResults(NgsiError):
    status, name, title = (
        403,
        "TooManyResults",
        "The query would return more results than the broker can give",
    )


class NotAcceptable(NgsiError):
    status, name, title = 406, "NotAcceptable", "The requested media type cannot be served"


class UnsupportedMediaType(NgsiError):
    status, name, title = 415, "UnsupportedMediaType", "The request's media type is not supported"


class Conflict(NgsiError):
    status, name, title = 409, "Conflict", "The operation conflicts with the current state of the resource"


class InternalError(NgsiError):
    status, name, title = 500, "InternalError", "There has been an error during the operation execution"
