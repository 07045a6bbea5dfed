"""The shipped Procfile and feeds file under honcho, as a new user starts them: every process stays up
with nothing to do, and a newsletter source added with the CLI is then served by the running smtp process.

The shipped feeds file names feeds on the internet; tests reach only loopback, so those feeds are
paused (with the CLI, which applies the file first) before honcho starts: the scheduler then has
nothing to poll, which is the case this test is about.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import redis

from tests.dovecot import free_port
from tests.mailgen import mail_bytes, newsletter_html
from tests.pipeline_helpers import articles
from tests.test_cli import base_env, feedstream

REPO = Path(__file__).resolve().parent.parent
PROCESSES = ("scheduler", "worker", "dashboard", "metrics", "smtp", "web")
ALIVE_FOR = 30  # seconds every process must stay up (honcho stops them all when one exits)


def _honcho() -> str:
    found = shutil.which("honcho", path=str(Path(sys.executable).parent)) or shutil.which("honcho")
    if found is None:
        pytest.fail("honcho is not installed: pip install -e '.[test]'")
    return found


def _free_base_port() -> int:
    """A base for honcho's ports whose every PORT is free now, below Linux's ephemeral range (32768+),
    where the suite's own client connections could take one."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 100)
        ports = [base + 100 * i for i in range(len(PROCESSES))]
        if all(_port_free(port) for port in ports):
            return base
    raise AssertionError("no free base port for honcho")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_every_procfile_process_stays_up_and_smtp_serves_a_source_added_later(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    shipped = REPO / "config" / "feeds.toml"
    names = [feed["name"] for feed in tomllib.loads(shipped.read_text())["feeds"]]
    smtp_port, metrics_port = free_port(), free_port()
    base_port = _free_base_port()  # honcho gives each process PORT = base + 100 * i
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(shipped), FEEDSTREAM_SMTP_PORT=str(smtp_port),
                   METRICS_PORT=str(metrics_port), FEEDSTREAM_VAR=str(tmp_path / "var"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    paused = feedstream("sources", "pause", *names, env=env)
    assert paused.returncode == 0, paused.stderr
    honcho = subprocess.Popen([_honcho(), "-f", str(REPO / "Procfile"), "-d", str(REPO), "start",
                               "-p", str(base_port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        time.sleep(ALIVE_FOR)
        assert honcho.poll() is None, "honcho stopped: a process exited"
        added = feedstream("sources", "add", "--kind", "smtp", "--name", "procfile-letter",
                           "--address", "letters@feeds.example", "--tag", "news", env=env)
        assert added.returncode == 0, added.stderr
        deadline = time.monotonic() + 30  # smtp checks the sources every second; this is start-up slack
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as client:
                    client.sendmail("news@telecoms.example", ["letters@feeds.example"],
                                    mail_bytes(html=newsletter_html()))
                break
            except (OSError, smtplib.SMTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        deadline = time.monotonic() + 60
        while not [doc for doc in articles(redis_client) if doc["feed"] == "procfile-letter"]:
            assert time.monotonic() < deadline, "the mail was not published by the running worker"
            time.sleep(0.3)
        assert honcho.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(honcho.pid, signal.SIGINT)
        try:
            output = honcho.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            output = honcho.communicate()[0]
    before_stop = output.split("SIGINT received")[0]
    for name in PROCESSES:
        assert f"{name}.1 started" in before_stop, output[-3000:]
    assert "stopped (rc=" not in before_stop, output[-3000:]  # honcho's line for a process that ended
    [doc] = [doc for doc in articles(redis_client) if doc["feed"] == "procfile-letter"]
    assert doc["title"] == "Operators pool rural masts" and doc["tags"] == ["news"]
