"""The RQ job paths are a contract: jobs queued by the old dotted strings (as RQ stores them in queued,
scheduled and failed jobs) still import and run, on a real queue, with a real worker, over loopback."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import redis
from rq import Queue, SimpleWorker
from rq.job import JobStatus

from tests.mailgen import mail_bytes, newsletter_html
from tests.pipeline_helpers import articles, make_context
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.models import Entry
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE


def serve_story(site: Site, n: int) -> tuple[str, str]:
    s = story(n)
    return site.add(f"/news/{n}/", telecoms_page(s)), s.body_text


def test_jobs_queued_by_their_old_dotted_paths_still_run(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path, tmp_path: Path) -> None:
    link_a, text_a = serve_story(site, 1)
    link_b, text_b = serve_story(site, 2)
    link_c, text_c = serve_story(site, 3)
    feed_a = site.add("/a.xml", rss2("A", [(story(1), link_a)]), "application/rss+xml")
    feed_b = site.add("/b.xml", rss2("B", [(story(2), link_b)]), "application/rss+xml")
    root = tmp_path / "Maildir"
    boxed = newsletter_html(story(4).body_text.split("\n\n"))  # another story: not a copy of the SMTP one
    mailbox.Maildir(root, create=True).add(mail_bytes(html=boxed, message_id="<box@telecoms.example>"))
    feeds_file.write_text("\n".join([
        "[[feeds]]", 'name = "a"', f"url = {json.dumps(feed_a)}", "",
        "[[feeds]]", 'name = "b"', f"url = {json.dumps(feed_b)}", "",
        "[[newsletters]]", 'name = "letters"', 'kind = "smtp"', 'address = "letters@feeds.example"', "",
        "[[newsletters]]", 'name = "box"', 'kind = "maildir"', f"path = {json.dumps(str(root))}", "",
    ]))
    context = make_context(redis_url, feeds_file)
    poll = Queue(POLL_QUEUE, connection=redis_client)
    extract = Queue(EXTRACT_QUEUE, connection=redis_client)
    entry = Entry(guid="c", url=link_c, title=story(3).title, feed="a").to_dict()
    jobs = {
        "worker.jobs.poll_feed": poll.enqueue("worker.jobs.poll_feed", "a", result_ttl=600),
        "worker.jobs.poll_feeds": poll.enqueue("worker.jobs.poll_feeds", ["b"], result_ttl=600),
        "worker.jobs.extract_entries": extract.enqueue("worker.jobs.extract_entries", [entry], result_ttl=600),
        "worker.jobs.ingest_mail": extract.enqueue("worker.jobs.ingest_mail", "letters",
                                                   mail_bytes(html=newsletter_html()), "smtp", result_ttl=600),
        "worker.jobs.poll_mailbox": poll.enqueue("worker.jobs.poll_mailbox", "box", result_ttl=600),
        # an article never published here (or older than the update window): nothing to re-check
        "worker.jobs.recheck_articles": extract.enqueue("worker.jobs.recheck_articles",
                                                        [{"id": "0" * 24, "entry": entry}], result_ttl=600),
    }
    SimpleWorker([poll, extract], connection=redis_client).work(burst=True, logging_level="WARNING")

    for path, job in jobs.items():
        job.refresh()
        assert job.func_name == path
        assert job.get_status() == JobStatus.FINISHED, (path, job.latest_result())
    results = {path: job.return_value() for path, job in jobs.items()}
    assert results["worker.jobs.poll_feed"] == {"feed": "a", "outcome": "ok", "entries": 1, "new": 1}
    assert results["worker.jobs.poll_feeds"] == [{"feed": "b", "outcome": "ok", "entries": 1, "new": 1}]
    assert results["worker.jobs.extract_entries"]["published"] == 1
    assert results["worker.jobs.ingest_mail"]["outcome"] == "published"
    assert results["worker.jobs.poll_mailbox"] == {"source": "box", "outcome": "ok", "new": 1}
    assert results["worker.jobs.recheck_articles"] == {"gone": 1}
    # what they queued in turn (extracts of the feeds' entries, the mailbox's mail) ran too: five articles
    docs = articles(redis_client)
    assert sorted(doc["feed"] for doc in docs) == ["a", "a", "b", "box", "letters"]
    assert {text_a, text_b, text_c} <= {doc["text"] for doc in docs}
    assert context.store.feed_status("box")["last_status"] == "published"
