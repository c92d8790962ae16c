"""The context box on its own: term-map JSON-LD, the q language, scopes, durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from citybase.context.broker import scope_matches
from citybase.context.contexts import CORE_URL, ContextRegistry
from citybase.context.errors import BadRequestData, InvalidRequest, LdContextNotAvailable
from citybase.context.qlang import parse_q
from citybase.context.temporal import parse_duration

SDM = "https://smartdatamodels.org/dataModel.Parking/"


def test_core_context_expands_and_compacts() -> None:
    core = ContextRegistry().core
    assert core.expand("location") == "https://uri.etsi.org/ngsi-ld/location"
    assert core.expand("OffStreetParking") == "https://uri.etsi.org/ngsi-ld/default-context/OffStreetParking"
    assert core.compact("https://uri.etsi.org/ngsi-ld/default-context/speed") == "speed"
    assert core.compact("https://uri.etsi.org/ngsi-ld/hasObject") == "object"
    assert core.compact("https://example.org/x") == "https://example.org/x"


def test_user_context_urls_resolve_offline_and_unknown_ones_fail() -> None:
    reg = ContextRegistry()
    url = "https://example.org/parking.jsonld"
    reg.register(url, {"@context": {"sdm": SDM, "OffStreetParking": "sdm:OffStreetParking"}})
    ctx = reg.active([url, CORE_URL])
    assert ctx.expand("OffStreetParking") == SDM + "OffStreetParking"
    assert ctx.compact(SDM + "OffStreetParking") == "OffStreetParking"
    assert ctx.compact(SDM + "totalSpotNumber") == "sdm:totalSpotNumber"
    assert reg.active([url, CORE_URL]) is ctx  # cached per distinct @context
    with pytest.raises(LdContextNotAvailable):
        reg.active("https://example.org/missing.jsonld")


def _ent(**attrs: object) -> dict[str, object]:
    return {
        "id": "urn:x:1",
        "type": ["T"],
        "attrs": {f"v:{k}": [{"type": "Property", "value": v}] for k, v in attrs.items()},
    }


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("speed>50", True),
        ('speed>50;brand=="Audi"', False),
        ('speed>90|brand=="BMW"', True),
        ('(speed<10|speed>70);brand~="^B"', True),
        ("speed==60..90", True),
        ('brand=="Audi","BMW"', True),
        ('brand!="BMW"', False),
        ('address[city]=="Beijing"', True),
        ("speed", True),
        ("missing", False),
        ("when>=2026-01-01T00:00:00Z", True),
    ],
)
def test_q_language(q: str, expected: bool) -> None:
    from citybase.context.jsonld import ActiveContext

    ent = _ent(speed=80, brand="BMW", address={"city": "Beijing"}, when="2026-02-01T00:00:00Z")
    assert parse_q(q, ActiveContext(vocab="v:"))(ent) is expected


@pytest.mark.parametrize("q", ["speed>", "(speed>1", "speed>1)", "", "sp eed==1"])
def test_q_syntax_errors(q: str) -> None:
    from citybase.context.jsonld import ActiveContext

    with pytest.raises(InvalidRequest):
        parse_q(q, ActiveContext(vocab="v:"))


def test_scopes_and_durations() -> None:
    assert scope_matches(["/Beijing/Haidian"], "/Beijing/#")
    assert scope_matches(["/Beijing/Haidian"], "/Beijing/+")
    assert not scope_matches(["/Beijing/Haidian/Zhongguancun"], "/Beijing/+")
    assert parse_duration("PT1H") == timedelta(hours=1)
    assert parse_duration("P0D") is None
    with pytest.raises(BadRequestData):
        parse_duration("1 hour")
