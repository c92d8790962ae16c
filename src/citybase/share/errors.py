"""The share box's refusals, each with its HTTP status (mapped in one place by the API)."""

from __future__ import annotations

from citybase.errors import CitybaseError


class NotShared(CitybaseError):
    """The dataset is `not_shared`: its rows are never granted, only privacy-preserving aggregates."""

    status = 403
    code = "not_shared"


class NotAllowed(CitybaseError):
    """The caller's department may not do this (decide a request it does not provide...)."""

    status = 403
    code = "forbidden"


class BudgetExhausted(CitybaseError):
    """The consumer's differential-privacy budget for the dataset would be exceeded."""

    status = 403
    code = "budget_exhausted"
