"""The reproducible synthetic sample city: the demo's, the tests' and the benchmarks' data.

`simulate(out)` writes a city at Beijing-like coordinates: its place layers and city.yaml, roads,
dataset declarations with data files for every data kind, department records of the same people and
firms with real-world variations, the ground truth of who is who, and a manifest. Same seed and
scale, same bytes.

>>> from citybase.sim import SimScale
>>> SimScale().districts
12
"""

from __future__ import annotations

from citybase.sim.admin import districts
from citybase.sim.frame import BEIJING, CityFrame
from citybase.sim.gps import gps_points, iter_gps_points
from citybase.sim.ids import credit_code_valid, id_number_valid
from citybase.sim.scale import BadRow, SimManifest, SimScale, WrittenFile
from citybase.sim.simulate import simulate

__all__ = [
    "BEIJING",
    "BadRow",
    "CityFrame",
    "SimManifest",
    "SimScale",
    "WrittenFile",
    "credit_code_valid",
    "districts",
    "gps_points",
    "id_number_valid",
    "iter_gps_points",
    "simulate",
]
