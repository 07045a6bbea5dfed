"""rq-dashboard against the test Redis, driven in a real headless chromium (Debian's chromium + chromium-driver).

`.ci/run` installs the two packages with apt-get when they are missing and it can (root); where they
cannot be installed this test skips and says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue

from worker.jobs import extract_entries
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT), **extra)
    return env


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _column(driver: object, table: str, role: str, index: int) -> list[str]:
    """The text of one column of the dashboard table's data rows, read in the page."""
    return driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll(`table#${arguments[0]} tr[data-role=${arguments[1]}]`))"
        ".map(r => { const c = r.querySelectorAll('td'); return c[(c.length + arguments[2]) % c.length]"
        ".innerText.trim(); });", table, role, index)


@pytest.fixture
def browser() -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER} not found); "
                    ".ci/run installs them with apt-get when it runs as root")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_dashboard_shows_our_queues_and_a_running_worker(
        browser: object, redis_client: redis.Redis, redis_url: str, feeds_file: Path, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    # Jobs on both queues register them with RQ; the worker runs them (an unknown feed, an empty batch).
    enqueue_poll(Queue(POLL_QUEUE, connection=redis_client), "no-such-feed")
    Queue(EXTRACT_QUEUE, connection=redis_client).enqueue(extract_entries, [])
    feeds_file.write_text('[[feeds]]\nname = "f"\nurl = "http://127.0.0.1:9/feed"\n')
    port = _free_port()
    env = _env(redis_url, FEEDSTREAM_FEEDS=str(feeds_file))
    dashboard = [sys.executable, "-m", "rq_dashboard", "--redis-url", redis_url, "--bind", "127.0.0.1",
                 "--port", str(port)]
    with started(dashboard, env) as dash, \
            started([sys.executable, "-m", "worker", "worker", "--processes", "1"], env) as worker:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):  # readiness: until the dashboard listens and a worker has registered
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if redis_client.scard("rq:workers"):
                    break
            assert dash.poll() is None and worker.poll() is None, "dashboard or worker exited"
            time.sleep(0.1)

        # The dashboard redraws its tables every few seconds: read them in one script call, not element by
        # element (elements go stale between calls).
        wait = WebDriverWait(driver, 60)
        driver.get(f"{base}/0/view/queues")
        queue_names = wait.until(lambda d: _column(d, "queues", "queue", 0) or None)
        assert {POLL_QUEUE, EXTRACT_QUEUE} <= set(queue_names), queue_names
        driver.save_screenshot(str(tmp_path / "dashboard-queues.png"))

        driver.get(f"{base}/0/view/workers")
        worker_queues = wait.until(lambda d: _column(d, "workers", "worker", -1) or None)
        assert POLL_QUEUE in worker_queues[0] and EXTRACT_QUEUE in worker_queues[0], worker_queues
        shot = tmp_path / "dashboard-workers.png"
        driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "dashboard-queues.png").exists()
