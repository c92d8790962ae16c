"""Fusion: department records resolved into city entities with stable ids, golden records and links.

>>> from citybase.fusion import MatchRules
>>> yaml = "entity_type: person\\nfields: [{name: id, kind: cn_id}]\\nblocking: [[id]]\\n"
>>> MatchRules.from_yaml(yaml).entity_type
'person'
"""

from __future__ import annotations

from citybase.fusion.address.parse import ParsedAddress, parse_address, parse_addresses
from citybase.fusion.address.western import parse_western
from citybase.fusion.divisions import Division, Divisions
from citybase.fusion.evaluate import Scores, score
from citybase.fusion.features import AddressContext
from citybase.fusion.geocode import Reference, geocode
from citybase.fusion.graph import entity_points, link_entities
from citybase.fusion.resolve import Resolution, resolve, resolve_incremental
from citybase.fusion.review import ReviewQueue
from citybase.fusion.rules import FieldRule, MatchRules
from citybase.fusion.store import EntityStore

__all__ = [
    "AddressContext",
    "Division",
    "Divisions",
    "EntityStore",
    "FieldRule",
    "MatchRules",
    "ParsedAddress",
    "Reference",
    "Resolution",
    "ReviewQueue",
    "Scores",
    "entity_points",
    "geocode",
    "link_entities",
    "parse_address",
    "parse_addresses",
    "parse_western",
    "resolve",
    "resolve_incremental",
    "score",
]
