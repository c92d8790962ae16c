"""City entities: fused people, firms and buildings, read through the caller's grants.

A thin shell over `cb.fusion` (citybase.fusion.service): each route reads its parameters, calls one
method with the caller's principal and returns its typed answer. Declaring and running resolution
are the operator's; reading is every department's, each seeing what its grants let it see.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from citybase.api.auth import Admin, Caller
from citybase.fusion.declaration import FusionDeclaration
from citybase.fusion.profile import EntityPage, EntityProfile
from citybase.fusion.service import FusionService

router = APIRouter(prefix="/api/v1", tags=["entities"])


def fusion(request: Request) -> FusionService:
    f: FusionService = request.app.state.cb.fusion
    return f


class RunResult(BaseModel):
    """What a resolution run did, per entity type."""

    entity_type: str
    records: int
    entities: int
    review: int


class UpdateResult(BaseModel):
    added: dict[str, int]


@router.get("/entities", response_model=EntityPage, summary="City entities the caller may see")
def list_entities(
    request: Request,
    who: Caller,
    type_: Annotated[
        str | None, Query(alias="type", description="Entity type: person, enterprise...")
    ] = None,
    q: Annotated[
        str | None, Query(description="An entity id, or text in its records as the caller reads them.")
    ] = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EntityPage:
    return fusion(request).entities(who, type_, q=q, limit=limit, offset=offset)


@router.get("/entities/{entity_id}", response_model=EntityProfile, summary="One entity's profile")
def get_entity(request: Request, entity_id: str, who: Caller) -> EntityProfile:
    return fusion(request).entity(who, entity_id)


@router.get("/fusion", summary="What feeds the city's entity types")
def get_declaration(request: Request, _: Caller) -> dict[str, Any]:
    return fusion(request).declaration.model_dump(mode="json", exclude_defaults=True)


@router.put("/fusion", summary="Declare what feeds the entity types (the operator)")
def declare(request: Request, body: dict[str, Any], _: Admin) -> dict[str, Any]:
    d = fusion(request).declare(FusionDeclaration.load(body))
    return d.model_dump(mode="json", exclude_defaults=True)


@router.post(
    "/fusion/{entity_type}/resolve", response_model=RunResult, summary="Resolve an entity type afresh"
)
def resolve(request: Request, entity_type: str, _: Admin) -> RunResult:
    res = fusion(request).resolve(entity_type)
    return RunResult(
        entity_type=entity_type,
        records=res.members.num_rows,
        entities=res.entities.num_rows,
        review=res.review.num_rows,
    )


@router.post("/fusion/update", response_model=UpdateResult, summary="Join the records landed since")
def update(request: Request, _: Admin) -> UpdateResult:
    return UpdateResult(added=fusion(request).update())
