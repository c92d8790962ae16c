"""How big the sample city is (SimScale) and what a run wrote (SimManifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class SimScale(BaseModel):
    """Sizes of every part of the sample city.

    The default writes a city that looks real on a map and in the console (about 5,000 buildings,
    two weeks of sensor series) in seconds; `tiny()` is for unit tests; `benchmark()` has the ~300
    districts that the place-key benchmark needs.

    >>> SimScale.tiny().districts
    3
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # administrative hierarchy and management grid
    districts: Annotated[int, Field(ge=1, le=9801)] = 12
    streets_per_district: Annotated[int, Field(ge=1, le=999)] = 8
    communities_per_street: Annotated[int, Field(ge=1, le=999)] = 6
    grid_cell_m: Annotated[float, Field(gt=50)] = 500.0
    # built environment
    buildings: Annotated[int, Field(ge=20)] = 5000
    arterial_spacing_m: Annotated[float, Field(ge=300)] = 1500.0
    local_streets_per_block: Annotated[int, Field(ge=0, le=20)] = 4
    # sensors
    aq_stations: Annotated[int, Field(ge=1)] = 35
    aq_interval_s: Annotated[int, Field(ge=60)] = 3600
    traffic_detectors: Annotated[int, Field(ge=1)] = 80
    traffic_interval_s: Annotated[int, Field(ge=10)] = 300
    series_days: Annotated[int, Field(ge=1)] = 14
    # vehicles
    vehicles: Annotated[int, Field(ge=1)] = 300
    bus_share: Annotated[float, Field(ge=0, le=1)] = 0.2
    track_minutes: Annotated[int, Field(ge=1)] = 120
    track_interval_s: Annotated[int, Field(ge=1)] = 10
    # events and department records
    hotline_events: Annotated[int, Field(ge=10)] = 5000
    people: Annotated[int, Field(ge=10)] = 5000
    enterprises: Annotated[int, Field(ge=5)] = 800

    @classmethod
    def tiny(cls) -> SimScale:
        """A few hundred of everything: the unit-test city (well under 2 s)."""
        return cls(
            districts=3,
            streets_per_district=3,
            communities_per_street=2,
            grid_cell_m=2000.0,
            buildings=300,
            arterial_spacing_m=3000.0,
            local_streets_per_block=1,
            aq_stations=4,
            traffic_detectors=6,
            series_days=2,
            vehicles=12,
            track_minutes=20,
            hotline_events=200,
            people=300,
            enterprises=60,
        )

    @classmethod
    def benchmark(cls) -> SimScale:
        """The default city cut into ~300 districts, as the place-key benchmark wants."""
        return cls(districts=300, streets_per_district=4, communities_per_street=3)


Role = Literal["city", "layer", "data", "declaration", "truth"]


class WrittenFile(BaseModel):
    """One file the simulator wrote; `path` is relative to the output folder, with '/'."""

    path: str
    role: Role
    name: str  # layer level, dataset name or truth table
    format: str  # yaml, geoparquet, parquet, csv, geojson
    rows: int | None = None


class BadRow(BaseModel):
    """A row deliberately broken so that the loader's quarantine has something to show."""

    dataset: str
    path: str
    line: int  # 1-based line in the text file; line 1 is the header
    row: int  # 0-based data row
    column: str  # column name as written in the file
    value: str
    reason: str


class SimManifest(BaseModel):
    """What `simulate` wrote: every file with its row count, and the deliberately bad rows.

    Saved as `manifest.json` next to the data. It holds no timing or dates of the run, so that two
    runs with the same seed and scale give the same bytes.
    """

    seed: int
    scale: SimScale
    city: str = "city.yaml"
    timezone: str
    bbox: tuple[float, float, float, float]  # west, south, east, north of the city boundary
    start: str  # first local day of the series, ISO date
    files: list[WrittenFile]
    bad_rows: list[BadRow] = Field(default_factory=list)

    def get(self, name: str, role: Role = "data") -> WrittenFile:
        for f in self.files:
            if f.name == name and f.role == role:
                return f
        raise KeyError(f"{role} {name!r} is not in the manifest")

    @property
    def datasets(self) -> dict[str, tuple[str, str]]:
        """Dataset name -> (declaration path, data path), both relative to the output folder."""
        decl = {f.name: f.path for f in self.files if f.role == "declaration"}
        data = {f.name: f.path for f in self.files if f.role == "data"}
        return {n: (decl[n], data[n]) for n in sorted(decl)}

    def save(self, out: Path) -> Path:
        p = out / "manifest.json"
        p.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: Path) -> SimManifest:
        """Read `manifest.json` (or the folder that holds it)."""
        p = path / "manifest.json" if path.is_dir() else path
        return cls.model_validate_json(p.read_text(encoding="utf-8"))
