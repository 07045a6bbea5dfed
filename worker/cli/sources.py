"""``feedstream sources``: list, add, show, remove, pause, resume and refresh sources, straight in Redis.

The same operations as the admin API (worker/sources/manage.py), so they work without the
``serve`` process. A refused change prints one line and exits 1, having changed nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from worker.cli.edge import Edge, say
from worker.cli.sourcetest import run_source_test
from worker.errors import SourceError
from worker.sources.manage import SourceAdmin, open_admin

EXIT_REFUSED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every source with its state")
    listing.add_argument("--json", action="store_true", help="as JSON")
    add = actions.add_parser("add", help="add a source: a feed's or a site's URL (its feed is found), or a newsletter")
    add.add_argument("url", nargs="?", help="a feed's address, or a site's (its feed is discovered)")
    add.add_argument("--name", help="the source's name (default: from the feed's title)")
    add.add_argument("--tag", action="append", default=[], dest="tags", help="a tag for its articles (repeatable)")
    add.add_argument("--kind", default="feed", choices=("feed", "sitemap", "smtp", "imap", "maildir"),
                     help="feed (default), sitemap (a news sitemap or index, or a site's: robots.txt names it), "
                          "or a newsletter: smtp (gets an address under FEEDSTREAM_MAIL_DOMAIN "
                          "unless --address), imap, maildir")
    add.add_argument("--address", help="smtp: the address it receives at")
    add.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="fields",
                     help="any other field (as in the feeds file), e.g. interval=1800 or host=imap.example.org; "
                          "VALUE is read as JSON when it parses (numbers, true/false)")
    add.add_argument("--no-check", action="store_true", help="take URL as a feed's address without fetching it")
    add.add_argument("--json", action="store_true", help="print the created source as JSON")
    add_rule_arguments(add)
    change = actions.add_parser("set", help="change an API-made source's fields: KEY=VALUE (VALUE as JSON when it "
                                            "parses; KEY= resets to the default) and the rule options below")
    change.add_argument("name", metavar="NAME")
    change.add_argument("fields", nargs="*", metavar="KEY=VALUE")
    change.add_argument("--json", action="store_true", help="print the changed source as JSON")
    add_rule_arguments(change)
    test = actions.add_parser("test", help="fetch a source (or one article URL of it) with its rules and print what "
                                           "would be published and what each rule dropped or stripped; publishes "
                                           "nothing")
    test.add_argument("name", metavar="NAME")
    test.add_argument("url", nargs="?", metavar="URL", help="one article page of the source")
    test.add_argument("--limit", type=int, default=10, help="entries of the feed to try (default 10)")
    test.add_argument("--json", action="store_true", help="as JSON")
    show = actions.add_parser("show", help="one source as JSON")
    show.add_argument("name")
    for action, text in (("remove", "remove sources (what they published stays on the stream)"),
                         ("pause", "stop polling sources, keeping their state"),
                         ("resume", "poll paused sources again"),
                         ("refresh", "poll sources now")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("names", nargs="+", metavar="NAME")


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """The rules and request settings of a source as options (docs/rules.md); each sets its field whole."""
    group = parser.add_argument_group("rules and request settings (docs/rules.md)")
    group.add_argument("--block", action="append", metavar="FIELD:REGEX",
                       help="drop entries whose FIELD (title, url, author, text, tags) matches (repeatable)")
    group.add_argument("--keep", action="append", metavar="FIELD:REGEX",
                       help="keep only entries one keep rule matches (repeatable)")
    group.add_argument("--max-age", metavar="AGE", help="drop entries older than AGE: 30d, 12h, 90m, 2w")
    group.add_argument("--selector", metavar="CSS", help="the CSS selector of the article's body")
    group.add_argument("--strip", action="append", metavar="CSS", help="remove these elements first (repeatable)")
    group.add_argument("--header", action="append", metavar="'NAME: VALUE'",
                       help="a request header for the feed and its pages (repeatable)")
    group.add_argument("--cookie", help="the Cookie header for the feed and its pages")
    group.add_argument("--user-agent", help="the User-Agent for the feed and its pages")
    group.add_argument("--basic-auth-user", help="HTTP basic auth user (with --basic-auth-password-env)")
    group.add_argument("--basic-auth-password-env", metavar="VAR",
                       help="the environment variable holding the basic-auth password (read by the workers)")


def rule_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The rule options given, as the source's fields."""
    fields: dict[str, Any] = {}
    for key in ("block", "keep", "max_age", "selector", "strip", "cookie", "user_agent", "basic_auth_user",
                "basic_auth_password_env"):
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = value
    if args.header is not None:
        headers: dict[str, str] = {}
        for item in args.header:
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise SourceError(f"--header {item!r}: write 'Name: value'", {"headers": "must be 'Name: value'"})
            headers[name.strip()] = value.strip()
        fields["headers"] = headers
    return fields


