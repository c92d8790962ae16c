"""One platform's NGSI-LD context service: contexts, entities, history and subscriptions together.

The HTTP layer holds one of these (app.state.ngsi); notebooks and the CLI can build their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from citybase.context.broker import Broker
from citybase.context.contexts import ContextRegistry
from citybase.context.store import EntityStore

if TYPE_CHECKING:
    from citybase.context.history import History
    from citybase.context.providers import EntityProvider
    from citybase.context.subscriptions import Subscriptions


class ContextService:
    """Everything NGSI-LD needs of the platform, wired once."""

    def __init__(
        self,
        engine: Engine,
        *,
        contexts: ContextRegistry | None = None,
        platform: Any = None,
        notify: bool = True,
    ) -> None:
        from citybase.context.history import History
        from citybase.context.subscriptions import Subscriptions

        self.contexts = contexts or ContextRegistry()
        #: Most instances per attribute in one temporal answer; more answer 206 (clause 6.3.22).
        self.temporal_instance_limit = 1000
        #: Deleting an entity also deletes its temporal representation and vice versa (history
        #: rows stay in the lake for the query engine; the temporal API no longer shows them).
        self.delete_together = True
        self.store = EntityStore(engine)
        #: Read-only entities served beside the store (providers.py): the fused city entities.
        self.providers: list[EntityProvider] = []
        self.broker = Broker(self.store)
        self.history: History | None = History(platform, engine) if platform is not None else None
        self.subscriptions: Subscriptions = Subscriptions(engine, self.contexts, enabled=notify)
        if self.history is not None:
            self.broker.listeners.append(self.history.record)
        self.broker.listeners.append(self.subscriptions.on_changes)
        self.subscriptions.start_periodic(self._matching)
        self.subscriptions._lookup = self.store.get_many

    def _matching(self, tenant: str, sub: dict[str, Any]) -> list[Any]:
        """Entities a periodic subscription reports: its selectors, q and geoQ over the store."""
        from citybase.context.subscriptions import matching_entities

        return matching_entities(self.store, self.contexts, tenant, sub)

    def close(self) -> None:
        if self.history is not None:
            self.history.close()
        self.subscriptions.close()
        self.store.close()
