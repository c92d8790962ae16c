"""Map layers as GeoJSON: the city model's areas, a dataset's rows, heat, live sensors, vehicles.

Each function takes plain arguments (the platform, a scope, a window) and returns a GeoJSON
FeatureCollection as a dict, so the HTTP routes stay a thin shell and tests can compare a layer
with a brute-force query. Scopes come from `access.Viewer`: a hidden dataset never gets here.

Where the rows are many (a city of 10M points), the map asks for vector tiles (tiles.py) or for
aggregates (`heat`), never for every row; for open reads with a time window, heat, vehicles and
tiles are answered from the map's in-memory index (index.py) instead of the lake.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import shapely

from citybase.console.geo import jsonable, tolerance
from citybase.console.index import BASE_RES, State, from_us, to_us
from citybase.errors import InputError, NotFound
from citybase.model.city import Level
from citybase.model.dataset import DatasetSpec, FieldType, Kind
from citybase.places.city import City, Layer
from citybase.query._sql import quote
from citybase.query.scope import ReadScope

if TYPE_CHECKING:
    from citybase.platform import CityBase

Geo = dict[str, Any]
NUMERIC = (FieldType.float, FieldType.int)
#: Provenance and place-key columns a map popup does not need.
SKIP = {"geom", "xmin", "ymin", "xmax", "ymax", "h3", "_batch", "_line", "_ingested_at"}


def collection(features: list[Geo], **extra: Any) -> Geo:
    return {"type": "FeatureCollection", "features": features, **extra}


def _zoom_bucket(zoom: float) -> int:
    return max(0, min(18, int(zoom)))


# -- the city model -------------------------------------------------------------------------------


def areas(
    city: City, level: str, zoom: float = 12, bbox: tuple[float, float, float, float] | None = None
) -> Geo:
    """One level of the city model (district, street, community, grid, building), simplified for `zoom`.

    >>> from shapely import box
    >>> from citybase.places.city import Layer
    >>> c = City("t", layers={Level.district: Layer(Level.district, np.array(["A"], object),
    ...     np.array(["a"], object), np.array([None], object), np.array([box(0, 0, 1, 1)]))})
    >>> areas(c, "district")["features"][0]["properties"]
    {'code': 'A', 'name': 'a', 'parent': None, 'level': 'district'}
    """
    layer = _layer(city, level)
    feats: list[Geo] = json.loads(_areas_json(layer, _zoom_bucket(zoom)))
    if bbox is not None:
        b = shapely.bounds(layer.geoms)
        keep = (b[:, 0] <= bbox[2]) & (b[:, 2] >= bbox[0]) & (b[:, 1] <= bbox[3]) & (b[:, 3] >= bbox[1])
        feats = [f for f, k in zip(feats, keep, strict=True) if k]
    return collection(feats)


def _layer(city: City, level: str) -> Layer:
    try:
        lv = Level(level)
    except ValueError:
        raise InputError(f"level {level!r} is not one of {', '.join(v.value for v in Level)}") from None
    layer = city.layers.get(lv)
    if layer is None:
        raise NotFound(f"the city has no {lv.value} layer")
    return layer


def areas_text(city: City, level: str, zoom: float = 12) -> str:
    """A whole level as GeoJSON text (what `areas` answers without a box), made once per zoom."""
    layer = _layer(city, level)
    return '{"type":"FeatureCollection","features":' + _areas_json(layer, _zoom_bucket(zoom)) + "}"


#: (id of the layer, zoom) -> (the layer, its GeoJSON features): the city model changes only with
#: `setup_city`, which makes new Layer objects, so holding the layer makes the key safe.
_AREAS: dict[tuple[int, int], tuple[Layer, str]] = {}


def _areas_json(layer: Layer, zoom: int) -> str:
    hit = _AREAS.get((id(layer), zoom))
    if hit is not None and hit[0] is layer:
        return hit[1]
    simple = shapely.simplify(layer.geoms, tolerance(zoom), preserve_topology=True)
    parts = []
    for i, g in enumerate(shapely.to_geojson(simple)):
        props = {
            "code": layer.codes[i],
            "name": layer.names[i],
            "parent": layer.parents[i],
            "level": layer.level.value,
        }
        parts.append(f'{{"type":"Feature","id":{i},"geometry":{g},"properties":{json.dumps(props)}}}')
    text = "[" + ",".join(parts) + "]"
    if len(_AREAS) > 128:
        _AREAS.clear()
    _AREAS[(id(layer), zoom)] = (layer, text)
    return text


# -- a dataset's rows -----------------------------------------------------------------------------


def features(t: pa.Table, zoom: float | None = None) -> list[Geo]:
    """Rows as GeoJSON features: a shape from `geom` (simplified for `zoom`) or a point from lon/lat."""
    cols = [c for c in t.column_names if c not in SKIP and c not in ("lon", "lat")]
    props = t.select(cols).to_pylist()
    if "geom" in t.column_names:
        geoms = shapely.from_wkb(t.column("geom").to_numpy(zero_copy_only=False))
        if zoom is not None:
            geoms = shapely.simplify(geoms, tolerance(zoom), preserve_topology=True)
        shapes = [json.loads(g) if g is not None else None for g in shapely.to_geojson(geoms)]
    elif "lon" in t.column_names and "lat" in t.column_names:
        xs, ys = t.column("lon").to_pylist(), t.column("lat").to_pylist()
        shapes = [
            {"type": "Point", "coordinates": [x, y]} if x is not None and y is not None else None
            for x, y in zip(xs, ys, strict=True)
        ]
    else:
        shapes = [None] * t.num_rows
    return [
        {"type": "Feature", "geometry": g, "properties": jsonable(p)}
        for g, p in zip(shapes, props, strict=True)
        if g is not None
    ]


def rows(
    cb: CityBase,
    dataset: str,
    scope: ReadScope,
    bbox: tuple[float, float, float, float],
    start: datetime | None = None,
    end: datetime | None = None,
    zoom: float | None = None,
    limit: int = 5000,
) -> Geo:
    """The rows of `dataset` in a box and window (through `scope`), as GeoJSON.

    `truncated` says that more than `limit` rows matched.
    """
    t = cb.query.range(dataset, bbox, start, end, scope=scope, limit=limit + 1)
    more = t.num_rows > limit
    return collection(features(t.slice(0, limit), zoom), truncated=more)


# -- heat -----------------------------------------------------------------------------------------


def heat_counts(
    cb: CityBase,
    dataset: str,
    scope: ReadScope,
    start: datetime | None,
    end: datetime | None,
    resolution: int = 8,
    index: State | None = None,
) -> tuple[list[str], list[int]]:
    """Rows per H3 cell (hex ids, ascending) in the window: from the map's index for open scopes
    with a window at its resolution or coarser, else from the lake (QueryCore.h3_bins)."""
    q = cb.query
    res = min(resolution, q.h3_resolution)
    if (
        index is not None
        and scope.is_open
        and (start is not None or end is not None)
        and res <= min(BASE_RES, q.h3_resolution)
    ):
        q.time_where(q.source(dataset, scope), start, end)  # the lake's checks of the window
        ids, counts = index.heat(
            to_us(start) if start is not None else None, to_us(end) if end is not None else None, res
        )
        return [format(c, "x") for c in ids.tolist()], counts.tolist()
    t = q.h3_bins(dataset, res, start, end, scope=scope)
    return t.column("cell").to_pylist(), t.column("count").to_pylist()


def heat(
    cb: CityBase,
    dataset: str,
    scope: ReadScope,
    start: datetime | None,
    end: datetime | None,
    resolution: int = 8,
    index: State | None = None,
) -> Geo:
    """Rows per H3 cell in the window, as points at the cells' centres with `count` and `weight`.

    `weight` is count / the busiest cell's count, so the heat map's colours mean the same at any
    window length. `index`: the map's index of the dataset (index.py), see `heat_counts`.
    """
    cells, ns = heat_counts(cb, dataset, scope, start, end, resolution, index)
    if not ns:
        return collection([], max=0)
    top = max(ns)
    feats = []
    for cell, n in zip(cells, ns, strict=True):
        lon, lat = _centre(cell)
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {"cell": cell, "count": n, "weight": n / top},
            }
        )
    return collection(feats, max=top)


def heat_text(cells: list[str], ns: list[int]) -> str:
    """`heat`'s GeoJSON as text, from each cell's text made once (the map asks for it at every
    step of a replay: 2,000 cells as dicts through json.dumps take several times as long)."""
    if not ns:
        return '{"type":"FeatureCollection","features":[],"max":0}'
    top = max(ns)
    feats = ",".join(f'{_fragment(c)}{n},"weight":{n / top!r}}}}}' for c, n in zip(cells, ns, strict=True))
    return f'{{"type":"FeatureCollection","features":[{feats}],"max":{top}}}'


_CENTRES: dict[str, tuple[float, float]] = {}
_FRAGMENTS: dict[str, str] = {}


def _centre(cell: str) -> tuple[float, float]:
    """The lon/lat of an H3 cell's centre (remembered: a city has a few thousand cells a resolution)."""
    hit = _CENTRES.get(cell)
    if hit is None:
        import h3

        lat, lon = h3.cell_to_latlng(cell)
        if len(_CENTRES) > 500_000:
            _CENTRES.clear()
        hit = _CENTRES[cell] = (lon, lat)
    return hit


