"""The @context registry: the core context built in, operator and user contexts cached by URL.

A city platform must work offline, so a context URL resolves in this order: the built-in core
context (any `ngsi-ld-core-context-v1.x` URL), a document the operator registered from a file,
one a user posted to /jsonldContexts, one fetched before; only then, and only where the operator
allows it, the network. Active contexts (term maps) are cached per distinct @context value.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from citybase.context.errors import BadRequestData, InvalidRequest, LdContextNotAvailable, ResourceNotFound
from citybase.context.jsonld import ActiveContext, build

CORE_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
_CORE_RE = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.\d+)?\.jsonld$")
_CORE_DOC: dict[str, Any] = json.loads(
    resources.files("citybase.context").joinpath("ngsi-ld-core-context-v1.9.jsonld").read_text("utf-8")
)


def is_core(url: str) -> bool:
    """True for the URLs of the NGSI-LD core context (all 1.x versions map to the built-in one)."""
    return _CORE_RE.match(url) is not None


@dataclass
class StoredContext:
    """A context document the broker holds, with the bookkeeping /jsonldContexts reports."""

    url: str
    local_id: str
    kind: str  # Hosted | Cached | ImplicitlyCreated
    document: dict[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_usage: datetime | None = None
    hits: int = 0

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "URL": self.url,
            "localId": self.local_id,
            "kind": self.kind,
            "createdAt": _iso(self.created_at),
        }
        if self.kind == "Cached":
            if self.last_usage is not None:
                out["lastUsage"] = _iso(self.last_usage)
            out["numberOfHits"] = self.hits
        return out


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class ContextRegistry:
    """Context documents by URL, and the term maps built from them."""

    def __init__(self, *, allow_remote: bool = False, base_url: str = "", timeout: float = 3.0) -> None:
        self.allow_remote = allow_remote
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._docs: dict[str, StoredContext] = {}
        self._origin: dict[str, dict[str, Any]] = {}
        self._active: dict[str, ActiveContext] = {}
        self._lock = threading.Lock()
        self.core = build([_CORE_DOC["@context"]], self._load)

    # -- documents ----------------------------------------------------------------------------

    def register(self, url: str, document: dict[str, Any], kind: str = "Cached") -> StoredContext:
        """Make `url` resolve offline to `document` (what the operator preloads from files).

        The operator's copy acts as the origin server: deleting the cached context only drops it
        from the cache, and the next use fetches it again from here, never from the network.
        """
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData(f"the context document for {url} has no @context member")
        stored = StoredContext(url, _local_id(), kind, document)
        with self._lock:
            self._origin[url] = document
            self._docs[url] = stored
            self._active.clear()
        return stored

    def load_file(self, url: str, path: str | Path) -> StoredContext:
        """Register the context document in a file under its public URL."""
        return self.register(url, json.loads(Path(path).read_text("utf-8")))

    def host(self, document: Any) -> StoredContext:
        """Store a user's context (POST /jsonldContexts); it is served at our own URL."""
        if not isinstance(document, dict) or "@context" not in document:
            raise InvalidRequest("a @context document must be a JSON object with an @context member")
        inner = document["@context"]
        if not isinstance(inner, dict | list) or (
            isinstance(inner, list) and not all(isinstance(c, dict | str) for c in inner)
        ):
            raise BadRequestData("@context must be an object or an array of objects and URLs")
        for ref in inner if isinstance(inner, list) else []:
            if isinstance(ref, str):
                self._load(ref)  # a referenced context becomes a Cached one (or 503 now)
        local = _local_id()
        stored = StoredContext(
            f"{self.base_url}/ngsi-ld/v1/jsonldContexts/{local}", local, "Hosted", document
        )
        with self._lock:
            self._docs[stored.url] = stored
        return stored

    def implicit(self, contexts: list[Any]) -> StoredContext:
        """Record an inline @context of a request as an ImplicitlyCreated context."""
        body = {"@context": contexts}
        for s in self._docs.values():
            if s.kind == "ImplicitlyCreated" and s.document == body:
                return s
        local = _local_id()
        stored = StoredContext(
            f"{self.base_url}/ngsi-ld/v1/jsonldContexts/{local}", local, "ImplicitlyCreated", body
        )
        with self._lock:
            self._docs[stored.url] = stored
        return stored

    def find(self, ident: str) -> StoredContext:
        """A stored context by URL or local id; the core context is one too."""
        s = self._docs.get(ident)
        if s is None:
            tail = ident.rsplit("/jsonldContexts/", 1)[-1]
            for c in self._docs.values():
                if c.local_id in (ident, tail) or c.url.endswith("/" + ident):
                    return c
            if is_core(ident):
                return StoredContext(CORE_URL, "core", "Cached", _CORE_DOC)
            raise ResourceNotFound(f"no @context {ident}")
        return s

    def listed(self, kind: str | None = None) -> list[StoredContext]:
        core = StoredContext(CORE_URL, "core", "Cached", _CORE_DOC)
        out = [core, *self._docs.values()]
        return [s for s in out if kind is None or s.kind == kind]

    def delete(self, ident: str, reload: bool = False) -> None:
        """Forget a stored context; `reload` refetches a cached one instead."""
        try:
            s = self.find(ident)
        except ResourceNotFound:
            if reload:
                raise BadRequestData(f"no @context {ident} to reload") from None
            raise
        if s.local_id == "core":
            if reload:
                return  # the core context is built in: reloading it is a no-op
            raise BadRequestData("the core @context cannot be deleted")
        if reload:
            if s.kind != "Cached":
                raise BadRequestData("only a cached @context can be reloaded")
            doc = self._fetch(s.url)
            with self._lock:
                s.document = doc
                self._active.clear()
            return
        with self._lock:
            self._docs.pop(s.url, None)
            self._active.clear()

    def document(self, url: str) -> dict[str, Any]:
        return self._load(url)

    def _load(self, url: str) -> dict[str, Any]:
        if is_core(url):
            return _CORE_DOC
        s = self._docs.get(url)
        if s is None and "/jsonldContexts/" in url:
            try:
                s = self.find(url)
            except ResourceNotFound:
                s = None
        if s is not None:
            s.hits += 1
            s.last_usage = datetime.now(UTC)
            return s.document
        doc = self._fetch(url)
        with self._lock:
            self._docs[url] = StoredContext(url, _local_id(), "Cached", doc)
        return doc

    def _fetch(self, url: str) -> dict[str, Any]:
        if url in self._origin:
            return self._origin[url]
        if not self.allow_remote or not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"the @context {url} is not registered and remote contexts are off")
        try:
            req = urllib.request.Request(url, headers={"Accept": "application/ld+json, application/json"})
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except Exception as e:
            raise LdContextNotAvailable(f"the @context {url} cannot be retrieved: {e}") from e
        if not isinstance(doc, dict) or "@context" not in doc:
            raise LdContextNotAvailable(f"{url} is not a JSON-LD context document")
        return doc

    # -- active contexts ----------------------------------------------------------------------

    def active(self, context: Any) -> ActiveContext:
        """The term map for a request's @context (a URL, an object, or a list of them); cached.

        The core context is always applied last, so its protected terms win (clause 5.5.7).
        """
        if context is None:
            return self.core
        key = context if isinstance(context, str) else json.dumps(context, sort_keys=True)
        got = self._active.get(key)
        if got is not None:
            return got
        items = context if isinstance(context, list) else [context]
        active = build([*items, _CORE_DOC["@context"]], self._load)
        if len(self._active) > 10_000:
            self._active.clear()
        self._active[key] = active
        return active


def _local_id() -> str:
    return uuid.uuid4().hex[:16]
