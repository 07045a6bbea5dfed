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
    show = actions.add_parser("show", help="one source as JSON")
    show.add_argument("name")
    for action, text in (("remove", "remove sources (what they published stays on the stream)"),
                         ("pause", "stop polling sources, keeping their state"),
                         ("resume", "poll paused sources again"),
                         ("refresh", "poll sources now")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("names", nargs="+", metavar="NAME")


def command(edge: Edge, args: argparse.Namespace) -> int:
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
    for item in args.fields:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SourceError(f"--set {item!r}: write KEY=VALUE", {key or "--set": "must be KEY=VALUE"})
        try:
            body[key] = json.loads(raw)
        except ValueError:
            body[key] = raw
    created = admin.create(body, check=not args.no_check)
    if args.json:
        print(json.dumps(created, indent=2, ensure_ascii=False), file=out)
    else:
        where = created.get("url") or created.get("address") or created.get("path") or created.get("host")
        print(f"added {created['name']} ({created['kind']}): {where}", file=out)
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
    "show": _show,
    "remove": _each(SourceAdmin.delete, "removed"),
    "pause": _each(SourceAdmin.pause, "paused"),
    "resume": _each(SourceAdmin.resume, "resumed"),
    "refresh": _each(SourceAdmin.refresh, "poll due now:"),
}
