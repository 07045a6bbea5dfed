"""[[newsletters]] in the feeds file: validated at start like feeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, load_sources

FEED = '[[feeds]]\nname = "telecoms"\nurl = "https://www.telecoms.com/feed/"\n\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_all_three_kinds_load_with_defaults(feeds_file: Path) -> None:
    write(feeds_file, FEED + """
[[newsletters]]
name = "telecoms-daily"
kind = "smtp"
address = "Telecoms@Feeds.Example"
tags = ["telecoms"]

[[newsletters]]
name = "inbox"
kind = "imap"
host = "imap.example.com"
user = "reader"
password_env = "FEEDSTREAM_IMAP_PASSWORD"

[[newsletters]]
name = "local"
kind = "maildir"
path = "/var/mail/news"
follow_links = true
""")
    smtp, imap, maildir = load_sources(feeds_file).newsletters
    assert (smtp.kind, smtp.address, smtp.tags, smtp.max_bytes) == ("smtp", "telecoms@feeds.example",
                                                                    ("telecoms",), 5 * 1024 * 1024)
    assert (imap.port, imap.security, imap.folder) == (993, "tls", "INBOX")
    assert maildir.path == "/var/mail/news" and maildir.follow_links
    assert [f.name for f in load_sources(feeds_file).feeds] == ["telecoms"]


def test_newsletters_only_file_has_no_feeds(feeds_file: Path) -> None:
    write(feeds_file, '[[newsletters]]\nname = "x"\nkind = "maildir"\npath = "/m"\n')
    assert load_sources(feeds_file).feeds == []
    assert [s.name for s in load_sources(feeds_file).newsletters] == ["x"]


@pytest.mark.parametrize(("table", "message"), [
    ('name = "x"\nkind = "pop3"', "kind must be one of smtp, imap, maildir"),
    ('name = "x"\nkind = "smtp"', "address must be an email address"),
    ('name = "x"\nkind = "smtp"\naddress = "a@b"\npath = "/m"', "unknown keys for kind 'smtp': path"),
    ('name = "x"\nkind = "imap"\nhost = "h"\nuser = "u"', "password_env is required"),
    ('name = "x"\nkind = "imap"\nhost = "h"\nuser = "u"\npassword_env = "P"\nsecurity = "none"',
     "security must be one of"),
    ('name = "x"\nkind = "maildir"\npath = "/m"\nmax_bytes = 10', "max_bytes must be whole bytes"),
    ('name = "telecoms"\nkind = "maildir"\npath = "/m"', "used twice"),
])
def test_bad_newsletter_tables_stop_the_start(feeds_file: Path, table: str, message: str) -> None:
    write(feeds_file, FEED + "[[newsletters]]\n" + table + "\n")
    with pytest.raises(ConfigError, match=message):
        load_sources(feeds_file)


def test_one_address_for_two_sources_is_refused(feeds_file: Path) -> None:
    write(feeds_file, FEED + '[[newsletters]]\nname = "a"\nkind = "smtp"\naddress = "n@x.example"\n'
                             '[[newsletters]]\nname = "b"\nkind = "smtp"\naddress = "N@x.example"\n')
    with pytest.raises(ConfigError, match="used by two newsletters"):
        load_sources(feeds_file)


def test_smtp_and_serve_listen_on_loopback_unless_told() -> None:
    settings = Settings.from_env({})
    assert (settings.smtp_host, settings.smtp_port, settings.serve_host, settings.serve_port) == (
        "127.0.0.1", 2525, "127.0.0.1", 8080)
    assert Settings.from_env({"PORT": "5000"}).serve_port == 5000
    assert Settings.from_env({"PORT": "5000", "FEEDSTREAM_SERVE_PORT": "7000"}).serve_port == 7000