def _fragment(cell: str) -> str:
    """A heat feature's text up to its count."""
    hit = _FRAGMENTS.get(cell)
    if hit is None:
        lon, lat = _centre(cell)
        if len(_FRAGMENTS) > 500_000:
            _FRAGMENTS.clear()
        hit = _FRAGMENTS[cell] = (
            f'{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{lon!r},{lat!r}]}},'
            f'"properties":{{"cell":"{cell}","count":'
        )
    return hit


# -- live state: sensors and vehicles -------------------------------------------------------------


def value_field(spec: DatasetSpec) -> str | None:
    """The reading a sensor is coloured by: the first numeric field that is not its key or time."""
    skip = {spec.time_field, spec.object_field, *spec.key}
    for f in spec.fields:
        if f.type in NUMERIC and f.name not in skip and f.name not in ("lon", "lat"):
            return f.name
    return None


def station_dataset(cb: CityBase, spec: DatasetSpec) -> str | None:
    """Where a series' sensors stand: a located points dataset keyed by the series' object field."""
    if spec.object_field is None:
        return None
    for name, other in sorted(cb.datasets.items()):
        if other.kind is Kind.points and other.located and other.key == [spec.object_field]:
            return name
    return None


def sensors(
    cb: CityBase,
    dataset: str,
    scope: ReadScope,
    at: datetime,
    lookback: timedelta,
    stations: tuple[str, ReadScope] | None,
) -> Geo:
    """Each sensor's latest reading in `[at - lookback, at]`, placed where the sensor stands.

    A located series carries its own position; otherwise `stations` (a points dataset keyed by the
    series' object field, with the viewer's scope on it) gives it.
    """
    q = cb.query
    spec = q.spec(dataset)
    obj, tf = spec.object_field, spec.time_field
    if obj is None or tf is None:
        raise InputError(f"dataset {dataset!r} is not a series with an object and a time field")
    src = q.source(dataset, scope)
    src.need(obj, tf)
    where = " AND ".join(q.time_where(src, *_window(at, lookback)))
    latest = (
        f"SELECT * FROM {src.sql} AS s WHERE {where} "
        f"QUALIFY row_number() OVER (PARTITION BY {quote(obj)} ORDER BY {quote(tf)} DESC) = 1"
    )
    if src.has("lon") and src.has("lat"):
        sql = latest
    elif stations is not None:
        st = q.source(stations[0], stations[1])
        st.need(obj, "lon", "lat")
        sql = (
            f"SELECT r.*, p.lon, p.lat FROM ({latest}) AS r "
            f"JOIN (SELECT {quote(obj)}, lon, lat FROM {st.sql} AS p0) AS p USING ({quote(obj)})"
        )
    else:
        return collection([], value_field=value_field(spec), hidden="no station positions")
    t = q.run(f"SELECT * FROM ({sql}) ORDER BY {quote(obj)}")
    vf = value_field(spec)
    feats = features(t)
    values = [f["properties"].get(vf) for f in feats] if vf else []
    nums = [v for v in values if isinstance(v, int | float)]
    for f in feats:
        f["properties"]["object"] = f["properties"].get(obj)
        f["properties"]["value"] = f["properties"].get(vf) if vf else None
    return collection(
        feats,
        value_field=vf,
        min=min(nums) if nums else None,
        max=max(nums) if nums else None,
    )


