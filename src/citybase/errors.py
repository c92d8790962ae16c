"""Domain errors that carry their meaning: an HTTP status and a stable code, mapped in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class CitybaseError(Exception):
    """Base of every error citybase raises on purpose."""

    status: int = 500
    code: str = "internal"


class DeclarationError(CitybaseError, ValueError):
    """A dataset or city declaration is invalid; the message names the file and the field."""

    status = 400
    code = "invalid_declaration"


def invalid(where: str, what: str, e: ValidationError) -> DeclarationError:
    """One message for every declaration (dataset, city, device, rule, settings...): where it came
    from, what it declares, then each problem as `field.path: why`, one per line.

    >>> from pydantic import BaseModel
    >>> class Spec(BaseModel):
    ...     name: str
    ...     size: int
    >>> try:
    ...     Spec.model_validate({"size": "big"})
    ... except Exception as e:
    ...     print(invalid("city.yaml", "city declaration", e))
    city.yaml: invalid city declaration
      name: Field required
      size: Input should be a valid integer, unable to parse string as an integer
    """
    lines = [f"  {'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()]
    return DeclarationError(f"{where}: invalid {what}\n" + "\n".join(lines))


class InputError(CitybaseError, ValueError):
    """Input that cannot be read at all (not a row-level problem: those go to quarantine)."""

    status = 400
    code = "invalid_input"


class NotFound(CitybaseError, KeyError):
    status = 404
    code = "not_found"

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else "not found"


class Conflict(CitybaseError):
    status = 409
    code = "conflict"


class MissingDependency(CitybaseError, ImportError):
    """An optional part is not installed; the message says which extra to install."""

    status = 501
    code = "missing_dependency"


class Forbidden(CitybaseError):
    """The caller is known but may not do this (a grant, a role or a tenant says no)."""

    status = 403
    code = "forbidden"


class ScopeError(Forbidden):
    """The query needs a column or dataset the reader's scope does not include."""
