"""WebSub (W3C Recommendation) rules for our subscriptions, as pure functions: no I/O, no clock.

- :func:`push_links`: a feed's hub and self URL, from the HTTP ``Link`` header first (the spec's
  order), else the document's ``<link rel="hub">`` / ``rel="self"`` (or JSON Feed's ``hubs``).
- :class:`Subscription`: one source's subscription as Redis keeps it (a hash of strings).
- :func:`decide`: what the subscription manager does next for a source (subscribe, renew,
  unsubscribe, wait, forget), from the subscription, the source and the time.
- :func:`answer_verification`: the hub's verification request (``hub.challenge``) answered only for
  a request we made (mode, topic and the callback's token all match).
- :func:`check_signature`: a content distribution's ``X-Hub-Signature`` checked against our secret
  (sha256 or better; sha1 only from a hub never seen signing with a stronger one).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from urllib.parse import urljoin

from worker.models import ParsedFeed

VERIFY_TIMEOUT = 120.0  # seconds a hub has to verify what we asked before we call it failed
RENEW_AT = 0.75  # a lease is renewed when this share of it has passed
DEFAULT_LEASE = 10 * 86400  # what we ask for; the hub decides
MIN_LEASE = 1
MAX_BACKOFF = 6 * 3600
DENIED_RETRY = 86400
MAX_PUSH_BYTES = 3 * 1024 * 1024  # a pushed feed's body, at most (FreshRSS's cap)
# Strongest first; X-Hub-Signature's method names (the spec's list).
ALGORITHMS = {"sha512": hashlib.sha512, "sha384": hashlib.sha384, "sha256": hashlib.sha256, "sha1": hashlib.sha1}
STRENGTH = {"sha1": 1, "sha256": 2, "sha384": 3, "sha512": 4}
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z*-]+\s*=\s*(?:"[^"]*"|[^;,]*))*)')
_PARAM = re.compile(r';\s*([A-Za-z*-]+)\s*=\s*(?:"([^"]*)"|([^;,]*))')


def link_header(value: str, base: str) -> dict[str, str]:
    """rel -> absolute URL (the first of each) from an HTTP ``Link`` header value (RFC 8288)."""
    found: dict[str, str] = {}
    for match in _LINK.finditer(value[:8192]):
        target, params = match.group(1).strip(), match.group(2)
        for name, quoted, bare in _PARAM.findall(params):
            if name.lower() == "rel":
                for rel in (quoted or bare).lower().split():
                    found.setdefault(rel, urljoin(base, target))
    return found


def push_links(parsed: ParsedFeed, headers: Mapping[str, str], url: str) -> tuple[str, str] | None:
    """(hub, topic) a fetched feed announces, or None; the Link header wins over the document.

    The topic is the feed's self URL (what the hub knows it by), else the address it was fetched from.
    """
    rels = link_header(headers.get("link", ""), url) if headers.get("link") else {}
    hub = rels.get("hub") or parsed.hub
    if not hub or not hub.startswith(("http://", "https://")):
        return None
    topic = rels.get("self") or parsed.self_url or url
    return hub, topic


@dataclass(frozen=True)
class Subscription:
    """One source's WebSub subscription (every field a string in Redis; numbers as seconds since the epoch).

    ``state``: ``""`` (none), ``requested`` (asked, not yet verified), ``live``, ``failed``, ``denied``,
    ``unsubscribing``, ``unsubscribed``. ``asked``: what we asked the hub and it has not yet verified
    (``subscribe`` or ``unsubscribe``); only that is answered. ``found_hub``/``found_topic``: what the
    source's last poll announced.
    """

    name: str
    found_hub: str = ""
    found_topic: str = ""
    hub: str = ""
    topic: str = ""
    token: str = ""
    secret: str = ""
    state: str = ""
    asked: str = ""
    requested_at: float = 0.0
    verified_at: float = 0.0
    lease: int = 0
    errors: int = 0
    last_error: str = ""
    last_push: float = 0.0
    pushes: int = 0
    last_refused: str = ""
    refused: int = 0
    algorithm: str = ""  # the strongest signature method the hub has used with us

    @classmethod
    def from_hash(cls, name: str, raw: Mapping[str, str]) -> Subscription:
        values: dict[str, object] = {}
        for spec in fields(cls):
            if spec.name == "name" or spec.name not in raw:
                continue
            text = raw[spec.name]
            try:
                values[spec.name] = (float(text) if spec.type == "float" else int(float(text))
                                     if spec.type == "int" else text)
            except ValueError:
                continue
        return cls(name=name, **values)  # type: ignore[arg-type]

    def to_hash(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if k != "name"}

    @property
    def expires_at(self) -> float:
        return self.verified_at + self.lease if self.state == "live" else 0.0

    def live(self, now: float) -> bool:
        return self.state == "live" and now < self.expires_at

    @property
    def renew_at(self) -> float:
        return self.verified_at + self.lease * RENEW_AT

    def view(self, now: float) -> dict[str, object]:
        """What ``feedstream status`` shows of it."""
        out: dict[str, object] = {"state": ("expired" if self.state == "live" and not self.live(now) else
                                            self.state or "not subscribed"), "hub": self.hub or self.found_hub,
                                  "topic": self.topic or self.found_topic, "pushes": self.pushes}
        if self.state == "live":
            out["expires_at"] = self.expires_at
        for key in ("last_push", "last_error", "last_refused", "refused", "asked"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


# -- what the manager does next -------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    """``kind``: ``subscribe`` (``fresh``: with a new token and secret), ``unsubscribe``, ``wait`` (until
    ``due``; None: nothing scheduled) or ``forget`` (the record goes)."""

    kind: str
    subscription: Subscription
    due: float | None = None
    fresh: bool = False


def backoff(errors: int) -> float:
    return float(min(60 * 2 ** max(errors - 1, 0), MAX_BACKOFF))


def decide(sub: Subscription, *, active: bool, exists: bool, can_subscribe: bool, now: float) -> Action:
    """The manager's next step for one source.

    ``exists``: the source is still there; ``active``: it is there, not paused, and a feed;
    ``can_subscribe``: FEEDSTREAM_PUBLIC_URL is set (hubs can reach our callback).
    """
    holds = bool(sub.token) and (sub.state in ("live", "requested") or sub.asked == "subscribe")
    if not (active and can_subscribe):
        if sub.state == "unsubscribing":
            if now < sub.requested_at + VERIFY_TIMEOUT:
                return Action("wait", sub, sub.requested_at + VERIFY_TIMEOUT)
            gone = replace(sub, state="unsubscribed", asked="", token="", secret="")
            return Action("wait", gone) if exists else Action("forget", sub)
        if holds:
            return Action("unsubscribe", sub)
        return Action("wait", sub) if exists else Action("forget", sub)
    if not sub.found_hub:
        return Action("wait", sub)  # the feed names no hub (any more): a live lease just runs out
    if not sub.token or (sub.hub, sub.topic) != (sub.found_hub, sub.found_topic) or sub.state in (
            "unsubscribing", "unsubscribed"):
        return Action("subscribe", sub, fresh=True)
    if sub.asked == "subscribe":
        deadline = sub.requested_at + VERIFY_TIMEOUT
        if now < deadline:
            return Action("wait", sub, deadline)
        failed = replace(sub, asked="", errors=sub.errors + 1, state="live" if sub.live(now) else "failed",
                         last_error=f"websub: {sub.hub} did not verify the subscription within "
                                    f"{VERIFY_TIMEOUT:.0f} s")
        return Action("wait", failed, now + backoff(failed.errors))
    if sub.state == "live":
        if now >= sub.renew_at:
            return Action("subscribe", sub)
        return Action("wait", sub, sub.renew_at)
    if sub.state == "denied":
        return Action("subscribe", sub, fresh=True) if now >= sub.requested_at + DENIED_RETRY else Action(
            "wait", sub, sub.requested_at + DENIED_RETRY)
    return Action("subscribe", sub)  # failed (its backoff has passed: it was due), or never asked


# -- the hub's requests to our callback -----------------------------------------------------------

def tokens_match(sub: Subscription | None, token: str) -> bool:
    return sub is not None and bool(sub.token) and hmac.compare_digest(sub.token.encode(), token.encode())


def answer_verification(sub: Subscription | None, token: str, query: Mapping[str, str], now: float
                        ) -> tuple[int, bytes, Subscription | None]:
    """(HTTP status, body, the subscription as it is after) for the hub's GET to our callback.

    The challenge is echoed only for what we asked (mode), of the topic we asked it for, at the
    callback's token; anything else gets 404 and changes nothing.
    """
    mode, topic = query.get("hub.mode", ""), query.get("hub.topic", "")
    if sub is None or not tokens_match(sub, token) or topic != sub.topic:
        return 404, b"no such subscription\n", None
    if mode == "denied":
        return 200, b"", replace(sub, state="denied", asked="", requested_at=now,
                                 last_error=f"websub: {sub.hub} denied the subscription: "
                                            f"{query.get('hub.reason', 'no reason given')[:200]}")
    challenge = query.get("hub.challenge", "")
    if not challenge or mode not in ("subscribe", "unsubscribe") or mode != sub.asked:
        return 404, b"not a request of ours\n", None
    if mode == "unsubscribe":
        return 200, challenge.encode(), replace(sub, state="unsubscribed", asked="", token="", secret="")
    try:
        lease = max(int(query.get("hub.lease_seconds") or DEFAULT_LEASE), MIN_LEASE)
    except ValueError:
        lease = DEFAULT_LEASE
    return 200, challenge.encode(), replace(sub, state="live", asked="", verified_at=now, lease=lease, errors=0,
                                            last_error="")


def check_signature(header: str | None, body: bytes, secret: str, strongest_seen: str) -> tuple[bool, str]:
    """(valid, the method used or why not) for an ``X-Hub-Signature`` header (``method=hexdigest``).

    sha1 is taken only from a hub that has never signed for us with a stronger method: one that
    has cannot be told from a forger downgrading it.
    """
    if not header:
        return False, "no X-Hub-Signature"
    method, _, digest = header.strip().partition("=")
    method = method.strip().lower()
    if method not in ALGORITHMS:
        return False, f"signature method {method[:20]!r} not accepted"
    if STRENGTH[method] < STRENGTH.get(strongest_seen, 0) or (method == "sha1" and strongest_seen not in ("",
                                                                                                         "sha1")):
        return False, f"{method} signature from a hub that signs with {strongest_seen}"
    expected = hmac.new(secret.encode(), body, ALGORITHMS[method]).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        return False, "signature does not match"
    return True, method
