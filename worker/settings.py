"""Settings from the environment and the feeds file, read once at the edge.

Processes call ``Settings.from_env()`` and ``load_sources()`` at start and pass
the results down; nothing deeper reads the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ConfigError, SourceInvalid
from worker.fetch import HttpSettings
from worker.models import UPDATE_MODES, Feed, NewsletterSource, UpdatePolicy
from worker.sources.plan import identity
from worker.sources.spec import (
    FEED_KIND,
    FEED_KINDS,
    MIN_INTERVAL,
    NEWSLETTER_KINDS,
    check_url,
    defaults_from_dict,
    source_from_dict,
)

DEFAULT_FEEDS_PATH = "config/feeds.toml"
DEFAULT_STREAM = "articles"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value (use 1 or 0)")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a feedstream process needs to know, from its environment."""

    redis_url: str | None  # None: start the embedded Redis under var_dir
    # Publishing state (claims, near-duplicate index, boilerplate, the stream and its feeds-out indexes) on a
    # Redis of its own; None: the same as redis_url (docs/capacity.md)
    publish_redis_url: str | None = None
    feeds_path: Path = Path(DEFAULT_FEEDS_PATH)
    stream: str = DEFAULT_STREAM
    http: HttpSettings = field(default_factory=HttpSettings)
    var_dir: Path = Path("var")
    prefix: str = "feedstream"  # namespace of every Redis key we own
    workers: int = 2
    # RQ workers per worker process, as threads (worker/ops/workgroup.py): their page downloads wait
    # side by side while one of them extracts.
    worker_threads: int = 8
    dashboard_port: int = 9181
    metrics_port: int = 9184  # feedstream metrics: /metrics and /healthz
    # Approximate MAXLEN for the stream; 0 keeps everything.
    stream_maxlen: int = 100_000
    # How long URL, GUID and text claims are remembered for deduplication.
    dedupe_days: int = 90
    # Politeness and schedule (issue 3): the adaptive interval's global bounds, the
    # cap on error backoff, requests in flight per host across all workers, robots.txt.
    min_interval: int = 300
    max_interval: int = 86400
    max_backoff: int = 6 * 3600
    host_concurrency: int = 2
    robots: bool = True
    robots_ttl: int = 86400
    # Polls in a row that must see the same permanent redirect before the feed moves.
    redirect_adopt_after: int = 3
    # Near-duplicates across publishers: "mark" publishes a copy with duplicate_of/cluster,
    # "drop" does not publish it (but counts it), "off" skips the check.
    near_duplicates: str = "mark"
    # How long an article stays in the near-duplicate index (its copies are caught this long).
    near_window_days: float = 30.0
    # Changed articles (issue 17): where update events go, how long and how often articles are re-checked.
    updates: UpdatePolicy = field(default_factory=UpdatePolicy)
    # `feedstream smtp`: where the newsletter SMTP endpoint listens
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    # `feedstream serve`: where the Atom / JSON Feed server listens
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    # The admin API (under /api/ on `feedstream serve`): writes need this bearer token; None: read-only.
    admin_token: str | None = field(default=None, repr=False)
    # Where a newsletter source added without an address gets a fresh one (Kill the Newsletter style).
    mail_domain: str | None = None
    # WebSub (docs/push.md): the address hubs reach `feedstream serve` at; None: no subscriptions made.
    public_url: str | None = None
    websub_lease: int = 10 * 86400  # the lease asked of hubs (they decide)
    hub_retry_base: float = 30.0  # our hub: seconds before a failed delivery's first retry (then 2x, 4x, ...)
    # Seconds an entry stays pending (queued, not yet published or decided) before the outbox sweeper
    # looks at its RQ job, and between its later looks; it re-queues the entry only when the job is gone.
    outbox_sweep_after: float = 300.0

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Store`` that come from these settings."""
        return {"stream": self.stream, "prefix": self.prefix, "claim_ttl": self.dedupe_days * 86400,
                "stream_maxlen": self.stream_maxlen, "near_window": int(self.near_window_days * 86400),
                "near_mode": self.near_duplicates, "updates": self.updates}

    @property
    def allow_private(self) -> bool:
        return self.http.allow_private

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default ``os.environ``); raises ConfigError."""
        env = os.environ if env is None else env
        stream = env.get("FEEDSTREAM_STREAM", DEFAULT_STREAM).strip() or DEFAULT_STREAM
        http = HttpSettings(
            deadline=_number(env, "FEEDSTREAM_FETCH_DEADLINE", 20.0, 1.0),
            max_bytes=int(_number(env, "FEEDSTREAM_MAX_BYTES", 10 * 1024 * 1024, 1024)),
            allow_private=_flag(env, "FEEDSTREAM_ALLOW_PRIVATE"),
        )
        return cls(
            redis_url=(env.get("REDIS_URL") or "").strip() or None,
            publish_redis_url=(env.get("FEEDSTREAM_PUBLISH_REDIS_URL") or "").strip() or None,
            feeds_path=Path(env.get("FEEDSTREAM_FEEDS") or DEFAULT_FEEDS_PATH),
            stream=stream,
            http=http,
            var_dir=Path(env.get("FEEDSTREAM_VAR") or "var"),
            workers=int(_number(env, "FEEDSTREAM_WORKERS", max(os.cpu_count() or 1, 1), 1)),
            worker_threads=int(_number(env, "FEEDSTREAM_WORKER_THREADS", 8, 1)),
            dashboard_port=int(_number(env, "FEEDSTREAM_DASHBOARD_PORT", 9181, 0)),
            metrics_port=int(_number(env, "FEEDSTREAM_METRICS_PORT", 9184, 0)),
            stream_maxlen=int(_number(env, "FEEDSTREAM_STREAM_MAXLEN", 100_000, 0)),
            **_politeness(env),
            near_duplicates=_choice(env, "FEEDSTREAM_NEAR_DUPLICATES", ("mark", "drop", "off"), "mark"),
            near_window_days=_number(env, "FEEDSTREAM_NEAR_WINDOW_DAYS", 30.0, 0.001),
            updates=UpdatePolicy(
                mode=_choice(env, "FEEDSTREAM_UPDATES", UPDATE_MODES, "separate"),
                window=int(_number(env, "FEEDSTREAM_UPDATE_WINDOW", 7 * 86400, 60)),
                min_interval=int(_number(env, "FEEDSTREAM_UPDATE_MIN_INTERVAL", 3600, 0)),
            ),
            smtp_host=(env.get("FEEDSTREAM_SMTP_HOST") or "127.0.0.1").strip(),
            smtp_port=int(_number(env, "FEEDSTREAM_SMTP_PORT", 2525, 1)),
            serve_host=(env.get("FEEDSTREAM_SERVE_HOST") or "127.0.0.1").strip(),
            # a Procfile platform hands the web process its port in PORT
            serve_port=int(_number(env, "FEEDSTREAM_SERVE_PORT", _number(env, "PORT", 8080, 1), 1)),
            admin_token=(env.get("FEEDSTREAM_ADMIN_TOKEN") or "").strip() or None,
            mail_domain=_domain(env),
            public_url=_public_url(env),
            websub_lease=int(_number(env, "FEEDSTREAM_WEBSUB_LEASE", 10 * 86400, 60)),
            hub_retry_base=_number(env, "FEEDSTREAM_HUB_RETRY_BASE", 30.0, 0.1),
            outbox_sweep_after=_number(env, "FEEDSTREAM_OUTBOX_SWEEP_AFTER", 300.0, 1.0),
        )


