"""The operations box: events arrive in a queue, the operator dispatches them, departments close them.

`Operations(engine)` keeps the queue in the metadata database (store.py); `sync(ops, cb)` imports
new hotline complaints and IoT alarms from the lake (sources.py); model.py holds the state machine.
It sits on top of the query and registry boxes and below the HTTP API and the console.
"""

from citybase.ops.model import DISPATCHABLE, MOVES, Event, HistoryEntry, NewEvent, Source, Status, can_move
from citybase.ops.sources import FEEDS, Feed, sync
from citybase.ops.store import Operations

__all__ = [
    "DISPATCHABLE",
    "FEEDS",
    "MOVES",
    "Event",
    "Feed",
    "HistoryEntry",
    "NewEvent",
    "Operations",
    "Source",
    "Status",
    "can_move",
    "sync",
]
