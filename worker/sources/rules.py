"""Per-source rules (issue 16): keep and block filters, an age limit, request settings. Pure.

A rule is ``field:regex`` over one of :data:`RULE_FIELDS`. Regular expressions are RE2's
(google-re2): matching takes time linear in the text, whatever the pattern, so a rule such as
``(a|aa)+$`` cannot hold a worker (Python's ``re`` takes seconds on 26 characters; see
``bench/rules.py`` and docs/rules.md for the measurements and why not ``regex`` with a timeout).
It is the syntax of Go's ``regexp``, so Miniflux's rules work as they are; lookarounds and
backreferences are refused when the source is saved, with the rule quoted.

Judging an entry (:func:`judge`) happens twice: before its page is fetched, on what the feed gives
(title, url, author, the feed's categories, its date), and after extraction on the article (the
text, the page's categories and tags, the page's title, author and date). A block rule that matches
drops the entry; with keep rules, an entry is kept only if one matches; an entry older than
``max_age`` is dropped. Before the fetch, a keep decision that needs a field the feed does not give
(``text``, or ``tags`` of a feed without categories) waits for the article.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2

from worker.timefmt import seconds_since

RULE_FIELDS = ("title", "url", "author", "text", "tags")
MAX_RULES = 100
MAX_RULE_LENGTH = 1000
MAX_HEADERS = 30
MAX_HEADER_VALUE = 4096
MASK = "********"  # what the API, the CLI and status show for a secret
# Header names we set ourselves or that would break the request's framing.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding",
                              "te", "upgrade", "if-none-match", "if-modified-since", "cookie", "user-agent"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_AGE = re.compile(r"^\s*([0-9]{1,6})\s*([smhdw])\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 8 << 20  # a pattern whose automaton needs more is refused when saved
_RE2_OPTIONS.log_errors = False  # the error is ours to report (RE2 would print it to stderr)


class RuleError(ValueError):
    """A rule, an age or a request setting that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Rule:
    """One ``field:regex`` rule, compiled."""

    action: str  # "block" or "keep"
    field: str
    pattern: str
    compiled: Any = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        """How the rule is named on the source's status and in /metrics: ``block title:(?i)sponsored``."""
        return f"{self.action} {self.field}:{self.pattern}"

    def matches(self, value: str | Sequence[str] | None) -> bool:
        if value is None:
            return False
        values = [value] if isinstance(value, str) else value
        return any(self.compiled.search(v) is not None for v in values if v)


def quoted(text: str) -> str:
    """A rule as the user wrote it, in quotes (repr would double every backslash of a regex)."""
    return f"'{text}'" if text.isprintable() else repr(text)


def parse_rule(text: Any, action: str) -> Rule:
    """``field:regex`` -> Rule; raises RuleError quoting the rule."""
    if not isinstance(text, str):
        raise RuleError(f"{text!r} is not a string of the form field:regex")
    name, sep, pattern = text.partition(":")
    name = name.strip().lower()
    if not sep or name not in RULE_FIELDS:
        raise RuleError(f"{quoted(text)}: must be field:regex with field one of {', '.join(RULE_FIELDS)}")
    if not pattern or len(text) > MAX_RULE_LENGTH:
        raise RuleError(f"{quoted(text)}: the regex must be 1-{MAX_RULE_LENGTH} characters")
    return Rule(action, name, pattern, _compile(text, pattern))


