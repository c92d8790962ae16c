"""The catalog as DCAT 3 in JSON-LD, with the Chinese catalog fields in the `citybase:` namespace.

Each entry is a `dcat:Dataset` published by its department (`dct:publisher`, a `foaf:Agent`),
with its bbox (`dct:spatial` / `dcat:bbox` as a WKT literal), time span (`dct:temporal` /
`dcat:startDate`, `dcat:endDate`), update cycle (`dct:accrualPeriodicity`, EU frequency
vocabulary where one fits) and one `dcat:Distribution` per format the API serves. What DCAT has no
term for — resource code, sharing and open attributes, the provider's system, the data items with
their personal-data tags — is in `citybase:`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from citybase.share.catalog import CatalogEntry

NS = "https://citybase.dev/ns/catalog#"
CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "geosparql": "http://www.opengis.net/ont/geosparql#",
    "citybase": NS,
    "dcat:bbox": {"@type": "geosparql:wktLiteral"},
    "dcat:startDate": {"@type": "xsd:dateTime"},
    "dcat:endDate": {"@type": "xsd:dateTime"},
    "dct:modified": {"@type": "xsd:dateTime"},
    "dct:accrualPeriodicity": {"@type": "@id"},
    "dcat:accessURL": {"@type": "@id"},
}
_FREQ = "http://publications.europa.eu/resource/authority/frequency/"
FREQUENCY = {
    "real-time": "UPDATE_CONT",
    "continuous": "UPDATE_CONT",
    "hourly": "HOURLY",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "annual": "ANNUAL",
    "irregular": "IRREG",
}
MEDIA = {
    "application/json": "JSON",
    "application/geo+json": "GeoJSON",
    "application/vnd.apache.arrow.stream": "Arrow IPC",
}


def _time(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def dataset_node(e: CatalogEntry, base_url: str) -> dict[str, Any]:
    """One entry as a `dcat:Dataset` node."""
    url = f"{base_url.rstrip('/')}/api/v1"
    node: dict[str, Any] = {
        "@id": f"{url}/catalog/{e.name}",
        "@type": "dcat:Dataset",
        "dct:identifier": e.code,
        "dct:title": e.title,
        "dct:description": e.abstract,
        "dcat:keyword": e.keywords,
        "dct:publisher": {
            "@id": f"{url}/departments/{e.provider}",
            "@type": "foaf:Agent",
            "foaf:name": e.provider_name,
        },
        "citybase:resourceCode": e.code,
        "citybase:provider": e.provider,
        "citybase:providerSystem": e.system,
        "citybase:dataKind": e.kind,
        "citybase:sharingAttribute": e.sharing,
        "citybase:sharingConditions": e.conditions,
        "citybase:openAttribute": e.open.value,
        "citybase:updateCycle": e.update_cycle,
        "citybase:recordCount": e.rows,
        "citybase:format": e.format,
        "citybase:dataItem": [
            {
                "@type": "citybase:DataItem",
                "citybase:name": i.name,
                "citybase:type": i.type,
                "citybase:unit": i.unit,
                "citybase:personal": i.personal,
                "dct:description": i.description,
            }
            for i in e.items
        ],
        "dcat:distribution": [
            {
                "@id": f"{url}/catalog/{e.name}#{label.replace(' ', '-').lower()}",
                "@type": "dcat:Distribution",
                "dct:title": f"{e.title} ({label})",
                "dcat:accessURL": f"{url}/data/{e.name}",
                "dcat:mediaType": media,
            }
            for media, label in MEDIA.items()
        ],
    }
    if e.update_cycle in FREQUENCY:
        node["dct:accrualPeriodicity"] = _FREQ + FREQUENCY[e.update_cycle]
    if e.bbox is not None:
        x0, y0, x1, y1 = e.bbox
        wkt = f"POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
        node["dct:spatial"] = {"@type": "dct:Location", "dcat:bbox": wkt}
    if e.start is not None or e.end is not None:
        node["dct:temporal"] = {
            "@type": "dct:PeriodOfTime",
            "dcat:startDate": _time(e.start),
            "dcat:endDate": _time(e.end),
        }
    if e.last_update is not None:
        node["dct:modified"] = _time(e.last_update)
    return node


def to_dcat(
    entries: list[CatalogEntry], *, base_url: str = "http://localhost", title: str = "citybase"
) -> dict[str, Any]:
    """The whole catalog as one JSON-LD document with a `dcat:Catalog` at its root.

    >>> doc = to_dcat([], title="demo")
    >>> doc["@type"], doc["dcat:dataset"]
    ('dcat:Catalog', [])
    """
    url = base_url.rstrip("/")
    return {
        "@context": CONTEXT,
        "@id": f"{url}/api/v1/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": f"{title} data resource catalog",
        "dct:description": "Data resources of the city's departments, with sharing and open attributes.",
        "dcat:dataset": [dataset_node(e, url) for e in entries],
    }
