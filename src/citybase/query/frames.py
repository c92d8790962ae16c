"""Arrow results as GeoDataFrames, for plotting and GIS work in Python."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from citybase.errors import InputError

#: Columns holding a geometry as WKB, in the order they are looked for.
WKB_COLUMNS = ("geometry", "geom")


def to_geodataframe(table: pa.Table, geometry: str | None = None) -> Any:
    """A GeoDataFrame (EPSG:4326) of a query result.

    The geometry is the WKB column `geometry` (if given or present), else `geom` (areas), else
    points from `lon`/`lat` (null where either is null). Other WKB columns stay as bytes.

    >>> from citybase.query.demo import demo_engine
    >>> gdf = to_geodataframe(demo_engine().bbox("pings", (116.30, 39.90, 116.35, 39.95)))
    >>> gdf.geometry.geom_type.unique().tolist(), gdf.crs.to_epsg()
    (['Point'], 4326)
    """
    import geopandas as gpd
    import numpy as np
    import shapely

    names = table.column_names
    col = geometry or next((c for c in WKB_COLUMNS if c in names), None)
    if col is not None:
        if col not in names:
            raise InputError(f"no column {col!r} in the table; it has {names}")
        wkb = table.column(col).to_numpy(zero_copy_only=False)
        geoms = shapely.from_wkb(wkb)
        df = table.drop_columns([col]).to_pandas()
    elif "lon" in names and "lat" in names:
        x = table.column("lon").to_numpy(zero_copy_only=False).astype(np.float64)
        y = table.column("lat").to_numpy(zero_copy_only=False).astype(np.float64)
        geoms = shapely.points(x, y)
        geoms[~(np.isfinite(x) & np.isfinite(y))] = None
        df = table.to_pandas()
    else:
        raise InputError(f"the table has no geometry: no {' or '.join(WKB_COLUMNS)} column and no lon/lat")
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, index=df.index, crs="EPSG:4326"))