def _public_url(env: Mapping[str, str]) -> str | None:
    raw = (env.get("FEEDSTREAM_PUBLIC_URL") or "").strip()
    if not raw:
        return None
    try:
        check_url(raw)
    except ValueError as exc:
        raise ConfigError(f"FEEDSTREAM_PUBLIC_URL {exc}") from None
    return raw.rstrip("/")


def _domain(env: Mapping[str, str]) -> str | None:
    raw = (env.get("FEEDSTREAM_MAIL_DOMAIN") or "").strip().lower()
    if raw and not _DOMAIN_RE.fullmatch(raw):
        raise ConfigError(f"FEEDSTREAM_MAIL_DOMAIN={raw!r} is not a domain name")
    return raw or None


def _politeness(env: Mapping[str, str]) -> dict[str, Any]:
    min_interval = int(_number(env, "FEEDSTREAM_MIN_INTERVAL", 300, MIN_INTERVAL))
    max_interval = int(_number(env, "FEEDSTREAM_MAX_INTERVAL", 86400, MIN_INTERVAL))
    if max_interval < min_interval:
        raise ConfigError(f"FEEDSTREAM_MAX_INTERVAL ({max_interval}) is below FEEDSTREAM_MIN_INTERVAL ({min_interval})")
    return {
        "min_interval": min_interval,
        "max_interval": max_interval,
        "max_backoff": int(_number(env, "FEEDSTREAM_MAX_BACKOFF", 6 * 3600, MIN_INTERVAL)),
        "host_concurrency": int(_number(env, "FEEDSTREAM_HOST_CONCURRENCY", 2, 1)),
        "robots": _flag(env, "FEEDSTREAM_ROBOTS", True),
        "robots_ttl": int(_number(env, "FEEDSTREAM_ROBOTS_TTL", 86400, 60)),
        "redirect_adopt_after": int(_number(env, "FEEDSTREAM_REDIRECT_ADOPT_AFTER", 3, 1)),
    }


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read feeds file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Sources:
    """Everything the feeds file names, read in one go: feeds, newsletter sources and their secrets."""

    feeds: list[Feed]
    newsletters: list[NewsletterSource]
    # IMAP passwords by source name, read from the environment variables the sources name
    mail_passwords: dict[str, str] = field(default_factory=dict)
    # the [defaults] table: rules every source runs before its own (issue 16; docs/rules.md)
    defaults: dict[str, Any] = field(default_factory=dict)