def _window(at: datetime, back: timedelta) -> tuple[datetime, datetime]:
    """`[at - back, at]` as a half-open [start, end) window; 400 for times out of range."""
    try:
        return at - back, at + timedelta(microseconds=1)
    except OverflowError:
        raise InputError(f"the time {at} is out of range") from None


def vehicles(
    cb: CityBase, dataset: str, scope: ReadScope, at: datetime, window: timedelta, index: State | None = None
) -> Geo:
    """Each moving object's latest position in `[at - window, at]` (a tracks dataset).

    `index`: the map's index of the dataset (index.py), read for open scopes; its features carry the
    object and the time (the lake's carry every visible column).
    """
    q = cb.query
    spec = q.spec(dataset)
    obj, tf = spec.object_field, spec.time_field
    if obj is None or tf is None:
        raise InputError(f"dataset {dataset!r} has no object and time field to follow")
    src = q.source(dataset, scope)
    src.need(obj, tf, "lon", "lat")
    t0, t1 = _window(at, window)
    if index is not None and scope.is_open:
        codes, ts, lon, lat = index.latest(to_us(t0), to_us(t1))
        objects = index.objects
        found = [
            (objects[c], from_us(t), x, y)
            for c, t, x, y in zip(codes.tolist(), ts.tolist(), lon.tolist(), lat.tolist(), strict=True)
        ]
        found.sort(key=lambda r: (r[0] is None, r[0]))
        return collection(
            [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [x, y]},
                    "properties": jsonable({tf: t, obj: o, "object": o}),
                }
                for o, t, x, y in found
            ]
        )
    where = " AND ".join(q.time_where(src, t0, t1))
    t = q.run(
        f"SELECT * FROM {src.sql} AS s WHERE {where} AND lon IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY {quote(obj)} ORDER BY {quote(tf)} DESC) = 1 "
        f"ORDER BY {quote(obj)}"
    )
    feats = features(t)
    for f in feats:
        f["properties"]["object"] = f["properties"].get(obj)
    return collection(feats)


