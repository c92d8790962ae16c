"""paho's MQTT client with the bridge's hot path made cheaper: batched socket reads and PUBACKs.

paho-mqtt (pinned at 2.2.0 in pyproject.toml) reads each packet with three or more `recv` calls
(the command byte, the length bytes, the body), goes back to `select` after every packet when
nothing is in flight from our side, builds an `MQTTMessage` and matches it against the filtered
callbacks for every message, and writes every PUBACK with a `send` of its own after waking its
network thread through a socket pair. On a virtual machine a system call costs microseconds, so
these, not the protocol, were most of the bridge's receive cost.

`BatchingClient` keeps paho for the protocol, sessions, reconnects, keepalive and TLS, and changes
three private steps of it:

- reads fill a 256 KiB buffer with one `recv`; packets are parsed from it until it is empty;
- a PUBLISH at QoS 0 or 1 (MQTT 3.1.1) goes to `sink(topic, payload, mid, qos)` as raw bytes, no
  `MQTTMessage`; QoS 2 and MQTT 5 take paho's own path to `on_message`;
- `ack_many(mids)` queues the PUBACKs of a whole batch as one write, in the order given (MQTT
  3.1.1 wants PUBACKs in the order the PUBLISHes came).

tests/test_iot_client.py checks these against paho's own behaviour and a real Mosquitto, so an
upgrade of paho that changes them fails there first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from paho.mqtt.client import PUBACK, Client, MQTTv5
from paho.mqtt.enums import MQTTErrorCode

#: (topic as bytes, payload, packet id, qos): called on paho's network thread, keep it short.
Sink = Callable[[bytes, bytes, int, int], None]

_READ = 256 * 1024
#: Packets parsed before queued writes (acks, pings) get a turn, when data keeps coming.
_WRITE_EVERY = 4096


class BatchingClient(Client):
    """A paho `Client` that reads in large chunks, hands PUBLISHes to `sink` and acks in batches.

    >>> from paho.mqtt.enums import CallbackAPIVersion
    >>> got = []
    >>> c = BatchingClient(CallbackAPIVersion.VERSION2, client_id="x", manual_ack=True)
    >>> c.sink = lambda topic, payload, mid, qos: got.append((topic, payload, mid, qos))
    >>> c.ack_many([]) == MQTTErrorCode.MQTT_ERR_SUCCESS
    True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink: Sink | None = None
        self._rbuf = b""
        self._rpos = 0

    # -- reads --------------------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        pos = self._rpos
        buf = self._rbuf
        if pos >= len(buf):
            data = super()._sock_recv(max(bufsize, _READ))
            if len(data) <= bufsize:
                return data
            self._rbuf, pos, buf = data, 0, data
        end = pos + bufsize
        self._rpos = end if end < len(buf) else len(buf)
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Parse packets until the read buffer is empty (paho: one packet per `select`)."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        n = 0
        while True:
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN or self._sock is None:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if self._rpos >= len(self._rbuf):
                return MQTTErrorCode.MQTT_ERR_SUCCESS  # at a packet boundary: back to select
            n += 1
            if n % _WRITE_EVERY == 0 and self._out_packet:
                self.loop_write()  # data keeps coming: let the acks out meanwhile

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # what was buffered belongs to the closed connection
        super()._sock_close()

    def _handle_publish(self) -> MQTTErrorCode:
        sink = self.sink
        cmd = self._in_packet["command"]
        qos = (cmd & 0x06) >> 1
        if sink is None or qos == 2 or self._protocol == MQTTv5:
            return super()._handle_publish()
        pkt = self._in_packet["packet"]
        if len(pkt) < 2:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        start = 2 + ((pkt[0] << 8) | pkt[1])
        topic = bytes(pkt[2:start])
        if qos:
            if len(pkt) < start + 2:
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            mid = (pkt[start] << 8) | pkt[start + 1]
            start += 2
        else:
            mid = 0
        sink(topic, bytes(pkt[start:]), mid, qos)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- acks ---------------------------------------------------------------------------------

    def ack_many(self, mids: Sequence[int]) -> MQTTErrorCode:
        """PUBACK every packet id in `mids` (QoS 1), in that order, as one write."""
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        ids = np.asarray(mids, dtype=np.uint16)
        out = np.empty((len(ids), 4), dtype=np.uint8)
        out[:, 0] = PUBACK
        out[:, 1] = 2
        out[:, 2] = ids >> 8
        out[:, 3] = ids & 0xFF
        return self._packet_queue(PUBACK, out.tobytes(), 0, 0)
