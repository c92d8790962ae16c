"""Run the ETSI NGSI-LD test suite against citybase, and print pass counts per folder.

    .venv/bin/python benchmarks/ngsi_ld_suite.py /work/ngsi-suite \
        --robot /work/ngsi-venv/bin/robot --out /tmp/ngsi-results ContextInformation/Provision

The suite is never part of the repository: fetch it (marek-mraz/ngsi-ld-test-suite) and install its
requirements into a venv of its own (docs/ngsi-ld.md). This script starts `create_app` under
uvicorn on 127.0.0.1:<port> with the NGSI-LD API open on loopback, registers the suite's @context
documents under their forge URLs (so nothing is fetched from the internet), runs robot on each
folder given (one after the other) and prints passed / total per folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

FORGE = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/"
DEFAULT_FOLDERS = [
    "ContextInformation/Provision",
    "ContextInformation/Consumption",
    "ContextInformation/Subscription",
    "CommonBehaviours",
    "jsonldContext",
]


def start_server(port: int, suite: Path) -> tuple[object, threading.Thread]:
    import uvicorn

    from citybase.api import Settings, create_app
    from citybase.platform import CityBase

    root = Path(tempfile.mkdtemp(prefix="ngsi-suite-"))
    cb = CityBase.open(root, threads=1)
    settings = Settings(
        root=root, host="127.0.0.1", port=port, ngsi_ld_open_on_loopback=True, flush_interval=0.5
    )
    app = create_app(cb, settings)
    # The suite's pagination fixtures hold 20 instances per attribute and expect them cut (206).
    app.state.ngsi.temporal_instance_limit = 10
    registry = app.state.ngsi.contexts
    registry.allow_remote = True  # only the suite's own local context server is ever reached
    registry.base_url = f"http://127.0.0.1:{port}"
    for f in sorted((suite / "resources" / "jsonld-contexts").glob("*.jsonld")):
        registry.load_file(FORGE + f.name, f)
    # The suite also names this copy of its context on GitHub pages: the same terms and core 1.8.
    registry.register(
        "https://easy-global-market.github.io/ngsild-api-data-models/ngsildTestSuite/"
        "ngsildTestSuiteV1.8-compound.jsonld",
        {
            "@context": [
                FORGE + "ngsi-ld-test-suite.jsonld",
                "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
            ]
        },
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread


def stats(output: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) of the top suite of a robot output.xml."""
    root = ET.parse(output).getroot()
    total = root.find("./statistics/total/stat")
    assert total is not None
    return int(total.get("pass", 0)), int(total.get("fail", 0)), int(total.get("skip", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path, help="the test suite's folder")
    ap.add_argument("folders", nargs="*", default=DEFAULT_FOLDERS, help="folders under TP/NGSI-LD")
    ap.add_argument("--robot", default="/work/ngsi-venv/bin/robot")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ngsi-results")
    ap.add_argument("--port", type=int, default=9090)
    ap.add_argument("--test", action="append", default=[], help="robot --test pattern")
    args = ap.parse_args()
    suite = args.suite.resolve()
    server, thread = start_server(args.port, suite)
    url = f"http://127.0.0.1:{args.port}/ngsi-ld/v1"
    rows = []
    try:
        for folder in args.folders:
            out = args.out / folder.replace("/", "_")
            out.mkdir(parents=True, exist_ok=True)
            cmd = [
                args.robot,
                "--outputdir",
                str(out),
                "--console",
                "dotted",
                "--variable",
                f"url:{url}",
                "--variable",
                f"temporal_api_url:{url}",
                "--variable",
                "notification_server_host:127.0.0.1",
                "--variable",
                "context_server_host:127.0.0.1",
                "--variable",
                "context_source_host:127.0.0.1",
                "--variable",
                "mqtt_broker_host:127.0.0.1",
            ]
            for t in args.test:
                cmd += ["--test", t]
            cmd.append(str(suite / "TP" / "NGSI-LD" / folder))
            subprocess.run(cmd, cwd=suite, stdout=subprocess.DEVNULL, check=False)
            p, f, s = stats(out / "output.xml")
            rows.append((folder, p, p + f + s))
            print(f"{folder}: {p}/{p + f + s} passed ({f} failed, {s} skipped)", flush=True)
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)
    tp = sum(r[1] for r in rows)
    tt = sum(r[2] for r in rows)
    print(f"TOTAL: {tp}/{tt} passed ({100 * tp / max(tt, 1):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
