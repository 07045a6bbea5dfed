"""``feedstream discover URL``: the feeds found at a site's address (nothing is added)."""

from __future__ import annotations

import argparse
import json

from worker.cli.edge import Edge
from worker.sources.manage import open_admin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="a site's (or a feed's) address")
    parser.add_argument("--json", action="store_true", help="as JSON")


def command(edge: Edge, args: argparse.Namespace) -> int:
    admin, client = open_admin(edge.store, edge.settings)
    try:
        found = admin.discover(args.url)
    finally:
        client.close()
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        for feed in found:
            print(f"{feed['url']}  ({feed['found_by']}; {feed['entries']} entries) {feed['title']}")
    return 0
