"""Sharing: the catalog, access requests and grants, privacy-preserving aggregates, usage."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["sharing"])
