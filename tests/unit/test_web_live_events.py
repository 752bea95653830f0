"""The web view's server-sent events: ids for a log's lines, ``end`` only when ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from semantica.control.web.live import Ended, Numbered, event_stream
from semantica.control.web.live_log import lines_to_skip


async def body(fragments: AsyncIterator[str | Numbered | None], **options: Any) -> str:
    response = event_stream(fragments, **options)
    parts = [part async for part in response.body_iterator]
    return "".join(p if isinstance(p, str) else bytes(p).decode() for p in parts)


async def test_numbered_fragments_carry_their_id_and_lines_become_data_lines() -> None:
    async def lines() -> AsyncIterator[Numbered | None]:
        yield Numbered("one", 1)
        yield None
        yield Numbered("two\nthree", 3)
        yield Numbered("two\nthree", 5)  # not deduplicated: a log repeats lines
        raise Ended

    text = await body(lines(), dedupe=False, end="ended", end_only_if_ended=True)
    assert text == (
        "id: 1\ndata: one\n\n"
        ": keepalive\n\n"
        "id: 3\ndata: two\ndata: three\n\n"
        "id: 5\ndata: two\ndata: three\n\n"
        "event: end\ndata: ended\n\n"
    )


async def test_without_ended_the_stream_closes_without_the_end_event() -> None:
    async def cut_short() -> AsyncIterator[Numbered | None]:
        yield Numbered("one", 1)

    text = await body(cut_short(), dedupe=False, end="ended", end_only_if_ended=True)
    assert text == "id: 1\ndata: one\n\n"  # the browser reconnects and carries on


async def test_pages_fragments_are_still_deduplicated_and_ended() -> None:
    async def pages() -> AsyncIterator[str | None]:
        for part in ("<p>a</p>", "<p>a</p>", "<p>b</p>"):
            yield part

    assert await body(pages(), end="bye") == (
        "data: <p>a</p>\n\ndata: <p>b</p>\n\nevent: end\ndata: bye\n\n"
    )


def request(query: str = "", **headers: str) -> Request:
    raw = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "query_string": query.encode(), "headers": raw})


def test_a_reconnect_skips_what_the_browser_has() -> None:
    assert lines_to_skip(request()) == 0
    assert lines_to_skip(request("after=12")) == 12
    assert lines_to_skip(request("after=12", last_event_id="40")) == 40  # it got more since
    assert lines_to_skip(request("after=x", last_event_id="nonsense")) == 0
    assert lines_to_skip(request("after=-3")) == 0
