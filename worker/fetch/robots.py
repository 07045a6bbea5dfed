"""robots.txt verdicts from bytes we fetched ourselves. Pure: no I/O.

``urllib.robotparser`` does the matching; we never let it fetch (``read()`` uses
urllib with no deadline, no size cap and no SSRF guard).
"""

from __future__ import annotations

from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

# Google reads the first 500 KiB of a robots.txt and ignores the rest.
MAX_ROBOTS_BYTES = 500 * 1024


def robots_url(url: str) -> str:
    """The robots.txt URL for the host serving ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


def parse_robots(body: bytes) -> RobotFileParser | None:
    """The rules of a robots.txt ``body``, parsed once for many verdicts; None when it is empty (allow all)."""
    if not body.strip():
        return None
    parser = RobotFileParser()
    parser.parse(body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace").splitlines())
    return parser


def rules_allow(rules: RobotFileParser | None, url: str, agent: str) -> bool:
    """Whether parsed rules (see :func:`parse_robots`) let ``agent`` fetch ``url``."""
    return rules is None or rules.can_fetch(agent, url)


def robots_allows(body: bytes, url: str, agent: str) -> bool:
    """Whether the robots.txt ``body`` lets ``agent`` fetch ``url``; an empty body allows all."""
    return rules_allow(parse_robots(body), url, agent)


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against (``feedstream/0.1 (...)`` -> ``feedstream``)."""
    return user_agent.split("/", 1)[0].split(" ", 1)[0] or "*"
