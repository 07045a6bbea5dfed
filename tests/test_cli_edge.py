"""worker.cli's edge and dispatch table, in process: settings read once, Redis found, the environment untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from tests.pipeline_helpers import write_feeds
from worker.cli import COMMANDS, main
from worker.cli.edge import CannotRun, close_edge, open_edge


def test_open_edge_starts_the_embedded_redis_and_hands_its_url_to_children_not_to_os_environ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("FEEDSTREAM_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("FEEDSTREAM_FEEDS", str(write_feeds(tmp_path / "feeds.toml", {"a": "https://example.com/f"})))
    before = dict(os.environ)
    edge = open_edge()
    try:
        assert [feed.name for feed in edge.feeds] == ["a"]
        assert edge.embedded is not None and edge.embedded.owned
        assert redis.Redis.from_url(edge.redis_url).ping()
        assert dict(os.environ) == before, "the edge must not write this process's environment"
        assert edge.child_env()["REDIS_URL"] == edge.redis_url
        assert edge.child_env()["FEEDSTREAM_VAR"] == str(tmp_path / "var")
    finally:
        close_edge(edge)
    assert not (tmp_path / "var" / "redis.url").exists()  # stopped: the next command starts its own


def test_a_bad_feeds_file_is_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDSTREAM_FEEDS", str(tmp_path / "missing.toml"))
    with pytest.raises(CannotRun, match="cannot read feeds file"):
        open_edge()


def test_every_subcommand_is_in_the_dispatch_table_with_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed == ["run", "worker", "scheduler", "tail", "metrics", "smtp", "serve", "status", "sources", "discover",
                      "opml"]
    assert listed == list(COMMANDS)
    assert all(callable(spec.run) for spec in COMMANDS.values())