@lru_cache(maxsize=8192)  # every process reads every source's rules whenever the sources change
def _compile(text: str, pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        hint = " (RE2 syntax: no lookarounds or backreferences)" if "(?" in pattern or "\\" in pattern else ""
        raise RuleError(f"{quoted(text)}: invalid regex: {reason}{hint}") from None


def check_rules(value: Any, action: str) -> tuple[str, ...]:
    """A list of rules as written, each checked; raises RuleError naming the first bad one."""
    if not isinstance(value, list | tuple):
        raise RuleError("must be a list of field:regex rules")
    if len(value) > MAX_RULES:
        raise RuleError(f"must be at most {MAX_RULES} rules")
    for text in value:
        parse_rule(text, action)
    return tuple(dict.fromkeys(value))


def parse_age(text: Any) -> int:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"3600s"`` -> seconds; raises RuleError."""
    match = _AGE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise RuleError(f"must be a positive number and a unit s, m, h, d or w, like \"30d\" (got {text!r})")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


@dataclass(frozen=True)
class RuleSet:
    """The rules one source runs: its own after the feeds file's ``[defaults]``."""

    block: tuple[Rule, ...] = ()
    keep: tuple[Rule, ...] = ()
    max_age: int | None = None  # seconds
    max_age_label: str = ""

    def __bool__(self) -> bool:
        return bool(self.block or self.keep or self.max_age)


@lru_cache(maxsize=4096)
def rule_set(block: tuple[str, ...] = (), keep: tuple[str, ...] = (), max_age: str | None = None) -> RuleSet:
    """The compiled rules (cached: sources keep their rules from poll to poll)."""
    return RuleSet(tuple(parse_rule(r, "block") for r in block), tuple(parse_rule(r, "keep") for r in keep),
                   parse_age(max_age) if max_age else None, f"max_age {max_age}" if max_age else "")


def rules_of(source: Any, defaults: Mapping[str, Any] | None = None) -> RuleSet:
    """A source's rules with the ``[defaults]`` ones first (its own max_age over theirs)."""
    defaults = defaults or {}
    block = (*defaults.get("block", ()), *getattr(source, "block", ()))
    keep = (*defaults.get("keep", ()), *getattr(source, "keep", ()))
    return rule_set(tuple(dict.fromkeys(block)), tuple(dict.fromkeys(keep)),
                    getattr(source, "max_age", None) or defaults.get("max_age"))


@dataclass(frozen=True)
class Verdict:
    """``keep``: True (publish), False (dropped by ``rule``), None (undecided until the article is read)."""

    keep: bool | None
    rule: str | None = None


KEPT = Verdict(True)


def judge(rules: RuleSet, fields: Mapping[str, str | Sequence[str] | None], *, age: float | None,
          final: bool) -> Verdict:
    """Whether an entry passes ``rules``.

    ``fields``: the values known so far by :data:`RULE_FIELDS` name (``tags`` a list; a field not
    known yet is left out or None); ``age``: seconds since its date (None: no date); ``final``:
    the article has been read, nothing more will be known (before the fetch: False).
    """
    if rules.max_age is not None and age is not None and age > rules.max_age:
        return Verdict(False, rules.max_age_label)
    for rule in rules.block:
        if rule.matches(fields.get(rule.field)):
            return Verdict(False, rule.label)
    if not rules.keep:
        return KEPT
    if any(rule.matches(fields.get(rule.field)) for rule in rules.keep):
        return KEPT
    if final or all(fields.get(rule.field) for rule in rules.keep):
        return Verdict(False, "keep: no keep rule matched")
    return Verdict(None)


def entry_fields(title: str | None, url: str | None, author: str | None, tags: Sequence[str],
                 text: str | None = None) -> dict[str, str | Sequence[str] | None]:
    """The rule fields of an entry or an article."""
    return {"title": title or None, "url": url or None, "author": author or None, "tags": list(tags) or None,
            "text": text or None}


# -- request settings -------------------------------------------------------------------------

def check_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """``{"X-Api-Key": "..."}`` -> sorted (name, value) pairs; raises RuleError (a newline is refused)."""
    if not isinstance(value, Mapping):
        raise RuleError("must be a table (an object) of header names and values")
    if len(value) > MAX_HEADERS:
        raise RuleError(f"must be at most {MAX_HEADERS} headers")
    pairs = []
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise RuleError(f"{name!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise RuleError(f"{name!r} cannot be set here (use cookie / user_agent, or leave it to feedstream)")
        pairs.append((name, check_header_value(text, name)))
    lower = [name.lower() for name, _ in pairs]
    if len(set(lower)) != len(lower):
        raise RuleError("names a header twice")
    return tuple(sorted(pairs))


def check_header_value(value: Any, what: str) -> str:
    """A header's value: a string without CR, LF or NUL, at most 4 KiB (else a request could be split)."""
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"{what}: must be a non-empty string")
    if any(c in value for c in "\r\n\0"):
        raise RuleError(f"{what}: a newline (or NUL) in a header value is refused")
    if len(value) > MAX_HEADER_VALUE:
        raise RuleError(f"{what}: must be at most {MAX_HEADER_VALUE} characters")
    return value


def request_headers(source: Any, env: Mapping[str, str]) -> dict[str, str]:
    """The extra headers for a source's requests (feed and pages), its password read from ``env``.

    Raises RuleError when ``basic_auth_password_env`` names a variable that is not set.
    """
    headers = dict(getattr(source, "headers", ()) or ())
    if getattr(source, "cookie", None):
        headers["Cookie"] = source.cookie
    if getattr(source, "user_agent", None):
        headers["User-Agent"] = source.user_agent
    user = getattr(source, "basic_auth_user", None)
    if user:
        variable = source.basic_auth_password_env
        password = env.get(variable or "")
        if password is None:
            raise RuleError(f"basic_auth_password_env: the environment variable {variable} is not set "
                            "(in the worker processes)")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return headers


SECRET_FIELDS = ("cookie",)


def masked(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A source's fields as shown (API, CLI, status): header values and the cookie masked."""
    out = dict(doc)
    if out.get("headers"):
        out["headers"] = dict.fromkeys(out["headers"], MASK)
    for key in SECRET_FIELDS:
        if out.get(key):
            out[key] = MASK
    return out


@dataclass
class FilterTally:
    """Dropped entries per source and rule (what the status and /metrics count)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, source: str, rule: str) -> None:
        per_source = self.counts.setdefault(source, {})
        per_source[rule] = per_source.get(rule, 0) + 1


def filter_entries(rules: RuleSet, entries: Sequence[Any], now: float) -> tuple[list[Any], dict[str, int]]:
    """Before the pages are fetched: the entries (:class:`~worker.models.Entry`) the rules let through
    (or cannot judge yet), and how many each rule dropped."""
    if not rules:
        return list(entries), {}
    kept: list[Any] = []
    dropped: dict[str, int] = {}
    for entry in entries:
        verdict = judge(rules, entry_fields(entry.title, entry.url, entry.author, entry.tags),
                        age=seconds_since(entry.published, now), final=False)
        if verdict.keep is False:
            dropped[verdict.rule or "?"] = dropped.get(verdict.rule or "?", 0) + 1
        else:
            kept.append(entry)
    return kept, dropped


def judge_article(rules: RuleSet, article: Any, now: float) -> Verdict:
    """After extraction: whether an :class:`~worker.models.Article` passes every rule."""
    if not rules:
        return KEPT
    return judge(rules, entry_fields(article.title, article.url, article.author,
                                     [*article.tags, *article.categories], article.text),
                 age=seconds_since(article.published, now), final=True)


def filter_counts(dropped: Mapping[str, int]) -> dict[str, int]:
    """The source status's counts for ``dropped`` (rule -> entries): ``filtered`` and ``filtered:<rule>``."""
    counts = {f"filtered:{rule}": n for rule, n in dropped.items() if n}
    if counts:
        counts["filtered"] = sum(dropped.values())
    return counts


# What the feeds file, the API and the CLI call the rules and request settings of a source.
RULE_KEYS = ("block", "keep", "max_age", "selector", "strip", "headers", "cookie", "user_agent", "basic_auth_user",
             "basic_auth_password_env")


def rules_status(source_fields: Mapping[str, Any], status: Mapping[str, str]) -> dict[str, Any]:
    """A source's rules (secrets masked) and what they did, for ``feedstream status --json`` and the API:
    ``rules``, ``filtered`` (per rule), ``filtered_total``, selector misses."""
    shown = masked({k: v for k, v in source_fields.items() if k in RULE_KEYS})
    out: dict[str, Any] = {"rules": shown, "filtered_total": int(status.get("filtered", 0) or 0),
                           "filtered": {k.removeprefix("filtered:"): int(v) for k, v in status.items()
                                        if k.startswith("filtered:")}}
    if status.get("selector_misses"):
        out["selector_misses"] = int(status["selector_misses"])
        out["last_selector_miss"] = status.get("last_selector_miss")
        out["last_selector_hit"] = status.get("last_selector_hit")
    return out
