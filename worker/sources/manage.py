"""The operations on sources that the admin API and the CLI share (one place for each rule).

Each one checks its input (:mod:`worker.sources.spec`), decides with a pure function
(:mod:`worker.sources.plan`) and writes in one atomic step (``Store.change_sources``), so a
refused request changes nothing. Adding a feed by a site's address finds its feed first
(:func:`worker.feeds.discover.discover`), through the guarded HTTP client the caller passes in.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from typing import Any
from urllib.parse import urlsplit

from worker.errors import FetchError, SourceInvalid
from worker.feeds.discover import ACCEPT, FoundFeed, NoFeedFound, discover
from worker.fetch import HttpClient, PoliteFetcher
from worker.fetch.addresses import is_public_address
from worker.models import Feed, Fetched, NewsletterSource, Sitemap
from worker.settings import Settings
from worker.sources.opml import OpmlError, outline_fields, parse_opml, render_opml
from worker.sources.plan import (
    FileReport,
    ImportReport,
    SourceRecord,
    free_name,
    identity,
    plan_create,
    plan_delete,
    plan_file,
    plan_import,
    plan_pause,
    plan_poll_now,
    plan_resume,
    plan_update,
)
from worker.sources.rules import rules_status
from worker.sources.spec import (
    FEED_KIND,
    NAME_RE,
    SITEMAP_KIND,
    Source,
    check_url,
    kind_of,
    merged,
    source_from_dict,
    source_to_dict,
)
from worker.store import Store
from worker.timefmt import iso_from_epoch

Get = Callable[[str], Fetched]
# Status fields shown beside a source (the full set is ``feedstream status``'s business).
STATUS_FIELDS = ("title", "last_poll", "last_status", "last_success", "last_error", "consecutive_errors",
                 "next_poll", "retired", "last_mail")
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AdminOptions:
    """What the operations need from the settings."""

    allow_private: bool = False  # FEEDSTREAM_ALLOW_PRIVATE
    mail_domain: str | None = None  # FEEDSTREAM_MAIL_DOMAIN: where fresh newsletter addresses live


def name_from(text: str) -> str:
    """A source name made from a title or a host: ``Ars Technica`` -> ``ars-technica``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()  # Télécoms -> Telecoms
    stem = _NOT_NAME.sub("-", ascii_text.strip().lower().removeprefix("www.")).strip("-._")
    stem = stem[:64].rstrip("-._")
    return stem if stem and NAME_RE.match(stem) else "source"


