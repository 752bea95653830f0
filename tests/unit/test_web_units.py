"""The web view's small parts: login codes and sessions, the Host list, job text made inert."""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from semantica.control.web import peers
from semantica.control.web import sessions as sessions_module
from semantica.control.web.guard import BODY_S, Guard, allowed_hosts
from semantica.control.web.serve import bind
from semantica.control.web.sessions import Sessions, csrf_ok
from semantica.control.web.views import log_line, text
from semantica.control.web_addr import parse_addr
from semantica.errors import BadInput


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_login_code_works_once_and_expires() -> None:
    clock = Clock()
    logins = Sessions(lambda: "tok", now=clock)
    code = logins.new_code()
    assert logins.redeem_code("wrong") is None
    session = logins.redeem_code(code)
    assert session is not None and logins.get(session.key) is session
    assert logins.redeem_code(code) is None  # spent
    late = logins.new_code()
    clock.now += sessions_module.CODE_TTL_S + 1
    assert logins.redeem_code(late) is None


def test_a_session_ends_when_idle_and_at_logout() -> None:
    clock = Clock()
    logins = Sessions(lambda: "tok", now=clock)
    session = logins.login_with_token("tok")
    assert session is not None
    clock.now += sessions_module.IDLE_S - 1
    assert logins.get(session.key) is session  # used: the idle time starts again
    clock.now += sessions_module.IDLE_S - 1
    assert logins.get(session.key) is session
    clock.now += sessions_module.IDLE_S + 1
    assert logins.get(session.key) is None
    other = logins.login_with_token(" tok\n")
    assert other is not None
    logins.end(other.key)
    assert logins.get(other.key) is None


def test_the_token_login_refuses_anything_else() -> None:
    logins = Sessions(lambda: "tok")
    assert logins.login_with_token("") is None
    assert logins.login_with_token("tok2") is None

    def no_token() -> str:
        raise OSError("no token file")

    assert Sessions(no_token).login_with_token("") is None


def test_sessions_are_bounded() -> None:
    logins = Sessions(lambda: "tok")
    first = logins.login_with_token("tok")
    assert first is not None
    for _ in range(sessions_module.MAX_SESSIONS):
        logins.login_with_token("tok")
    assert logins.get(first.key) is None


def test_csrf_tokens_are_per_session() -> None:
    logins = Sessions(lambda: "tok")
    a, b = logins.login_with_token("tok"), logins.login_with_token("tok")
    assert a is not None and b is not None
    assert csrf_ok(a, a.csrf) and not csrf_ok(a, b.csrf)
    assert not csrf_ok(a, None) and not csrf_ok(a, "")


