"""FramedStream: whole messages over a trio stream, in order, errors in their place."""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from semantica.errors import FrameTooLarge, ProtocolError
from semantica.framed import FramedStream
from semantica.protocol import HEADER, ControlRequest, GetJob, GetStatus, encode


def _pair(max_frame: int = 1 << 20) -> tuple[trio.abc.SendStream, FramedStream]:
    send, receive = trio.testing.memory_stream_one_way_pair()
    return send, FramedStream(
        trio.StapledStream(trio.testing.MemorySendStream(), receive), ControlRequest, max_frame
    )


def _bad_frame() -> bytes:
    body = msgspec.msgpack.encode({"t": "no-such-message"})
    return HEADER.pack(len(body)) + body


async def test_good_frames_after_a_bad_one_in_the_same_read_are_delivered() -> None:
    """A bad frame is reported in its place; good frames sent with it are not held back."""
    send, framed = _pair()
    await send.send_all(encode(GetJob(id=1)) + _bad_frame() + encode(GetStatus(rid=7)))
    with trio.fail_after(5):
        assert await framed.receive() == GetJob(id=1)
        with pytest.raises(ProtocolError):
            await framed.receive()
        assert await framed.receive() == GetStatus(rid=7)


async def test_a_frame_split_across_reads_is_put_back_together() -> None:
    """Bytes arriving in pieces make one message."""
    send, framed = _pair()
    data = encode(GetJob(id=99))
    async with trio.open_nursery() as nursery:

        async def trickle() -> None:
            for i in range(len(data)):
                await send.send_all(data[i : i + 1])

        nursery.start_soon(trickle)
        with trio.fail_after(5):
            assert await framed.receive() == GetJob(id=99)


async def test_oversized_header_is_refused_before_the_body() -> None:
    """A header claiming more than the cap fails at once, with no body sent."""
    send, framed = _pair(max_frame=1024)
    await send.send_all(HEADER.pack(0xFFFF_FFFF))  # 4 GiB
    with trio.fail_after(5), pytest.raises(FrameTooLarge):
        await framed.receive()


async def test_eof_between_frames_ends_the_channel_and_mid_frame_is_an_error() -> None:
    """A clean close is EndOfChannel; a close inside a frame is a ProtocolError."""
    send, framed = _pair()
    await send.send_all(encode(GetJob(id=1)))
    await send.aclose()
    assert await framed.receive() == GetJob(id=1)
    with pytest.raises(trio.EndOfChannel):
        await framed.receive()

    send, framed = _pair()
    await send.send_all(encode(GetJob(id=1))[:-2])
    await send.aclose()
    with pytest.raises(ProtocolError):
        await framed.receive()
