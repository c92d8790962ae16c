"""`citybase demo` and `citybase simulate`: the sample city, loaded, and a tour of its questions."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from citybase.cli.main import DEFAULT_ROOT, Root, app, console, lead, print_table
from citybase.cli.query import nearest_first, print_place

if TYPE_CHECKING:
    from citybase.sim.live import LiveOptions

SCALES = ("tiny", "default", "benchmark")


def _scale(name: str) -> Any:
    from citybase.sim.scale import SimScale

    if name not in SCALES:
        raise typer.BadParameter(f"scale must be one of {', '.join(SCALES)}")
    return SimScale() if name == "default" else getattr(SimScale, name)()


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample city into.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same city.")] = 42,
    scale: Annotated[str, typer.Option(help=f"One of {', '.join(SCALES)}.")] = "default",
    live: Annotated[
        bool, typer.Option(help="Then drive the city in real time against a running `citybase serve`.")
    ] = False,
    url: Annotated[str, typer.Option(help="--live: the server.")] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None, typer.Option(envvar="CITYBASE_KEY", help="--live: the operator's key (or CITYBASE_KEY).")
    ] = None,
    mqtt: Annotated[str | None, typer.Option(help="--live: MQTT broker the sensors publish to.")] = (
        "mqtt://127.0.0.1:1883"
    ),
    speed: Annotated[float, typer.Option(help="--live: sample-city seconds per real second.")] = 60.0,
    records_per_day: Annotated[
        float | None,
        typer.Option(help="--live: pace all rows at this rate instead (reference city: 500000)."),
    ] = None,
    systems: Annotated[
        int | None,
        typer.Option(help="--live: add information systems up to this many (reference city: 130)."),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="--live: stop after this many seconds.")] = None,
) -> None:
    """Write a reproducible synthetic city: layers, roads, sensors, vehicles, events, records.

    With --live, then replay it in real time through the server's ingest paths: sensors over
    MQTT, vehicles, the hotline and the department registers over HTTP.
    """
    from citybase.sim import simulate as run

    t = time.perf_counter()
    if not (live and (out / "manifest.json").exists()):
        with console.status("simulating the city…"):
            m = run(out, seed=seed, scale=_scale(scale))
        _print_manifest(m)
        console.print(
            f"[green]wrote {len(m.files)} files to {out}[/green] in {time.perf_counter() - t:.1f} s"
        )
    if live:
        _live(out, url, key, mqtt, speed, records_per_day, systems, duration)


def _live(
    out: Path,
    url: str,
    key: str | None,
    mqtt: str | None,
    speed: float,
    records_per_day: float | None,
    systems: int | None,
    duration: float | None,
) -> None:
    from citybase.sim.live import LiveOptions

    if not key:
        raise typer.BadParameter("--live needs the operator's key: --key or CITYBASE_KEY")
    opts = LiveOptions(
        url=url,
        key=key,
        mqtt_url=mqtt or None,
        speed=speed,
        records_per_day=records_per_day,
        systems=systems,
        duration_s=duration,
    )
    _drive(out, opts)


def _drive(source: Path, opts: LiveOptions, stop: threading.Event | None = None) -> None:
    """Run the live city against a server, with a live table of what was sent and the server's lag."""
    from rich.live import Live

    from citybase.sim.live import LiveCity, LiveStats, run_live

    worst = 0.0

    def view(city: LiveCity, st: LiveStats) -> Table:
        nonlocal worst
        lag = city.lag()
        if lag is not None:
            st.lag_s.append(lag)
            worst = max(worst, lag)
        t = Table(title=f"live city → {opts.url}  ({st.elapsed:,.0f} s)", header_style="bold cyan")
        for c in ("dataset", "rows sent"):
            t.add_column(c, justify="right" if c != "dataset" else "left")
        for name, n in sorted(st.sent.items()):
            t.add_row(name, f"{n:,}")
        t.caption = (
            f"{st.rows:,} rows ({st.rows / max(st.elapsed, 1e-9):,.1f}/s), "
            f"{st.mqtt_messages:,} MQTT messages, "
            f"{st.http_batches:,} HTTP batches, {st.rejected:,} rejected, {len(st.errors)} errors; "
            f"server lag {lag if lag is not None else float('nan'):.2f} s (worst {worst:.2f} s)"
        )
        return t

    with Live(console=console, refresh_per_second=2) as screen:
        try:
            st = run_live(source, opts, on_tick=lambda city, s: screen.update(view(city, s)), stop=stop)
        except KeyboardInterrupt:
            return
    console.print(
        f"[green]sent {st.rows:,} rows in {st.elapsed:,.0f} s[/green]; worst server lag {worst:.2f} s; "
        f"{len(st.errors)} errors"
    )
    for e in st.errors[:10]:
        console.print(f"  [red]{e}[/red]")


def _print_manifest(m: Any) -> None:
    t = Table(title="sample city", header_style="bold cyan")
    for c in ("role", "name", "format", "rows", "path"):
        t.add_column(c, justify="right" if c == "rows" else "left")
    for f in m.files:
        t.add_row(f.role, f.name, f.format, "" if f.rows is None else f"{f.rows:,}", f.path)
    console.print(t)


