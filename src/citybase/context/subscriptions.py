"""Subscriptions (clause 5.8) and the notifier that serves them (clause 5.8.6).

Subscriptions live in the metadata DB and, per tenant, in memory: every entity change is matched
against them in the request's thread (cheap dictionary work), and the matching notifications are
sent by a small thread pool so no request waits on a receiver. HTTP endpoints get a POST; mqtt://
endpoints a publish (paho-mqtt, already a platform dependency).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Column, Engine, String, Table, Text, delete, insert, select, update

from citybase.context.broker import Change
from citybase.context.contexts import CORE_URL, ContextRegistry
from citybase.context.errors import AlreadyExists, BadRequestData, InvalidRequest, ResourceNotFound
from citybase.context.geo import parse_geoquery, to_shape
from citybase.context.jsonld import ActiveContext
from citybase.context.model import NULL, Entity, check_name, is_uri, now_iso, parse_time
from citybase.context.qlang import parse_q
from citybase.context.render import View, apply_projection, render, render_joined
from citybase.meta import METADATA

log = logging.getLogger("citybase.context.subscriptions")
Subscription = dict[str, Any]

subscriptions_table = Table(
    "ngsi_subscriptions",
    METADATA,
    Column("tenant", String(128), primary_key=True),
    Column("id", String(512), primary_key=True),
    Column("doc", Text, nullable=False),
)
TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
_FORMATS = ("normalized", "keyValues", "simplified", "concise")
_STATS = ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")


class Subscriptions:
    """The subscriptions of all tenants, and the notifier."""

    def __init__(self, engine: Engine, contexts: ContextRegistry, *, enabled: bool = True) -> None:
        from citybase.meta import ensure

        self.engine = engine
        self.contexts = contexts
        self.enabled = enabled
        ensure(engine, subscriptions_table)
        self._subs: dict[str, dict[str, Subscription]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ngsi-notify")
        self._closing = threading.Event()
        self._lookup: Callable[[str, list[str]], dict[str, Entity]] | None = None
        with engine.connect() as c:
            for tenant, sid, doc in c.execute(
                select(subscriptions_table.c.tenant, subscriptions_table.c.id, subscriptions_table.c.doc)
            ):
                self._subs.setdefault(tenant, {})[sid] = json.loads(doc)

    # -- CRUD ---------------------------------------------------------------------------------

    def create(self, tenant: str, body: Any, context: Any, ctx: ActiveContext) -> str:
        sub = parse_subscription(body, ctx, context)
        if "jsonldContext" in sub:
            self.contexts.active(sub["jsonldContext"])  # 503 now rather than at every notification
        elif isinstance(context, dict) or (
            isinstance(context, list) and (len(context) > 1 or any(isinstance(c, dict) for c in context))
        ):
            # An inline or composite @context is kept as an ImplicitlyCreated one (clause 5.13.1).
            sub["jsonldContext"] = self.contexts.implicit(
                context if isinstance(context, list) else [context]
            ).url
        sid = sub.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        with self._lock:
            if sid in self._subs.get(tenant, {}):
                raise AlreadyExists(f"subscription {sid} already exists")
            sub["createdAt"] = sub["modifiedAt"] = now_iso()
            self._subs.setdefault(tenant, {})[sid] = sub
            with self.engine.begin() as c:
                c.execute(insert(subscriptions_table), {"tenant": tenant, "id": sid, "doc": json.dumps(sub)})
        return str(sid)

    def get(self, tenant: str, sid: str) -> Subscription:
        sub = self._subs.get(tenant, {}).get(sid)
        if sub is None:
            raise ResourceNotFound(f"subscription {sid} not found")
        return sub

    def all(self, tenant: str) -> list[Subscription]:
        return sorted(self._subs.get(tenant, {}).values(), key=lambda s: str(s["id"]))

    def delete(self, tenant: str, sid: str) -> None:
        with self._lock:
            self.get(tenant, sid)
            del self._subs[tenant][sid]
            with self.engine.begin() as c:
                c.execute(
                    delete(subscriptions_table).where(
                        subscriptions_table.c.tenant == tenant, subscriptions_table.c.id == sid
                    )
                )

    def update(self, tenant: str, sid: str, body: Any, context: Any, ctx: ActiveContext) -> None:
        """PATCH: members given replace those stored; the result is checked like a new one."""
        if not isinstance(body, dict):
            raise BadRequestData("a subscription fragment must be a JSON object")
        if "id" in body and body["id"] != sid:
            raise BadRequestData("the id of a subscription cannot change")
        with self._lock:
            old = self.get(tenant, sid)
            merged = unparse(old, ctx)
            for k, v in body.items():
                if k == "@context":
                    continue
                if k == "notification" and isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            sub = parse_subscription(merged, ctx, context if context is not None else old.get("@context"))
            for k in ("createdAt", *_STATS):
                if k in old:
                    sub[k] = old[k]
            sub["modifiedAt"] = now_iso()
            self._subs[tenant][sid] = sub
            self._persist(tenant, sub)

    def _persist(self, tenant: str, sub: Subscription) -> None:
        with self.engine.begin() as c:
            c.execute(
                update(subscriptions_table).where(
                    subscriptions_table.c.tenant == tenant, subscriptions_table.c.id == sub["id"]
                ),
                {"doc": json.dumps(sub)},
            )

    # -- matching -----------------------------------------------------------------------------

    def on_changes(self, changes: list[Change]) -> None:
        """Listener of the broker: notify every subscription that a change matches."""
        if not self.enabled:
            return
        for ch in changes:
            subs = self._subs.get(ch.tenant)
            if not subs:
                continue
            for sub in list(subs.values()):
                try:
                    reason = _matches(sub, ch, self.contexts)
                except Exception:
                    log.exception("subscription %s could not be matched", sub.get("id"))
                    continue
                if reason is not None:
                    try:
                        self._schedule(ch.tenant, sub, ch, reason)
                    except Exception:
                        log.exception("notification of subscription %s could not be built", sub.get("id"))

    def _schedule(self, tenant: str, sub: Subscription, ch: Change, reason: str) -> None:
        throttling = sub.get("throttling")
        if throttling and sub.get("_lastSent") and time.time() - sub["_lastSent"] < throttling:
            return
        sub["_lastSent"] = time.time()
        payload, headers, uri = self._notification(tenant, sub, ch, reason)
        self._pool.submit(self._send, tenant, sub, uri, payload, headers)

    def _notification(
        self,
        tenant: str,
        sub: Subscription,
        ch: Change | None,
        reason: str,
        entities: list[Entity] | None = None,
    ) -> tuple[bytes, dict[str, str], str]:
        context = sub.get("jsonldContext") or sub.get("@context")
        ctx = self.contexts.active(context)
        n = sub["notification"]
        fmt = n.get("format", "normalized")
        view = View(
            ctx,
            form="keyValues"
            if fmt in ("keyValues", "simplified")
            else ("concise" if fmt == "concise" else "normalized"),
            sys_attrs=bool(n.get("sysAttrs")),
            lang=sub.get("lang"),
        )
        if n.get("attributes"):
            view.attrs = set(n["attributes"])
        apply_projection(view, _proj(n.get("pick")), _proj(n.get("omit")))
        items: list[dict[str, Any]] = []
        if entities is not None or ch is None:
            items = [render(e, view) for e in entities or []]
        else:
            if ch.after is None:
                before = ch.before or {"id": ch.entity_id, "type": [], "attrs": {}}
                data: dict[str, Any] = {
                    "id": before["id"],
                    "type": _one([ctx.compact(t) for t in before["type"]]),
                    "deletedAt": now_iso(),
                }
            else:
                data = render(ch.after, view)
                if n.get("showChanges") and ch.before is not None:
                    _previous(data, ch, ctx)
            _nulls(data, deleted_instances(ch), view, bool(n.get("showChanges")))
            items = [data]
            join = n.get("join")
            if join in ("inline", "flat") and ch.after is not None and self._lookup is not None:
                lookup = self._lookup

                def fetch(ids: list[str]) -> dict[str, Entity]:
                    return lookup(tenant, ids)

                got = render_joined(ch.after, view, fetch, join, int(n.get("joinLevel", 1)))
                items = got if join == "flat" else [got]
        if n["endpoint"].get("accept") == "application/ld+json":
            items = [{**i, "@context": context if context is not None else CORE_URL} for i in items]
        accept = n["endpoint"].get("accept", "application/json")
        body: dict[str, Any] = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "Notification",
            "subscriptionId": sub["id"],
            "notifiedAt": now_iso(),
            "data": items,
            "triggerReason": reason,
        }
        headers = {
            "Content-Type": accept
            if accept in ("application/json", "application/ld+json")
            else "application/json"
        }
        ctx_url = _context_url(context)
        if headers["Content-Type"] == "application/ld+json":
            body["@context"] = context if context is not None else CORE_URL
        else:
            headers["Link"] = (
                f'<{ctx_url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
            )
        if tenant != "default":
            headers["NGSILD-Tenant"] = tenant
        for item in n["endpoint"].get("receiverInfo") or []:
            if isinstance(item, dict) and "key" in item and "value" in item:
                headers[str(item["key"])] = str(item["value"])
        return json.dumps(body).encode(), headers, n["endpoint"]["uri"]

    def _send(
        self, tenant: str, sub: Subscription, uri: str, payload: bytes, headers: dict[str, str]
    ) -> None:
        ok = False
        try:
            if uri.startswith(("mqtt://", "mqtts://")):
                ok = _publish_mqtt(uri, payload, headers, sub["notification"]["endpoint"])
            else:
                req = urllib.request.Request(uri, data=payload, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=5) as resp:
                    ok = 200 <= resp.status < 300
        except Exception as e:
            log.info("notification of %s to %s failed: %s", sub.get("id"), uri, e)
        when = now_iso()
        with self._lock:
            sub["timesSent"] = sub.get("timesSent", 0) + 1
            sub["lastNotification"] = when
            if ok:
                sub["lastSuccess"] = when
            else:
                sub["lastFailure"] = when
                sub["timesFailed"] = sub.get("timesFailed", 0) + 1
            try:
                self._persist(tenant, {k: v for k, v in sub.items() if not k.startswith("_")})
            except Exception:
                log.exception("subscription status could not be saved")

    def start_periodic(self, fetch: Callable[[str, Subscription], list[Entity]]) -> None:
        """Serve timeInterval subscriptions: every interval, all matching entities (clause 5.8.1)."""
        self._fetch = fetch
        self._ticker = threading.Thread(target=self._tick_loop, name="ngsi-periodic", daemon=True)
        self._ticker.start()

    def _tick_loop(self) -> None:
        while not self._closing.wait(0.5):
            now = time.time()
            for tenant, subs in list(self._subs.items()):
                for sub in list(subs.values()):
                    interval = sub.get("timeInterval")
                    if not interval or not sub.get("isActive", True):
                        continue
                    if now - sub.get("_lastTick", 0) < interval:
                        continue
                    sub["_lastTick"] = now
                    try:
                        ents = self._fetch(tenant, sub)
                        if ents:
                            payload, headers, uri = self._notification(
                                tenant, sub, None, "timeInterval", ents
                            )
                            self._pool.submit(self._send, tenant, sub, uri, payload, headers)
                    except Exception:
                        log.exception("periodic notification of %s failed", sub.get("id"))

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=False)


def _one(items: list[str]) -> Any:
    return items[0] if len(items) == 1 else items


def _proj(text: Any) -> Any:
    from citybase.context.render import parse_projection

    if text is None:
        return None
    return parse_projection(",".join(text) if isinstance(text, list) else str(text))


def _context_url(context: Any) -> str:
    if isinstance(context, str):
        return context
    if isinstance(context, list) and len(context) == 1 and isinstance(context[0], str):
        return str(context[0])
    return CORE_URL


_CONTENT_KEYS = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "JsonProperty": "json",
    "VocabProperty": "vocab",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
_PREVIOUS = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "json": "previousJson",
    "vocab": "previousVocab",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
}


def deleted_instances(ch: Change) -> dict[str, list[dict[str, Any]]]:
    """Attribute instances a change removed (by attribute), found by comparing before and after."""
    before = (ch.before or {}).get("attrs", {})
    after = (ch.after or {}).get("attrs", {}) if ch.after is not None else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for attr, insts in before.items():
        left = {i.get("datasetId") for i in after.get(attr, [])}
        gone = [i for i in insts if i.get("datasetId") not in left]
        if gone:
            out[attr] = gone
    return out


def _nulls(data: dict[str, Any], deleted: dict[str, list[dict[str, Any]]], view: View, show: bool) -> None:
    """Deleted attributes appear in a notification with the content `urn:ngsi-ld:null` (5.8.6)."""
    ctx = view.ctx
    for attr, insts in deleted.items():
        if view.attrs is not None and attr not in view.attrs:
            continue
        name = ctx.compact(attr)
        for old in insts:
            atype = old.get("type", "Property")
            key = _CONTENT_KEYS.get(atype, "value")
            if view.form == "keyValues":
                item: Any = NULL
            else:
                item = {"type": atype, key: {"@none": NULL} if key == "languageMap" else NULL}
                if "datasetId" in old:
                    item["datasetId"] = old["datasetId"]
                if show and key in old:
                    prev = old[key]
                    if key == "vocab":
                        prev = [ctx.compact(v) for v in prev] if isinstance(prev, list) else ctx.compact(prev)
                    item[_PREVIOUS[key]] = prev
                if view.sys_attrs:
                    item["deletedAt"] = now_iso()
            cur = data.get(name)
            if cur is None:
                data[name] = item
            elif isinstance(cur, list):
                cur.append(item)
            else:
                data[name] = [cur, item]


def _previous(data: dict[str, Any], ch: Change, ctx: ActiveContext) -> None:
    before = ch.before or {}
    for iri, insts in before.get("attrs", {}).items():
        name = ctx.compact(iri)
        cur = data.get(name)
        if not isinstance(cur, dict) or not insts:
            continue
        old = insts[0]
        for key, prev in (
            ("value", "previousValue"),
            ("object", "previousObject"),
            ("languageMap", "previousLanguageMap"),
            ("json", "previousJson"),
            ("vocab", "previousVocab"),
            ("valueList", "previousValueList"),
            ("objectList", "previousObjectList"),
        ):
            if key in old and old.get(key) != cur.get(key):
                value = old[key]
                if key == "vocab":
                    value = [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(value)
                cur[prev] = value


def _publish_mqtt(uri: str, payload: bytes, headers: dict[str, str], endpoint: dict[str, Any]) -> bool:
    import paho.mqtt.publish as publish

    u = urlparse(uri)
    message = json.dumps({"metadata": headers, "body": json.loads(payload)})
    qos = 0
    for item in endpoint.get("notifierInfo") or []:
        if isinstance(item, dict) and item.get("key") == "MQTT-QoS":
            qos = int(item.get("value", 0))
    auth = {"username": u.username, "password": u.password or ""} if u.username else None
    publish.single(
        u.path.lstrip("/"),
        message,
        qos=qos,
        hostname=u.hostname or "localhost",
        port=u.port or 1883,
        auth=auth,  # type: ignore[arg-type]
    )
    return True


def _matches(sub: Subscription, ch: Change, contexts: ContextRegistry) -> str | None:
    """The trigger reason when a change should be notified to a subscription, else None."""
    if not sub.get("isActive", True) or "timeInterval" in sub:
        return None
    exp = sub.get("expiresAt")
    if exp and parse_time(exp, "expiresAt") <= datetime.now(UTC):
        return None
    ent = ch.after if ch.after is not None else ch.before
    if ent is None:
        return None
    if sub.get("entities") and not any(_selector(s, ent) for s in sub["entities"]):
        return None
    triggers = sub.get("notificationTrigger") or DEFAULT_TRIGGERS
    watched = sub.get("watchedAttributes")
    reason = None
    if ch.before is None:
        if "entityCreated" in triggers:
            reason = "entityCreated"
        elif "attributeCreated" in triggers and ch.attrs:
            reason = "attributeCreated"
        if watched and not any(a in ent["attrs"] for a in watched):
            return None
    elif ch.after is None:
        if "entityDeleted" in triggers:
            reason = "entityDeleted"
    else:
        created = [a for a in ch.attrs if a not in ch.before["attrs"]]
        updated = [a for a in ch.attrs if a in ch.before["attrs"]]
        deleted = list(deleted_instances(ch))
        updated = [a for a in updated if a not in deleted]
        if watched:
            created = [a for a in created if a in watched]
            updated = [a for a in updated if a in watched]
            deleted = [a for a in deleted if a in watched]
        if created and "attributeCreated" in triggers:
            reason = "attributeCreated"
        elif updated and "attributeUpdated" in triggers:
            reason = "attributeUpdated"
        elif deleted and "attributeDeleted" in triggers:
            reason = "attributeDeleted"
        elif (created or updated or deleted or not watched) and "entityUpdated" in triggers:
            reason = "entityUpdated"
    if reason is None:
        return None
    ctx = contexts.active(sub.get("@context"))
    if sub.get("q") and not parse_q(sub["q"], ctx)(ent):
        return None
    if sub.get("scopeQ"):
        from citybase.context.broker import scope_matches

        if not scope_matches(ent.get("scope"), sub["scopeQ"]):
            return None
    g = sub.get("geoQ")
    if g:
        gq = parse_geoquery(g.get("georel"), g.get("geometry"), g.get("coordinates"), None)
        prop = ctx.expand(g.get("geoproperty") or "location")
        if gq is not None and not any(_geo_ok(gq, i) for i in ent["attrs"].get(prop, [])):
            return None
    return reason


def _geo_ok(gq: Any, inst: dict[str, Any]) -> bool:
    try:
        return bool(gq.matches(to_shape(inst["value"])))
    except Exception:
        return False


def _selector(sel: dict[str, Any], ent: Entity) -> bool:
    if "typeExpr" in sel:
        if not any(all(t in ent["type"] for t in conj) for conj in sel["typeExpr"]):
            return False
    elif "type" in sel and sel["type"] not in ent["type"]:
        return False
    if "id" in sel and sel["id"] != ent["id"]:
        return False
    return not ("idPattern" in sel and re.search(sel["idPattern"], ent["id"]) is None)


def parse_subscription(body: Any, ctx: ActiveContext, context: Any) -> Subscription:
    """A subscription from its JSON (names expanded), checked as clause 5.8.1 asks."""
    if not isinstance(body, dict) or not any(k != "@context" for k in body):
        raise InvalidRequest("a subscription must be a non-empty JSON object")
    sub: Subscription = {}
    if "id" in body:
        if not is_uri(body["id"]):
            raise BadRequestData("subscription id must be a URI")
        sub["id"] = body["id"]
    if body.get("type", "Subscription") != "Subscription":
        raise BadRequestData("type must be Subscription")
    sub["type"] = "Subscription"
    for k in ("subscriptionName", "description", "lang", "scopeQ"):
        if k in body:
            if not isinstance(body[k], str):
                raise BadRequestData(f"{k} must be a string")
            sub[k] = body[k]
    if "entities" in body:
        ents = body["entities"]
        if not isinstance(ents, list) or not ents:
            raise BadRequestData("entities must be a non-empty array")
        sels = []
        for e in ents:
            if not isinstance(e, dict) or "type" not in e:
                raise BadRequestData("each entities member needs a type")
            names = [t for t in re.split(r"[(),;|]", str(e["type"])) if t]
            for t in names:
                check_name(t)
            if len(names) == 1 and names[0] == e["type"]:
                sel: dict[str, Any] = {"type": ctx.expand(e["type"])}
            else:
                from citybase.context.query import parse_types

                sel = {"type": e["type"], "typeExpr": parse_types(e["type"], ctx)}
            if "id" in e:
                if not is_uri(e["id"]):
                    raise BadRequestData("entities.id must be a URI")
                sel["id"] = e["id"]
            if "idPattern" in e:
                try:
                    re.compile(e["idPattern"])
                except re.error as err:
                    raise BadRequestData("entities.idPattern is not a regular expression") from err
                sel["idPattern"] = e["idPattern"]
            sels.append(sel)
        sub["entities"] = sels
    if "watchedAttributes" in body:
        w = body["watchedAttributes"]
        if not isinstance(w, list) or not w:
            raise BadRequestData("watchedAttributes must be a non-empty array")
        for a in w:
            check_name(str(a))
        sub["watchedAttributes"] = [ctx.expand(a) for a in w]
    if "entities" not in sub and "watchedAttributes" not in sub:
        raise BadRequestData("a subscription needs entities or watchedAttributes")
    if "notificationTrigger" in body:
        t = body["notificationTrigger"]
        if not isinstance(t, list) or not t or any(x not in TRIGGERS for x in t):
            raise BadRequestData(f"notificationTrigger must be a list of {', '.join(TRIGGERS)}")
        sub["notificationTrigger"] = t
    else:
        sub["notificationTrigger"] = list(DEFAULT_TRIGGERS)
    for k in ("timeInterval", "throttling"):
        if k in body:
            v = body[k]
            if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
                raise BadRequestData(f"{k} must be a positive number")
            sub[k] = v
    if "timeInterval" in sub and ("throttling" in sub or "watchedAttributes" in sub):
        raise BadRequestData("timeInterval excludes throttling and watchedAttributes")
    if "q" in body:
        try:
            parse_q(body["q"], ctx)
        except InvalidRequest as e:
            raise BadRequestData(e.detail) from e
        sub["q"] = body["q"]
    if "geoQ" in body:
        g = body["geoQ"]
        if not isinstance(g, dict):
            raise BadRequestData("geoQ must be an object")
        parse_geoquery(g.get("georel"), g.get("geometry"), g.get("coordinates"), g.get("geoproperty"))
        sub["geoQ"] = g
    if "isActive" in body:
        if not isinstance(body["isActive"], bool):
            raise BadRequestData("isActive must be true or false")
        sub["isActive"] = body["isActive"]
    if "expiresAt" in body:
        when = parse_time(body["expiresAt"], "expiresAt")
        if when <= datetime.now(UTC):
            raise BadRequestData("expiresAt is in the past")
        sub["expiresAt"] = body["expiresAt"]
    if "jsonldContext" in body:
        if not is_uri(body["jsonldContext"]):
            raise BadRequestData("jsonldContext must be a URI")
        sub["jsonldContext"] = body["jsonldContext"]
    n = body.get("notification")
    if not isinstance(n, dict):
        raise BadRequestData("a subscription needs a notification object")
    sub["notification"] = _notification_params(n, ctx)
    for k in ("temporalQ", "csf", "datasetId"):
        if k in body:
            sub[k] = body[k]
    sub["@context"] = context
    return sub


def _notification_params(n: dict[str, Any], ctx: ActiveContext) -> dict[str, Any]:
    out = copy.deepcopy(n)
    ep = n.get("endpoint")
    if not isinstance(ep, dict) or not isinstance(ep.get("uri"), str) or not is_uri(ep["uri"]):
        raise BadRequestData("notification.endpoint.uri must be a URI")
    if ep.get("accept", "application/json") not in (
        "application/json",
        "application/ld+json",
        "application/geo+json",
    ):
        raise BadRequestData("notification.endpoint.accept is not a supported media type")
    if "format" in n and n["format"] not in _FORMATS:
        raise BadRequestData(f"notification.format must be one of {', '.join(_FORMATS)}")
    attrs = n.get("attributes")
    if attrs is not None:
        if not isinstance(attrs, list):
            raise BadRequestData("notification.attributes must be an array")
        for a in attrs:
            check_name(str(a))
        out["attributes"] = [ctx.expand(a) for a in attrs]
    pick, omit = n.get("pick"), n.get("omit")
    if attrs is not None and (pick is not None or omit is not None):
        raise BadRequestData("notification.attributes excludes pick and omit")
    if pick is not None and omit is not None:
        p = set(pick if isinstance(pick, list) else str(pick).split(","))
        o = set(omit if isinstance(omit, list) else str(omit).split(","))
        if p & o:
            raise BadRequestData("a member cannot be both picked and omitted")
    if "sysAttrs" in n and not isinstance(n["sysAttrs"], bool):
        raise BadRequestData("notification.sysAttrs must be true or false")
    for k in ("status", *_STATS):
        out.pop(k, None)
    return out


def unparse(sub: Subscription, ctx: ActiveContext) -> dict[str, Any]:
    """A subscription as its client sees it under `ctx` (names compacted, status added)."""
    out: dict[str, Any] = {}
    for k, v in sub.items():
        if k.startswith("_") or k in ("@context", "createdAt", "modifiedAt", *_STATS):
            continue
        if k == "entities":
            out[k] = [
                {
                    **{a: b for a, b in s.items() if a != "typeExpr"},
                    "type": s["type"] if "typeExpr" in s else ctx.compact(s["type"]),
                }
                for s in v
            ]
        elif k == "watchedAttributes":
            out[k] = [ctx.compact(a) for a in v]
        elif k == "notification":
            n = dict(v)
            if "attributes" in n:
                n["attributes"] = [ctx.compact(a) for a in n["attributes"]]
            for s in _STATS:
                if s in sub:
                    n[s] = sub[s]
            if "timesSent" in sub:
                n["status"] = (
                    "ok"
                    if "lastFailure" not in sub or sub.get("lastSuccess", "") >= sub.get("lastFailure", "")
                    else "failed"
                )
            out[k] = n
        else:
            out[k] = v
    exp = sub.get("expiresAt")
    if exp and parse_time(exp, "expiresAt") <= datetime.now(UTC):
        out["status"] = "expired"
    elif not sub.get("isActive", True):
        out["status"] = "paused"
    else:
        out["status"] = "active"
    return out


def matching_entities(store: Any, contexts: ContextRegistry, tenant: str, sub: Subscription) -> list[Entity]:
    """All current entities a subscription selects (for timeInterval notifications)."""
    types = [s["type"] for s in sub.get("entities", []) if "typeExpr" not in s] or None
    ctx = contexts.active(sub.get("@context"))
    q = parse_q(sub["q"], ctx) if sub.get("q") else None
    out = []
    for e in store.scan(tenant, types=types):
        if sub.get("entities") and not any(_selector(s, e) for s in sub["entities"]):
            continue
        if sub.get("watchedAttributes") and not any(a in e["attrs"] for a in sub["watchedAttributes"]):
            continue
        if q is not None and not q(e):
            continue
        out.append(e)
    return out
