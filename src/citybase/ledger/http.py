"""The ledger over HTTP: C2SP tlog-tiles resources plus a JSON proof endpoint.

Mount the routes under any prefix (the API mounts them at /ledger); the prefix is the log's URL.
"""

from __future__ import annotations

import gzip

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from citybase.errors import CitybaseError, InputError, NotFound
from citybase.ledger.log import LogView
from citybase.ledger.tiles import ENTRIES, TILE_WIDTH, parse_tile_path

IMMUTABLE = "public, max-age=31536000, immutable"
OCTETS = "application/octet-stream"


def _error(e: CitybaseError) -> JSONResponse:
    return JSONResponse({"error": e.code, "detail": str(e)}, status_code=e.status)


def ledger_routes(view: LogView) -> list[BaseRoute]:
    """Routes serving `checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]` and `proof`.

    `proof?index=N`, `proof?hash=<leaf hash, hex>` or `proof?key=<batch/digest/id>` answer the
    self-contained inclusion proof bundle that `citybase ledger verify` checks offline (`&size=S`:
    against an older published size, without a checkpoint: the client has its own);
    `proof?old=M` answers a consistency proof from size M to the latest checkpoint.
    """

    # Reads of a few small files (the page cache holds them) run on the event loop: a hop to the
    # thread pool costs more than they do. A lookup by key (an SQLite query) goes to the pool.

    async def checkpoint(request: Request) -> Response:
        try:
            note = view.checkpoint_note()
        except NotFound as e:
            return _error(e)
        return PlainTextResponse(note, headers={"Cache-Control": "no-cache"})

    async def tile(request: Request) -> Response:
        try:
            ref = parse_tile_path("tile/" + request.path_params["path"])
            data = await run_in_threadpool(view.tiles.read, ref.level, ref.n, ref.width)
        except InputError as e:
            return _error(e)
        except FileNotFoundError:
            return _error(NotFound("no such tile"))
        headers = {"Cache-Control": IMMUTABLE}
        if ref.level == ENTRIES and "gzip" in request.headers.get("accept-encoding", ""):
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        if ref.width != TILE_WIDTH:
            headers["Cache-Control"] = "public, max-age=3600, immutable"  # may be pruned once full
        return Response(data, media_type=OCTETS, headers=headers)

    def _proof(q: dict[str, str]) -> dict[str, object]:
        try:
            if "old" in q:
                return view.consistency_bundle(int(q["old"]))
            if "index" in q:
                index = int(q["index"])
            else:
                key = q.get("hash") or q.get("key")
                if not key:
                    raise InputError("give index, hash, key or old")
                found = view.find(key.lower() if "hash" in q else key)
                if not found:
                    raise NotFound(f"no ledger entry for {key!r}")
                index = found[0]
            size = int(q["size"]) if "size" in q else None
        except ValueError as e:
            if isinstance(e, CitybaseError):
                raise
            raise InputError(str(e)) from e
        return view.proof_bundle(index, size)

    async def proof(request: Request) -> Response:
        q = dict(request.query_params)
        try:
            body = _proof(q) if "index" in q or "old" in q else await run_in_threadpool(_proof, q)
        except CitybaseError as e:
            return _error(e)
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    return [
        Route("/checkpoint", checkpoint, methods=["GET"]),
        Route("/tile/{path:path}", tile, methods=["GET"]),
        Route("/proof", proof, methods=["GET"]),
    ]
