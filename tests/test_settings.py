"""Settings from the environment and the feeds file."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, load_feeds

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.stream == "articles"
    assert settings.feeds_path == Path("config/feeds.toml")
    assert settings.allow_private is False


def test_environment_overrides() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://h:1/2", "FEEDSTREAM_STREAM": "news",
                                  "FEEDSTREAM_FEEDS": "/x/f.toml", "FEEDSTREAM_ALLOW_PRIVATE": "1"})
    assert (settings.redis_url, settings.stream, settings.feeds_path) == ("redis://h:1/2", "news",
                                                                           Path("/x/f.toml"))
    assert settings.allow_private is True


def test_bad_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="FEEDSTREAM_ALLOW_PRIVATE"):
        Settings.from_env({"FEEDSTREAM_ALLOW_PRIVATE": "maybe"})


def test_shipped_feeds_file_loads_and_includes_telecoms() -> None:
    feeds = load_feeds(REPO / "config" / "feeds.toml")
    assert any(f.url == "https://www.telecoms.com/feed/" for f in feeds)
    assert len(feeds) >= 4
    assert all(f.interval >= 60 for f in feeds)


@pytest.mark.parametrize(("text", "message"), [
    ("", "no \\[\\[feeds\\]\\]"),
    ("[[feeds]]\nname='a'\n", "url must be"),
    ("[[feeds]]\nname='a'\nurl='file:///etc/passwd'\n", "url must be"),
    ("[[feeds]]\nname='a b'\nurl='https://x/'\n", "name must be"),
    ("[[feeds]]\nname='a'\nurl='https://x/'\ninterval=5\n", "interval"),
    ("[[feeds]]\nname='a'\nurl='https://x/'\ncolour='red'\n", "unknown keys: colour"),
    ("[[feeds]]\nname='a'\nurl='https://x/'\n[[feeds]]\nname='a'\nurl='https://y/'\n", "used twice"),
    ("[[feeds]\n", "not valid TOML"),
])
def test_bad_feeds_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_feeds(path)


def test_missing_feeds_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read feeds file"):
        load_feeds(tmp_path / "nope.toml")
