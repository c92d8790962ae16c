"""IoT devices: the device registry, the MQTT bridge into `series` datasets, the latest state of
each device (the digital twin's current state) and threshold rules that raise alarms.

The bridge (`citybase.iot.bridge`, which needs paho-mqtt) is imported on use, not here.
"""

from citybase.iot.decode import subscription, telemetry_topic
from citybase.iot.devices import Device, DeviceRegistry, PayloadField, read_devices, telemetry_dataset
from citybase.iot.rules import ALARMS, Rule, RuleBook, read_rules
from citybase.iot.state import latest_state, latest_state_gdf

__all__ = [
    "ALARMS",
    "Device",
    "DeviceRegistry",
    "PayloadField",
    "Rule",
    "RuleBook",
    "latest_state",
    "latest_state_gdf",
    "read_devices",
    "read_rules",
    "subscription",
    "telemetry_dataset",
    "telemetry_topic",
]
