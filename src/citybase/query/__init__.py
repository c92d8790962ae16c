"""The query box: spatio-temporal questions over the lake, answered by DuckDB, returned as Arrow.

>>> from citybase.query.demo import demo_engine
>>> q = demo_engine()                      # CityBase.query gives the engine of a platform
>>> q.counts_by_place("pings", "district").select(["code", "count"]).to_pylist()
[{'code': 'A', 'count': 4}, {'code': 'B', 'count': 20}]

See engine.py for the list of queries, scope.py for reader scopes, views.py for SQL.
"""

from citybase.query._sql import EARTH_RADIUS_M
from citybase.query.engine import QueryEngine
from citybase.query.frames import to_geodataframe
from citybase.query.place import PlaceReport
from citybase.query.scope import ReadScope, ScopeError

__all__ = ["EARTH_RADIUS_M", "PlaceReport", "QueryEngine", "ReadScope", "ScopeError", "to_geodataframe"]
