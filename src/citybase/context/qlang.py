"""The NGSI-LD query language (clause 4.9): `q` parsed once into a predicate over stored entities.

    q=speed>50;(brandName=="Mercedes"|brandName~=".*ota");address[city]=="Berlin";isParked

`;` is AND, `|` is OR (AND binds tighter), `attr.sub` names a sub-attribute, `attr[a][b]` drills into
a JSON value. A value is a number, a "string", a date-time, a list `a,b` or a range `a..b`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from citybase.context.errors import BadRequestData, InvalidRequest
from citybase.context.jsonld import ActiveContext
from citybase.context.model import ATTR_CORE, Entity, Instance, parse_time

Predicate = Callable[[Entity], bool]
_OPS = ("==", "!=", ">=", "<=", "~=", "!~=", ">", "<")
_TIME_MEMBERS = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$")


@dataclass
class Term:
    path: list[str]  # attribute IRI, then sub-attribute IRIs or core members
    drill: list[str]  # keys into the value ([a][b])
    op: str | None
    value: Any

    def __call__(self, entity: Entity) -> bool:
        for candidate in self._values(entity):
            if self.op is None or _compare(candidate, self.op, self.value):
                return True
        return False

    def _values(self, entity: Entity) -> Iterator[Any]:
        head = self.path[0]
        if head in ("id", "type", "createdAt", "modifiedAt", "scope") and len(self.path) == 1:
            v = entity.get(head)
            if isinstance(v, list):
                yield from v
            elif v is not None:
                yield v
            return
        for inst in entity.get("attrs", {}).get(head, []):
            node: Any = inst
            for step in self.path[1:]:
                if not isinstance(node, dict) or step not in node:
                    node = None
                    break
                node = node[step]
            if node is None:
                continue
            if isinstance(node, dict) and "type" in node:
                node = _content(node)
            for key in self.drill:
                if isinstance(node, dict) and key in node:
                    node = node[key]
                else:
                    node = None
                    break
            if node is None:
                continue
            if isinstance(node, list) and self.op is not None and not self.drill:
                yield from node
                yield node
            else:
                yield node


def _content(inst: Instance) -> Any:
    t = inst.get("type")
    if t == "Relationship":
        return inst.get("object")
    if t == "LanguageProperty":
        return list(inst.get("languageMap", {}).values())
    if t == "JsonProperty":
        return inst.get("json")
    if t == "VocabProperty":
        return inst.get("vocab")
    if t == "ListProperty":
        return inst.get("valueList")
    if t == "ListRelationship":
        return inst.get("objectList")
    return inst.get("value")


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if isinstance(actual, list) and op in ("==", "!="):
        hit = any(_compare(a, "==", expected) for a in actual)
        return hit if op == "==" else not hit
    if op in ("~=", "!~="):
        if not isinstance(actual, str):
            return op == "!~="
        found = re.search(expected, actual) is not None
        return found if op == "~=" else not found
    if isinstance(expected, tuple):  # range
        lo, hi = expected
        inside = _order(actual, ">=", lo) and _order(actual, "<=", hi)
        return inside if op == "==" else not inside
    if isinstance(expected, list):  # value list
        hit = any(_equal(actual, e) for e in expected)
        return hit if op == "==" else not hit
    if op == "==":
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    return _order(actual, op, expected)


def _coerce(actual: Any, expected: Any) -> tuple[Any, Any] | None:
    if isinstance(expected, datetime):
        if isinstance(actual, dict) and "@value" in actual:
            actual = actual["@value"]
        if not isinstance(actual, str):
            return None
        try:
            return parse_time(actual, "value"), expected
        except BadRequestData:
            return None
    if isinstance(actual, bool) or isinstance(expected, bool):
        return (actual, expected) if type(actual) is type(expected) else None
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return actual, expected
    if isinstance(actual, str) and isinstance(expected, str):
        return actual, expected
    return None


def _equal(actual: Any, expected: Any) -> bool:
    pair = _coerce(actual, expected)
    return pair is not None and pair[0] == pair[1]


def _order(actual: Any, op: str, expected: Any) -> bool:
    pair = _coerce(actual, expected)
    if pair is None:
        return False
    a, e = pair
    if op == ">":
        return bool(a > e)
    if op == "<":
        return bool(a < e)
    if op == ">=":
        return bool(a >= e)
    return bool(a <= e)


class _Parser:
    def __init__(self, text: str, ctx: ActiveContext) -> None:
        self.s = text
        self.i = 0
        self.ctx = ctx

    def parse(self) -> Predicate:
        p = self._or()
        if self.i != len(self.s):
            raise InvalidRequest(f"q: unexpected {self.s[self.i :]!r}")
        return p

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek() == "|":
            self.i += 1
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda e: any(p(e) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._atom()]
        while self._peek() == ";":
            self.i += 1
            parts.append(self._atom())
        if len(parts) == 1:
            return parts[0]
        return lambda e: all(p(e) for p in parts)

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _atom(self) -> Predicate:
        if self._peek() == "(":
            self.i += 1
            inner = self._or()
            if self._peek() != ")":
                raise InvalidRequest("q: missing ')'")
            self.i += 1
            return inner
        return self._term()

    def _term(self) -> Predicate:
        start = self.i
        depth = 0
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif depth == 0 and (c in ";|)" or c in "=!<>~"):
                break
            self.i += 1
        attr = self.s[start : self.i]
        if not attr or not re.match(r"^[^\s\"'(]+$", attr):
            raise InvalidRequest(f"q: invalid attribute at {start}: {self.s[start:]!r}")
        op = None
        for candidate in ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<"):
            if self.s.startswith(candidate, self.i):
                op = candidate
                break
        value: Any = None
        if op is not None:
            self.i += len(op)
            value = self._value(op)
        elif self._peek() not in ("", ";", "|", ")"):
            raise InvalidRequest(f"q: invalid operator at {self.i}")
        path, drill = self._path(attr)
        return Term(path, drill, op, value)

    def _path(self, attr: str) -> tuple[list[str], list[str]]:
        drill: list[str] = []
        m = re.match(r"^([^\[]+)((\[[^\]]+\])*)$", attr)
        if m is None:
            raise InvalidRequest(f"q: invalid attribute path {attr!r}")
        base = m.group(1)
        if m.group(2):
            drill = re.findall(r"\[([^\]]+)\]", m.group(2))
        names = [base] if ":" in base and "//" in base else base.split(".")
        path = [
            names[0]
            if names[0] in ("id", "type", "createdAt", "modifiedAt", "scope")
            else self.ctx.expand(names[0])
        ]
        for n in names[1:]:
            path.append(n if n in ATTR_CORE else self.ctx.expand(n))
        return path, drill

    def _value(self, op: str) -> Any:
        start = self.i
        in_str = False
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == '"':
                in_str = not in_str
            elif not in_str and c in ";|)":
                break
            self.i += 1
        raw = self.s[start : self.i]
        if raw == "":
            raise InvalidRequest("q: missing value")
        if op in ("~=", "!~="):
            pattern = raw[1:-1] if raw.startswith('"') and raw.endswith('"') else raw
            try:
                re.compile(pattern)
            except re.error as e:
                raise InvalidRequest(f"q: invalid pattern {pattern!r}") from e
            return pattern
        if ".." in raw and not raw.startswith('"'):
            lo, _, hi = raw.partition("..")
            return (_literal(lo), _literal(hi))
        if "," in raw and not (raw.startswith('"') and raw.endswith('"') and raw.count('"') == 2):
            return [_literal(v) for v in _split_list(raw)]
        return _literal(raw)


def _split_list(raw: str) -> list[str]:
    out, cur, in_str = [], "", False
    for c in raw:
        if c == '"':
            in_str = not in_str
        if c == "," and not in_str:
            out.append(cur)
            cur = ""
        else:
            cur += c
    out.append(cur)
    return out


def _literal(raw: str) -> Any:
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return json.loads(raw) if re.match(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$", raw) else _time(raw)
    except ValueError:
        return raw


def _time(raw: str) -> Any:
    if _DATETIME.match(raw):
        try:
            return parse_time(raw, "q value")
        except BadRequestData:
            return raw
    return raw


def parse_q(text: str, ctx: ActiveContext) -> Predicate:
    """A predicate from a `q` expression, names expanded with the request's @context.

    >>> from citybase.context.jsonld import ActiveContext
    >>> p = parse_q('speed>50', ActiveContext(vocab="v:"))
    >>> p({"attrs": {"v:speed": [{"type": "Property", "value": 60}]}})
    True
    """
    if not text:
        raise InvalidRequest("q is empty")
    return _Parser(text, ctx).parse()


def attributes_of(text: str) -> list[str]:
    """The attribute names a q expression mentions (first path element), unexpanded."""
    return [m for m in re.findall(r"(?:^|[;|(])([^;|()=!<>~\[.]+)", text) if m]
