"""`simulate --live` drives a real server through its ingest paths, and what it sends lands."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citybase import CityBase
from citybase.api import Settings, create_app
from citybase.sim.live import LiveCity, LiveOptions
from citybase.testing import serving


@pytest.fixture
def server(tmp_path: Path, demo_city: tuple[Path, Path]) -> Iterator[tuple[CityBase, str, str]]:
    cb = CityBase.open(tmp_path / "base")
    cb.setup_city(demo_city[1] / "city.yaml")
    cb.registry.add_department("city")
    key = cb.registry.issue_key("city", role="admin").key
    with serving(create_app(cb, Settings(root=tmp_path / "base", flush_interval=0.2))) as url:
        yield cb, url, key
    cb.close()


def test_the_live_city_lands_through_http(
    server: tuple[CityBase, str, str], demo_city: tuple[Path, Path]
) -> None:
    cb, url, key = server
    opts = LiveOptions(url=url, key=key, mqtt_url=None, speed=3600, duration_s=4, systems=20, tick_s=0.5)
    city = LiveCity(demo_city[1], opts)
    t0 = time.time()
    try:
        city.setup()
        stats = city.run()
    finally:
        city.close()
    assert not stats.errors, stats.errors[:3]
    assert stats.rows > 100 and stats.http_batches > 5
    # Every department and the extra systems are registered, up to 20 systems.
    assert len(cb.registry.systems()) == 20
    deadline = time.time() + 20
    while cb.log.pending()[0] and time.time() < deadline:
        time.sleep(0.2)
    counts = {n: cb.sql(f'SELECT count(*) AS n FROM lake."{n}"').column("n")[0].as_py() for n in stats.sent}
    # Everything sent is in the lake or in quarantine, with the reasons the pushes reported.
    quarantined = cb.sql("SELECT count(*) AS n FROM lake.citybase_quarantine WHERE source LIKE 'http:%'")
    assert quarantined.column("n")[0].as_py() == stats.rejected
    assert counts["vehicle_positions"] == stats.sent["vehicle_positions"] > 0
    for name, sent in stats.sent.items():
        assert 0 < counts[name] <= sent, name
    # Rows carry the time they were sent (naive UTC in the lake), not the sample city's dates.
    lo, hi = cb.sql("SELECT min(ts) AS lo, max(ts) AS hi FROM lake.vehicle_positions").to_pylist()[0].values()
    assert datetime.fromtimestamp(t0 - 5, UTC).replace(tzinfo=None) <= lo <= hi
    assert hi <= datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5)
    # The sample file has 1,440 positions: looping gave the repeats fresh identities, none was deduplicated.
    assert stats.sent["vehicle_positions"] > 1440


def test_the_live_city_stops_when_asked(
    server: tuple[CityBase, str, str], demo_city: tuple[Path, Path]
) -> None:
    _, url, key = server
    city = LiveCity(demo_city[1], LiveOptions(url=url, key=key, mqtt_url=None, speed=60, tick_s=0.2))
    stop = threading.Event()
    try:
        city.setup()
        threading.Timer(1.0, stop.set).start()
        t = time.perf_counter()
        city.run(stop)
        assert time.perf_counter() - t < 5
    finally:
        city.close()


def test_an_unreachable_server_is_a_clear_error(demo_city: tuple[Path, Path]) -> None:
    from citybase.errors import InputError

    city = LiveCity(demo_city[1], LiveOptions(url="http://127.0.0.1:9", key="x", mqtt_url=None))
    with pytest.raises(InputError, match="cannot reach the server"):
        city.setup()
    city.close()


def test_the_demo_shows_the_living_city(demo_city: tuple[Path, Path], tmp_path: Path) -> None:
    """`make demo`'s last step: the server with its console, and the city driven live through it."""
    from typer.testing import CliRunner

    from citybase.cli.main import app
    from citybase.testing import free_port

    base = tmp_path / "base"
    args = ["demo", "--root", str(base), "--source", str(demo_city[1]), "--seconds", "6", "--speed", "600"]
    r = CliRunner().invoke(app, [*args, "--port", str(free_port())])
    assert r.exit_code == 0, r.output
    assert "/console/" in r.output and "0 errors" in r.output, r.output[-2000:]
    key_file = tmp_path / "operator.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert key not in r.output  # the key is in its file, never printed
    with CityBase.open(base) as cb:
        assert cb.registry.authenticate(key) is not None
        # Rows sent live landed next to the loaded ones: stamped with the time they were sent.
        since = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
        recent = cb.sql("SELECT count(*) AS n FROM lake.vehicle_positions WHERE ts > ?", [since])
        assert recent.column("n")[0].as_py() > 0
