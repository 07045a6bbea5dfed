"""The ``feedstream`` command: run | worker | scheduler | tail | status | sources | discover | opml | ....

One module per command, each with ``command(edge, args) -> exit code`` (and
``add_arguments`` when it takes any); :data:`COMMANDS` is the dispatch table.
Settings, the feeds file and Redis are opened once, by :mod:`worker.cli.edge`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import redis

from worker import __version__
from worker.cli import burst, discover, metrics, opml, run, scheduler, serve, smtp, sources, status, tail, worker
from worker.cli.edge import EXIT_CANNOT_RUN, EXIT_REFUSED, CannotRun, Edge, close_edge, open_edge, say
from worker.errors import SourceError

__all__ = ["COMMANDS", "EXIT_CANNOT_RUN", "Edge", "burst", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its module, and whether it needs the feeds file."""

    help: str
    module: ModuleType
    needs_feeds: bool = True
    # An admin command applies the feeds file when there is one, and works from Redis alone when not.
    feeds_optional: bool = False

    @property
    def run(self) -> Callable[[Edge, argparse.Namespace], int]:
        return self.module.command  # type: ignore[no-any-return]


# In --help order.
COMMANDS: dict[str, Command] = {
    "run": Command("scheduler, workers and rq-dashboard in the foreground", run),
    "worker": Command("worker processes only (Procfile: worker)", worker),
    "scheduler": Command("the scheduler only (Procfile: scheduler)", scheduler),
    "tail": Command("print articles from the stream as JSON lines", tail, needs_feeds=False),
    "metrics": Command("serve /metrics and /healthz (Procfile: metrics)", metrics, needs_feeds=False),
    "smtp": Command("the newsletter SMTP endpoint (Procfile: smtp)", smtp),
    "serve": Command("serve the stream as Atom and JSON Feed (Procfile: web)", serve),
    "status": Command("feed health", status),
    "sources": Command("list, add, set, test, remove, pause, resume or refresh sources (no restart needed)", sources,
                       feeds_optional=True),
    "discover": Command("the feeds found at a site's address", discover, feeds_optional=True),
    "opml": Command("import or export sources as OPML", opml, feeds_optional=True),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"feedstream {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, spec in COMMANDS.items():
        sub = subparsers.add_parser(name, help=spec.help)
        add_arguments = getattr(spec.module, "add_arguments", None)
        if add_arguments:
            add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``feedstream`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    spec = COMMANDS[args.command]
    check = getattr(spec.module, "check", None)
    problem = check(args) if check else None
    if problem:
        parser.error(problem)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        edge = open_edge(need_feeds=spec.needs_feeds, feeds_optional=spec.feeds_optional)
    except CannotRun as exc:
        say(str(exc))
        return EXIT_CANNOT_RUN
    try:
        return spec.run(edge, args)
    except CannotRun as exc:
        say(str(exc))
        return EXIT_CANNOT_RUN
    except SourceError as exc:  # a refused change (bad input, a clash): nothing was changed
        say(f"{args.command}: {exc.message}")
        return EXIT_REFUSED
    except redis.ConnectionError as exc:
        say(f"lost Redis at {edge.redis_url}: {exc}")
        return EXIT_CANNOT_RUN
    finally:
        close_edge(edge)
