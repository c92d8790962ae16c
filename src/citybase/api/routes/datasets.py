"""Dataset declarations: a department declares its datasets; every department may list them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from citybase.api.auth import Caller
from citybase.errors import Forbidden, NotFound
from citybase.model.dataset import DatasetSpec
from citybase.registry import Principal

router = APIRouter(prefix="/api/v1", tags=["datasets"])


def may_write(who: Principal, spec: DatasetSpec) -> bool:
    """A department writes its own datasets (a system's key: that system's); the operator any."""
    if who.is_admin:
        return True
    return who.department == spec.department and (who.system is None or who.system == spec.system)


def dataset_spec(request: Request, name: str) -> DatasetSpec:
    specs: dict[str, DatasetSpec] = request.app.state.cb.datasets
    if name not in specs:
        raise NotFound(f"no dataset {name!r}")
    return specs[name]


@router.get("/datasets", response_model=list[DatasetSpec], summary="All declared datasets")
def list_datasets(request: Request, _: Caller) -> list[DatasetSpec]:
    return sorted(request.app.state.cb.datasets.values(), key=lambda s: s.name)


@router.get("/datasets/{name}", response_model=DatasetSpec)
def get_dataset(request: Request, name: str, _: Caller) -> DatasetSpec:
    return dataset_spec(request, name)


@router.post("/datasets", response_model=DatasetSpec, status_code=201, summary="Declare a dataset")
def declare(request: Request, body: dict[str, Any], who: Caller) -> DatasetSpec:
    spec = DatasetSpec.from_dict(body, where="request body")
    if not may_write(who, spec):
        raise Forbidden(f"department {who.department!r} cannot declare a dataset of {spec.department!r}")
    cb = request.app.state.cb
    if spec.department not in {d.id for d in cb.registry.departments()}:
        raise NotFound(f"no department {spec.department!r}; the operator registers it first")
    existing = cb.datasets.get(spec.name)
    if existing is not None and not may_write(who, existing):
        raise Forbidden(f"dataset {spec.name!r} belongs to another department")
    declared: DatasetSpec = cb.declare(spec)
    return declared
