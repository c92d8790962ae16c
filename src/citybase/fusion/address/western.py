"""Western (US / Australian) street addresses: number, street, suburb or city, state, postcode.

Good enough for the benchmark sets (FEBRL, Fodors-Zagats, the Chicago sites): abbreviations are
expanded to one form (st -> street, blvd. -> boulevard, w -> west) so that the same street
compares equal however it was typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_ABBREV = {
    "st": "street", "str": "street", "ave": "avenue", "av": "avenue", "blvd": "boulevard", "blv": "boulevard",
    "rd": "road", "dr": "drive", "ln": "lane", "pl": "place", "ct": "court", "cres": "crescent",
    "cct": "circuit", "hwy": "highway", "pkwy": "parkway", "sq": "square", "ter": "terrace", "tce": "terrace",
    "pde": "parade", "cl": "close", "n": "north", "s": "south", "e": "east", "w": "west",
    "ne": "northeast", "nw": "northwest", "se": "southeast", "sw": "southwest", "apt": "unit",
    "ste": "suite", "fl": "floor", "mt": "mount", "ft": "fort",
}  # fmt: skip
_STATES = frozenset(
    [
        "al",
        "ak",
        "az",
        "ar",
        "ca",
        "co",
        "ct",
        "de",
        "fl",
        "ga",
        "hi",
        "id",
        "il",
        "in",
        "ia",
        "ks",
        "ky",
        "la",
        "me",
        "md",
        "ma",
        "mi",
        "mn",
        "ms",
        "mo",
        "mt",
        "ne",
        "nv",
        "nh",
        "nj",
        "nm",
        "ny",
        "nc",
        "nd",
        "oh",
        "ok",
        "or",
        "pa",
        "ri",
        "sc",
        "sd",
        "tn",
        "tx",
        "ut",
        "vt",
        "va",
        "wa",
        "wv",
        "wi",
        "wy",
        "dc",
        "nsw",
        "vic",
        "qld",
        "act",
        "tas",
        "nt",
    ]
)
_TOKEN = re.compile(r"[a-z0-9]+")
_POSTCODE = re.compile(r"^\d{4,5}(?:-\d{4})?$")


@dataclass(frozen=True)
class WesternAddress:
    number: str | None
    street: str | None
    city: str | None
    state: str | None
    postcode: str | None
    ok: bool
    reason: str | None = None


@lru_cache(maxsize=1 << 16)
def normalise_street(text: str | None) -> str | None:
    """Lower-case street text with abbreviations expanded, one form for every spelling.

    >>> normalise_street("435 S. La Cienega Blv.")
    '435 south la cienega boulevard'
    """
    if text is None:
        return None
    words = [_ABBREV.get(t, t) for t in _TOKEN.findall(text.lower().replace("'", ""))]
    return " ".join(words) or None


def parse_western(text: str | None, *, city: str | None = None) -> WesternAddress:
    """Split a one-line address; `city` names the city when it is known to end the street part.

    >>> a = parse_western("27 Washington Oak Park IL 60302", city="oak park")
    >>> a.number, a.street, a.city, a.state, a.postcode
    ('27', 'washington', 'oak park', 'il', '60302')
    """
    s = normalise_street(text)
    if not s:
        return WesternAddress(None, None, None, None, None, False, "empty address")
    toks = s.split()
    postcode = toks.pop() if toks and _POSTCODE.match(toks[-1]) else None
    state = toks.pop() if toks and toks[-1] in _STATES else None
    found_city = None
    if city:
        c = city.lower().split()
        if toks[-len(c) :] == c:
            found_city = " ".join(toks[-len(c) :])
            toks = toks[: -len(c)]
    number = toks.pop(0) if toks and toks[0].isdigit() else None
    street = " ".join(toks) or None
    if street is None:
        return WesternAddress(number, None, found_city, state, postcode, False, "no street")
    return WesternAddress(number, street, found_city, state, postcode, True)
