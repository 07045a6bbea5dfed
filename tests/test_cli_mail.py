"""The Procfile's smtp and web processes, run as a user runs them: mail in by SMTP, feeds out over HTTP."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import feedparser
import redis

from tests.dovecot import free_port
from tests.mailgen import mail_bytes, newsletter_html
from tests.test_cli import base_env, feedstream
from tests.test_mail_sources import write_config


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    import socket

    deadline = time.monotonic() + 60  # start-up wait, not a speed assertion
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"not listening on {port}: {process.communicate()[0]}")


def test_smtp_worker_and_serve_processes_end_to_end(redis_url: str, redis_client: redis.Redis,
                                                     feeds_file: Path) -> None:
    config = write_config(feeds_file, newsletters=[
        {"name": "telecoms-daily", "kind": "smtp", "address": "telecoms@feeds.example", "tags": ["telecoms"]}])
    smtp_port, web_port = free_port(), free_port()
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(config), FEEDSTREAM_SMTP_PORT=str(smtp_port),
                   FEEDSTREAM_SERVE_PORT=str(web_port))
    smtp = subprocess.Popen([sys.executable, "-m", "worker", "smtp"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    web = subprocess.Popen([sys.executable, "-m", "worker", "serve"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(smtp_port, smtp)
        wait_for_port(web_port, web)
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.sendmail("news@telecoms.example", ["telecoms@feeds.example"], mail_bytes(html=newsletter_html()))
        done = feedstream("worker", "--burst", "--processes", "1", env=env)
        assert done.returncode == 0, done.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/feeds/telecoms-daily.atom", timeout=10) as r:
            parsed = feedparser.parse(io.BytesIO(r.read()))
        [entry] = parsed.entries
        assert entry.title == "Operators pool rural masts" and "nsubscribe" not in entry.content[0].value
        status = feedstream("status", "--json", env=env)
        [row] = json.loads(status.stdout)["feeds"]
        assert row["feed"] == "telecoms-daily" and row["url"] == "smtp:telecoms@feeds.example"
        assert row["entries_seen"] == 1 and row["consecutive_errors"] == 0
        table = feedstream("status", env=env)  # the table too: newsletter rows have no move/retire fields
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[1].startswith("telecoms-daily ")
    finally:
        for process in (smtp, web):
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=30)[0] for process in (smtp, web)]
    assert smtp.returncode == 0 and web.returncode == 0, outputs
    assert "SMTP on 127.0.0.1:" in outputs[0] and "telecoms@feeds.example (telecoms-daily)" in outputs[0]


def test_smtp_waits_for_a_source_and_follows_added_and_paused_ones(redis_url: str, redis_client: redis.Redis,
                                                                     feeds_file: Path) -> None:
    config = write_config(feeds_file, feeds={"f": "https://example.com/feed"})
    port = free_port()
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(config), FEEDSTREAM_SMTP_PORT=str(port))
    smtp = subprocess.Popen([sys.executable, "-m", "worker", "smtp"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)
        assert smtp.poll() is None  # nothing to receive yet is no reason to stop the service
        added = feedstream("sources", "add", "--kind", "smtp", "--name", "late", "--address", "late@feeds.example",
                           env=env)
        assert added.returncode == 0, added.stderr
        wait_for_port(port, smtp)
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo()
            client.mail("news@telecoms.example")
            assert client.rcpt("late@feeds.example")[0] == 250
        assert feedstream("sources", "pause", "late", env=env).returncode == 0
        deadline = time.monotonic() + 10  # the process checks the sources every second
        code = 250
        while code == 250 and time.monotonic() < deadline:
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.ehlo()
                client.mail("news@telecoms.example")
                code = client.rcpt("late@feeds.example")[0]
            time.sleep(0.2)
        assert code == 550
    finally:
        smtp.send_signal(signal.SIGTERM)
        output = smtp.communicate(timeout=30)[0]
    assert smtp.returncode == 0, output
    assert "waiting for one" in output and "late@feeds.example (late)" in output
