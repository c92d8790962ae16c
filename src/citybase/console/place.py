""" "Everything about this place" for the console: the query engine's `about_place`, with grants.

Each dataset is read through the viewer's scope; the datasets the viewer may not read are named
(so the operator knows what a department does not see) but none of their rows is read.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import shapely

from citybase.console.access import Viewer
from citybase.console.layers import SKIP
from citybase.errors import NotFound
from citybase.model.city import Level
from citybase.model.layout import stored_columns
from citybase.query.scope import ReadScope

if TYPE_CHECKING:
    from citybase.platform import CityBase


def place_report(
    cb: CityBase,
    viewer: Viewer,
    level: str,
    code: str,
    start: datetime | None,
    end: datetime | None,
    limit: int = 20,
) -> dict[str, Any]:
    """The place (code, name, shape), and per visible dataset its row count and newest `limit` rows."""
    lv = cb.query.place_level(level)
    scopes: dict[str, ReadScope] = {}
    hidden = []
    for name, spec in sorted(cb.datasets.items()):
        if lv not in {c for c, _, _ in stored_columns(spec)}:
            continue
        scope = viewer.scope(name)
        if scope is None:
            hidden.append(name)
        else:
            scopes[name] = scope
    report = cb.query.about_place(lv, code, start, end, limit_per_dataset=limit, scopes=scopes)
    city = cb.city
    geometry = None
    if city is not None and Level(lv) in city.layers:
        try:
            geometry = shapely.geometry.mapping(city.layers[Level(lv)].shape(code))
        except KeyError:
            raise NotFound(f"no {lv} with code {code!r}") from None
    datasets = []
    for s in report.summary.to_pylist():
        t = report[s["dataset"]]
        cols = [c for c in t.column_names if c not in SKIP]
        datasets.append({**s, "columns": cols, "sample": t.select(cols).to_pylist()})
        viewer.meter(s["dataset"], "place", int(s["returned"]))
    return {"place": report.place, "geometry": geometry, "datasets": datasets, "hidden": hidden}
