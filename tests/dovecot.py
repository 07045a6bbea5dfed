"""A private dovecot IMAP server for one test: its own config, users, mail and port.

Debian's dovecot-imapd (``make test`` installs it when run as root with apt-get).
Logins are PLAIN over loopback; with ``tls=True`` the server also listens for
IMAPS with a self-signed certificate made by the openssl command.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USER, PASSWORD = "reader", "s3cret-for-tests"


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dovecot:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port`` (plain) and ``tls_port`` (IMAPS)."""

    def __init__(self, config_dir: Path, tls: bool = False) -> None:
        binary = dovecot_binary()
        if binary is None:
            pytest.skip("dovecot is not installed and could not be (make test installs Debian's dovecot-imapd "
                        "when run as root with apt-get)")
        self.binary = binary
        self.config = config_dir / "dovecot.conf"
        # Mail and runtime live outside pytest's 0700 tmp tree: dovecot's own users must reach them.
        self.root = Path(tempfile.mkdtemp(prefix="feedstream-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.cert: Path | None = None
        if tls:
            if not shutil.which("openssl"):
                pytest.skip("the openssl command is needed to make the test server's certificate")
            self.cert, key = self.root / "cert.pem", self.root / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                            "-keyout", str(key), "-out", str(self.cert)], check=True, capture_output=True)

    def _write_config(self) -> None:
        me = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            # dovecot refuses mail access as root; its packaged users do the work
            internal = "dovecot" if _user_exists("dovecot") else "nobody"
            login = "dovenull" if _user_exists("dovenull") else "nobody"
        else:
            internal = login = me
        mail_user = pwd.getpwnam(internal)
        for sub in ("mail", "home"):
            (self.root / sub).mkdir()
            os.chown(self.root / sub, mail_user.pw_uid, mail_user.pw_gid) if os.getuid() == 0 else None
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        ssl = "no"
        if self.cert:
            ssl = (f"yes\nssl_cert = <{self.cert}\nssl_key = <{self.root / 'key.pem'}\n"
                   "ssl_min_protocol = TLSv1.2")
        self.config.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.root}/mail/%u
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/users
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={self.root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
service anvil {{
  chroot =
}}
""")

    def start(self) -> Dovecot:
        self._write_config()
        # -F: stay in the foreground, so this process owns the master and nothing outlives the test
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20  # a readiness wait, not an assertion on speed
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"dovecot did not start listening: {self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def stop(self) -> None:
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
