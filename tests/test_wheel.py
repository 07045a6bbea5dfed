"""Packaging: the wheel ships every subpackage and Lua script, and works installed (not editable).

Builds the wheel from the sources (pyproject.toml, README.md, worker/ only), installs it into
a fresh venv in tmp (its dependencies from the project's usual package index, through pip's
cache), and from there runs ``feedstream --help``, a ``feedstream run --burst`` against a
loopback feed on the embedded Redis, then ``feedstream tail`` to read what it published.
One test: it is the slow one (tens of seconds, most of it pip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.pipeline_helpers import write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 600  # a stuck index, not a speed assertion


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, **kwargs)  # type: ignore[call-overload, no-any-return]


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "worker", source / "worker", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"),
                  str(source)])
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("feedstream-*.whl")
    return wheel


def test_wheel_ships_every_module_and_lua_script_and_runs_a_burst_when_installed(site: Site, tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "worker").rglob("*")
               if p.suffix in (".py", ".lua", ".json") and "__pycache__" not in p.parts}
    assert any(name.endswith(".py") for name in sources)
    assert sources <= shipped, f"missing from the wheel: {sorted(sources - shipped)}"

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    installed = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "work"  # cwd: var/ goes here, and no source tree is importable from it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_", "PYTHON"))}
    s = story(7)
    link = site.add(f"/news/{s.slug}/", telecoms_page(s))
    feeds = write_feeds(work / "feeds.toml", {"local": site.add("/feed.xml", rss2("F", [(s, link)]),
                                                                 "application/rss+xml")})
    env.update(FEEDSTREAM_FEEDS=str(feeds), FEEDSTREAM_ALLOW_PRIVATE="1", FEEDSTREAM_WORKERS="1")
    feedstream = str(venv / "bin" / "feedstream")

    where = _run([str(venv / "bin" / "python"), "-c", "import worker; print(worker.__file__)"], cwd=work, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    helped = _run([feedstream, "--help"], cwd=work, env=env)
    assert helped.returncode == 0
    assert "{run,worker,scheduler,tail,metrics,smtp,serve,status,sources,discover,opml}" in helped.stdout

    burst = _run([feedstream, "run", "--burst"], cwd=work, env=env)
    assert burst.returncode == 0, burst.stderr
    assert "REDIS_URL is unset: started the embedded Redis" in burst.stderr
    assert "1 article(s) published" in burst.stdout, burst.stdout + burst.stderr

    tail = _run([feedstream, "tail", "-n", "5"], cwd=work, env=env)  # the embedded Redis kept the data
    assert tail.returncode == 0, tail.stderr
    [article] = [json.loads(line) for line in tail.stdout.splitlines()]
    assert article["url"] == link and article["title"] == s.title
