"""Stage: a feed's bytes -> ParsedFeed (feedparser for RSS/Atom/RDF, JSON Feed by hand). Pure."""

from worker.feeds.parse import parse_feed

__all__ = ["parse_feed"]
