"""NGSI-LD (ETSI GS CIM 009 v1.9.1) under /ngsi-ld/v1."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])


def install(app: FastAPI) -> None:
    """Mount the NGSI-LD routes and their spec-exact error handling on the app."""
    app.include_router(router)
