"""Changed articles (issue 17): a poll notices entries that changed since they were published, their
articles are re-checked (the page fetched again with its validators: unchanged costs a 304), and a
real change (dedupe/changes.py decides) is published as the article's next version, exactly once
(store/updates.py, lua/publish_update.lua).

Three moments, each a small function the pipeline calls:

- :func:`remember_published`: after an extract batch publishes, each new article's version record
  (its paragraphs' digests and the page's validators) is kept for the update window;
- :func:`track_changes`: a poll compares each listed entry's mark with the one kept from the last
  changed listing, claims the re-check of the articles whose entry moved (at most one per article per
  minimum interval) and queues them; it returns the marks the poll's one write keeps;
- :func:`recheck_articles`: the re-check job's body.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from worker.dedupe import boilerplate, changes
from worker.dedupe.keys import url_key
from worker.errors import ExtractError, FetchError, HostDeferred, NotModified, RobotsDisallowed
from worker.models import Article, Entry, PublishResult
from worker.pipeline.articles import article_from_feed, article_from_page, strip_learned_boilerplate
from worker.pipeline.context import Context
from worker.pipeline.pages import PAGE_ACCEPT
from worker.pipeline.queues import enqueue_rechecks
from worker.pipeline.rules import page_strip, source_headers
from worker.sources.rules import RuleError
from worker.store import UpdateRequest, VersionRecord
from worker.timefmt import epoch_from_iso, iso_from_epoch

log = logging.getLogger("feedstream.jobs")

Validators = tuple[str | None, str | None]


class RechecksUnavailable(Exception):
    """Some pages failed for reasons that may pass; RQ retries the job (versions published are not redone)."""


# -- at first publication ---------------------------------------------------------------

def remember_published(context: Context, published: Sequence[tuple[Article, PublishResult, Validators]],
                       now: float) -> None:
    """Keep the version record of each article the batch published for the first time (one round trip)."""
    if not context.settings.updates.enabled:
        return
    records = {}
    for article, result, (etag, last_modified) in published:
        if result.outcome != "published":
            continue
        base = changes.baseline(article.title, article.text)
        records[article.id] = VersionRecord(
            version=1, title=base.title, paragraphs=base.packed(), etag=etag, last_modified=last_modified,
            checked=now, cluster=result.cluster, duplicate=result.duplicate_of is not None,
            from_feed=article.extraction == "feed")
    context.store.remember_versions(records)


# -- at poll time -------------------------------------------------------------------------

def track_changes(context: Context, feed_name: str, entries: Sequence[Entry], keys: Sequence[str],
                  unseen: Sequence[bool], now: float) -> tuple[tuple[str, bytes], ...] | None:
    """Queue re-checks for the published articles whose entry moved; the marks to keep (None: no change).

    ``keys``: the entries' hashed GUIDs; ``unseen``: whether each is new to the feed. An entry whose article
    was checked less than the minimum interval ago keeps its old mark, so a later poll sees it moved
    still and queues it then: a change seen too early is put off, not forgotten.
    """
    if not context.settings.updates.enabled:
        return None
    store = context.store
    old = store.entry_marks(feed_name)
    kept = {key: changes.entry_mark(entry.title, entry.content_html, entry.summary_html,
                                    epoch_from_iso(entry.updated))
            for entry, key in zip(entries, keys, strict=True)}
    moved = [(entry, key) for entry, key, new in zip(entries, keys, unseen, strict=True)
             if not new and key in old and changes.mark_moved(old[key], kept[key])]
    if moved:
        owners = store.published_ids([url_key(entry.url) for entry, _ in moved])
        tracked = [(entry, key, owner) for (entry, key), owner in zip(moved, owners, strict=True) if owner]
        claims = store.claim_rechecks([owner for _, _, owner in tracked], now)
        due = []
        for (entry, key, owner), claim in zip(tracked, claims, strict=True):
            if claim == 1:
                due.append({"id": owner, "entry": entry.to_dict()})
            elif claim == 0:
                kept[key] = old[key]
        enqueue_rechecks(context, due)
    return None if kept == old else tuple(kept.items())


# -- the re-check job ---------------------------------------------------------------------

def recheck_articles(context: Context, items: list[dict[str, Any]], *, final_attempt: bool) -> dict[str, int]:
    """Re-check each article (``{"id", "entry"}``) against its latest version; publish the real changes.

    Raises :class:`RechecksUnavailable` when pages that may come later failed and this is not the job's
    ``final_attempt``: RQ runs it again (a version published meanwhile is found taken, not doubled).
    """
    now = time.time()
    ids = [str(item["id"]) for item in items]
    entries = [Entry.from_dict(item["entry"]) for item in items]
    report: Counter[str] = Counter()
    page_http: Counter[tuple[str, int | str]] = Counter()
    ready: list[tuple[str, VersionRecord, Article, Validators]] = []
    retried: list[str] = []
    held: list[dict[str, Any]] = []
    held_until = 0.0
    for item, article_id, entry, record in zip(items, ids, entries, context.store.version_records(ids), strict=True):
        if record is None:  # older than the window by now
            report["gone"] += 1
            continue
        feed = context.sources.feed(entry.feed)
        if record.from_feed or (feed is not None and not feed.full_text):
            ready.append((article_id, record, article_from_feed(entry, None), (None, None)))
            continue
        try:  # with the source's request settings and, below, its selectors (issue 16)
            fetched = context.fetcher.get(entry.url, etag=record.etag, last_modified=record.last_modified,
                                          accept=PAGE_ACCEPT, page=True, headers=source_headers(context, feed))
        except NotModified:
            report["not_modified"] += 1
            page_http[("page", 304)] += 1
            continue
        except HostDeferred as exc:
            held.append(item)
            held_until = max(held_until, exc.until)
            continue
        except RobotsDisallowed:
            report["failed"] += 1
            continue
        except FetchError as exc:
            page_http[("page", exc.status or "error")] += 1
            if exc.transient and not final_attempt:
                retried.append(f"{entry.url}: {exc}")
            else:
                report["failed"] += 1
            continue
        except RuleError:  # the source's password variable is unset: its polls say so
            report["failed"] += 1
            continue
        except Exception:  # a bug in the fetch path must not cost the batch's other articles their check
            log.exception("re-checking %s", entry.url)
            report["failed"] += 1
            continue
        page_http[("page", fetched.status)] += 1
        try:
            article, _canonical = article_from_page(entry, fetched, selector=feed.selector if feed else None,
                                                    strip=page_strip(context, feed))
        except ExtractError:
            report["failed"] += 1
            continue
        except Exception:  # a pathological page neither: the published version stands
            log.exception("extracting %s for a re-check", entry.url)
            report["failed"] += 1
            continue
        ready.append((article_id, record, article, (fetched.etag, fetched.last_modified)))
    requests = _update_requests(context, ready, now)
    for result in context.store.publish_updates(requests):
        report[result.outcome] += 1
    if held:
        enqueue_rechecks(context, held, at=held_until)
        report["held"] = len(held)
    context.store.count({"rechecks": len(items) - len(retried) - len(held),
                         "rechecks_not_modified": report["not_modified"], "rechecks_unchanged": report["unchanged"],
                         "rechecks_failed": report["failed"]}, http=page_http)
    if retried and not final_attempt:
        raise RechecksUnavailable(f"fetch: {len(retried)} page(s) will be re-checked again: " + "; ".join(retried[:3]))
    return dict(report)


def _update_requests(context: Context, ready: Sequence[tuple[str, VersionRecord, Article, Validators]],
                     now: float) -> list[UpdateRequest]:
    """Each re-checked article against its latest version: the next version's document, or none (no real change)."""
    if not ready:
        return []
    articles = [article for _, _, article, _ in ready]
    strip_learned_boilerplate(context.store, articles)  # as first publication did; this counts nothing
    olds = [changes.Baseline.unpack(record.title, record.paragraphs) for _, record, _, _ in ready]
    counts = context.store.boilerplate_counts_many([(article.feed, old.paragraphs)
                                                    for article, old in zip(articles, olds, strict=True)])
    requests = []
    for (article_id, record, article, (etag, last_modified)), old, known in zip(ready, olds, counts, strict=True):
        ignore = changes.learned(old.paragraphs, known, boilerplate.DEFAULT_THRESHOLD)
        change = changes.compare(old, article.title, article.text, ignore)
        document = None
        new = old
        if change is not None:
            new = changes.baseline(article.title, article.text)
            document = update_document(article, article_id, record, change, now)
        requests.append(UpdateRequest(article_id, article.url, article.feed, record, document,
                                      title=new.title, paragraphs=new.packed(), etag=etag,
                                      last_modified=last_modified))
    return requests


def update_document(article: Article, article_id: str, record: VersionRecord, change: changes.Change,
                    now: float) -> str:
    """The update event's document: the whole article as it is now, under its first id and cluster, with
    the next version number, ``event: "updated"``, when (``updated``) and what (``changes``) changed."""
    article.id = article_id  # the page may have moved: the article is still the one first published
    article.version = record.version + 1
    article.event = "updated"
    article.cluster = record.cluster
    article.duplicate_of = record.cluster if record.duplicate else None
    article.fetched_at = iso_from_epoch(now)
    # the page's declared modification when it has one, else when the change was seen
    article.updated = article.updated or iso_from_epoch(now)
    return json.dumps({**asdict(article), "changes": change.as_dict()}, ensure_ascii=False, separators=(",", ":"))
