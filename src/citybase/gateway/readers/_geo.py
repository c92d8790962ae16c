"""Geometry to WKB in EPSG:4326: the one shape every geographic reader hands to the gateway."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from citybase.gateway.readers._common import fail

WGS84 = CRS.from_epsg(4326)


def source_crs(path: Path, declared: str | None, override: str | None) -> CRS:
    """The CRS to reproject from: the user's override, else what the file declares.

    A file without a CRS is refused rather than guessed: coordinates in the wrong CRS would put
    every row in the wrong place without any error.
    """
    given = override if override is not None else declared
    if given is None or given == "":
        raise fail(path, "the file states no coordinate reference system; pass crs= (e.g. 'EPSG:4326')")
    try:
        return CRS.from_user_input(given)
    except CRSError as e:
        raise fail(path, f"unknown coordinate reference system {str(given)[:80]!r}", e) from None


class ToWGS84:
    """Reprojects WKB arrays from one CRS to lon/lat WGS 84; a no-op when already there."""

    def __init__(self, crs: CRS) -> None:
        self.identity = crs.equals(WGS84, ignore_axis_order=True) or crs.equals(
            CRS.from_user_input("OGC:CRS84")
        )
        # always_xy: lon/lat order out, whatever axis order the CRS definition declares.
        self._transformer = None if self.identity else Transformer.from_crs(crs, WGS84, always_xy=True)

    def __call__(self, wkb: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(wkb, pa.ChunkedArray):
            wkb = wkb.combine_chunks()
        if isinstance(wkb.type, pa.ExtensionType):
            wkb = wkb.storage
        if pa.types.is_large_binary(wkb.type) or pa.types.is_binary_view(wkb.type):
            wkb = wkb.cast(pa.binary())
        if self._transformer is None:
            return wkb
        # Unreadable WKB becomes null: a row-level problem for quarantine, not a reason to fail the file.
        geoms = shapely.from_wkb(
            np.asarray(wkb.to_numpy(zero_copy_only=False), dtype=object), on_invalid="ignore"
        )
        moved = shapely.transform(geoms, self._move, include_z=None)
        out = shapely.to_wkb(moved, flavor="iso")
        return pa.array(out, type=pa.binary())

    def _move(self, coords: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._transformer is not None
        if coords.shape[1] == 3:
            x, y, z = self._transformer.transform(coords[:, 0], coords[:, 1], coords[:, 2])
            return np.column_stack([x, y, z])
        x, y = self._transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])
