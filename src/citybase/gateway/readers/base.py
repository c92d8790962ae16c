"""The one small interface every file format implements, and the registry that finds them.

A reader turns a file into Arrow record batches, nothing more: no validation, no place keys. It adds
`_line`, the 1-based line (text formats) or feature number (geographic formats) of each row, so that
quarantine can point at the exact place of a bad row. Geographic readers deliver one `geometry`
column of WKB in EPSG:4326 (reprojected when the file says another CRS).
"""

from __future__ import annotations

import glob
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
    #: Column -> the Arrow type its dataset expects (the loader fills it in from the declaration).
    #: A reader may deliver a column in that type when every value converts to it as it stands;
    #: it must otherwise deliver what it would without the hint (text formats: strings), so the
    #: batches of one file may differ in type.
    types: dict[str, pa.DataType] = field(default_factory=dict)


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


def iter_files(path: str | Path, reader: Reader | None = None) -> list[Path]:
    """The files a load of `path` means: the file itself, or those a directory or glob holds, sorted.

    In a directory (searched recursively) or a glob, a file counts when `reader` claims its ending,
    or, without a reader, when any registered reader does. Hidden files and folders are skipped.

    >>> iter_files("Data/010/Trajectory", reader_for("x.plt"))  # doctest: +SKIP
    [PosixPath('Data/010/Trajectory/20080330004134.plt'), ...]
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        candidates = [f for f in p.rglob("*") if not _hidden(f.relative_to(p))]
    elif glob.has_magic(str(path)):
        candidates = [Path(m) for m in glob.glob(str(path), recursive=True)]
        candidates += [
            f for c in list(candidates) if c.is_dir() for f in c.rglob("*") if not _hidden(f.relative_to(c))
        ]
    else:
        raise InputError(f"{path}: no such file or directory")
    files = sorted({f for f in candidates if f.is_file() and _claimed(f, reader)})
    if not files:
        what = f"the {reader.name} reader" if reader is not None else "any reader"
        raise InputError(f"{path}: no files that {what} can read")
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _claimed(file: Path, reader: Reader | None) -> bool:
    name = file.name.lower()
    if reader is not None:
        return any(name.endswith(s) for s in reader.suffixes)
    return any(name.endswith(s) for r in readers().values() for s in r.suffixes)


def _load_builtins() -> None:
    # Built-in readers register themselves on import, through the same `register` as plugins.
    from citybase.gateway.readers import builtin  # noqa: F401