def load_sources(path: Path, env: Mapping[str, str] | None = None) -> Sources:
    """Read the feeds file once: its ``[[feeds]]`` and ``[[newsletters]]`` tables; raises ConfigError.

    A file with newsletters only may have no feeds. Passwords come from ``env``
    (default: the process environment) under the names the sources give.
    """
    env = os.environ if env is None else env
    doc = _read_doc(path)
    newsletters = _newsletters_from_doc(doc, path)
    feeds = _feeds_from_doc(doc, path, newsletters)
    passwords = {source.name: env.get(source.password_env, "") for source in newsletters if source.password_env}
    return Sources(feeds, newsletters, passwords, _defaults_from_doc(doc, path))


def _defaults_from_doc(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    if "defaults" not in doc:
        return {}
    try:
        return defaults_from_dict(doc["defaults"])
    except SourceInvalid as exc:
        key, message = next(iter(exc.fields.items()))
        raise ConfigError(f"{path}: [defaults]: {key} {message}") from None


def _feeds_from_doc(doc: dict[str, Any], path: Path, newsletters: list[NewsletterSource]) -> list[Feed]:
    tables = doc.get("feeds")
    if tables is None and newsletters:
        return []
    if tables is None or (not tables and not isinstance(tables, list)):
        # a typo ([[feed]]) must not start an empty service; `feeds = []` says "none here" on purpose
        raise ConfigError(f"{path} has no [[feeds]] tables (write `feeds = []` when every source is added "
                          "through the API or the CLI)")
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: feeds must be [[feeds]] tables")
    feeds: list[Feed] = []
    seen: set[str] = {source.name for source in newsletters}
    urls: dict[tuple[str, str], str] = {}
    for position, table in enumerate(tables, start=1):
        feed = _feed_from_table(table, f"{path}: feed #{position}")
        if feed.name in seen:
            raise ConfigError(f"{path}: feed name {feed.name!r} is used twice (feeds and newsletters share names)")
        if identity(feed) in urls:
            raise ConfigError(f"{path}: feeds {urls[identity(feed)]!r} and {feed.name!r} have the same url")
        seen.add(feed.name)
        urls[identity(feed)] = feed.name
        feeds.append(feed)
    return feeds


def _feed_from_table(table: Any, where: str) -> Feed:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    feed = _from_table(table, where, FEED_KINDS, FEED_KIND)
    assert isinstance(feed, Feed)
    return feed


def _from_table(table: dict[str, Any], where: str, kinds: tuple[str, ...],
                default_kind: str) -> Feed | NewsletterSource:
    """The source a table describes, by the rules every source follows (worker/sources/spec.py); ConfigError
    names the table and the first rule broken."""
    if default_kind == FEED_KIND and table.get("kind", FEED_KIND) not in FEED_KINDS:
        raise ConfigError(f"{where} has unknown keys: kind")
    try:
        return source_from_dict(table, kinds=kinds, default_kind=default_kind)
    except SourceInvalid as exc:
        errors = exc.fields
    name = table.get("name")
    if "name" in errors:
        raise ConfigError(f"{where}: name {errors['name']}") from None
    where = f"{where} ({name})"
    if "kind" in errors:
        raise ConfigError(f"{where}: kind {errors['kind']}") from None
    unknown = sorted(key for key, message in errors.items() if message.startswith("unknown key"))
    if unknown:
        kind = "" if default_kind == FEED_KIND else f" for kind {table.get('kind')!r}"
        raise ConfigError(f"{where} has unknown keys{kind}: {', '.join(unknown)}") from None
    key, message = next(iter(errors.items()))
    raise ConfigError(f"{where}: {key} {message}") from None


# -- newsletters ---------------------------------------------------------------------



def _newsletters_from_doc(doc: dict[str, Any], path: Path) -> list[NewsletterSource]:
    tables = doc.get("newsletters", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: newsletters must be [[newsletters]] tables")
    sources: list[NewsletterSource] = []
    names: set[str] = set()
    addresses: set[str] = set()
    for position, table in enumerate(tables, start=1):
        source = _newsletter_from_table(table, f"{path}: newsletter #{position}")
        if source.name in names:
            raise ConfigError(f"{path}: newsletter name {source.name!r} is used twice")
        if source.address and source.address in addresses:
            raise ConfigError(f"{path}: address {source.address!r} is used by two newsletters")
        names.add(source.name)
        if source.address:
            addresses.add(source.address)
        sources.append(source)
    return sources


def _newsletter_from_table(table: Any, where: str) -> NewsletterSource:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    source = _from_table(table, where, NEWSLETTER_KINDS, "")
    assert isinstance(source, NewsletterSource)
    return source
