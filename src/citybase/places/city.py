"""The city model's area layers and the place keys they give every located row.

A `City` holds one layer of areas per level (district, street, community, grid, building), each
with codes, names and parent codes, and builds an `AreaIndex` per layer on first use. `keys()` is
the enrichment step of the flow: for arrays of lon/lat it returns the code of the area of every
level each point falls in, and its H3 cell, all vectorised.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from citybase.errors import DeclarationError
from citybase.model.city import DEFAULT_H3_RESOLUTION, CitySpec, LayerSpec, Level
from citybase.model.layout import H3
from citybase.places.index import AreaIndex, polygonal


@dataclass
class Layer:
    """Areas of one level: parallel arrays of code, name, parent code and shape."""

    level: Level
    codes: npt.NDArray[np.object_]
    names: npt.NDArray[np.object_]
    parents: npt.NDArray[np.object_]
    geoms: npt.NDArray[np.object_]
    _index: AreaIndex | None = field(default=None, repr=False)

    @property
    def index(self) -> AreaIndex:
        if self._index is None:
            self._index = AreaIndex(self.geoms)
        return self._index

    def __len__(self) -> int:
        return len(self.codes)

    def to_arrow(self) -> pa.Table:
        b = shapely.bounds(self.geoms)
        return pa.table(
            {
                "code": pa.array(self.codes.tolist(), pa.string()),
                "name": pa.array(self.names.tolist(), pa.string()),
                "parent": pa.array(self.parents.tolist(), pa.string()),
                "geom": pa.array(shapely.to_wkb(self.geoms), pa.binary()),
                "xmin": b[:, 0],
                "ymin": b[:, 1],
                "xmax": b[:, 2],
                "ymax": b[:, 3],
            }
        )

    @classmethod
    def from_arrow(cls, level: Level, t: pa.Table) -> Layer:
        def col(name: str) -> npt.NDArray[np.object_]:
            return np.array(t.column(name).to_pylist(), dtype=object)

        geoms = shapely.from_wkb(t.column("geom").to_numpy(zero_copy_only=False))
        return cls(level, col("code"), col("name"), col("parent"), geoms)

    def shape(self, code: str) -> shapely.Geometry:
        hit = np.nonzero(self.codes == code)[0]
        if not len(hit):
            raise KeyError(code)
        return self.geoms[hit[0]]


@dataclass
class City:
    """A city's place hierarchy. Build it `from_spec` (files) or `from_layers` (Python)."""

    name: str
    timezone: str = "Asia/Shanghai"
    h3_resolution: int = DEFAULT_H3_RESOLUTION
    layers: dict[Level, Layer] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: CitySpec) -> City:
        city = cls(spec.name, spec.timezone, spec.h3_resolution)
        for ls in spec.layers:
            city.layers[ls.level] = read_layer(ls)
        return city

    def keys(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> dict[str, pa.Array]:
        """Place keys for points: one code column per level (null outside), plus `h3`.

        >>> from shapely import box
        >>> c = City("t", layers={Level.district: Layer(Level.district, np.array(["A"], object),
        ...     np.array(["a"], object), np.array([None], object), np.array([box(0, 0, 1, 1)]))})
        >>> c.keys(np.array([0.5, 2.0]), np.array([0.5, 2.0]))["district"].to_pylist()
        ['A', None]
        """
        x = np.asarray(lon, dtype=np.float64)
        y = np.asarray(lat, dtype=np.float64)
        out: dict[str, pa.Array] = {}
        ok = np.isfinite(x) & np.isfinite(y)
        for level in Level:
            layer = self.layers.get(level)
            if layer is None or not len(layer):
                out[level.value] = pa.nulls(len(x), pa.string())
                continue
            idx = np.full(len(x), -1, dtype=np.int64)
            idx[ok] = layer.index.lookup(x[ok], y[ok])
            codes = pa.array(layer.codes.tolist(), pa.string())
            out[level.value] = pc.take(codes, pa.array(idx, mask=idx < 0))
        out[H3] = h3_cells(x, y, self.h3_resolution)
        return out


#: Points per thread below which H3 cells are computed on the caller's thread alone.
_H3_PART = 250_000


def h3_cells(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64], res: int) -> pa.Array:
    """H3 cells (uint64, null where there is no location), vectorised through h3ronpy.

    Large arrays are cut into one part per core: h3ronpy releases the GIL, and at ~3 M points/s
    per core the cells are the largest cost of keying a row.

    >>> h3_cells(np.array([116.39, np.nan]), np.array([39.91, 0.0]), 9).to_pylist()
    [617866866240782335, None]
    """
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    cells = np.zeros(len(lon), dtype=np.uint64)
    if ok.all():
        _cells_into(cells, np.asarray(lon, np.float64), np.asarray(lat, np.float64), res)
    elif ok.any():
        part = np.zeros(int(ok.sum()), dtype=np.uint64)
        _cells_into(part, lon[ok], lat[ok], res)
        cells[ok] = part
    return pa.array(cells, mask=None if ok.all() else ~ok)


def _cells_into(
    out: npt.NDArray[np.uint64], lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64], res: int
) -> None:
    from h3ronpy.vector import coordinates_to_cells

    def run(a: int, b: int) -> None:
        out[a:b] = pa.array(coordinates_to_cells(lat[a:b], lon[a:b], res)).to_numpy(zero_copy_only=False)

    parts = min(os.cpu_count() or 1, len(out) // _H3_PART)
    if parts < 2:
        run(0, len(out))
        return
    bounds = np.linspace(0, len(out), parts + 1).astype(int)
    try:
        futures = [_pool().submit(run, int(a), int(b)) for a, b in pairwise(bounds[1:])]
    except RuntimeError:  # the pool is shut down (the interpreter is exiting): one thread does it
        run(0, len(out))
        return
    run(0, int(bounds[1]))
    for f in futures:
        f.result()


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="citybase-h3")


def read_layer(ls: LayerSpec) -> Layer:
    """Read one area layer through the gateway's readers; polygons only, made valid."""
    from citybase.gateway.readers.base import GEOMETRY, ReadOptions, reader_for

    path = Path(ls.file)
    reader = reader_for(path, ls.format)
    batches = list(reader.read(path, ReadOptions(layer=ls.layer)))
    if not batches:
        raise DeclarationError(f"{path}: layer {ls.level.value} has no areas")
    t = pa.Table.from_batches(batches)
    for need in (ls.code, GEOMETRY):
        if need not in t.column_names:
            raise DeclarationError(
                f"{path}: layer {ls.level.value} has no field {need!r}; it has {t.column_names}"
            )
    geoms = shapely.from_wkb(t.column(GEOMETRY).to_numpy(zero_copy_only=False))
    geoms = np.array([polygonal(g) for g in geoms], dtype=object)
    keep = ~shapely.is_empty(geoms)

    def col(name: str | None) -> npt.NDArray[np.object_]:
        if name is None:
            return np.array([None] * t.num_rows, dtype=object)
        if name not in t.column_names:
            raise DeclarationError(f"{path}: layer {ls.level.value} has no field {name!r}")
        return np.array([None if v is None else str(v) for v in t.column(name).to_pylist()], dtype=object)

    return Layer(ls.level, col(ls.code)[keep], col(ls.name)[keep], col(ls.parent)[keep], geoms[keep])
