"""The city itself (outline, hierarchy, grid, roads, buildings, people, firms), built once per run."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from shapely.geometry import Polygon

from citybase.sim.admin import Admin, build_admin, grid_cells
from citybase.sim.buildings import Buildings, build_buildings
from citybase.sim.entities import Enterprises, People, build_enterprises, build_people
from citybase.sim.frame import CityFrame, city_boundary
from citybase.sim.roads import RoadNetwork, build_roads
from citybase.sim.scale import SimScale
from citybase.sim.vocab import STR, Str

START = np.datetime64("2025-03-03T00:00", "s")  # a Monday; local time (Asia/Shanghai)
UTC_OFFSET = np.timedelta64(8, "h")


@dataclass(frozen=True)
class World:
    seed: int
    scale: SimScale
    frame: CityFrame
    boundary: Polygon  # metres
    admin: Admin
    grid: gpd.GeoDataFrame
    roads: RoadNetwork
    buildings: Buildings
    people: People
    enterprises: Enterprises

    @property
    def district_codes(self) -> Str:
        out: Str = self.admin.districts["code"].to_numpy(dtype=STR)
        return out

    def street_of_building(self) -> Str:
        """Street-office name of every building (its community's parent)."""
        streets = self.admin.streets
        codes = streets["code"].to_numpy(dtype=STR)
        b_code = self.buildings.frame["code"].to_numpy(dtype=STR)
        idx = np.searchsorted(codes, np.strings.slice(b_code, 0, 9))
        out: Str = streets["name"].to_numpy(dtype=STR)[idx]
        return out


def build_world(seed: int, scale: SimScale, frame: CityFrame) -> World:
    boundary = city_boundary(frame, seed)
    admin = build_admin(
        boundary, scale.districts, scale.streets_per_district, scale.communities_per_street, seed, frame
    )
    roads = build_roads(boundary, scale.arterial_spacing_m, scale.local_streets_per_block, seed)
    buildings = build_buildings(roads, admin, scale.buildings, seed, frame)
    codes = admin.districts["code"].to_numpy(dtype=STR)
    people = build_people(scale.people, buildings, codes, seed)
    enterprises = build_enterprises(scale.enterprises, people, buildings, codes, seed)
    return World(
        seed,
        scale,
        frame,
        boundary,
        admin,
        grid_cells(boundary, scale.grid_cell_m),
        roads,
        buildings,
        people,
        enterprises,
    )
