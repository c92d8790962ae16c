"""`QueryEngine`: the spatio-temporal read API of one city's lake.

Each group of queries lives in its own module as a mixin over `QueryCore` (core.py):

| module | queries |
|---|---|
| ranges.py | B1 `bbox`, `within`; B2 `range` |
| tracks.py | B3 `track`; B7 `trajectories` |
| nearest.py | B4 `nearest`; B8 `nearest_join` |
| aggregate.py | B5 `counts_by_place`, `grid_bins`; B6 `h3_bins` |
| place.py | `about_place` |
| views.py | `sql` over the `city.<dataset>` views |

Every query returns an Arrow table (`frames.to_geodataframe` turns one into a GeoDataFrame) and
takes an optional `scope` (scope.py) that is applied inside its SQL.
"""

from __future__ import annotations

from citybase.query.aggregate import AggregateQueries
from citybase.query.nearest import NearestQueries
from citybase.query.place import PlaceQueries
from citybase.query.ranges import RangeQueries
from citybase.query.tracks import TrackQueries
from citybase.query.views import SqlQueries


class QueryEngine(RangeQueries, TrackQueries, NearestQueries, AggregateQueries, PlaceQueries, SqlQueries):
    """The query box over a `Lake` and its `City`: `QueryEngine(lake, city)`; `CityBase.query` has one.

    >>> from citybase.query.demo import demo_engine
    >>> q = demo_engine()
    >>> q.nearest("pings", 116.42, 39.96, k=1).column("vehicle").to_pylist()
    ['b']
    """
