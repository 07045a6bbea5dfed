"""``feedstream opml import FILE`` and ``feedstream opml export [FILE]``: subscription lists in and out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.cli.edge import Edge, say
from worker.errors import SourceInvalid
from worker.sources.manage import open_admin
from worker.sources.opml import MAX_OPML_BYTES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    into = actions.add_parser("import", help="add the feeds of an OPML file (nothing is fetched)")
    into.add_argument("file", help="the OPML file ('-': standard input)")
    into.add_argument("--json", action="store_true", help="the report as JSON")
    out = actions.add_parser("export", help="every feed as OPML 2.0")
    out.add_argument("file", nargs="?", help="where to write it (default: standard output)")


def _read(name: str) -> bytes:
    """The file's bytes, refused past the size limit without reading it whole."""
    stream = sys.stdin.buffer if name == "-" else None
    try:
        with (open(name, "rb") if stream is None else stream) as handle:
            data = handle.read(MAX_OPML_BYTES + 1)
    except OSError as exc:
        raise SourceInvalid(f"cannot read {name}: {exc.strerror or exc}", {"file": "cannot be read"}) from None
    if len(data) > MAX_OPML_BYTES:
        raise SourceInvalid(f"{name} is over the {MAX_OPML_BYTES:,}-byte limit", {"file": "too large"})
    return data


def command(edge: Edge, args: argparse.Namespace) -> int:
    admin, client = open_admin(edge.store, edge.settings)
    try:
        if args.action == "export":
            data = admin.export_opml()
            if args.file:
                Path(args.file).write_bytes(data)
                say(f"wrote {args.file}")
            else:
                sys.stdout.buffer.write(data)
            return 0
        report = admin.import_opml(_read(args.file))
    finally:
        client.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return 0
    for item in report.added:
        print(f"added    line {item['line']}: {item['name']} ({item['url']})")
    for item in report.skipped:
        print(f"skipped  line {item['line']}: {item['title'] or item['xml_url']}: {item['reason']}")
    for item in report.refused:
        print(f"refused  line {item['line']}: {item['title'] or item['xml_url'] or '-'}: {item['reason']}")
    print(f"{len(report.added)} added, {len(report.skipped)} skipped, {len(report.refused)} refused")
    return 0
