"""Fetching an entry's page, and what came of it: an article, or why there is none."""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from worker.errors import ExtractError, FetchError, HostDeferred, RobotsDisallowed
from worker.fetch import PoliteFetcher
from worker.models import Article, Entry, Fetched
from worker.pipeline.articles import article_from_page

log = logging.getLogger("feedstream.jobs")

PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
# Page downloads in flight per extract job; a batch's pages (at most EXTRACT_BATCH bodies,
# each under the size cap) may be held in memory at once.
PAGE_PREFETCH = 3


def fetch_page(fetcher: PoliteFetcher, entry: Entry) -> Fetched:
    return fetcher.get(entry.url, accept=PAGE_ACCEPT, page=True)


_prefetch: tuple[int, ThreadPoolExecutor] | None = None


def prefetch_pool() -> ThreadPoolExecutor:
    """This process's page-download threads, kept from job to job (a pool per job cost ~1% of a worker's time).

    Made on first use in each process: threads do not survive the fork that starts a worker.
    """
    global _prefetch
    if _prefetch is None or _prefetch[0] != os.getpid():
        _prefetch = (os.getpid(), ThreadPoolExecutor(max_workers=PAGE_PREFETCH, thread_name_prefix="prefetch"))
    return _prefetch[1]


@dataclass
class PageOutcome:
    article: Article | None = None
    canonical: str | None = None  # the page's own canonical URL, when on the same site
    reason: str | None = None  # why there is no article from the page
    retry: bool = False  # the page may come later: leave the entry to RQ's retry
    http: int | str | None = None  # the page request's HTTP status ("error": no answer); None: no request
    validators: tuple[str | None, str | None] = (None, None)  # the page's ETag and Last-Modified (re-checks)


def page_outcome(entry: Entry, download: Future[Fetched] | None, final_attempt: bool) -> PageOutcome:
    """The article from the downloaded page, or why there is none (HostDeferred passes through)."""
    if download is None:  # the feed is configured to publish its own content
        return PageOutcome()
    try:
        fetched = download.result()
    except HostDeferred:
        raise  # the caller queues the entry again for when the host lets us back
    except RobotsDisallowed as exc:  # no request was made
        return PageOutcome(reason=str(exc))
    except FetchError as exc:
        return PageOutcome(reason=str(exc), retry=exc.transient and not final_attempt, http=exc.status or "error")
    except Exception as exc:  # a bug in the fetch path must not lose the entry either
        log.exception("fetching %s", entry.url)
        return PageOutcome(reason=f"fetch: unexpected {type(exc).__name__}: {exc}")
    try:
        article, canonical = article_from_page(entry, fetched)
        return PageOutcome(article=article, canonical=canonical, http=fetched.status,
                           validators=(fetched.etag, fetched.last_modified))
    except ExtractError as exc:
        return PageOutcome(reason=str(exc), http=fetched.status)
    except Exception as exc:  # a bug or a pathological page must not lose the entry
        log.exception("extracting %s", entry.url)
        return PageOutcome(reason=f"extract: unexpected {type(exc).__name__}: {exc}", http=fetched.status)
