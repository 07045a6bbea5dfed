"""`feedstream run --burst` progress: an updating line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import redis

from tests.pipeline_helpers import write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page

ROOT = Path(__file__).resolve().parent.parent


def _setup(site: Site, redis_url: str, feeds_file: Path) -> dict[str, str]:
    feeds = {}
    for f in range(2):
        items = []
        for i in range(3):
            s = story(f * 10 + i)
            items.append((s, site.add(f"/f{f}/{s.slug}/", telecoms_page(s))))
        feeds[f"f{f}"] = site.add(f"/f{f}.xml", rss2("F", items), "application/rss+xml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT), FEEDSTREAM_FEEDS=str(write_feeds(feeds_file, feeds)),
               FEEDSTREAM_ALLOW_PRIVATE="1", FEEDSTREAM_WORKERS="1")
    return env


FINAL = "progress: 2/2 feeds polled, 6/6 articles done (6 published)"


def test_burst_progress_is_plain_log_lines_when_not_a_terminal(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    env = _setup(site, redis_url, feeds_file)
    proc = subprocess.run([sys.executable, "-m", "worker", "run", "--burst"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert lines and lines[-1] == f"feedstream: {FINAL}"
    assert "6 article(s) published" in proc.stdout  # the summary stays on stdout


def test_burst_progress_is_one_updating_line_on_a_terminal(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    env = _setup(site, redis_url, feeds_file)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "worker", "run", "--burst"], env=env, stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=180)
    os.close(master)
    assert proc.returncode == 0, seen.decode(errors="replace")
    text = seen.decode()
    # Every redraw returns to the start of the line and erases it; only the final one ends the line.
    assert f"\r\x1b[K{FINAL}\r\n" in text
    assert text.count("progress:") == text.count("\r\x1b[Kprogress:")
    assert "6 article(s) published" in out