def refuse_private_literal(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host is a loopback, private or otherwise non-public address written out.

    Host names are checked when they are fetched (the client checks the address it connects to).
    """
    if allow_private:
        return
    host = (urlsplit(url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        private = host == "localhost" or host.endswith(".localhost")
    else:
        private = not is_public_address(str(address))
    if private:
        raise SourceInvalid("url: is not a public address",
                            {"url": f"{host} is not a public address (FEEDSTREAM_ALLOW_PRIVATE=1 allows it)"})


class SourceAdmin:
    """List, add, change, pause, resume, poll now and remove sources; OPML in and out; discovery."""

    def __init__(self, store: Store, get: Get | None, options: AdminOptions,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.get_url = get
        self.options = options
        self.clock = clock

    def _now(self) -> tuple[float, str]:
        now = self.clock()
        return now, iso_from_epoch(now)

    # -- reading --------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """Every source (sorted by name) with the headline of its status."""
        records = self.store.sources_snapshot().records
        statuses = self.store.source_statuses(sorted(records))
        return [self._view(records[name], statuses[name]) for name in sorted(records)]

    def show(self, name: str) -> dict[str, Any]:
        record = self.store.sources_snapshot().get(name)
        return self._view(record, self.store.source_statuses([name])[name])

    @staticmethod
    def _view(record: SourceRecord, status: Mapping[str, str]) -> dict[str, Any]:
        shown = {k: status[k] for k in STATUS_FIELDS if status.get(k)}
        ruled = rules_status(source_to_dict(record.source), status)  # what its rules dropped (issue 16)
        shown.update({k: v for k, v in ruled.items() if k != "rules" and v})
        return {**record.view(), "status": shown}

    # -- adding ---------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any], *, check: bool = True) -> dict[str, Any]:
        """Add a source made through the API or CLI (``managed_by: api``); returns its view.

        A feed's ``url`` may be a site's address: with ``check`` it is fetched, and a page that is
        not a feed is searched for one. Without ``check`` nothing is fetched (the URL is taken as
        a feed's, and only a literal private address is refused). ``name`` may be left out: it is
        made from the feed's title or the host. An smtp newsletter without ``address`` gets a
        fresh one under FEEDSTREAM_MAIL_DOMAIN.
        """
        if not isinstance(body, Mapping):
            raise SourceInvalid("the body must be a JSON object of the source's fields", {"": "must be an object"})
        data = dict(body)
        named = "name" in data
        kind = data.get("kind", "feed")
        if kind == "smtp" and not data.get("address"):
            data["address"] = self._fresh_address(data.get("name"))
        # check every field before fetching anything (the name may be made later: stand in for it)
        source = source_from_dict(data if named else {**data, "name": "source"})
        title = ""
        now, iso = self._now()
        # a name or address in use is refused before anything is fetched
        plan_create(self.store.sources_snapshot(), source if named else _with(source, name="\0"), now, iso)
        if isinstance(source, Feed):
            refuse_private_literal(source.url, self.options.allow_private)
            if check:
                found = self._find_feed(source.url, sitemaps_only=isinstance(source, Sitemap))
                source = _with(source, url=found.url)
                if found.kind == SITEMAP_KIND and not isinstance(source, Sitemap):
                    # the site has no feed, but robots.txt names a sitemap: the source reads that
                    source = Sitemap(**{f.name: getattr(source, f.name) for f in dataclass_fields(Feed)})
                title = found.title
        if not named:
            source = _with(source, name=name_from(title or _host_or(source)))
        auto_name = not named

        def decide(snapshot: Any) -> tuple[Any, Source]:
            final = source
            if auto_name:
                final = free_name(final, snapshot.records) or final
            return plan_create(snapshot, final, now, iso), final

        created = self.store.change_sources(decide)
        return self.show(created.name)

    def _find_feed(self, url: str, sitemaps_only: bool = False) -> FoundFeed:
        if self.get_url is None:
            raise SourceInvalid("url: cannot be checked here", {"url": "cannot be fetched by this process"})
        try:
            return discover(url, self.get_url, first=True, sitemaps_only=sitemaps_only)[0]
        except NoFeedFound as exc:
            raise SourceInvalid(f"url: {exc.message}", {"url": exc.message}) from None
        except FetchError as exc:
            raise SourceInvalid(f"url: {exc}", {"url": str(exc)}) from None

    def _fresh_address(self, name: Any) -> str:
        domain = self.options.mail_domain
        if not domain:
            raise SourceInvalid("address: is required", {
                "address": "is required: set FEEDSTREAM_MAIL_DOMAIN to have addresses made for new newsletters"})
        stem = name_from(name) if isinstance(name, str) and name else "news"
        return f"{stem}.{secrets.token_hex(5)}@{domain}".lower()

    def discover(self, url: str) -> list[dict[str, Any]]:
        """The feeds found at a site's address (nothing is added)."""
        try:
            check_url(url)
        except ValueError as exc:
            raise SourceInvalid(f"url: {exc}", {"url": str(exc)}) from None
        refuse_private_literal(url, self.options.allow_private)
        if self.get_url is None:
            raise SourceInvalid("url: cannot be fetched here", {"url": "cannot be fetched by this process"})
        try:
            return [found.as_dict() for found in discover(url, self.get_url)]
        except NoFeedFound as exc:
            raise SourceInvalid(f"url: {exc.message}", {"url": exc.message}) from None
        except FetchError as exc:
            raise SourceInvalid(f"url: {exc}", {"url": str(exc)}) from None

    # -- changing -------------------------------------------------------------------------
    def update(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change some fields of an API-made source (null: back to the default); returns its view."""
        if not isinstance(changes, Mapping):
            raise SourceInvalid("the body must be a JSON object of the fields to change", {"": "must be an object"})
        current = self.store.sources_snapshot().get(name).source
        source = merged(current, changes)
        if isinstance(source, Feed):
            refuse_private_literal(source.url, self.options.allow_private)
        now, iso = self._now()
        self.store.change_sources(lambda snapshot: (plan_update(snapshot, source, now, iso), None))
        return self.show(name)

    def delete(self, name: str) -> None:
        self.store.change_sources(lambda snapshot: (plan_delete(snapshot, name), None))

    def pause(self, name: str) -> dict[str, Any]:
        _, iso = self._now()
        self.store.change_sources(lambda snapshot: (plan_pause(snapshot, name, iso), None))
        return self.show(name)

    def resume(self, name: str) -> dict[str, Any]:
        now, iso = self._now()
        self.store.change_sources(lambda snapshot: (plan_resume(snapshot, name, now, iso), None))
        return self.show(name)

    def refresh(self, name: str) -> dict[str, Any]:
        """Make the source's poll due now: the scheduler queues it within a second."""
        now, _ = self._now()
        self.store.change_sources(lambda snapshot: (plan_poll_now(snapshot, name, now), None))
        return self.show(name)

    # -- OPML -----------------------------------------------------------------------------
    def import_opml(self, data: bytes) -> ImportReport:
        """Add the file's feeds that are new; report each outline: added, skipped (its URL is a
        source already), refused (and why). Nothing is fetched; the file as a whole is refused
        (SourceInvalid) when it is not OPML we read (too large, hostile, malformed)."""
        try:
            document = parse_opml(data)
        except OpmlError as exc:
            raise SourceInvalid(str(exc), {"file": str(exc)}) from None
        report = ImportReport()
        candidates: list[tuple[dict[str, Any], Source]] = []
        seen: dict[tuple[str, str], int] = {}
        for outline in document.others:
            report.refused.append({**outline.where(), "reason": "no xmlUrl: not a feed"})
        for outline in document.feeds:
            fields = outline_fields(outline)
            fields.setdefault("name", name_from(outline.title or _host_or_text(outline.xml_url or "")))
            try:
                source = source_from_dict(fields)
                refuse_private_literal(source.url, self.options.allow_private)  # type: ignore[union-attr]
            except SourceInvalid as exc:
                report.refused.append({**outline.where(), "reason": exc.message})
                continue
            key = identity(source)
            if key in seen:
                report.skipped.append({**outline.where(), "reason": f"duplicate of the outline on line {seen[key]}"})
                continue
            seen[key] = outline.line
            candidates.append((outline.where(), source))
        now, iso = self._now()
        change_report = self.store.change_sources(lambda snapshot: plan_import(snapshot, candidates, now, iso))
        report.added = change_report.added
        report.skipped += change_report.skipped
        report.refused += change_report.refused
        return report

    def export_opml(self) -> bytes:
        """Every feed as OPML 2.0 (newsletters are not feeds: they are left out)."""
        records = self.store.sources_snapshot().records
        feeds = [records[name].source for name in sorted(records) if kind_of(records[name].source) == FEED_KIND]
        statuses = self.store.source_statuses([feed.name for feed in feeds])
        titles = {name: status["title"] for name, status in statuses.items() if status.get("title")}
        return render_opml(feeds, titles=titles)  # type: ignore[arg-type]


def apply_feeds_file(store: Store, feeds: Sequence[Feed], newsletters: Sequence[NewsletterSource],
                     now: float | None = None, defaults: Mapping[str, Any] | None = None) -> FileReport:
    """Apply the feeds file's sources and ``[defaults]`` declaratively (see :func:`plan_file`); returns what
    it did."""
    at = time.time() if now is None else now
    sources: list[Source] = [*feeds, *newsletters]
    return store.change_sources(lambda snapshot: plan_file(snapshot, sources, at, iso_from_epoch(at), defaults))


def _with(source: Source, **changes: Any) -> Source:
    return replace(source, **changes)


def _host_or(source: Source) -> str:
    return _host_or_text(getattr(source, "url", "") or "") if kind_of(source) == "feed" else source.name


def _host_or_text(url: str) -> str:
    return urlsplit(url).hostname or url


def fetch_for_discovery(get: Callable[..., Fetched]) -> Get:
    """A ``get(url)`` for discovery from a client's ``get(url, accept=...)``."""
    return lambda url: get(url, accept=ACCEPT)


def open_admin(store: Store, settings: Settings) -> tuple[SourceAdmin, HttpClient]:
    """The operations for a process (API or CLI), fetching through the polite, guarded client the
    workers use (same address checks, deadline, size cap, per-host limits); close the client when done."""
    client = HttpClient(settings.http)
    polite = PoliteFetcher(client, store, host_concurrency=settings.host_concurrency, robots=False)
    options = AdminOptions(allow_private=settings.allow_private, mail_domain=settings.mail_domain)
    return SourceAdmin(store, fetch_for_discovery(polite.get), options), client
