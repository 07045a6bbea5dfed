"""A downstream app: print each new article's headline, once per consumer group.

    REDIS_URL=redis://localhost:6379/0 python examples/print_headlines.py --group headlines --follow

Run it twice with different --consumer names and the two share the work; stop one (Ctrl-C, or kill it)
and the other takes over whatever it had read but not finished, after --claim-idle seconds.
Needs only redis-py and worker/consumer.py (copy that one file if you do not install feedstream).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import threading

from worker.consumer import Consumer


def print_headline(article: dict) -> None:
    published = article.get("published") or "undated"
    print(f"{published}  [{article['feed']}]  {article['title']}  <{article['url']}>", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    parser.add_argument("--stream", default=os.environ.get("FEEDSTREAM_STREAM", "articles"))
    parser.add_argument("--group", default="headlines")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--from-start", action="store_true", help="a new group starts at the oldest article")
    parser.add_argument("--follow", action="store_true", help="keep waiting for new articles")
    parser.add_argument("--claim-idle", type=float, default=60.0,
                        help="seconds before taking over another consumer's unfinished articles")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = Consumer(args.redis_url, stream=args.stream, group=args.group, consumer=args.consumer,
                        from_start=args.from_start, claim_idle=args.claim_idle)
    with contextlib.suppress(KeyboardInterrupt):
        consumer.run(print_headline, follow=args.follow, stop=stop)


if __name__ == "__main__":
    main()
