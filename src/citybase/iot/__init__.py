"""IoT devices: the device registry, the MQTT bridge into `series` datasets, the latest state of
each device (the digital twin's current state) and threshold rules that raise alarms."""
