"""A source's rules in the jobs (issue 16): entries dropped before their page is fetched and after
extraction, the page's selector and strip list, the source's request headers. The decisions are
pure (worker/sources/rules.py, worker/extract/selector.py); this module fetches what they need
(the source's record, the feeds file's ``[defaults]``, the process's environment)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.models import Article, Entry, Feed, PollIntent
from worker.pipeline.context import Context
from worker.pipeline.queues import outbox_token
from worker.sources.rules import RuleSet, filter_counts, filter_entries, judge_article, request_headers, rules_of
from worker.timefmt import iso_from_epoch


def source_rules(context: Context, source: Any) -> RuleSet:
    """The source's keep/block rules and max_age, after the feeds file's ``[defaults]``."""
    return rules_of(source, context.sources.defaults)


def page_strip(context: Context, feed: Feed | None) -> tuple[str, ...]:
    """The strip selectors for a feed's pages: the ``[defaults]``' then its own."""
    own = feed.strip if feed is not None else ()
    return tuple(dict.fromkeys((*context.sources.defaults.get("strip", ()), *own)))


def source_headers(context: Context, feed: Feed | None) -> dict[str, str]:
    """The feed's own request headers (its password read from the process's environment); raises
    RuleError when the password's variable is unset. A ``[defaults]`` user_agent applies to every feed."""
    headers: dict[str, str] = {}
    if context.sources.defaults.get("user_agent"):
        headers["User-Agent"] = context.sources.defaults["user_agent"]
    if feed is not None:
        headers.update(request_headers(feed, context.env))
    return headers


def drop_new_entries(context: Context, feed: Feed, entries: list[Entry]) -> tuple[list[Entry], dict[str, int]]:
    """Before any page is fetched: the new entries the feed's rules let through, and the drops per rule."""
    return filter_entries(source_rules(context, feed), entries, time.time())


@dataclass
class BatchNotes:
    """What an extract batch learns about its sources: entries its rules dropped, selector hits and misses."""

    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> rule -> entries
    tokens: list[str] = field(default_factory=list)  # outbox tokens of the dropped entries (settled with the notes)
    misses: dict[str, tuple[int, str]] = field(default_factory=dict)  # source -> (misses, last message)
    hits: set[str] = field(default_factory=set)

    def judge(self, context: Context, entry: Entry, article: Article) -> bool:
        """Whether ``article`` passes its source's rules (text rules, and the others on the page's values);
        a dropped one is counted."""
        source = context.sources.record(entry.feed)
        if source is None:
            return True
        verdict = judge_article(source_rules(context, source.source), article, time.time())
        if verdict.keep is not False:
            return True
        per_source = self.dropped.setdefault(entry.feed, {})
        rule = verdict.rule or "?"
        per_source[rule] = per_source.get(rule, 0) + 1
        self.tokens.append(outbox_token(entry.feed, entry.guid))
        return False

    def selector(self, feed: Feed | None, entry: Entry, article: Article | None) -> None:
        """Note whether the feed's selector chose the body of an article read from its page."""
        if feed is None or not feed.selector or article is None or article.extraction == "feed":
            return
        if article.extraction == "selector":
            self.hits.add(feed.name)
            return
        count, _ = self.misses.get(feed.name, (0, ""))
        self.misses[feed.name] = (count + 1, f"selector {feed.selector!r} matched no usable body on {entry.url}: "
                                             "the normal extraction ran")

    def intents(self, now: float) -> list[PollIntent]:
        stamp = iso_from_epoch(now)
        notes = []
        for name in sorted({*self.dropped, *self.misses, *self.hits}):
            dropped = self.dropped.get(name, {})
            fields: dict[str, str | int | float] = {}
            counts: dict[str, int] = filter_counts(dropped)
            if name in self.misses:
                count, message = self.misses[name]
                fields["last_selector_miss"] = f"{stamp}: {message}"
                counts["selector_misses"] = count
            if name in self.hits:
                fields["last_selector_hit"] = stamp
            notes.append(PollIntent(name, fields=fields, source_counts=counts, filtered=dropped,
                                    counters={"entries_filtered": sum(dropped.values())}))
        return notes


def dropped_earlier(context: Context, entries: Sequence[Entry]) -> set[str]:
    """Outbox tokens of ``entries`` that an earlier run of their batch (RQ running it again) dropped by a
    rule after extraction. Only a batch with a source that has rules can have any: others ask nothing."""
    names = {entry.feed for entry in entries}
    if not any(source_rules(context, feed) for name in names if (feed := context.sources.feed(name)) is not None):
        return set()
    return context.store.dropped_after_extraction([outbox_token(entry.feed, entry.guid) for entry in entries])


def record_notes(context: Context, notes: BatchNotes) -> None:
    """Write the batch's notes on its sources in one step."""
    context.store.settle_filtered(notes.intents(time.time()), notes.tokens)


def headers_by_feed(context: Context, names: Mapping[str, Feed | None]) -> dict[str, dict[str, str] | Exception]:
    """Each feed's request headers, or the error that stops them (an unset password variable)."""
    out: dict[str, dict[str, str] | Exception] = {}
    for name, feed in names.items():
        try:
            out[name] = source_headers(context, feed)
        except ValueError as exc:
            out[name] = exc
    return out
