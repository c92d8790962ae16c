"""`Sharing`: the share box's one entry point (the platform exposes it as `cb.share`).

It decides who reads what: the provider department and the platform operator read their data
unscoped; any other department reads through the `ReadScope` of a live grant, and without one
only through privacy-preserving aggregates. Every read and aggregate is metered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from citybase.errors import InputError, NotFound
from citybase.model.dataset import DatasetSpec
from citybase.query.scope import OPEN, ReadScope, ScopeError
from citybase.registry import Principal
from citybase.share.aggregates import AggregateQuery, AggregateResult, Aggregator
from citybase.share.budget import Budgets, BudgetState
from citybase.share.catalog import Catalog, CatalogEntry, CatalogMeta
from citybase.share.dcat import to_dcat
from citybase.share.errors import NotAllowed, NotShared
from citybase.share.grants import AccessRequest, Decision, Grants, State
from citybase.share.scope import RowFilter, grant_scope
from citybase.share.search import FACETS, SearchResult, search
from citybase.share.stats import PlatformStats, platform_stats
from citybase.share.usage import Usage, UsageRow

if TYPE_CHECKING:
    from citybase.platform import CityBase

Fact = Callable[[str, dict[str, Any]], object]

#: The engine queries a grant may be used through (name -> the engine method's name).
READS = {
    "bbox": "bbox",
    "within": "within",
    "range": "range",
    "track": "track",
    "trajectories": "trajectories",
    "nearest": "nearest",
    "counts": "counts_by_place",
    "counts_by_place": "counts_by_place",
    "grid_bins": "grid_bins",
    "h3_bins": "h3_bins",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Sharing:
    """Catalog, grants, scoped reads, aggregates, metering and statistics of one platform.

    >>> import tempfile
    >>> from citybase.platform import CityBase
    >>> from citybase.query.demo import AIR
    >>> cb = CityBase(tempfile.mkdtemp())
    >>> _ = cb.declare(AIR)
    >>> share = Sharing(cb)
    >>> [e.code for e in share.search().results]
    ['ecology/aq-455419']
    >>> share.close(); cb.close()
    """

    def __init__(
        self,
        cb: CityBase,
        on_fact: Fact | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        usage_batch: int = 1000,
        usage_interval: float = 5.0,
    ) -> None:
        self.cb, self.clock, self.on_fact = cb, clock, on_fact
        self.catalog = Catalog(cb.meta, cb.lake, self._department_names, clock)
        self.grants = Grants(cb.meta, clock, on_fact)
        self.budgets = Budgets(cb.meta, clock)
        self.usage = Usage(cb.meta, clock, on_fact, batch=usage_batch, interval=usage_interval)

    def close(self) -> None:
        """Write the buffered usage (call before the platform closes)."""
        self.usage.flush()

    def _department_names(self) -> dict[str, str]:
        return {d.id: d.name for d in self.cb.registry.departments()}

    def _spec(self, dataset: str) -> DatasetSpec:
        spec = self.cb.datasets.get(dataset)
        if spec is None:
            raise NotFound(f"no dataset {dataset!r}")
        return spec

    @staticmethod
    def owns(who: Principal, spec: DatasetSpec) -> bool:
        """The provider department and the operator read unscoped and answer requests."""
        return who.is_admin or who.department == spec.department

    # -- catalog ------------------------------------------------------------------------------

    def search(
        self,
        q: str | None = None,
        filters: dict[str, list[str]] | None = None,
        *,
        facets: list[str] | None = None,
        rows: int = 20,
        start: int = 0,
        sort: str | None = None,
    ) -> SearchResult:
        """Search the catalog (search.py): free text, filters, facets, paging, sort."""
        return search(
            self.catalog.entries(),
            q,
            filters,
            facets=list(FACETS) if facets is None else facets,
            rows=rows,
            start=start,
            sort=sort,
        )

    def entry(self, dataset: str) -> CatalogEntry:
        self._spec(dataset)
        return self.catalog.entry(dataset)

    def describe(self, who: Principal, dataset: str, meta: CatalogMeta) -> CatalogEntry:
        """Set a dataset's catalog metadata and aggregate policy (its provider or the operator)."""
        spec = self._spec(dataset)
        if not self.owns(who, spec):
            raise NotAllowed(f"only {spec.department!r} describes dataset {dataset!r}")
        self.catalog.set_meta(dataset, meta, by=who.department)
        return self.catalog.entry(dataset)

    def dcat(self, base_url: str = "http://localhost") -> dict[str, Any]:
        """The catalog as DCAT 3 JSON-LD (dcat.py)."""
        return to_dcat(self.catalog.entries(), base_url=base_url)

    # -- requests and grants ------------------------------------------------------------------

    def request(
        self,
        who: Principal,
        dataset: str,
        *,
        purpose: str,
        fields: list[str] | None = None,
        row_filter: RowFilter | None = None,
        days: int = 90,
    ) -> AccessRequest:
        """Ask for a dataset's rows; an unconditional dataset is granted at once, as asked."""
        spec = self._spec(dataset)
        if self.owns(who, spec):
            raise InputError(f"{who.department!r} reads {dataset!r} already; there is nothing to request")
        if spec.sharing == "not_shared":
            raise NotShared(
                f"dataset {dataset!r} is not shared row by row; use its privacy-preserving aggregates"
            )
        if fields is not None:
            grant_scope(spec, fields)  # names checked now, not at the first read
        if row_filter is not None:
            row_filter.sql(spec)
        r = self.grants.create(
            dataset=dataset,
            consumer=who.department,
            provider=spec.department,
            purpose=purpose,
            fields=fields,
            row_filter=row_filter,
            days=days,
            by=who.key_id,
        )
        if spec.sharing == "unconditional":
            r = self.grants.decide(r.id, Decision(action="approve", reason="unconditional"), by="platform")
        return r

    def _answerable(self, who: Principal, request_id: str) -> AccessRequest:
        r = self.grants.get(request_id)
        if who.is_admin or who.department == r.provider:
            return r
        if who.department == r.consumer:
            raise NotAllowed(f"request {request_id} is answered by its provider {r.provider!r}")
        raise NotFound(f"no access request {request_id!r}")  # not theirs to know about

    def decide(self, who: Principal, request_id: str, decision: Decision) -> AccessRequest:
        """Approve, narrow or refuse a request (its provider or the operator)."""
        r = self._answerable(who, request_id)
        spec = self._spec(r.dataset)
        if decision.action != "refuse":
            personal = set(spec.personal_fields)
            extra = sorted(set(decision.unmasked) - personal)
            if extra:
                raise InputError(f"unmasked names non-personal or unknown field(s) {extra}")
            if decision.fields is not None:
                grant_scope(spec, decision.fields)
            if decision.row_filter is not None:
                decision.row_filter.sql(spec)
        return self.grants.decide(request_id, decision, by=who.department)

    def revoke(self, who: Principal, request_id: str, reason: str = "") -> AccessRequest:
        """End a grant at once (its provider or the operator)."""
        self._answerable(who, request_id)
        return self.grants.revoke(request_id, by=who.department, reason=reason)

    def requests(self, who: Principal, box: str = "mine") -> list[AccessRequest]:
        """`mine`: what the department asked; `incoming`: what it must answer; operator: `all`."""
        if box == "mine":
            return self.grants.find(consumer=who.department)
        if box == "incoming":
            return self.grants.find(provider=None if who.is_admin else who.department, state=State.requested)
        if box == "all":
            return self.grants.find() if who.is_admin else self.grants.involving(who.department)
        raise InputError(f"box is mine, incoming or all, not {box!r}")

    def grants_of(self, who: Principal) -> list[AccessRequest]:
        """Live grants the department holds or has given (the operator: all)."""
        now = self.clock()
        rs = self.grants.find(state=State.approved) if who.is_admin else self.grants.involving(who.department)
        return [r for r in rs if r.live(now)]

    # -- enforcement --------------------------------------------------------------------------

    def grant_for(self, who: Principal, dataset: str) -> AccessRequest | None:
        """The live grant a reader reads through; None for the provider and the operator."""
        spec = self._spec(dataset)
        if self.owns(who, spec):
            return None
        if spec.sharing == "not_shared":
            raise NotShared(f"dataset {dataset!r} is not shared row by row; use its aggregates")
        g = self.grants.active(who.department, dataset)
        if g is None:
            raise ScopeError(f"department {who.department!r} holds no live grant on {dataset!r}")
        return g

    def scope_for(self, who: Principal, dataset: str) -> ReadScope:
        """What `who` may see of `dataset`, read fresh (a revocation holds at the next call).

        Raises ScopeError (403) without a live grant, NotShared (403) for a not-shared dataset.
        """
        return self._scope(who, dataset)[0]

    def _scope(self, who: Principal, dataset: str) -> tuple[ReadScope, str]:
        """The reader's scope and the purpose its uses are metered under."""
        g = self.grant_for(who, dataset)
        if g is None:
            return OPEN, "operator" if who.is_admin else "own data"
        spec = self._spec(dataset)
        return grant_scope(spec, g.effective_fields, [g.row_filter, g.granted_filter], g.unmasked), g.purpose

    def read(self, who: Principal, dataset: str, query: str, /, **args: Any) -> pa.Table:
        """Run an engine query (`bbox`, `range`, `track`, `counts`...) through the reader's scope.

        `args` are the engine method's own, less `scope`; the use is metered.
        """
        if query not in READS:
            raise InputError(f"query {query!r} is not one of {', '.join(sorted(READS))}")
        if "scope" in args:
            raise InputError("the scope comes from the grant, not from the reader")
        scope, purpose = self._scope(who, dataset)
        t: pa.Table = getattr(self.cb.query, READS[query])(dataset, **args, scope=scope)
        self.usage.record(who.department, dataset, query, t.num_rows, purpose)
        return t

    def sql(self, who: Principal, query: str, purpose: str = "") -> pa.Table:
        """One SELECT over `city.<dataset>` views, each dataset read through the reader's scope.

        Every dataset the query names needs a live grant (or to be the reader's own); the engine
        refuses anything else the query would read (query/views.py). Metered once per dataset.
        """
        from citybase.query.views import SCHEMA, referenced_tables

        cur = self.cb.lake.cursor()
        try:
            tables, _, _ = referenced_tables(cur, query)
        finally:
            cur.close()
        names = sorted({t for _, schema, t in tables if schema == SCHEMA and t in self.cb.datasets})
        scoped = {n: self._scope(who, n) for n in names}
        try:
            t: pa.Table = self.cb.query.sql(query, scopes={n: sc for n, (sc, _) in scoped.items()})
        except duckdb.Error as e:
            # The reader's own query failed on what it may see: its error, its problem (400).
            raise InputError(f"the query failed: {e}") from None
        for n, (_, why) in scoped.items():
            self.usage.record(who.department, n, "sql", t.num_rows, purpose or why)
        return t

    # -- aggregates ---------------------------------------------------------------------------

    def aggregate(
        self, who: Principal, dataset: str, query: AggregateQuery, purpose: str = ""
    ) -> AggregateResult:
        """Counts, sums or means per place and bin, suppressed or noised (aggregates.py)."""
        spec = self._spec(dataset)
        policy = self.catalog.meta(dataset).policy
        agg = Aggregator(self.cb.query, self.budgets)
        if query.mode == "exact":
            res = agg.exact(spec, query, policy)
        else:
            res = agg.dp(spec, query, policy, who.department)
        self.usage.record(who.department, dataset, f"aggregate:{query.mode}", res.table.num_rows, purpose)
        return res

    def budget(self, who: Principal, dataset: str) -> BudgetState:
        """The department's differential-privacy budget on a dataset."""
        self._spec(dataset)
        policy = self.catalog.meta(dataset).policy
        return self.budgets.state(who.department, dataset, policy.epsilon_budget)

    # -- usage and statistics -----------------------------------------------------------------

    def usage_summary(
        self,
        who: Principal,
        by: list[str] | None = None,
        *,
        start: date | None = None,
        end: date | None = None,
    ) -> list[UsageRow]:
        """Uses grouped `by` (dataset, consumer, day, kind, purpose).

        The operator sees all; a department sees its own uses and the uses of its datasets.
        """
        by = by or ["dataset"]
        if who.is_admin:
            return self.usage.summary(by, start=start, end=end)
        own = [n for n, s in self.cb.datasets.items() if s.department == who.department]
        mine = self.usage.summary(
            [*by, "consumer", "dataset"], consumers=[who.department], start=start, end=end
        )
        theirs = self.usage.summary([*by, "consumer", "dataset"], datasets=own, start=start, end=end)
        seen = {(r.consumer, r.dataset, r.day, r.kind, r.purpose) for r in mine}
        rows = mine + [r for r in theirs if (r.consumer, r.dataset, r.day, r.kind, r.purpose) not in seen]
        return _regroup(rows, by)

    def stats(self, days: int = 30) -> PlatformStats:
        """The figures the city reports (stats.py)."""
        return platform_stats(
            self.cb.registry, self.cb.lake, self.catalog.coverage, self.usage, self.clock(), days
        )


def _regroup(rows: list[UsageRow], by: list[str]) -> list[UsageRow]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        key = tuple(getattr(r, d) for d in by)
        acc = sums.setdefault(key, [0, 0])
        acc[0] += r.uses
        acc[1] += r.rows
    return [
        UsageRow(**dict(zip(by, k, strict=True)), uses=v[0], rows=v[1])
        for k, v in sorted(sums.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
    ]
