"""Reading a news sitemap: our reader against ultimate-sitemap-parser's string parser. PRINTS figures.

Builds a Google News sitemap of 5,000 URLs in memory and times, best of 5, our
``worker.feeds.sitemap.parse_sitemap`` and, when the package is importable (it is not a
dependency: install it in a scratch venv to compare), ``usp.tree.sitemap_from_str``. Also times
how long a 1 GiB gzip bomb takes to be refused at the 50 MiB cap. The machine is shared: the
figures are noisy, the ratio less so.

Usage: .venv/bin/python bench/sitemaps.py
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.errors import ParseError
from worker.feeds.sitemap import parse_sitemap
from worker.timefmt import iso_from_epoch

URLS = 5000


def news_sitemap(now: float) -> str:
    urls = "".join(
        f"<url><loc>https://x.test/a/{n}</loc><news:news><news:publication><news:name>X</news:name>"
        f"<news:language>en</news:language></news:publication><news:publication_date>{iso_from_epoch(now - n * 60)}"
        f"</news:publication_date><news:title>Title {n}</news:title></news:news></url>" for n in range(URLS))
    return ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>')


def best(run: Callable[[], Any], times: int = 5) -> tuple[float, Any]:
    spent = []
    result = None
    for _ in range(times):
        start = time.perf_counter()
        result = run()
        spent.append(time.perf_counter() - start)
    return min(spent), result


def main() -> None:
    now = time.time()
    body = news_sitemap(now)
    ours, doc = best(lambda: parse_sitemap(body.encode(), url="https://x.test/s.xml", now=now, max_age=1e12))
    print(f"feedstream parse_sitemap: {len(doc.entries)} entries in {ours * 1000:.1f} ms")
    try:
        from usp.tree import sitemap_from_str  # type: ignore[import-not-found]
    except ImportError:
        print("ultimate-sitemap-parser: not installed (pip install ultimate-sitemap-parser in a scratch venv)")
    else:
        theirs, sitemap = best(lambda: sitemap_from_str(body))
        print(f"usp sitemap_from_str: {len(list(sitemap.all_pages()))} pages in {theirs * 1000:.1f} ms "
              f"(ours/usp = {ours / theirs:.2f})")
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(deflate.compress(chunk) for _ in range(1024)) + deflate.flush()
    start = time.perf_counter()
    try:
        parse_sitemap(bomb, url="https://x.test/s.xml.gz", now=now, max_age=86400)
    except ParseError as exc:
        print(f"1 GiB gzip bomb ({len(bomb) // 1024} KiB on the wire): refused in "
              f"{(time.perf_counter() - start) * 1000:.0f} ms: {exc}")


if __name__ == "__main__":
    main()
