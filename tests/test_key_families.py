"""Every key the service writes has a TTL or a documented bound (issue 18): a real burst (newsletter included),
then SCAN, each key matched to its family in the table below, which is held to the store's key map."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import redis

import worker.store
from tests.pipeline_helpers import make_context, run_burst, write_feeds
from tests.site import Site
from tests.test_cli import build_site
from worker.models import NewsletterSource
from worker.pipeline.mail import ingest_mail

TTL = "TTL"  # every key of the family must carry an expiry
# family pattern (as in worker/store/__init__.py, {p} = feedstream) -> TTL, or the bound that holds it
FAMILIES: dict[str, str] = {
    "{p}:due": "one member per configured source",
    "{p}:polling:*": TTL,
    "{p}:feed:*": "one per source configured",
    "{p}:seen:*": TTL,
    "{p}:marks:*": TTL,
    "{p}:sources": "one field per source",
    "{p}:sources:version": "one key",
    "{p}:host:*:not_before": TTL,
    "{p}:host:*:inflight": TTL,
    "{p}:host:*:robots": TTL,
    "{p}:host:*:wake": TTL,
    "{p}:sources:defaults": "one key",
    "{p}:filtered": "one field per source and rule",
    "{p}:http": "one field per status seen",
    "{p}:delay": "14 fields",
    "{p}:heartbeats": "one field per process name",
    "{p}:imap:*": "one per IMAP source",
    "{p}:counters": "one field per event kind",
    "{p}:claims:*": TTL,
    "{p}:claim:*": TTL,
    "{p}:nd:b:*": TTL,
    "{p}:nd:sig:*": TTL,
    "{p}:boiler-count:*": TTL,
    "{p}:boiler-seen:*": TTL,
    "{p}:boiler:*": TTL,
    "{p}:boiler-recent:*": TTL,
    "{p}:ver:*": TTL,
    "{p}:latest:*": TTL,
    "{p}:out:since": "one key",
    "{p}:outbox": TTL,
    "{p}:outbox:job": TTL,
    "{p}:outbox:entry": TTL,
    "{p}:outbox:sweep": TTL,
    "{p}:probe": TTL,
    "{p}:websub:names": "one member per source",
    "{p}:websub:due": "one member per source",
    "{p}:websub:*": TTL,
    "{p}:hub:subs": "MAX_SUBSCRIPTIONS fields",
    "{p}:hub:cursor": "one key",
    "{p}:hub:lock": TTL,
    "{p}:hub:retry": "one member per failed delivery, MAX_ATTEMPTS each",
    "{p}:out:*": TTL,
    "articles": "MAXLEN ~ FEEDSTREAM_STREAM_MAXLEN entries",
    "articles:updates": "MAXLEN ~ FEEDSTREAM_STREAM_MAXLEN entries",
    # RQ's own keys: its queues and registries are bounded by the work in flight, its job hashes expire
    # (result_ttl=0, failure_ttl), its worker hashes expire with their heartbeat
    "rq:queues": "one member per queue",
    "rq:worker:*": TTL,
    "rq:workers*": "one member per live worker",
    "rq:clean_groups": TTL,
    "rq:*": "RQ's own: bounded by the jobs in flight",
}


def _family(key: str) -> str | None:
    return next((f for f in FAMILIES if fnmatch.fnmatchcase(key, f.replace("{p}", "feedstream"))), None)


def test_the_table_names_every_family_of_the_store_key_map_and_no_other() -> None:
    documented = set(re.findall(r"``(\{p\}:[^`]+)``", worker.store.__doc__ or ""))
    # the map names keys with their parts ({name}, {period}, ...); the table names them as patterns
    as_patterns = {re.sub(r"\{(?!p\})[^}]*\}", "*", key) for key in documented}
    as_patterns = {re.sub(r"\*(:\*)+$", "*", key) for key in as_patterns}
    ours = {f for f in FAMILIES if f.startswith("{p}")}
    for family in ours:
        assert any(fnmatch.fnmatchcase(doc, family) or doc == family for doc in as_patterns), family
    for doc in as_patterns:
        assert any(fnmatch.fnmatchcase(doc, family) for family in ours), f"{doc} is not in the table"


def test_every_key_a_burst_writes_has_a_ttl_or_a_documented_bound(
        site: Site, redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    feeds, _bodies = build_site(site)
    context = make_context(redis_url, write_feeds(tmp_path / "feeds.toml", feeds))
    run_burst(context)
    letters = NewsletterSource(name="letters", kind="smtp", address="letters@example.com")
    context.newsletters["letters"] = letters
    mail = (b"From: News <news@example.com>\r\nTo: letters@example.com\r\nSubject: Weekly\r\n"
            b"Message-ID: <w1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + b"A paragraph of this week's letter about fibre networks and their owners.\n\n" * 4)
    assert ingest_mail(context, "letters", mail)["outcome"]
    keys = sorted(k.decode() for k in redis_client.scan_iter(count=1000))
    seen: set[str] = set()
    for key in keys:
        family = _family(key)
        assert family is not None, f"{key}: no family in the table (and in the store's key map)"
        seen.add(family)
        if FAMILIES[family] == TTL:
            assert redis_client.ttl(key) > 0, f"{key} ({family}) has no TTL"
    # the burst wrote the families that grow with feeds and articles
    for family in ("{p}:seen:*", "{p}:claims:*", "{p}:nd:b:*", "{p}:nd:sig:*", "{p}:out:*", "{p}:boiler-seen:*"):
        assert family in seen, family
