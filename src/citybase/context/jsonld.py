"""Term-map JSON-LD: the subset of expansion and compaction that NGSI-LD needs, over cached contexts.

A full JSON-LD processor (pyld) costs milliseconds per document; brokers only ever expand and compact
*names* (entity types, attribute names) and a few typed values, so an active context here is two
dictionaries (term -> IRI and IRI -> term) built once per distinct @context and reused for every
request that carries it. See docs/adr/0004-ngsi-ld-context.md for the measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from citybase.context.errors import InvalidRequest

#: Keywords of JSON-LD that may appear as keys of a context definition and are not terms.
_KEYWORDS = frozenset({"@version", "@protected", "@base", "@language", "@direction", "@propagate", "@import"})


@dataclass
class Term:
    """One term definition after processing: its IRI, and the coercions NGSI-LD cares about."""

    iri: str
    type: str | None = None
    container: str | None = None


@dataclass
class ActiveContext:
    """Terms and vocabulary in effect for one request; immutable once built and shared freely."""

    terms: dict[str, Term] = field(default_factory=dict)
    vocab: str | None = None
    _reverse: dict[str, str] = field(default_factory=dict)
    _prefixes: list[tuple[str, str]] = field(default_factory=list)

    def expand(self, term: str) -> str:
        """The IRI of a name (vocabulary-relative, as JSON-LD expands keys and @type values).

        >>> ActiveContext({"name": Term("https://ex.org/name")}, "https://v/").expand("name")
        'https://ex.org/name'
        """
        t = self.terms.get(term)
        if t is not None:
            return t.iri
        if ":" in term:
            prefix, suffix = term.split(":", 1)
            if suffix.startswith("//"):
                return term
            p = self.terms.get(prefix)
            if p is not None:
                return p.iri + suffix
            return term
        if self.vocab is not None:
            return self.vocab + term
        return term

    def compact(self, iri: str) -> str:
        """The shortest name for an IRI under this context (term, vocab suffix, compact IRI or itself).

        >>> ActiveContext({"name": Term("https://ex.org/name")}, "https://v/").compact("https://v/x")
        'x'
        """
        term = self._reverse.get(iri)
        if term is not None:
            return term
        if self.vocab is not None and iri.startswith(self.vocab):
            suffix = iri[len(self.vocab) :]
            if suffix and suffix not in self.terms:
                return suffix
        for prefix_iri, prefix in self._prefixes:
            if iri.startswith(prefix_iri) and len(iri) > len(prefix_iri):
                suffix = iri[len(prefix_iri) :]
                candidate = f"{prefix}:{suffix}"
                if candidate not in self.terms:
                    return candidate
        return iri

    def coercion(self, term_iri: str) -> Term | None:
        """The definition behind an expanded IRI, for @type: @vocab values."""
        name = self._reverse.get(term_iri)
        return self.terms.get(name) if name is not None else None

    def finish(self) -> ActiveContext:
        """Build the reverse maps; JSON-LD picks the shortest, then least, term for an IRI."""
        reverse: dict[str, str] = {}
        for name, t in self.terms.items():
            old = reverse.get(t.iri)
            if old is None or (len(name), name) < (len(old), old):
                reverse[t.iri] = name
        self._reverse = reverse
        self._prefixes = sorted(
            (
                (t.iri, name)
                for name, t in self.terms.items()
                if ":" not in name and t.iri.endswith(("/", "#")) and t.type is None and t.container is None
            ),
            key=lambda p: -len(p[0]),
        )
        return self


Loader = Callable[[str], Any]


def build(contexts: list[Any], load: Loader, *, depth: int = 0) -> ActiveContext:
    """Process a list of local contexts (URLs resolved by `load`) into one active context."""
    active = ActiveContext()
    _apply(active, contexts, load, depth)
    return active.finish()


def _apply(active: ActiveContext, contexts: list[Any], load: Loader, depth: int) -> None:
    if depth > 8:
        raise InvalidRequest("@context nests remote contexts too deeply")
    for ctx in contexts:
        if ctx is None:
            active.terms.clear()
            active.vocab = None
        elif isinstance(ctx, str):
            doc = load(ctx)
            inner = doc.get("@context") if isinstance(doc, dict) else None
            if inner is None:
                raise InvalidRequest(f"the document at {ctx} has no @context")
            _apply(active, inner if isinstance(inner, list) else [inner], load, depth + 1)
        elif isinstance(ctx, Mapping):
            _define(active, ctx)
        else:
            raise InvalidRequest("an @context member must be a URL or an object")


def _define(active: ActiveContext, ctx: Mapping[str, Any]) -> None:
    pending: dict[str, Any] = {}
    for key, value in ctx.items():
        if key == "@vocab":
            active.vocab = value if isinstance(value, str) else None
        elif key in _KEYWORDS:
            continue
        elif value is None:
            active.terms.pop(key, None)
        else:
            pending[key] = value
    # Terms may use each other as prefixes ("ngsi-ld:location"): resolve after all are known.
    raw: dict[str, tuple[str, str | None, str | None]] = {}
    for key, value in pending.items():
        if isinstance(value, str):
            raw[key] = (value, None, None)
        elif isinstance(value, Mapping):
            iri = value.get("@id", key if ":" in key else None)
            if iri is None and active.vocab is not None:
                iri = active.vocab + key
            if not isinstance(iri, str):
                continue
            raw[key] = (iri, value.get("@type"), value.get("@container"))
        else:
            raise InvalidRequest(f"invalid term definition for {key!r} in @context")
    for key, (iri, typ, container) in raw.items():
        active.terms[key] = Term(_resolve(iri, raw, active), typ, container)


def _resolve(iri: str, raw: Mapping[str, tuple[str, str | None, str | None]], active: ActiveContext) -> str:
    if iri.startswith("@"):
        return iri
    if ":" in iri:
        prefix, suffix = iri.split(":", 1)
        if suffix.startswith("//"):
            return iri
        if prefix in raw:
            return _resolve(raw[prefix][0], raw, active) + suffix
        t = active.terms.get(prefix)
        if t is not None:
            return t.iri + suffix
        return iri
    if iri in raw and raw[iri][0] != iri:
        return _resolve(raw[iri][0], raw, active)
    t = active.terms.get(iri)
    if t is not None:
        return t.iri
    return (active.vocab or "") + iri