def _key_values(items: list[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` items: VALUE as JSON when it parses (numbers, true/false, lists), else a string;
    an empty VALUE is null (the field goes back to its default)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SourceError(f"{option} {item!r}: write KEY=VALUE", {key or option: "must be KEY=VALUE"})
        if raw == "":
            out[key] = None
            continue
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def command(edge: Edge, args: argparse.Namespace) -> int:
    if args.action == "test":  # fetches as a worker would (the source's rules and request settings)
        return run_source_test(edge, args, sys.stdout)
    admin, client = open_admin(edge.store, edge.settings)
    try:
        return ACTIONS[args.action](admin, args, sys.stdout)
    finally:
        client.close()


def _list(admin: SourceAdmin, args: argparse.Namespace, out: TextIO) -> int:
    sources = admin.list()
    if args.json:
        print(json.dumps(sources, indent=2, ensure_ascii=False), file=out)
        return 0
    print(f"{'name':<24} {'kind':<7} {'state':<7} {'by':<4} {'last poll':<20} {'errors':>6}  address", file=out)
    for s in sources:
        status = s["status"]
        where = s.get("url") or s.get("address") or s.get("path") or f"{s.get('user')}@{s.get('host')}"
        last = (status.get("last_poll") or status.get("last_mail") or "-").replace("T", " ").replace("Z", "")
        print(f"{s['name']:<24} {s['kind']:<7} {'paused' if s['paused'] else 'active':<7} {s['managed_by']:<4} "
              f"{last:<20} {status.get('consecutive_errors', '0'):>6}  {where}", file=out)
        if status.get("last_error"):
            print(f"{'':<24} last error: {status['last_error']}", file=out)
    return 0


def _add(admin: SourceAdmin, args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {"kind": args.kind}
    if args.kind in ("feed", "sitemap") and not args.url:
        raise SourceError("url: a feed needs its URL (or a site's)", {"url": "is required"})
    if args.url:
        body["url"] = args.url
    for key, value in (("name", args.name), ("address", args.address), ("tags", args.tags or None)):
        if value is not None:
            body[key] = value
    body.update({k: v for k, v in _key_values(args.fields, "--set").items() if v is not None})
    body.update(rule_fields(args))
    created = admin.create(body, check=not args.no_check)
    if args.json:
        print(json.dumps(created, indent=2, ensure_ascii=False), file=out)
    else:
        where = created.get("url") or created.get("address") or created.get("path") or created.get("host")
        print(f"added {created['name']} ({created['kind']}): {where}", file=out)
    return 0


def _set(admin: SourceAdmin, args: argparse.Namespace, out: TextIO) -> int:
    changes = {**_key_values(args.fields, "set"), **rule_fields(args)}
    if not changes:
        raise SourceError("set: name a field to change (KEY=VALUE or an option)", {"": "nothing to change"})
    changed = admin.update(args.name, changes)
    if args.json:
        print(json.dumps(changed, indent=2, ensure_ascii=False), file=out)
    else:
        print(f"changed {changed['name']}: {', '.join(sorted(changes))}", file=out)
    return 0


def _show(admin: SourceAdmin, args: argparse.Namespace, out: TextIO) -> int:
    print(json.dumps(admin.show(args.name), indent=2, ensure_ascii=False), file=out)
    return 0


def _each(operation: Callable[[SourceAdmin, str], object], done: str) -> Callable[..., int]:
    """An action on each named source: one line per name; a refusal does not stop the others."""

    def run(admin: SourceAdmin, args: argparse.Namespace, out: TextIO) -> int:
        code = 0
        for name in args.names:
            try:
                operation(admin, name)
            except SourceError as exc:
                say(f"sources {args.action} {name}: {exc.message}")
                code = EXIT_REFUSED
            else:
                print(f"{done} {name}", file=out)
        return code

    return run


ACTIONS: dict[str, Callable[[SourceAdmin, argparse.Namespace, TextIO], int]] = {
    "list": _list,
    "add": _add,
    "set": _set,
    "show": _show,
    "remove": _each(SourceAdmin.delete, "removed"),
    "pause": _each(SourceAdmin.pause, "paused"),
    "resume": _each(SourceAdmin.resume, "resumed"),
    "refresh": _each(SourceAdmin.refresh, "poll due now:"),
}
