"""The share box: the catalog, access requests and grants, masking, privacy-preserving aggregates,
usage metering and the platform's statistics.

`Sharing(cb, on_fact=None)` is the entry point; `cb.share` holds one. Modules, one concept each:
catalog (entries), coverage (lake statistics), search, dcat, grants (the state machine), scope
(grant -> ReadScope), masking, aggregates, noise (OpenDP), budget, usage, stats, service.
"""

from citybase.share.aggregates import AggregateQuery, AggregateResult
from citybase.share.catalog import AggregatePolicy, CatalogEntry, CatalogMeta, Grain, OpenAttribute
from citybase.share.errors import BudgetExhausted, NotAllowed, NotShared
from citybase.share.grants import AccessRequest, Decision, State
from citybase.share.scope import RowFilter
from citybase.share.search import SearchResult
from citybase.share.service import Sharing
from citybase.share.stats import PlatformStats
from citybase.share.usage import UsageRow

__all__ = [
    "AccessRequest",
    "AggregatePolicy",
    "AggregateQuery",
    "AggregateResult",
    "BudgetExhausted",
    "CatalogEntry",
    "CatalogMeta",
    "Decision",
    "Grain",
    "NotAllowed",
    "NotShared",
    "OpenAttribute",
    "PlatformStats",
    "RowFilter",
    "SearchResult",
    "Sharing",
    "State",
    "UsageRow",
]
