"""What a source is allowed to be: one set of rules for the feeds file, the admin API, the CLI and OPML.

:func:`source_from_dict` turns a plain mapping (a ``[[feeds]]``/``[[newsletters]]`` table, a JSON
body, an OPML outline's fields) into a :class:`~worker.models.Feed` or
:class:`~worker.models.NewsletterSource`, or raises :class:`~worker.errors.SourceInvalid` with a
message per field. :func:`source_to_dict` is its inverse (defaults left out). Pure: no I/O.

Each kind's fields are a table of checkers, so a new setting (per-source rules, request
settings, a ``sitemap`` kind) is one entry here and is then accepted everywhere at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import fields as dataclass_fields
from typing import Any
from urllib.parse import urlsplit

from worker.errors import SourceInvalid
from worker.extract.selector import SelectorInvalid, check_selector
from worker.models import Feed, NewsletterSource, Sitemap
from worker.sources.rules import RuleError, check_header_value, check_headers, check_rules, parse_age

Source = Feed | NewsletterSource

FEED_KIND = "feed"
SITEMAP_KIND = "sitemap"  # a (news) sitemap read like a feed (worker/feeds/sitemap.py)
FEED_KINDS = (FEED_KIND, SITEMAP_KIND)  # what a [[feeds]] table may be
NEWSLETTER_KINDS = ("smtp", "imap", "maildir")
KINDS = (*FEED_KINDS, *NEWSLETTER_KINDS)
# Kinds the scheduler polls (an smtp source receives; it is never polled).
POLLED_KINDS = (*FEED_KINDS, "imap", "maildir")
IMAP_SECURITY = ("tls", "starttls", "plain")
MIN_INTERVAL = 60  # feeds: seconds between polls, at least
MIN_MAILBOX_INTERVAL = 10
MAX_URL_LENGTH = 2048
MAX_TAGS = 50
MAX_TAG_LENGTH = 100
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RULE = "must be 1-64 letters, digits, '.', '_' or '-'"
_ADDRESS_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Bad(ValueError):
    """One field's value breaks its rule; the message follows the field's name."""


Checker = Callable[[Any], Any]


def _whole(minimum: int, unit: str = "seconds") -> Checker:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise _Bad(f"must be whole {unit} >= {minimum}")
        return value
    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("must be true or false")
    return value


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise _Bad("must be a list of strings")
    tags = [t.strip() for t in value]
    if any(not t or len(t) > MAX_TAG_LENGTH for t in tags):
        raise _Bad(f"must be non-empty strings of at most {MAX_TAG_LENGTH} characters")
    tags = list(dict.fromkeys(tags))
    if len(tags) > MAX_TAGS:
        raise _Bad(f"must be at most {MAX_TAGS} tags")
    return tuple(tags)


def check_url(value: Any) -> str:
    """An absolute http(s) URL with a host, as given; raises ValueError with the rule it breaks."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _Bad(f"must be an http(s) URL (got {value!r})")
    if len(value) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 for c in value):
        raise _Bad("must be an http(s) URL without spaces, at most 2048 characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise _Bad(f"is not a valid URL ({exc})") from None
    if not parts.hostname:
        raise _Bad(f"must name a host (got {value!r})")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise _Bad(f"{NAME_RULE} (got {value!r})")
    return value


def _address(value: Any) -> str:
    if not isinstance(value, str) or not _ADDRESS_RE.match(value):
        raise _Bad(f"must be an email address (got {value!r})")
    return value.lower()


def _text(what: str) -> Checker:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _Bad(f"must be {what}")
        return value
    return check


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENV_RE.match(value):
        raise _Bad("must name an environment variable")
    return value


def _security(value: Any) -> str:
    if value not in IMAP_SECURITY:
        raise _Bad(f"must be one of {', '.join(IMAP_SECURITY)}")
    return str(value)


def _port(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise _Bad("must be 1-65535")
    return value


def _rule_checked(check: Callable[[Any], Any]) -> Checker:
    """A checker from one of the rules' or selectors' own checks (their errors say what is wrong)."""
    def checker(value: Any) -> Any:
        try:
            return check(value)
        except (RuleError, SelectorInvalid) as exc:
            raise _Bad(str(exc)) from None
    return checker


def _age(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        value = f"{value}s"  # whole seconds, as a number, read as the same duration
    parse_age(value)
    return value.strip()


def _selectors(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > 50:
        raise RuleError("must be a list of at most 50 CSS selectors")
    return tuple(dict.fromkeys(check_selector(css, body=False) for css in value))


def _one_line(what: str) -> Callable[[Any], str]:
    return lambda value: check_header_value(value, what)


def _auth_user(value: Any) -> str:
    value = check_header_value(value, "the user")
    if ":" in value:
        raise RuleError("a basic-auth user name cannot hold ':'")
    return value


# The rules every source kind may have (issue 16; docs/rules.md).
FILTER_FIELDS: dict[str, Checker] = {
    "block": _rule_checked(lambda v: check_rules(v, "block")),
    "keep": _rule_checked(lambda v: check_rules(v, "keep")),
    "max_age": _rule_checked(_age),
}
# A feed's page rules and request settings.
REQUEST_FIELDS: dict[str, Checker] = {
    "selector": _rule_checked(lambda v: check_selector(v, body=True)), "strip": _rule_checked(_selectors),
    "headers": _rule_checked(check_headers), "cookie": _rule_checked(_one_line("cookie")),
    "user_agent": _rule_checked(_one_line("user_agent")), "basic_auth_user": _rule_checked(_auth_user),
    "basic_auth_password_env": _env_name,
}
# What the feeds file's [defaults] table may hold: rules that make sense for every source.
DEFAULT_FIELDS: dict[str, Checker] = {**FILTER_FIELDS, "strip": REQUEST_FIELDS["strip"],
                                      "user_agent": REQUEST_FIELDS["user_agent"]}

# Per kind: field -> checker. ``name`` and ``kind`` are checked for every kind.
_COMMON_NEWSLETTER: dict[str, Checker] = {
    "tags": _tags, "max_bytes": _whole(1024, "bytes"), "interval": _whole(MIN_MAILBOX_INTERVAL),
    "follow_links": _flag, **FILTER_FIELDS,
}
_FEED_FIELDS: dict[str, Checker] = {
    "url": check_url, "interval": _whole(MIN_INTERVAL), "full_text": _flag, "tags": _tags,
    "min_interval": _whole(MIN_INTERVAL), "max_interval": _whole(MIN_INTERVAL)}
FIELDS: dict[str, dict[str, Checker]] = {
    FEED_KIND: {**_FEED_FIELDS, **FILTER_FIELDS, **REQUEST_FIELDS},
    # a sitemap's max_age is the same rule as a feed's, with a default (models.Sitemap): a plain sitemap
    # lists a whole site, so its age limit is what makes it a source of news
    SITEMAP_KIND: {**_FEED_FIELDS, **FILTER_FIELDS, **REQUEST_FIELDS},
    "smtp": {**_COMMON_NEWSLETTER, "address": _address},
    "imap": {**_COMMON_NEWSLETTER, "host": _text("a host name"), "port": _port, "user": _text("a user name"),
             "password_env": _env_name, "folder": _text("a mailbox name"), "security": _security},
    "maildir": {**_COMMON_NEWSLETTER, "path": _text("the Maildir's directory")},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    FEED_KIND: ("url",), SITEMAP_KIND: ("url",), "smtp": ("address",),
    "imap": ("host", "user", "password_env"), "maildir": ("path",),
}
_REQUIRED_RULES = {"url": "must be an http(s) URL (got None)", "address": "must be an email address (got None)",
                   "path": "must be the Maildir's directory"}


def kind_of(source: Source) -> str:
    """``feed``, ``sitemap``, or the newsletter's kind (``smtp``, ``imap``, ``maildir``)."""
    if isinstance(source, Sitemap):
        return SITEMAP_KIND
    return FEED_KIND if isinstance(source, Feed) else source.kind


def is_polled(source: Source) -> bool:
    """Whether the scheduler polls the source (feeds and mailboxes; an smtp source only receives)."""
    return kind_of(source) in POLLED_KINDS


def source_from_dict(data: Any, *, kinds: tuple[str, ...] = KINDS, default_kind: str = FEED_KIND,
                     extra: tuple[str, ...] = ()) -> Source:
    """The source ``data`` describes; raises SourceInvalid with a message per field.

    ``kind`` defaults to ``default_kind``; only ``kinds`` are accepted. Keys in ``extra`` are
    ignored (a caller's own options beside the source's fields); any other unknown key is an error.
    """
    if not isinstance(data, Mapping):
        raise SourceInvalid("a source must be an object of fields", {"": "must be an object"})
    errors: dict[str, str] = {}
    kind = data.get("kind", default_kind)
    if kind not in kinds:
        errors["kind"] = f"must be one of {', '.join(kinds)} (got {kind!r})"
    try:
        name = _name(data.get("name"))
    except _Bad as exc:
        errors["name"] = str(exc)
        name = None
    if "kind" in errors:
        raise SourceInvalid(_summary(errors), errors)
    checkers = FIELDS[kind]
    for key in data:
        if key not in checkers and key not in ("name", "kind", *extra):
            errors[key] = f"unknown key for kind {kind!r}"
    values: dict[str, Any] = {}
    for key, checker in checkers.items():
        if key not in data or data[key] is None:
            if key in REQUIRED[kind]:
                errors[key] = _REQUIRED_RULES.get(key, f"is required for kind {kind!r}")
            continue
        try:
            values[key] = checker(data[key])
        except _Bad as exc:
            errors[key] = str(exc)
    if kind in FEED_KINDS and "max_interval" in values and values["max_interval"] < values.get("min_interval", 0):
        errors["max_interval"] = "is below min_interval"
    if kind in FEED_KINDS:
        errors.update(_request_conflicts(values))
    if errors:
        raise SourceInvalid(_summary(errors), errors)
    assert name is not None
    if kind == FEED_KIND:
        return Feed(name=name, **values)
    if kind == SITEMAP_KIND:
        return Sitemap(name=name, **values)
    if kind == "imap" and "port" not in values:
        values["port"] = 993 if values.get("security", "tls") == "tls" else 143
    return NewsletterSource(name=name, kind=kind, **values)


def _request_conflicts(values: Mapping[str, Any]) -> dict[str, str]:
    errors = {}
    if bool(values.get("basic_auth_user")) != bool(values.get("basic_auth_password_env")):
        missing = "basic_auth_password_env" if values.get("basic_auth_user") else "basic_auth_user"
        errors[missing] = "is required with basic_auth_user and basic_auth_password_env: set both or neither"
    if values.get("basic_auth_user") and any(n.lower() == "authorization" for n, _ in values.get("headers", ())):
        errors["headers"] = "an Authorization header and basic_auth_user cannot both be set"
    return errors


def defaults_from_dict(data: Any) -> dict[str, Any]:
    """The feeds file's ``[defaults]`` table, checked; raises SourceInvalid with a message per key."""
    if not isinstance(data, Mapping):
        raise SourceInvalid("[defaults] must be a table", {"defaults": "must be a table"})
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key, value in data.items():
        checker = DEFAULT_FIELDS.get(key)
        if checker is None:
            errors[key] = f"unknown key for [defaults] (one of {', '.join(DEFAULT_FIELDS)})"
            continue
        try:
            checked = checker(value)
        except _Bad as exc:
            errors[key] = str(exc)
            continue
        values[key] = list(checked) if isinstance(checked, tuple) else checked
    if errors:
        raise SourceInvalid(_summary(errors), errors)
    return values


def source_to_dict(source: Source) -> dict[str, Any]:
    """The source as plain values (JSON, TOML), ``kind`` first after ``name``, defaults left out."""
    out: dict[str, Any] = {"name": source.name, "kind": kind_of(source)}
    defaults = type(source)(**_required_values(source))
    for spec in dataclass_fields(source):
        if spec.name in out:
            continue
        value = getattr(source, spec.name)
        if spec.name in FIELDS[kind_of(source)] and (value != getattr(defaults, spec.name)
                                                    or spec.name in REQUIRED[kind_of(source)]):
            if spec.name == "headers":
                out[spec.name] = dict(value)
            else:
                out[spec.name] = list(value) if isinstance(value, tuple) else value
    return out


def _required_values(source: Source) -> dict[str, Any]:
    base: dict[str, Any] = {"name": source.name}
    if isinstance(source, NewsletterSource):
        base["kind"] = source.kind
    else:
        base["url"] = source.url
    return base


def merged(source: Source, changes: Mapping[str, Any], *, extra: tuple[str, ...] = ()) -> Source:
    """``source`` with ``changes`` applied (a field set to null goes back to its default), checked again.

    The name and kind cannot change: they are the source's identity (the stream's ``feed`` field).
    """
    errors = {key: "cannot be changed (remove the source and add it again)"
              for key in ("name", "kind") if key in changes and changes[key] != source_to_dict(source)[key]}
    if errors:
        raise SourceInvalid(_summary(errors), errors)
    data = {**source_to_dict(source), **changes}
    return source_from_dict({k: v for k, v in data.items() if v is not None}, extra=extra)


def _summary(errors: Mapping[str, str]) -> str:
    return "; ".join(f"{key} {message}" if key else message for key, message in errors.items())
