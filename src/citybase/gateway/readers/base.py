"""The one small interface every file format implements, and the registry that finds them.

A reader turns a file into Arrow record batches, nothing more: no validation, no place keys. It adds
`_line`, the 1-based line (text formats) or feature number (geographic formats) of each row, so that
quarantine can point at the exact place of a bad row. Geographic readers deliver one `geometry`
column of WKB in EPSG:4326 (reprojected when the file says another CRS).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import pyarrow as pa

from citybase.errors import InputError

LINE = "_line"
GEOMETRY = "geometry"


@dataclass(frozen=True)
class ReadOptions:
    """Format options a user may give; each reader takes the ones that apply to it."""

    layer: str | None = None  # GeoPackage / OSM: which layer ("buildings", "roads", "pois")
    delimiter: str | None = None  # CSV: None means sniff
    encoding: str = "utf-8"
    crs: str | None = None  # override the file's CRS (or give it where the file has none)
    batch_rows: int = 500_000
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Reader(Protocol):
    """A file format. Register an instance with `register` to make `citybase load` know it."""

    name: str
    suffixes: tuple[str, ...]

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.RecordBatch]:
        """Yield the file's rows; raise InputError (naming the file) if it cannot be read at all."""
        ...


_REGISTRY: dict[str, Reader] = {}


def register(reader: Reader) -> Reader:
    _REGISTRY[reader.name] = reader
    return reader


def readers() -> dict[str, Reader]:
    _load_builtins()
    return dict(_REGISTRY)


def reader_for(path: str | Path, format: str | None = None) -> Reader:
    """The reader named by `format`, else the one claiming the file's ending."""
    _load_builtins()
    if format is not None:
        try:
            return _REGISTRY[format]
        except KeyError:
            raise InputError(f"unknown format {format!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    name = Path(path).name.lower()
    best: tuple[int, Reader] | None = None
    for r in _REGISTRY.values():
        for s in r.suffixes:
            if name.endswith(s) and (best is None or len(s) > best[0]):
                best = (len(s), r)
    if best is None:
        raise InputError(f"{path}: cannot tell the format from the file name; pass format=")
    return best[1]


def _load_builtins() -> None:
    # Built-in readers register themselves on import, through the same `register` as plugins.
    from citybase.gateway.readers import builtin  # noqa: F401
