"""The extract job: each new entry's page fetched, extracted and published exactly once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import wait
from typing import Any

from worker.dedupe.keys import normalise_text, text_key, url_key
from worker.errors import HostDeferred
from worker.models import Article, Entry
from worker.pipeline.articles import article_from_feed, near_key, strip_learned_boilerplate
from worker.pipeline.context import Context
from worker.pipeline.decide import tally_extract
from worker.pipeline.pages import fetch_page, page_outcome, prefetch_pool
from worker.pipeline.queues import hold_extracts, outbox_token
from worker.pipeline.rules import BatchNotes, dropped_earlier, headers_by_feed, page_strip, record_notes
from worker.pipeline.updates import Validators, remember_published
from worker.store import PublishRequest
from worker.timefmt import iso_from_epoch


class PagesUnavailable(Exception):
    """Some pages failed for reasons that may pass; RQ retries the job (published ones are skipped)."""


def extract_entries(context: Context, entries: list[dict[str, Any]], *, final_attempt: bool) -> dict[str, int]:
    """Fetch, extract and publish each entry exactly once; fall back to the feed's content.

    Raises :class:`PagesUnavailable` when pages that may come later failed and this is
    not the job's ``final_attempt``: RQ runs it again (what was published is skipped).
    """
    pending: list[tuple[Entry, str]] = []
    batch = [Entry.from_dict(raw) for raw in entries]
    keys = [url_key(entry.url) for entry in batch]
    settled: list[str] = []  # outbox tokens of entries published before this job ran
    for entry, entry_key, owner in zip(batch, keys, context.store.published_ids(keys), strict=True):
        if owner:
            settled.append(outbox_token(entry.feed, entry.guid))
        else:
            pending.append((entry, entry_key))
    already = len(settled)
    dropped = dropped_earlier(context, [entry for entry, _ in pending])  # done with: never fetched again
    if dropped:
        pending = [(entry, key) for entry, key in pending if outbox_token(entry.feed, entry.guid) not in dropped]
        already += len(dropped)
    retried: list[str] = []
    # extracted (or from the feed), with their URL claims and outbox tokens
    ready: list[tuple[Article, list[str], str]] = []
    validators: list[Validators] = []  # each ready article's page ETag and Last-Modified, for re-checks
    held: list[dict[str, Any]] = []  # entries whose host asked us to wait: queued again for later
    held_until = 0.0
    page_http: list[int | str] = []
    fallbacks = 0
    # Pages download in background threads while this one extracts: the network wait
    # hides behind the CPU-bound extraction instead of idling the core (issue 7).
    pool = prefetch_pool(context.settings.worker_threads)
    feeds = {entry.feed: context.sources.feed(entry.feed) for entry, _ in pending}
    headers = headers_by_feed(context, feeds)  # each source's own request settings (issue 16)
    notes = BatchNotes()  # entries its rules drop after extraction, its selector's hits and misses
    downloads = {
        entry_key: pool.submit(fetch_page, context.fetcher, entry, headers[entry.feed])
        for entry, entry_key in pending
        if (feed := feeds[entry.feed]) is None or feed.full_text
    }
    try:
        for entry, entry_key in pending:
            feed = feeds[entry.feed]
            try:
                outcome = page_outcome(entry, downloads.get(entry_key), final_attempt,
                                       selector=feed.selector if feed else None, strip=page_strip(context, feed))
            except HostDeferred as exc:
                held.append(entry.to_dict())
                held_until = max(held_until, exc.until)
                continue
            if outcome.http is not None:
                page_http.append(outcome.http)
            if outcome.retry:
                retried.append(f"{entry.url}: {outcome.reason}")
                continue
            article = outcome.article
            notes.selector(feed, entry, article)
            if article is None:
                article = article_from_feed(entry, outcome.reason)
                fallbacks += 1
            if not notes.judge(context, entry, article):
                continue  # dropped by a rule on its text (or on what the page said): never published
            claims = [url_key(article.url), entry_key, *([url_key(outcome.canonical)] if outcome.canonical else [])]
            ready.append((article, claims, outbox_token(entry.feed, entry.guid)))
            validators.append(outcome.validators)
    finally:
        # the job ends with no download of its own left running (only a bug gets here with some)
        for download in downloads.values():
            download.cancel()
        wait(downloads.values())
    results = context.store.publish_many(_publish_requests(context, ready))
    record_notes(context, notes)
    remember_published(context, [(article, result, kept) for (article, _, _), result, kept
                                 in zip(ready, results, validators, strict=True)], time.time())
    if held:
        hold_extracts(context, held, held_until)
    tally = tally_extract(entries=len(entries), already=already, fallbacks=fallbacks, page_http=page_http,
                          retried=retried, held=len(held),
                          published=[(result, article.published)
                                     for result, (article, _, _) in zip(results, ready, strict=True)],
                          now=time.time())
    context.store.settle_pending(settled)
    # the batch's counters, page statuses and publish delays in one round trip, not one per page
    context.store.count(tally.counters, http=tally.http, delays=tally.delays)
    if tally.retry:
        raise PagesUnavailable(tally.retry)
    return tally.report


def _publish_requests(context: Context, ready: Sequence[tuple[Article, list[str], str]]) -> list[PublishRequest]:
    """What to publish for each ready article: its claims, text key, near key, boilerplate fingerprints and
    the outbox record its publishing settles."""
    # The batch's boilerplate counts are read in one round trip, not one per article.
    fingerprints = strip_learned_boilerplate(context.store, [article for article, _, _ in ready])
    requests = []
    for (article, keys, token), fps in zip(ready, fingerprints, strict=True):
        article.fetched_at = iso_from_epoch(time.time())
        normal = normalise_text(article.text)  # once for both keys
        near = near_key(article.text, normalised=normal) if context.settings.near_duplicates != "off" else None
        requests.append(PublishRequest(article, list(dict.fromkeys(keys)), text_key(article.text, normalised=normal),
                                       near, boilerplate=fps, outbox_token=token))
    return requests
