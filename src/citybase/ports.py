"""TCP ports on this machine: a free one to listen on, and whether something listens on one.

Shared by whatever starts a server or a broker here (the demo, `citybase.iot.mosquitto`, the
tests and benchmarks through `citybase.testing`).
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
