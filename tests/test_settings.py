"""Settings from the environment and the feeds file."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, load_sources

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
    feeds = load_sources(REPO / "config" / "feeds.toml").feeds
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
        load_sources(path)


def test_missing_feeds_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read feeds file"):
        load_sources(tmp_path / "nope.toml")


def test_politeness_settings_defaults_and_overrides() -> None:
    default = Settings.from_env({})
    assert (default.min_interval, default.max_interval, default.host_concurrency, default.robots,
            default.robots_ttl, default.redirect_adopt_after) == (300, 86400, 2, True, 86400, 3)
    custom = Settings.from_env({"FEEDSTREAM_HOST_CONCURRENCY": "4", "FEEDSTREAM_ROBOTS": "0",
                                "FEEDSTREAM_MIN_INTERVAL": "120", "FEEDSTREAM_MAX_INTERVAL": "3600"})
    assert (custom.host_concurrency, custom.robots, custom.min_interval, custom.max_interval) == (4, False, 120, 3600)
    with pytest.raises(ConfigError, match="FEEDSTREAM_MAX_INTERVAL"):
        Settings.from_env({"FEEDSTREAM_MIN_INTERVAL": "600", "FEEDSTREAM_MAX_INTERVAL": "300"})
    with pytest.raises(ConfigError, match="FEEDSTREAM_HOST_CONCURRENCY"):
        Settings.from_env({"FEEDSTREAM_HOST_CONCURRENCY": "0"})


def test_per_feed_interval_bounds(tmp_path: Path) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text("[[feeds]]\nname='a'\nurl='https://x/'\nmin_interval=600\nmax_interval=7200\n"
                    "[[feeds]]\nname='b'\nurl='https://y/'\n")
    a, b = load_sources(path).feeds
    assert (a.min_interval, a.max_interval, b.min_interval, b.max_interval) == (600, 7200, None, None)
    for text, message in [("min_interval=10", "min_interval must be"), ("max_interval='1h'", "max_interval must be"),
                          ("min_interval=7200\nmax_interval=600", "max_interval is below min_interval")]:
        path.write_text(f"[[feeds]]\nname='a'\nurl='https://x/'\n{text}\n")
        with pytest.raises(ConfigError, match=message):
            load_sources(path)


def test_update_settings_defaults_overrides_and_errors() -> None:
    default = Settings.from_env({}).updates
    assert (default.mode, default.window, default.min_interval, default.enabled) == ("separate", 7 * 86400, 3600,
                                                                                      True)
    set_ = Settings.from_env({"FEEDSTREAM_UPDATES": "Inline", "FEEDSTREAM_UPDATE_WINDOW": "86400",
                              "FEEDSTREAM_UPDATE_MIN_INTERVAL": "0"}).updates
    assert (set_.mode, set_.window, set_.min_interval) == ("inline", 86400, 0)
    assert not Settings.from_env({"FEEDSTREAM_UPDATES": "off"}).updates.enabled
    with pytest.raises(ConfigError, match="FEEDSTREAM_UPDATES"):
        Settings.from_env({"FEEDSTREAM_UPDATES": "sometimes"})
    with pytest.raises(ConfigError, match="FEEDSTREAM_UPDATE_WINDOW"):
        Settings.from_env({"FEEDSTREAM_UPDATE_WINDOW": "10"})
