"""A downstream app: print each new article's headline, once per consumer group, and each later correction.

    REDIS_URL=redis://localhost:6379/0 python examples/print_headlines.py --group headlines --follow

Run it twice with different --consumer names and the two share the work; stop one (Ctrl-C, or kill it)
and the other takes over whatever it had read but not finished, after --claim-idle seconds.
Needs only redis-py and worker/consumer.py (copy that one file if you do not install feedstream).

Updates (an article edited after it was published: same ``id``, ``version`` 2, 3, ...): with
FEEDSTREAM_UPDATES=separate (the default) they are on ``<stream>:updates``, read here with ``--updates``
by a second consumer of the same group name; with ``inline`` they arrive on the stream itself. Either
way ``show`` keeps the highest version it has seen per id and ignores an older or repeated one (a
re-delivery), as an app storing articles would do with ``UPDATE ... WHERE version < new``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import threading

from worker.consumer import Consumer


class Headlines:
    """Prints first publications and real updates; remembers each article's latest version."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}  # a real app keeps this beside the article, in its own store
        self.lock = threading.Lock()  # the stream and its updates stream are read by two threads

    def show(self, article: dict) -> None:
        version = int(article.get("version") or 1)
        with self.lock:
            if version <= self.versions.get(article["id"], 0):
                return  # already have this version or a newer one
            self.versions[article["id"]] = version
        if article.get("event") == "updated":
            changes = article.get("changes") or {}
            what = (f"+{changes.get('paragraphs_added', 0)} -{changes.get('paragraphs_removed', 0)} "
                    f"~{changes.get('paragraphs_changed', 0)} paragraphs"
                    + (", new title" if changes.get("title_changed") else ""))
            print(f"{article.get('updated') or 'undated'}  [{article['feed']}]  UPDATED v{version}: "
                  f"{article['title']}  ({what})  <{article['url']}>", flush=True)
            return
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
    parser.add_argument("--updates", action="store_true",
                        help="also read the updates stream <stream>:updates (FEEDSTREAM_UPDATES=separate)")
    parser.add_argument("--claim-idle", type=float, default=60.0,
                        help="seconds before taking over another consumer's unfinished articles")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    headlines = Headlines()
    streams = [args.stream, *([f"{args.stream}:updates"] if args.updates else [])]
    consumers = [Consumer(args.redis_url, stream=stream, group=args.group, consumer=args.consumer,
                          from_start=args.from_start, claim_idle=args.claim_idle) for stream in streams]
    # What is waiting is read stream by stream, first publications first, so a correction prints after its
    # headline; when following, each stream has its thread (an update that does come first is kept, and
    # the older first version skipped: the versions decide, not the order of arrival).
    with contextlib.suppress(KeyboardInterrupt):
        consumers[0].run(headlines.show, follow=False, stop=stop)
        if not args.follow:
            for consumer in consumers[1:]:
                consumer.run(headlines.show, follow=False, stop=stop)
            return
        threads = [threading.Thread(target=consumer.run, args=(headlines.show,), kwargs={"stop": stop}, daemon=True)
                   for consumer in consumers]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.5)


if __name__ == "__main__":
    main()
