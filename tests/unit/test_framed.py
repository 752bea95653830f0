"""FramedStream: whole messages over a trio stream, in order, errors in their place."""

from __future__ import annotations

import socket
from collections.abc import Iterator

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


@pytest.fixture
def pair() -> Iterator[tuple[FramedStream, socket.socket]]:
    """A FramedStream over one end of a socket pair, and the other end (blocking)."""
    ours, theirs = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    with theirs, stream.socket:
        yield FramedStream(stream, ControlRequest), theirs


async def test_send_frames_writes_at_once_without_letting_other_tasks_run(
    pair: tuple[FramedStream, socket.socket],
) -> None:
    """A reply the socket takes whole costs no pass of the scheduler (no other task runs)."""
    framed, peer = pair
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await framed.send_frames(encode(GetJob(id=5)))
        assert not ran
    assert peer.recv(1024) == encode(GetJob(id=5))


async def test_send_frames_waits_for_room_and_keeps_frames_whole(
    pair: tuple[FramedStream, socket.socket],
) -> None:
    """A write bigger than the socket's buffer goes out whole, after the peer reads;
    a frame sent meanwhile from another task follows it, not inside it."""
    framed, peer = pair
    big = encode(GetStatus(rid=1)) * 200_000  # several MB: more than the socket buffer
    small = encode(GetJob(id=2))
    received = bytearray()

    def read_all() -> None:
        while len(received) < len(big) + len(small):
            received.extend(peer.recv(1 << 20))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(framed.send_frames, big)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(framed.send_frames, small)
            await trio.to_thread.run_sync(read_all)
    assert bytes(received) == big + small


async def test_send_frames_still_raises_when_cancelled(
    pair: tuple[FramedStream, socket.socket],
) -> None:
    """No yield, but still a cancellation point: a cancelled caller sends nothing."""
    framed, peer = pair
    with trio.CancelScope() as scope:
        scope.cancel()
        await framed.send_frames(encode(GetJob(id=3)))
    assert scope.cancelled_caught
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(1024)


async def test_send_frames_to_a_peer_gone_is_a_broken_stream(
    pair: tuple[FramedStream, socket.socket],
) -> None:
    framed, peer = pair
    peer.close()
    with pytest.raises(trio.BrokenResourceError):
        await framed.send_frames(encode(GetJob(id=4)))


async def test_buffered_tells_whether_a_message_waits_to_be_received() -> None:
    """``buffered``: a whole frame already here (the server commits only when none is)."""
    send, framed = _pair()
    data = encode(GetJob(id=1))
    await send.send_all(data + data[:3])
    assert not framed.buffered  # nothing read from the stream yet
    assert await framed.receive() == GetJob(id=1)
    assert not framed.buffered  # half a header
    await send.send_all(data[3:] + data)
    assert await framed.receive() == GetJob(id=1)  # reads the rest: two frames
    assert framed.buffered
    assert await framed.receive() == GetJob(id=1)
    assert not framed.buffered


async def test_receive_on_a_socket_waits_reads_and_ends_at_eof(
    pair: tuple[FramedStream, socket.socket],
) -> None:
    """On a socket, receive waits for the bytes, reads them, and ends cleanly at EOF."""
    framed, peer = pair
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.sleep(0.01)
                peer.sendall(encode(GetJob(id=8)))
                peer.shutdown(socket.SHUT_WR)

            nursery.start_soon(later)
            assert await framed.receive() == GetJob(id=8)
            with pytest.raises(trio.EndOfChannel):
                await framed.receive()


async def test_send_now_writes_at_once_and_keeps_what_the_socket_did_not_take_first() -> None:
    """A write the socket takes only in part: its rest goes out before any later frame,
    whoever writes next (a send, or flush); while it waits, send_now refuses."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer = FramedStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), ControlRequest)
    reader = FramedStream(
        trio.SocketStream(trio.socket.from_stdlib_socket(theirs)), ControlRequest, 1 << 22
    )
    async with writer.stream, reader.stream:
        await _send_now_in_part(writer, reader)


async def _send_now_in_part(writer: FramedStream, reader: FramedStream) -> None:
    small = encode(GetStatus(rid=1))
    assert writer.send_now(small)
    assert await reader.receive() == GetStatus(rid=1)
    big = encode(GetJob(id=2, rid=2)) * 20_000  # far more than the socket takes at once
    assert writer.send_now(big)
    assert not writer.send_now(small)  # its rest is still waiting
    got: list[object] = []

    async def read(count: int) -> None:
        for _ in range(count):
            got.append(await reader.receive())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, 20_001)
            await writer.send(GetStatus(rid=3))  # after the rest, not inside it
        assert got[:-1] == [GetJob(id=2, rid=2)] * 20_000
        assert got[-1] == GetStatus(rid=3)
        assert writer.send_now(big)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, 20_000)
            await writer.flush()
    assert len(got) == 40_001


async def test_send_now_refuses_while_another_write_is_under_way() -> None:
    ours, theirs = socket.socketpair()
    writer = FramedStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), ControlRequest)
    with theirs:
        async with writer.stream, writer._send_lock:
            assert not writer.send_now(encode(GetStatus(rid=1)))
    _, framed = _pair()  # not a socket
    assert not framed.send_now(encode(GetStatus(rid=1)))