@app.command()
def demo(
    root: Root = DEFAULT_ROOT,
    source: Annotated[Path, typer.Option(help="Where the sample city's files are written.")] = Path(
        "demo-city/source"
    ),
    seed: Annotated[int, typer.Option(help="Random seed of the sample city.")] = 42,
    scale: Annotated[str, typer.Option(help=f"One of {', '.join(SCALES)}.")] = "default",
    live: Annotated[
        bool, typer.Option("--live/--no-live", help="Then serve the console and drive the city live.")
    ] = True,
    seconds: Annotated[
        float | None,
        typer.Option(help="Stop the living city after this long (default: Ctrl-C at a terminal, else 60 s)."),
    ] = None,
    port: Annotated[int, typer.Option(help="The server's port (a free one if it is taken).")] = 8000,
    speed: Annotated[float, typer.Option(help="Sample-city seconds per real second.")] = 60.0,
) -> None:
    """Generate the sample city, load it, run a tour of queries, then show it living in the console.

    The living city: `citybase serve` in this process (the console on /console/), and the live
    simulation sending sensors over MQTT (the system Mosquitto, or one started here) and vehicles,
    events and records over HTTP, until Ctrl-C (or --seconds).
    """
    from citybase.platform import CityBase
    from citybase.sim import simulate as run
    from citybase.sim.scale import SimManifest

    console.print(Panel.fit("[bold]citybase[/bold] demo: a sample city, loaded and questioned", style="cyan"))
    if (source / "manifest.json").exists():
        m = SimManifest.load(source)
        console.print(f"using the sample city already in {source} (delete it to regenerate)")
    else:
        with console.status("1/3 simulating the sample city…"):
            m = run(source, seed=seed, scale=_scale(scale))
        console.print(f"1/3 simulated the sample city into {source}")
    with CityBase.open(root) as cb:
        city = cb.setup_city(source / m.city)
        console.print(
            "2/3 city model: "
            + ", ".join(f"{len(layer):,} {level.value} areas" for level, layer in city.layers.items())
        )
        summary = Table(title="loaded", header_style="bold cyan")
        for c in ("dataset", "kind", "file", "read", "added", "quarantined", "note"):
            summary.add_column(c, justify="right" if c in ("read", "added", "quarantined") else "left")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            items = m.datasets
            task = bar.add_task("loading", total=len(items))
            for name, (decl, data) in items.items():
                bar.update(task, description=f"loading {name}")
                spec = cb.declare(source / decl)
                res = cb.load(name, source / data)
                bar.advance(task)
                summary.add_row(
                    name,
                    spec.kind.value,
                    Path(data).name,
                    f"{res.read:,}",
                    f"{res.added:,}",
                    f"{res.quarantined:,}",
                    "already loaded" if res.skipped else "",
                )
        console.print(summary)
        tour(cb)
        if live:
            if seconds is None and not sys.stdin.isatty():
                seconds = 60.0
            _living_city(cb, root, source, port=port, speed=speed, seconds=seconds)
    console.print(
        Panel.fit(
            f"Explore it yourself:\n  . .venv/bin/activate\n  export CITYBASE_ROOT={root}\n"
            '  citybase --help\n  citybase datasets\n  citybase sql "SELECT * FROM lake.place_district"\n'
            f"\nThe living city again: make demo (or citybase demo --root {root} --source {source})",
            style="green",
        )
    )