#: (platform id, dataset) -> (when computed, extent): every page load asks, data moves slowly.
_EXTENTS: dict[tuple[int, str], tuple[float, tuple[datetime | None, datetime | None]]] = {}
EXTENT_TTL = 5.0


def time_extent(
    cb: CityBase, dataset: str, index: State | None = None
) -> tuple[datetime | None, datetime | None]:
    """The first and last time of a dataset: the index's when it holds the dataset's rows, else
    the lake's, cached for EXTENT_TTL seconds."""
    if index is not None:
        ext = index.span
        if ext is not None:
            return from_us(ext[0]), from_us(ext[1])
    key = (id(cb), dataset)
    hit = _EXTENTS.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < EXTENT_TTL:
        return hit[1]
    ext2 = _time_extent(cb, dataset)
    _EXTENTS[key] = (now, ext2)
    return ext2


def _time_extent(cb: CityBase, dataset: str) -> tuple[datetime | None, datetime | None]:
    spec = cb.query.spec(dataset)
    if spec.time_field is None:
        return None, None
    col = quote(spec.time_field)
    row = cb.query.run(f"SELECT min({col}) AS a, max({col}) AS b FROM {cb.lake.table(dataset)}").to_pylist()[
        0
    ]
    a, b = row["a"], row["b"]
    return (a if isinstance(a, datetime) else None, b if isinstance(b, datetime) else None)
