"""Catalog search in the manner of CKAN's `package_search`: q, filters, facets, rows/start, sort.

- `q`: free text; every term must occur (case-insensitive substring, so Chinese works without a
  tokenizer) in the name, title, abstract, keywords, provider, system or a data item's name or
  description. Hits in the name, title and keywords weigh more.
- `filters`: field -> accepted values; values of one field are ORed, fields ANDed (CKAN's `fq`).
  Fields: provider, system, kind, sharing, open, update_cycle, keyword, personal.
- `facets`: counts of each value of the facet fields over the matching entries, before paging.
- `sort`: "score desc" (default with q), "name asc", "rows desc", "last_update desc".

The catalog of a city is thousands of entries, not millions: a linear scan of the entries in
memory is simpler and faster than keeping a search index in step with the metadata.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel

from citybase.errors import InputError
from citybase.share.catalog import CatalogEntry

FACETS = ("provider", "system", "kind", "sharing", "open", "update_cycle", "keyword", "personal")
SORTS = ("score desc", "name asc", "name desc", "rows desc", "rows asc", "last_update desc")
MAX_ROWS = 1000


class SearchResult(BaseModel):
    count: int
    start: int
    rows: int
    sort: str
    facets: dict[str, dict[str, int]]
    results: list[CatalogEntry]


def values_of(e: CatalogEntry, field: str) -> list[str]:
    """The facet values an entry has for `field` (keywords: several)."""
    if field == "keyword":
        return list(e.keywords)
    if field == "personal":
        return ["true" if e.personal else "false"]
    if field == "open":
        return [e.open.value]
    if field not in FACETS:
        raise InputError(f"cannot filter or facet on {field!r}; use one of {', '.join(FACETS)}")
    return [str(getattr(e, field))]


def _weighted_texts(e: CatalogEntry) -> list[tuple[str, int]]:
    items = " ".join(f"{i.name} {i.description}" for i in e.items)
    return [
        (f"{e.name} {e.title}".lower(), 3),
        (" ".join(e.keywords).lower(), 2),
        (f"{e.abstract} {e.provider} {e.provider_name} {e.system} {e.code}".lower(), 1),
        (items.lower(), 1),
    ]


def terms(q: str | None) -> list[str]:
    return [t for t in re.split(r"\s+", (q or "").strip().lower()) if t]


def score(e: CatalogEntry, ts: Sequence[str]) -> float:
    """0 when some term is missing; else the weighted number of places the terms occur."""
    texts = _weighted_texts(e)
    total = 0.0
    for t in ts:
        s = sum(w for text, w in texts if t in text)
        if s == 0:
            return 0.0
        total += s
    return total


def parse_fq(fq: str | None) -> dict[str, list[str]]:
    """CKAN-style `fq`: `sharing:conditional provider:hrss provider:ps` -> {field: [values]}.

    >>> parse_fq("sharing:conditional provider:hrss provider:ps")
    {'sharing': ['conditional'], 'provider': ['hrss', 'ps']}
    """
    out: dict[str, list[str]] = {}
    for part in (fq or "").split():
        field, sep, value = part.partition(":")
        if not sep or not value:
            raise InputError(f"filter {part!r} is not field:value")
        out.setdefault(field, []).append(value.strip('"'))
    return out


def search(
    entries: Iterable[CatalogEntry],
    q: str | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    *,
    facets: Sequence[str] = FACETS,
    rows: int = 20,
    start: int = 0,
    sort: str | None = None,
) -> SearchResult:
    """Search catalog entries.

    >>> from citybase.share.catalog import AggregatePolicy, OpenAttribute
    >>> e = CatalogEntry(name="air", code="c", title="Air quality", abstract="", provider="eco",
    ...     provider_name="Ecology", system="aq", kind="series", format="Parquet", items=[],
    ...     sharing="unconditional", conditions="", open=OpenAttribute.open, update_cycle="hourly",
    ...     keywords=["pm25"], rows=6, bbox=None, start=None, end=None, last_update=None,
    ...     personal=False, policy=AggregatePolicy())
    >>> r = search([e], "quality", {"sharing": ["unconditional"]}, facets=["kind"])
    >>> r.count, r.facets
    (1, {'kind': {'series': 1}})
    """
    if not 0 <= rows <= MAX_ROWS:
        raise InputError(f"rows must be 0..{MAX_ROWS}, not {rows}")
    if start < 0:
        raise InputError(f"start must be >= 0, not {start}")
    ts = terms(q)
    sort = sort or ("score desc" if ts else "name asc")
    if sort not in SORTS:
        raise InputError(f"sort {sort!r} is not one of {', '.join(SORTS)}")
    for f in [*(filters or {}), *facets]:
        if f not in FACETS:
            raise InputError(f"cannot filter or facet on {f!r}; use one of {', '.join(FACETS)}")
    hits: list[tuple[float, CatalogEntry]] = []
    for e in entries:
        if any(not set(values_of(e, f)) & set(vs) for f, vs in (filters or {}).items()):
            continue
        s = score(e, ts) if ts else 1.0
        if s > 0:
            hits.append((s, e))
    counts = {f: Counter(v for _, e in hits for v in values_of(e, f)) for f in facets}
    _order(hits, sort)
    page = [e for _, e in hits[start : start + rows]]
    return SearchResult(
        count=len(hits),
        start=start,
        rows=rows,
        sort=sort,
        facets={f: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for f, c in counts.items()},
        results=page,
    )


def _order(hits: list[tuple[float, CatalogEntry]], sort: str) -> None:
    """Sort in place; ties always by name, so pages are stable."""
    hits.sort(key=lambda h: h[1].name)
    if sort == "name desc":
        hits.reverse()
    elif sort == "score desc":
        hits.sort(key=lambda h: -h[0])
    elif sort == "rows desc":
        hits.sort(key=lambda h: -h[1].rows)
    elif sort == "rows asc":
        hits.sort(key=lambda h: h[1].rows)
    elif sort == "last_update desc":
        hits.sort(key=lambda h: h[1].last_update or datetime.min, reverse=True)