def _operator_key(cb: Any, path: Path) -> str:
    """The demo operator's admin key: the one in `path` while it is valid, else a new one (0600)."""
    if path.exists():
        key = path.read_text().strip()
        if cb.registry.authenticate(key) is not None:
            return key
    cb.registry.add_department("city", "City operations centre")
    key = str(cb.registry.issue_key("city", role="admin", label="demo operator").key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def _broker(folder: Path) -> tuple[str | None, Any]:
    """An MQTT broker for the sensors: the system Mosquitto on 1883, else one of our own, else none."""
    from citybase.iot.mosquitto import Mosquitto, mosquitto_binary
    from citybase.ports import listening

    if listening("127.0.0.1", 1883):
        return "mqtt://127.0.0.1:1883", None
    if mosquitto_binary() is None:
        console.print("[yellow]no Mosquitto here: the sensors report over HTTP instead of MQTT[/yellow]")
        return None, None
    own = Mosquitto(folder)
    own.start()
    return own.url, own


def _living_city(
    cb: Any, root: Path, source: Path, *, port: int, speed: float, seconds: float | None
) -> None:
    """Serve the platform (API and console) here and drive the sample city through it."""
    from citybase.api import Settings, create_app
    from citybase.api.threaded import serve_in_thread
    from citybase.ports import free_port, listening
    from citybase.sim.live import LiveOptions

    key_file = root.parent / "operator.key"
    key = _operator_key(cb, key_file)
    if listening("127.0.0.1", port, timeout=0.2):
        port = free_port()
    mqtt, own = _broker(root.parent / "mosquitto")
    settings = Settings(root=root, port=port, mqtt_url=mqtt)
    try:
        with serve_in_thread(create_app(cb, settings), port=port) as url:
            until = f"for {seconds:.0f} s" if seconds else "until Ctrl-C"
            console.print(
                Panel.fit(
                    f"[bold]The living city[/bold], {until}:\n"
                    f"  console  {url}/console/  (sign in with the key in {key_file})\n"
                    f"  API      {url}/docs\n"
                    f"  sensors  {mqtt or 'over HTTP'}",
                    style="cyan",
                )
            )
            opts = LiveOptions(url=url, key=key, mqtt_url=mqtt, speed=speed, duration_s=seconds)
            _drive(source, opts)
            _figures(cb)
    finally:
        if own is not None:
            own.stop()


def _figures(cb: Any) -> None:
    """The platform's figures, as the console shows them."""
    cb.flush()
    st = cb.share.stats()
    now = datetime.now(UTC).date()
    today = sum(d.count for d in st.new_records_per_day if d.day == now)
    t = Table(title="the platform's figures", header_style="bold cyan")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for name, value in (
        ("departments", st.departments),
        ("information systems connected", st.systems_connected),
        ("datasets", st.datasets),
        ("total records", st.total_records),
        ("records today", today),
        ("data uses", st.data_uses),
    ):
        t.add_row(name, f"{value:,}")
    console.print(t)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """What `fn` returns, and the milliseconds it took."""
    t0 = time.perf_counter()
    res = fn()
    return res, (time.perf_counter() - t0) * 1000


def _step(title: str, fn: Callable[[], pa.Table], limit: int = 8) -> pa.Table:
    res, ms = _timed(fn)
    print_table(res, f"{title}  [dim]({res.num_rows:,} rows, {ms:.0f} ms)[/dim]", limit=limit)
    return res


def tour(cb: Any) -> None:
    """The questions a city asks first, each answered from the loaded sample city."""
    console.print(Panel.fit("3/3 a tour of queries", style="cyan"))
    _step(
        "rejected rows (quarantine)",
        lambda: cb.quarantine().select(["dataset", "line", "field", "reason", "value"]),
    )
    q = cb.query
    city = cb.city
    districts = city.layers[next(iter(city.layers))]
    # Centre the questions where the vehicles are: the median of their positions.
    c = cb.sql("SELECT median(lon) AS x, median(lat) AS y FROM lake.vehicle_positions").to_pylist()[0]
    cx, cy = c["x"], c["y"]
    box = (cx - 0.01, cy - 0.01, cx + 0.01, cy + 0.01)
    vp = cb.datasets["vehicle_positions"]
    tf, of = vp.time_field, vp.object_field
    t = cb.sql(f"SELECT min({tf}) AS a, max({tf}) AS b FROM lake.vehicle_positions").to_pylist()[0]
    start, end = t["a"], t["b"]
    where = [of, tf, "lon", "lat", "speed", "district"]  # the columns a person looks at first
    _step("B1 vehicle positions in a 2 km box", lambda: lead(q.bbox("vehicle_positions", box), where))
    hour = (start, start + timedelta(hours=1))
    _step(
        f"B2 … and between {hour[0]:%H:%M} and {hour[1]:%H:%M} UTC",
        lambda: lead(q.range("vehicle_positions", box, *hour), where),
    )
    obj = cb.sql(f"SELECT {of} FROM lake.vehicle_positions LIMIT 1").column(0)[0].as_py()
    _step(f"B3 track of vehicle {obj}", lambda: lead(q.track("vehicle_positions", obj, start, end), where))
    _step(
        f"B4 the 5 vehicle positions nearest the box's centre ({cx:.4f}, {cy:.4f})",
        lambda: lead(q.nearest("vehicle_positions", cx, cy, 5), [of, "distance_m", *where[1:]]),
    )
    _step(
        f"B5 hotline events per district per day ({city.timezone} days)",
        lambda: q.counts_by_place("hotline_events", "district", every="1d", tz=city.timezone),
    )
    _step("B6 vehicle positions per H3 cell (res 8)", lambda: q.h3_bins("vehicle_positions", 8))
    trips = [of, "points", "duration_s", "length_m", "mean_speed_mps", "stays"]
    _step("B7 trips: length, speed, stays", lambda: lead(q.trajectories("vehicle_positions")[0], trips))
    _step(
        "B8 the nearest vehicle to each hotline event, within 10 minutes of it",
        lambda: nearest_first(
            q.nearest_join("hotline_events", "vehicle_positions", 1, None, "10min", start, end)
        ),
    )
    code = districts.codes[0]
    report, ms = _timed(lambda: q.about_place("district", code))
    console.print(
        f"[bold]everything about district {code} ({escape(str(report.place['name']))})[/bold] "
        f"[dim]({ms:.0f} ms)[/dim]"
    )
    print_place(report, limit=3)
