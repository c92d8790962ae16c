"""IoT: the device registry and the devices' latest state."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["iot"])
