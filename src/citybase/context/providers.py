"""Read-only entity providers: entities kept elsewhere, served by the NGSI-LD API beside the store.

The platform's fused entities (people, firms, buildings; citybase.fusion) live in the fusion box's
entity store and are shown to each reader through its grants. Copying them into the context store
would copy personal data out of the grants' reach and leave two copies to keep in step; so the
API asks providers at read time instead: retrieve by id, and query by type (and the rest of the
query, which the provider may evaluate by `EntityQuery.matches`). Providers are read-only: the
context store's write operations never reach them.

A provider answers in the stored form (names expanded, see model.py) for a `viewer`: the principal
of the request's key (None where the API runs open on loopback: providers then show nothing).
"""

from __future__ import annotations

from typing import Any, Protocol

from citybase.context.model import Entity
from citybase.context.query import EntityQuery


class EntityProvider(Protocol):
    def serves(self, types: list[list[str]] | None) -> bool:
        """Whether a query of these types (expanded; None: any) may find entities here. Cheap:
        asked on every query, so that one for other types skips the provider altogether."""

    def get(self, viewer: Any, entity_id: str) -> Entity | None:
        """The entity, if the provider holds it and the viewer may see it."""

    def query(
        self, viewer: Any, query: EntityQuery, offset: int, limit: int | None
    ) -> tuple[list[Entity], int]:
        """(the matching entities from `offset`, at most `limit` (None: all), in id order; the
        number matching in all)."""


def provided(providers: list[EntityProvider], viewer: Any, entity_id: str) -> Entity | None:
    """The first provider's entity of that id."""
    for p in providers:
        got = p.get(viewer, entity_id)
        if got is not None:
            return got
    return None


def page_with(
    providers: list[EntityProvider],
    viewer: Any,
    query: EntityQuery,
    found: list[Entity],
    offset: int,
    limit: int | None,
) -> tuple[list[Entity], int]:
    """One page of the store's entities (`found`, in order) followed by the providers', and the
    total; `limit` None gives everything from `offset` (to order the whole list first)."""
    page = found[offset:] if limit is None else found[offset : offset + limit]
    total = len(found)
    skip = max(0, offset - len(found))
    for p in live(providers, query):
        room = None if limit is None else limit - len(page)
        got, n = p.query(viewer, query, skip, room)
        if room is None or room > 0:
            page += got
        total += n
        skip = max(0, skip - n)
    return page, total


def live(providers: list[EntityProvider], query: EntityQuery) -> list[EntityProvider]:
    """The providers that may answer the query."""
    return [p for p in providers if p.serves(query.types)]