def test_the_hosts_a_view_answers() -> None:
    hosts = allowed_hosts("127.0.0.1", 7433, ["box.lan"])
    assert {"127.0.0.1:7433", "localhost:7433", "[::1]:7433"} <= hosts
    assert {"box.lan", "box.lan:7433"} <= hosts
    assert "127.0.0.1" not in hosts and "evil.example:7433" not in hosts
    assert "[::1]:80" in allowed_hosts("::1", 80)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_addresses(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["", "7433", ":7433", "host:80", "1.2.3.4:x", "1.2.3.4:70000"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(BadInput):
        parse_addr(addr)


def test_a_log_line_loses_its_escapes_and_keeps_its_text() -> None:
    assert log_line("\x1b[31mred\x1b[0m plain") == "red plain"
    assert log_line("\x1b]0;title\x07after") == "after"
    assert log_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert log_line("bell\x07 and \x9b31m") == "bell\\x07 and "
    assert log_line("a\tb") == "a    b"
    assert log_line("<script>") == "<script>"  # (the template escapes it; this keeps it)


def test_job_text_shows_controls_as_escapes() -> None:
    assert text(None) == "-"
    assert text("a\nb\u202ec") == "a\\nb\\u202ec"
    assert text(12) == "12"


def test_a_port_in_use_says_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BadInput) as raised:
            bind("127.0.0.1", port)
    message = str(raised.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert "another semctl web" in message and "--addr" in message
    assert "\n" not in message


async def test_a_body_sent_too_slowly_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    """A body that trickles in (a byte now and then) would hold its connection and the
    handler for ever: after BODY_S seconds the view answers 408 and does nothing."""
    done: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            done.append(await request.body())
        except HTTPException as exc:
            done.append(str(exc.status_code).encode())

    async def trickle() -> Message:
        await trio.sleep(1)
        return {"type": "http.request", "body": b"a", "more_body": True}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/enqueue",
        "headers": [(b"host", b"127.0.0.1:7433")],
    }
    started = trio.current_time()
    await Guard(app, allowed_hosts("127.0.0.1", 7433))(scope, trickle, send)
    assert done == [b"408"]
    assert trio.current_time() - started == pytest.approx(BODY_S, abs=1)


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
@pytest.mark.parametrize("ask", ["kernel", "tables"])
def test_the_owner_of_a_loopback_peer_is_found(
    family: int, host: str, ask: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ask == "tables":  # where netlink's sock_diag cannot be asked

        def unanswered(*args: object) -> None:
            raise peers._Unanswered

        monkeypatch.setattr(peers, "_ask_kernel", unanswered)
    with socket.socket(family) as listener:
        try:
            listener.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        listener.listen()
        assert peers.listener_uid(host, listener.getsockname()[1]) == os.getuid()
        with socket.create_connection(listener.getsockname()[:2]) as client:
            accepted, peer = listener.accept()
            with accepted:
                local = accepted.getsockname()[:2]
                assert peers.peer_uid(peer[:2], local) == os.getuid()
                assert peers.peer_uid((host, client.getsockname()[1] ^ 1), local) is None


@pytest.mark.parametrize("ask", ["kernel", "tables"])
def test_the_owner_of_an_ipv4_peer_of_a_dual_stack_view_is_found(
    ask: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listening on ``::`` takes IPv4 too, and names such a peer ``::ffff:127.0.0.1``:
    the kernel knows it by its IPv4 address (else another user, connecting by
    127.0.0.1, would be let through as unknown)."""
    if ask == "tables":

        def unanswered(*args: object) -> None:
            raise peers._Unanswered

        monkeypatch.setattr(peers, "_ask_kernel", unanswered)
    with socket.socket(socket.AF_INET6) as listener:
        try:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind(("::", 0))
        except OSError:
            pytest.skip("no dual-stack IPv6 here")
        listener.listen()
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1])):
            accepted, peer = listener.accept()
            with accepted:
                assert peer[0] == "::ffff:127.0.0.1"
                local = accepted.getsockname()[:2]
                assert peers.peer_uid(peer[:2], local) == os.getuid()


def test_characters_that_show_nothing_are_shown_as_escapes() -> None:
    """Two subjects that differ by an invisible character do not look the same."""
    assert text("pay\u200broll") == "pay\\u200broll"
    assert text("\ufeffdeploy") == "\\ufeffdeploy"
    assert text("a\u2060b") == "a\\u2060b"
    assert text("tag\U000e0041") == "tag\\U000e0041"
    assert text("naïve café 東京 ✓") == "naïve café 東京 ✓"  # visible text is left alone


def test_a_peer_the_kernel_cannot_find_is_looked_up_in_the_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A link-local IPv6 peer (fe80::…%eth0) is asked of the kernel without its interface
    and not found; the tables still list it with its owner, who is refused if another."""
    monkeypatch.setattr(peers, "_ask_kernel", lambda peer, local: None)
    monkeypatch.setattr(peers, "_owner", lambda needle: 65534)
    assert peers.peer_uid(("fe80::1", 40000), ("fe80::2", 7433)) == 65534
    # A peer on another machine is unknown to the kernel, and that is the answer: the
    # tables (read at a cost that grows with the machine's sockets) are not read for it.
    read: list[str] = []
    monkeypatch.setattr(peers, "_owner", lambda needle: read.append(needle) or 65534)
    assert peers.peer_uid(("192.0.2.7", 40000), ("10.0.0.2", 7433)) is None
    assert read == []
