"""What the signed-in department may see: one `ReadScope` per dataset, from the share box's grants.

The console never decides access itself: it asks `Sharing.scope_for` (the provider and the operator
read everything; another department reads through a live grant; without one a dataset is hidden)
and runs its queries through that scope, so a map layer shows exactly the rows the same key could
read through the API. Every layer read is metered as a use, like any other read.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from citybase.errors import CitybaseError
from citybase.query.scope import ReadScope
from citybase.registry import Principal

if TYPE_CHECKING:
    from citybase.share import Sharing

_lock = threading.Lock()


def sharing(state: Any) -> Sharing:
    """The app's `Sharing`: `app.state.share`, else the platform's `cb.share`, else one made here."""
    from citybase.share import Sharing

    for s in (
        getattr(state, "share", None),
        getattr(state.cb, "share", None),
        getattr(state, "console_share", None),
    ):
        if isinstance(s, Sharing):
            return s
    with _lock:
        s = getattr(state, "console_share", None)
        if not isinstance(s, Sharing):
            s = Sharing(state.cb)
            state.console_share = s
    return s


class Viewer:
    """A principal and the scopes it reads through, looked up once per request."""

    def __init__(self, state: Any, who: Principal) -> None:
        self.state, self.who = state, who
        self._scopes: dict[str, ReadScope | None] = {}
        self.why: dict[str, str] = {}

    def scope(self, dataset: str) -> ReadScope | None:
        """The scope to read `dataset` through, or None when it is hidden from this viewer."""
        if dataset not in self._scopes:
            try:
                self._scopes[dataset] = sharing(self.state).scope_for(self.who, dataset)
            except CitybaseError as e:  # no grant, not shared, no such dataset
                self._scopes[dataset] = None
                self.why[dataset] = str(e)
        return self._scopes[dataset]

    def meter(self, dataset: str, kind: str, rows: int) -> None:
        """Record a use of `dataset` (the console's reads count like the API's)."""
        sharing(self.state).usage.record(self.who.department, dataset, f"console:{kind}", rows, "console")
