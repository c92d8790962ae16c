"""Where a platform's parts live: the file `deployment.yaml` in its root folder.

Embedded (no file), everything is in the root: the lake catalog in SQLite, the Parquet files
under `lake/`, the metadata database in SQLite. In the cluster deployment the file names the
shared parts, so every process opened on the same root (the server, the CLI, a second server)
uses the same PostgreSQL catalog and metadata database and the same data folder:

```yaml
catalog: "postgres:dbname=city host=db.example user=citybase"   # DuckLake catalog
data_path: /mnt/lake/                                              # shared Parquet folder
meta_url: "postgresql+psycopg://citybase@db.example/city"          # registry, grants, usage
```

Passwords do not belong in the file: libpq (and so both connections) reads `PGPASSWORD` or
`~/.pgpass`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citybase.errors import DeclarationError, invalid

FILE = "deployment.yaml"


class Deployment(BaseModel):
    """The shared parts of a cluster deployment; anything left out stays embedded in the root."""

    model_config = ConfigDict(extra="forbid")

    catalog: str | None = Field(
        default=None,
        description="DuckLake catalog: `postgres:<libpq conninfo>`, `duckdb:<file>` or `sqlite:<file>`.",
    )
    data_path: str | None = Field(default=None, description="Folder of the lake's Parquet files.")
    meta_url: str | None = Field(
        default=None, description="Metadata database, e.g. `postgresql+psycopg://user@host/db`."
    )

    @classmethod
    def read(cls, root: Path) -> Deployment:
        """The root's deployment; embedded (all None) when it has no file."""
        path = root / FILE
        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise DeclarationError(f"{path}: cannot read deployment: {e}") from e
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise invalid(str(path), "deployment", e) from e

    def write(self, root: Path) -> Path:
        if self.catalog and not self.catalog.startswith(("postgres:", "duckdb:", "sqlite:")):
            raise DeclarationError(
                f"catalog must start with postgres:, duckdb: or sqlite:, not {self.catalog!r}"
            )
        if self.catalog and not self.data_path:
            raise DeclarationError("a shared catalog needs a shared data_path for its files")
        root.mkdir(parents=True, exist_ok=True)
        path = root / FILE
        path.write_text(yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False))
        return path
