"""A Mosquitto of our own on a free port, for the demo, tests and benchmarks.

A city runs its own broker (docs/iot.md says how). The demo needs one when none is running,
the restart tests need one they can stop and start, and the benchmark needs one nobody else
publishes to. Settings are the ones that lose nothing (../shared/FACTS.md): no queue or in-flight
limits, and with ``persistence`` a stopped broker keeps the QoS 1 messages it holds for
persistent sessions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from citybase.errors import InputError
from citybase.ports import free_port, listening


def mosquitto_binary() -> str | None:
    """The installed `mosquitto` (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class Mosquitto:
    """A Mosquitto process listening on 127.0.0.1 at a free port, configured in `folder`.

    Use it as a context manager, or call start() and stop() (a restart keeps the port).
    """

    def __init__(self, folder: str | Path, *, persistence: bool = False, port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {self.folder}/mosquitto.log",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, which cannot write our folder
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        exe = mosquitto_binary()
        if exe is None:
            raise InputError("the mosquitto binary is not installed (apt-get install mosquitto)")
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while not listening("127.0.0.1", self.port, timeout=0.2):
            if time.monotonic() > end or self.proc.poll() is not None:
                raise InputError(f"mosquitto did not start on port {self.port}: {self.log()[-500:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        p = self.folder / "mosquitto.log"
        return p.read_text() if p.exists() else ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
