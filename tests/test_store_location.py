"""An embedded root opens from any path: another working directory, or after it was moved."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from citybase import CityBase

SPEC = {
    "name": "readings",
    "department": "eco",
    "system": "aq",
    "kind": "series",
    "fields": [{"name": "station"}, {"name": "ts", "type": "timestamp"}, {"name": "pm25", "type": "float"}],
    "time_field": "ts",
    "object_field": "station",
}


def _count(root: Path) -> int:
    with CityBase.open(root) as cb:
        return int(cb.sql("SELECT count(*) AS n FROM lake.readings").column("n")[0].as_py())


def test_a_root_made_by_a_relative_path_opens_by_others_and_after_a_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with CityBase.open("city/base") as cb:  # relative, as `make demo` makes it
        cb.declare(SPEC)
        cb.ingest("readings", [{"station": "a", "ts": "2026-01-01 00:00:00", "pm25": 3.0}])
    assert _count(tmp_path / "city" / "base") == 1  # the same root by its absolute path
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    assert _count(Path("../city/base")) == 1  # from another working directory
    shutil.move(str(tmp_path / "city"), str(tmp_path / "moved"))
    assert _count(tmp_path / "moved" / "base") == 1  # and after the folder moved


def test_a_root_made_with_a_sqlite_catalog_keeps_it(tmp_path: Path) -> None:
    """Roots made before ADR 0007 have `catalog.sqlite`: they open on it, not on a new, empty
    DuckDB catalog beside it; new roots get `catalog.ducklake`."""
    from citybase.store.lake import EMBEDDED_CATALOG, LEGACY_CATALOG, Lake, Location

    old = tmp_path / "old"
    lake = Lake(Location(f"sqlite:{old / LEGACY_CATALOG}", f"{old / 'lake'}/", own_folder=True))
    lake.close()
    with CityBase.open(old) as cb:
        cb.declare(SPEC)
        cb.ingest("readings", [{"station": "a", "ts": "2026-01-01 00:00:00", "pm25": 3.0}])
    assert _count(old) == 1
    assert not (old / EMBEDDED_CATALOG).exists()
    with CityBase.open(tmp_path / "new"):
        pass
    assert (tmp_path / "new" / EMBEDDED_CATALOG).exists() and not (tmp_path / "new" / LEGACY_CATALOG).exists()
