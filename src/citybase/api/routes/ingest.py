"""Pushing rows: a department sends a batch to one of its datasets.

A 2xx means the accepted rows and the rejected ones (with their reasons, also in the response) are
durable; they reach the lake within the flush interval. `Idempotency-Key` makes a retry a no-op.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from citybase.api.auth import Caller
from citybase.api.bodies import TYPES, media_type, parse_rows, read_limited
from citybase.api.routes.datasets import dataset_spec, may_write
from citybase.errors import Forbidden

router = APIRouter(prefix="/api/v1", tags=["ingest"])


class Rejected(BaseModel):
    line: int | None = Field(description="1-based row number in the batch (the CSV line for CSV)")
    field: str | None
    value: str | None
    reason: str


class IngestOut(BaseModel):
    dataset: str
    batch: str
    accepted: int
    rejected: list[Rejected]
    duplicate: bool = Field(description="True when the Idempotency-Key was seen before: nothing was added")
    digest: str = Field(
        description="SHA-256 of the accepted rows (Arrow IPC stream), as recorded in the ledger"
    )
    ledger_index: int | None = Field(description="The batch's entry in the ledger (for an inclusion proof)")


_BODY = {
    "requestBody": {
        "required": True,
        "description": 'Rows as a JSON array (or {"rows": [...]}), NDJSON, CSV with a header, or Arrow IPC.',
        "content": {
            t: {"schema": {"type": "array", "items": {"type": "object"}}}
            if "json" in t
            else {"schema": {"type": "string", "format": "binary"}}
            for t in TYPES
        },
    }
}


@router.post(
    "/datasets/{name}/rows",
    response_model=IngestOut,
    status_code=201,
    summary="Push a batch of rows",
    responses={200: {"model": IngestOut, "description": "A retried batch: nothing added"}},
    openapi_extra=_BODY,
)
async def push_rows(
    request: Request,
    name: str,
    who: Caller,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    spec = dataset_spec(request, name)
    if not may_write(who, spec):
        raise Forbidden(f"department {who.department!r} cannot write dataset {name!r}")
    settings = request.app.state.settings
    body = await read_limited(request, settings.max_body_bytes)
    table = await run_in_threadpool(parse_rows, body, media_type(request), settings.max_batch_rows)
    cb = request.app.state.cb
    source = f"http:{who.department}" + (f"/{who.system}" if who.system else "")
    key = f"{who.department}:{idempotency_key}" if idempotency_key else None
    res = await run_in_threadpool(cb.ingest, name, table, idempotency_key=key, source=source)
    m = request.app.state.metrics
    m.ingested.labels(name, "http").inc(res.accepted)
    m.quarantined.labels(name, "http").inc(len(res.rejected))
    out = IngestOut(
        dataset=name,
        batch=res.batch,
        accepted=res.accepted,
        rejected=[Rejected.model_validate(r) for r in res.rejected],
        duplicate=res.duplicate,
        digest=res.digest,
        ledger_index=res.ledger_index,
    )
    return JSONResponse(out.model_dump(), status_code=200 if res.duplicate else 201)
