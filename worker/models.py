"""Plain data passed between the stages. No I/O here.

``Entry`` travels inside RQ job arguments, so it converts to and from a dict
of plain values (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ARTICLE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Feed:
    """One configured source, as written in the feeds file."""

    name: str
    url: str
    interval: int = 900  # seconds between polls
    full_text: bool = True  # fetch each article's page; False publishes the feed's own content
    tags: tuple[str, ...] = ()
    # Bounds of the adaptive schedule for this feed; None: the global defaults.
    min_interval: int | None = None
    max_interval: int | None = None
    # Per-source rules (issue 16; docs/rules.md): entries dropped by `field:regex` rules or by age,
    # the body chosen by a CSS selector, elements stripped before extraction.
    block: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    max_age: str | None = None  # "30d", "12h", "90m"
    selector: str | None = None
    strip: tuple[str, ...] = ()
    # Request settings for the feed's and its pages' requests. A password is never held here: only the
    # name of the environment variable it is read from (at the edge, as IMAP passwords are).
    headers: tuple[tuple[str, str], ...] = ()
    cookie: str | None = None
    user_agent: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password_env: str | None = None


@dataclass(frozen=True)
class Sitemap(Feed):
    """A source read from a (news) sitemap or sitemap index instead of a feed (``kind = "sitemap"``).

    Polled like a feed (conditional GET, the adaptive schedule); only entries dated within
    ``max_age`` (the same rule as a feed's, here with a default) are listed (worker/feeds/sitemap.py).
    """

    max_age: str | None = "2d"


@dataclass(frozen=True)
class Fetched:
    """A completed HTTP download."""

    url: str  # the URL finally answered, after redirects
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    requested_url: str = ""
    # (status, location) of each redirect followed, in order; lets callers adopt
    # permanent moves.
    redirects: tuple[tuple[int, str], ...] = ()

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class Entry:
    """One item of a feed, reduced to what the later stages need."""

    guid: str
    url: str
    title: str = ""
    author: str | None = None
    published: str | None = None  # ISO 8601 UTC
    # The feed's full content (content:encoded, atom:content) and summary, as the feed
    # gave them: unsanitised, so turned into text (never passed on as HTML).
    content_html: str | None = None
    summary_html: str | None = None
    tags: list[str] = field(default_factory=list)
    feed: str = ""
    updated: str | None = None  # ISO 8601 UTC: the feed's own last modification of the item (Atom <updated>)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ParsedFeed:
    """What a feed document says: its own metadata and its entries."""

    title: str = ""
    link: str | None = None
    language: str | None = None
    ttl_minutes: int | None = None
    entries: list[Entry] = field(default_factory=list)
    warning: str | None = None  # parser's complaint about malformed input it still read
    # WebSub (worker/push/): the hub the feed names (<link rel="hub">) and its own address (rel="self")
    hub: str | None = None
    self_url: str | None = None


@dataclass
class Extracted:
    """The article as read from its page."""

    title: str = ""
    text: str = ""
    author: str | None = None
    published: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    sitename: str | None = None
    description: str | None = None
    image: str | None = None
    categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    updated: str | None = None  # ISO 8601 UTC: the page's declared last modification
    markdown: str = ""  # the body as Markdown (headings, lists, emphasis, tables)
    extraction: str = "precision"  # which candidate won: "precision", "recall", "feed" or "selector"
    word_count: int = 0
    # The source's selector (issue 16): "matched" (the body), "missed" (nothing matched: the chain ran),
    # "whole page" (it matched the page itself: ignored); None without a selector.
    selector: str | None = None
    stripped: dict[str, int] = field(default_factory=dict)  # strip selector -> elements removed


@dataclass
class Article:
    """One stream entry's document (see the stream contract in the README)."""

    id: str
    url: str
    title: str
    text: str
    feed: str
    published: str | None = None
    author: str | None = None
    language: str | None = None
    duplicate_of: str | None = None
    # Near-duplicate cluster: the id of the cluster's first article (its own id when it is the first).
    cluster: str | None = None
    # which body won: "precision"/"recall" (trafilatura's modes on the article's page), "selector" (the
    # source's CSS selector) or "feed" (the feed's own content: chosen over the page, or the fallback)
    extraction: str = "precision"
    fallback_reason: str | None = None  # why the page was not used, when extraction == "feed"
    guid: str | None = None
    tags: list[str] = field(default_factory=list)
    fetched_at: str | None = None
    schema: int = ARTICLE_SCHEMA_VERSION
    # rich metadata (additive to schema 1; see the README's article fields)
    authors: list[str] = field(default_factory=list)
    updated: str | None = None
    categories: list[str] = field(default_factory=list)
    image: str | None = None
    sitename: str | None = None
    description: str | None = None
    word_count: int = 0
    markdown: str = ""
    boilerplate_removed: int = 0  # paragraphs stripped as this feed's learned boilerplate
    list_id: str | None = None  # newsletters: the List-Id header (extraction == "newsletter")
    # Updates (issue 17, additive to schema 1): 1 and "published" on first publication; an update
    # event carries the same id with version 2, 3, ..., event "updated" and its `changes`.
    version: int = 1
    event: str = "published"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class NewsletterSource:
    """One configured email source (``[[newsletters]]`` in the feeds file).

    ``kind``: ``smtp`` (our endpoint accepts mail for ``address``), ``imap`` (poll
    ``folder`` on ``host`` as ``user``, password from the env var ``password_env``)
    or ``maildir`` (poll the Maildir at ``path``).
    """

    name: str
    kind: str
    address: str | None = None  # smtp: the recipient address this source receives at
    host: str | None = None  # imap
    port: int | None = None  # imap; default 993 (tls) or 143 (starttls/plain)
    user: str | None = None  # imap
    password_env: str | None = None  # imap: name of the env var holding the password
    folder: str = "INBOX"  # imap
    security: str = "tls"  # imap: tls | starttls | plain (plain: loopback/tests only)
    path: str | None = None  # maildir
    interval: int = 300  # imap/maildir: seconds between polls
    tags: tuple[str, ...] = ()
    max_bytes: int = 5 * 1024 * 1024  # per message
    follow_links: bool = False  # a digest of links: also queue each linked article as an entry
    # keep/block rules and max_age, as for feeds (issue 16)
    block: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    max_age: str | None = None


@dataclass
class Newsletter:
    """One email read as an article candidate (what worker/newsletter.py returns)."""

    message_id: str | None
    title: str
    text: str
    author: str | None = None
    author_address: str | None = None
    published: str | None = None  # ISO 8601 UTC
    list_id: str | None = None
    links: list[str] = field(default_factory=list)  # article links in the body (boilerplate ones excluded)
    warnings: list[str] = field(default_factory=list)


UPDATE_MODES = ("separate", "inline", "off")


@dataclass(frozen=True)
class UpdatePolicy:
    """Whether and how published articles are re-checked for changes (FEEDSTREAM_UPDATES and friends).

    ``mode``: ``separate`` publishes update events on ``<stream>:updates``, ``inline`` on the stream
    itself, ``off`` re-checks nothing. Only articles younger than ``window`` seconds are re-checked,
    each at most once per ``min_interval`` seconds.
    """

    mode: str = "separate"
    window: int = 7 * 86400
    min_interval: int = 3600

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class PublishResult:
    """What the atomic publish did.

    ``published`` (``duplicate_of`` set when it went out marked as a near-copy),
    ``already`` (a retry), ``duplicate`` (exact: not published) or
    ``near_dropped`` (a near-copy under mode ``drop``: not published).
    """

    outcome: str
    article_id: str
    stream_id: str | None = None  # set when published
    duplicate_of: str | None = None  # the earlier article's id (exact) or the cluster's first article (near)
    cluster: str | None = None  # near-duplicate cluster id, when published or near_dropped


@dataclass(frozen=True)
class PollIntent:
    """Everything one poll of a source (a feed or a mailbox), or one received mail, changes.

    Decided by a pure function (worker/pipeline/decide.py) before anything is written,
    then applied by ``Store.apply_poll`` in one atomic step.
    """

    source: str
    # set on the source's status hash (``{p}:feed:{name}``), then ``clear`` deleted from it
    fields: Mapping[str, str | int | float] = field(default_factory=dict)
    clear: tuple[str, ...] = ()
    # True: a failed poll (``consecutive_errors`` + 1); False: a good one (errors back to 0, ``last_error``
    # cleared); either counts one more in ``polls``. None: not a poll's verdict (a deferral, a retired
    # feed): neither is touched.
    error: bool | None = None
    next_poll: float | None = None  # the source's new slot in the due set (inf: retired); None: unchanged
    counters: Mapping[str, int] = field(default_factory=dict)  # added to the global counters
    source_counts: Mapping[str, int] = field(default_factory=dict)  # added to fields of the status hash
    filtered: Mapping[str, int] = field(default_factory=dict)  # entries dropped by the source's rules, per rule
    http: tuple[str, int | str] | None = None  # one response seen: (kind, status)
    # hashed GUIDs the source lists now, remembered as seen at ``seen_at`` (None: the seen set is untouched)
    seen: tuple[str, ...] = ()
    seen_at: float | None = None
    # (hashed GUID, mark) of every entry the feed lists now, replacing the feed's marks (dedupe/changes.py);
    # None: the marks are untouched (updates off, or not a listing)
    marks: tuple[tuple[str, bytes], ...] | None = None
    report: Mapping[str, Any] = field(default_factory=dict)  # what the job returns (RQ result, burst summary)
    log: tuple[int, str] | None = None  # (logging level, message) worth an operator's attention
