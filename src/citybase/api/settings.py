"""Server settings: a YAML/JSON file, overridden by `CITYBASE_*` environment variables.

>>> Settings.load(env={"CITYBASE_PORT": "9000", "CITYBASE_FLUSH_INTERVAL": "0.5"}).port
9000
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citybase.errors import DeclarationError, invalid
from citybase.platform import HISTORY

ENV_PREFIX = "CITYBASE_"


class Settings(BaseModel):
    """Everything `citybase serve` can be told. Secrets are never part of it: keys live hashed
    in the registry."""

    model_config = ConfigDict(extra="forbid")

    root: Path = Field(default=Path(".citybase"), description="Folder of the embedded platform.")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535)
    meta_url: str | None = Field(default=None, description="Metadata DB URL; default <root>/meta.sqlite")
    log_level: str = Field(default="info", description="debug | info | warning | error")
    log_json: bool = Field(default=True, description="One JSON object per log line.")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, description="Largest accepted request body.")
    max_batch_rows: int = Field(default=1_000_000, description="Most rows in one ingest request.")
    flush_interval: float = Field(
        default=1.0, gt=0, description="Seconds between moves of the append log into the lake (ingest lag)."
    )
    maintain_interval: float = Field(
        default=300.0, gt=0, description="Seconds between merges of the small files that flushes leave."
    )
    history: float | None = Field(
        default=HISTORY.total_seconds(),
        ge=0,
        description="Seconds of lake history kept: older snapshots are forgotten and the files merged "
        "away before them deleted, listed in the ledger first (docs/adr/0009). None keeps all.",
    )
    threads: int | None = Field(default=None, description="DuckDB threads; default all cores.")
    memory_limit: str | None = Field(default=None, description="DuckDB memory limit, e.g. 4GB.")
    mqtt_url: str | None = Field(default=None, description="MQTT broker, e.g. mqtt://127.0.0.1:1883.")
    opentelemetry: bool = Field(
        default=False,
        description="Export OpenTelemetry traces, metrics and logs through FastAPI's built-in telemetry "
        "(exporters set by the standard OTEL_* variables). Off: Prometheus /metrics only, and no "
        "per-request cost.",
    )
    ngsi_ld_contexts: dict[str, Path] = Field(
        default_factory=dict,
        description="@context URL -> local file, served offline for that URL (e.g. the ETSI suite's).",
    )
    ngsi_ld_fetch_contexts: bool = Field(
        default=False, description="Fetch @context URLs not registered (needs the internet; off by default)."
    )
    ngsi_ld_open_on_loopback: bool = Field(
        default=False,
        description="Serve the NGSI-LD API without keys, on a loopback address only (for the ETSI "
        "test suite). Logged loudly at start; never the default.",
    )

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from a file (optional) and the environment, the environment winning."""
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            try:
                text = p.read_text()
                loaded = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError) as e:
                raise DeclarationError(f"{p}: cannot read settings: {e}") from e
            data.update(loaded or {})
        env = os.environ if env is None else env
        for name in cls.model_fields:
            value = env.get(ENV_PREFIX + name.upper())
            if value is not None:
                if value.strip().lower() in ("null", "none") and not cls.model_fields[name].is_required():
                    data[name] = None  # CITYBASE_HISTORY=null: keep all (where a field takes None)
                    continue
                # Mappings come as JSON in the environment: CITYBASE_NGSI_LD_CONTEXTS='{"url": "file"}'.
                try:
                    data[name] = json.loads(value) if value.lstrip().startswith("{") else value
                except ValueError as e:
                    raise DeclarationError(f"{ENV_PREFIX}{name.upper()}: not a JSON object: {e}") from e
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise invalid(str(path or "the environment"), "settings", e) from e
