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

from worker.errors import ConfigError
from worker.fetch import HttpSettings
from worker.models import Feed, NewsletterSource

DEFAULT_FEEDS_PATH = "config/feeds.toml"
DEFAULT_STREAM = "articles"
MIN_INTERVAL = 60
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    # `feedstream smtp`: where the newsletter SMTP endpoint listens
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    # `feedstream serve`: where the Atom / JSON Feed server listens
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Store`` that come from these settings."""
        return {"stream": self.stream, "prefix": self.prefix, "claim_ttl": self.dedupe_days * 86400,
                "stream_maxlen": self.stream_maxlen, "near_window": int(self.near_window_days * 86400),
                "near_mode": self.near_duplicates}

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
            dashboard_port=int(_number(env, "FEEDSTREAM_DASHBOARD_PORT", 9181, 0)),
            metrics_port=int(_number(env, "FEEDSTREAM_METRICS_PORT", 9184, 0)),
            stream_maxlen=int(_number(env, "FEEDSTREAM_STREAM_MAXLEN", 100_000, 0)),
            **_politeness(env),
            near_duplicates=_choice(env, "FEEDSTREAM_NEAR_DUPLICATES", ("mark", "drop", "off"), "mark"),
            near_window_days=_number(env, "FEEDSTREAM_NEAR_WINDOW_DAYS", 30.0, 0.001),
            smtp_host=(env.get("FEEDSTREAM_SMTP_HOST") or "127.0.0.1").strip(),
            smtp_port=int(_number(env, "FEEDSTREAM_SMTP_PORT", 2525, 1)),
            serve_host=(env.get("FEEDSTREAM_SERVE_HOST") or "127.0.0.1").strip(),
            # a Procfile platform hands the web process its port in PORT
            serve_port=int(_number(env, "FEEDSTREAM_SERVE_PORT", _number(env, "PORT", 8080, 1), 1)),
        )


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
    return Sources(feeds, newsletters, passwords)


def _feeds_from_doc(doc: dict[str, Any], path: Path, newsletters: list[NewsletterSource]) -> list[Feed]:
    tables = doc.get("feeds")
    if newsletters and tables is None:
        return []
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path} has no [[feeds]] tables")
    feeds: list[Feed] = []
    seen: set[str] = {source.name for source in newsletters}
    for position, table in enumerate(tables, start=1):
        feed = _feed_from_table(table, f"{path}: feed #{position}")
        if feed.name in seen:
            raise ConfigError(f"{path}: feed name {feed.name!r} is used twice (feeds and newsletters share names)")
        seen.add(feed.name)
        feeds.append(feed)
    return feeds


def _feed_from_table(table: Any, where: str) -> Feed:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    known = {"name", "url", "interval", "full_text", "tags", "min_interval", "max_interval"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(unknown)}")
    name, url = table.get("name"), table.get("url")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits, '.', '_' or '-' (got {name!r})")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where} ({name}): url must be an http(s) URL (got {url!r})")
    interval = table.get("interval", 900)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < MIN_INTERVAL:
        raise ConfigError(f"{where} ({name}): interval must be whole seconds >= {MIN_INTERVAL}")
    full_text = table.get("full_text", True)
    if not isinstance(full_text, bool):
        raise ConfigError(f"{where} ({name}): full_text must be true or false")
    tags = table.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"{where} ({name}): tags must be a list of strings")
    bounds: dict[str, int] = {}
    for key in ("min_interval", "max_interval"):
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < MIN_INTERVAL:
            raise ConfigError(f"{where} ({name}): {key} must be whole seconds >= {MIN_INTERVAL}")
        bounds[key] = value
    if bounds.get("max_interval", 1 << 62) < bounds.get("min_interval", 0):
        raise ConfigError(f"{where} ({name}): max_interval is below min_interval")
    return Feed(name=name, url=url, interval=interval, full_text=full_text, tags=tuple(tags), **bounds)


# -- newsletters ---------------------------------------------------------------------

NEWSLETTER_KINDS = ("smtp", "imap", "maildir")
IMAP_SECURITY = ("tls", "starttls", "plain")
_ADDRESS_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NEWSLETTER_KEYS = {
    "smtp": {"address"},
    "imap": {"host", "port", "user", "password_env", "folder", "security"},
    "maildir": {"path"},
}
_NEWSLETTER_COMMON = {"name", "kind", "tags", "max_bytes", "interval", "follow_links"}


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
    name, kind = table.get("name"), table.get("kind")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits, '.', '_' or '-' (got {name!r})")
    where = f"{where} ({name})"
    if kind not in NEWSLETTER_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(NEWSLETTER_KINDS)} (got {kind!r})")
    unknown = sorted(set(table) - _NEWSLETTER_COMMON - _NEWSLETTER_KEYS[kind])
    if unknown:
        raise ConfigError(f"{where} has unknown keys for kind {kind!r}: {', '.join(unknown)}")
    tags = table.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"{where}: tags must be a list of strings")
    max_bytes = table.get("max_bytes", 5 * 1024 * 1024)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1024:
        raise ConfigError(f"{where}: max_bytes must be whole bytes >= 1024")
    interval = table.get("interval", 300)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 10:
        raise ConfigError(f"{where}: interval must be whole seconds >= 10")
    follow_links = table.get("follow_links", False)
    if not isinstance(follow_links, bool):
        raise ConfigError(f"{where}: follow_links must be true or false")
    options: dict[str, Any] = {}
    if kind == "smtp":
        address = table.get("address")
        if not isinstance(address, str) or not _ADDRESS_RE.match(address):
            raise ConfigError(f"{where}: address must be an email address (got {address!r})")
        options["address"] = address.lower()
    elif kind == "maildir":
        maildir = table.get("path")
        if not isinstance(maildir, str) or not maildir:
            raise ConfigError(f"{where}: path must be the Maildir's directory")
        options["path"] = maildir
    else:
        for key in ("host", "user", "password_env"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise ConfigError(f"{where}: {key} is required for kind 'imap'")
        if not _ENV_RE.match(table["password_env"]):
            raise ConfigError(f"{where}: password_env must name an environment variable")
        security = table.get("security", "tls")
        if security not in IMAP_SECURITY:
            raise ConfigError(f"{where}: security must be one of {', '.join(IMAP_SECURITY)}")
        port = table.get("port", 993 if security == "tls" else 143)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"{where}: port must be 1-65535")
        folder = table.get("folder", "INBOX")
        if not isinstance(folder, str) or not folder:
            raise ConfigError(f"{where}: folder must be a mailbox name")
        options.update(host=table["host"], port=port, user=table["user"], password_env=table["password_env"],
                       folder=folder, security=security)
    return NewsletterSource(name=name, kind=kind, tags=tuple(tags), max_bytes=max_bytes, interval=interval,
                            follow_links=follow_links, **options)
