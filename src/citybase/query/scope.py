"""What one reader may see of a dataset: the columns, the rows, and masked values.

The share box builds a `ReadScope` from a grant; every query applies it inside its SQL, in the
relation it reads the dataset through (never to the result afterwards), so aggregates, distances
and joins are computed on what the reader may see and nothing else:

    SELECT <visible columns, masked ones replaced by their expression>
    FROM <the dataset's table> WHERE (<row filter>)

A query's own predicates (a bbox, a time window, an object id) apply to that relation, to the
masked values: a reader whose coordinates are coarsened searches the coarsened coordinates. A query
that needs a column the scope hides fails with `ScopeError` instead of reading it.

A masked personal text field whose table holds its masked form in a shadow column (written with the
row: model/layout.py, docs/adr/0005) is read from that column, renamed to the field (`shadows`),
instead of computing the mask at every read: `"phone__masked" AS "phone"`. Shadow columns are never
among a reader's columns, masked or not.

`row_filter` and the `masked` expressions are SQL written by the platform (the share box), never by
the reader: they are trusted and go into the query as given.

Places (`places`: level -> codes) are kept apart too, so that counts per area of that level can
test the codes once per area instead of once per row (aggregate.py).

A time window on the dataset's time field (`start`, `end`) is kept apart from `row_filter`, so the
engine can leave it out where the rows it reads provably lie inside it (the time field's range in
the footers of the very files a query reads: core.py). A grant "from 2025 on" then costs nothing on
a lake whose rows are all from 2025, where testing it would read the time column of every row group
the query touches (about +20% on a nearest-neighbour search: share_bench.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from citybase.errors import ScopeError

__all__ = ["OPEN", "ReadScope", "ScopeError"]


@dataclass(frozen=True)
class ReadScope:
    """A reader's view of one dataset.

    >>> ReadScope(fields=["district", "pm25"], row_filter="district = '110101'",
    ...           masked={"pm25": "round(pm25, -1)"}).fields
    ['district', 'pm25']
    """

    #: Columns the reader may see (stored column names); None means all of them.
    fields: list[str] | None = None
    #: A SQL boolean expression over the stored columns: only rows where it is true are visible.
    row_filter: str | None = None
    #: Column -> SQL expression (over the stored columns) that replaces the column's value.
    masked: dict[str, str] = field(default_factory=dict)
    #: Masked column -> its shadow column, which holds exactly what its `masked` expression gives;
    #: read instead of the expression where the dataset's table has it.
    shadows: dict[str, str] = field(default_factory=dict)
    #: Only rows whose time field is in [start, end) (either end may be open).
    start: datetime | None = None
    end: datetime | None = None
    #: Only rows whose place key of each level is one of the codes given (AND across levels).
    places: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def limits_rows(self) -> bool:
        """True when the scope hides some rows (a row filter, a time window or places)."""
        return bool(self.row_filter) or self.start is not None or self.end is not None or bool(self.places)

    @property
    def is_open(self) -> bool:
        """True when the scope hides and changes nothing."""
        return self.fields is None and not self.limits_rows and not self.masked


#: The scope of a trusted caller: everything.
OPEN = ReadScope()
