"""The jobs page of ``semctl web``, over HTTP: filters, keyset pages, bad filters."""

from __future__ import annotations

import html
import re

from harness import Daemon
from webkit import HttpSession, WebView

from semantica.models import JobState

ROW = re.compile(r'data-testid="job-row-(\d+)"')
OLDER = re.compile(r'<a href="([^"]+)" data-testid="older">')


def rows(text: str) -> list[int]:
    return [int(found) for found in ROW.findall(text)]


def walk(user: HttpSession, path: str) -> list[list[int]]:
    """The ids of every page from ``path`` on, following the "older" links."""
    pages = []
    next_path: str | None = path
    while next_path is not None:
        page = user.get(next_path)
        assert page.status == 200, page
        pages.append(rows(page.text))
        if len(pages) > 1:
            assert 'data-testid="not-first"' in page.text and "back to the newest" in page.text
        else:
            assert 'data-testid="not-first"' not in page.text
        older = OLDER.search(page.text)
        next_path = html.unescape(older.group(1)) if older else None
    return pages


def test_keyset_pages_never_repeat_or_skip_a_job(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    client.pause("bulk")  # they stay queued while the pages are read
    jobs = client.enqueue_many(
        [{"type": "NOOP", "queue": "bulk", "subject": f"s{i % 7}"} for i in range(260)]
    )
    other = client.enqueue("NOOP", queue="elsewhere", delay=3600)
    user = web.session()
    pages = walk(user, "/jobs?queue=bulk")
    assert [len(page) for page in pages] == [50, 50, 50, 50, 50, 10]
    seen = [job_id for page in pages for job_id in page]
    assert seen == sorted((job.id for job in jobs), reverse=True)
    assert other.id not in seen
    first = user.get("/jobs?queue=bulk").text
    assert "260 jobs" in first
    # Two filters at once, across pages too.
    both = [job_id for page in walk(user, "/jobs?queue=bulk&subject=s3") for job_id in page]
    assert both == sorted((j.id for j in jobs if j.subject == "s3"), reverse=True)
    # The page deep in the list links back to the first, filters kept.
    deep = user.get(f"/jobs?queue=bulk&before={seen[120]}").text
    assert f"Showing jobs older than {seen[120]}" in deep
    assert '<a href="/jobs?queue=bulk" data-testid="newest">' in deep
    assert rows(deep) == seen[121:171]


def test_filters_by_state_type_and_subject(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    done = client.enqueue("ADD", {"a": 1, "b": 1}, subject="<i>x</i>")
    client.wait(done.id, timeout=30)
    later = client.enqueue("NOOP", delay=3600)
    user = web.session()
    queued = user.get("/jobs?state=queued").text
    assert rows(queued) == [later.id]
    assert '<option value="QUEUED" selected>' in queued
    assert rows(user.get("/jobs?state=DONE&type=ADD").text) == [done.id]
    assert rows(user.get("/jobs?subject=%3Ci%3Ex%3C/i%3E").text) == [done.id]
    assert rows(user.get("/jobs?type=nothing-like-it").text) == []
    links = user.get("/jobs?type=ADD").text
    assert '<a href="/jobs?type=ADD&amp;state=FAILED" class="state failed"' in links
    assert client.get(later.id).state == JobState.QUEUED


def test_bad_filters_are_a_one_line_problem_not_an_error(web: WebView) -> None:
    user = web.session()
    hostile = "<script>alert(1)</script>"
    for query, says in [
        ("state=bogus", "unknown state &#39;bogus&#39;"),
        ("before=abc", "before must be a job id, not &#39;abc&#39;"),
        ("before=0", "before must be a job id"),
        ("before=99999999999999999999999", "before must be a job id"),
        (f"state={hostile}", "unknown state &#39;&lt;script&gt;"),
    ]:
        page = user.get(f"/jobs?{query}")
        assert page.status == 400, query
        assert 'data-testid="problem"' in page.text and says in page.text, (query, page.text)
        assert hostile not in page.text


LIVE = re.compile(r'data-live="([^"]+)"')


def test_a_bad_filter_stays_said_when_the_list_redraws(web: WebView) -> None:
    # The table redraws from the page's live address: it carries the filter as given,
    # so the redraw says the same problem rather than listing the newest jobs.
    user = web.session()
    for query, says in [
        ("before=abc", "before must be a job id, not &#39;abc&#39;"),
        ("before=0", "before must be a job id"),
        ("state=bogus", "unknown state &#39;BOGUS&#39;"),  # (read as typed in capitals)
    ]:
        page = user.get(f"/jobs?{query}")
        found = LIVE.search(page.text)
        assert found is not None, page.text
        redrawn = user.live(html.unescape(found.group(1)))
        assert 'data-testid="problem"' in redrawn and says in redrawn, (query, redrawn)


def test_why_a_job_waits_is_said_in_the_dashboards_words(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    first = client.enqueue("NOOP", delay=3600)
    second = client.enqueue("NOOP", after=[first.id])
    page = web.session().get("/jobs?state=QUEUED").text
    assert rows(page) == [second.id, first.id]
    why = re.findall(r'<small class="why">([^<]*)</small>', page)
    assert why == [f"job {first.id}", "its start time"], why  # not "dependency", "run_after"
