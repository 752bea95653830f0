"""What every page handler shares: the view's state, the session check, forms, rendering.

Contract:

* :func:`session_of` is the one gate: a request without a live session raises
  :class:`NeedLogin`, which the app answers with a redirect to ``/login`` for a page
  and ``401`` for anything else (a live stream, an action).
* :func:`action_form` is how every POST handler reads its form: it requires the
  session and the session's CSRF token in the ``csrf`` field, else raises
  :class:`Forbidden` (``403``) before the handler does anything; :func:`act` is the
  whole of an action on it (the flash of what was done or refused, the way back).
* :func:`render` fills in what every page's template needs (the session's CSRF
  token and flash messages, the page's name for the menu).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from semantica.control.async_client import AsyncClient
from semantica.control.web.live import ChangeFeed, TopFeed
from semantica.control.web.sessions import COOKIE, Session, Sessions, csrf_ok
from semantica.control.web.views import FILTERS
from semantica.errors import SemanticaError

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


class NeedLogin(Exception):
    """The request has no live session."""


class Forbidden(Exception):
    """A request that would change something came without its session's CSRF token."""


def templates() -> Jinja2Templates:
    """The templates, autoescaping everything they print."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


@dataclass
class Web:
    """The state of one ``semctl web`` process, shared by every request."""

    client: AsyncClient
    sessions: Sessions
    top: TopFeed
    changes: ChangeFeed
    templates: Jinja2Templates
    token_file: str


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def session_of(request: Request) -> Session:
    session = web_of(request).sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise NeedLogin
    return session


async def action_form(request: Request) -> tuple[Session, FormData]:
    """The session and the form of a request that changes something (CSRF checked)."""
    session = session_of(request)
    form = await request.form()
    if not csrf_ok(session, form.get("csrf")):
        raise Forbidden
    return session, form


async def act(
    request: Request, fallback: str, do: Callable[[FormData], Awaitable[str]]
) -> RedirectResponse:
    """An action, as every POST handler but the login's carries one out: the form
    (session and CSRF checked, else :class:`Forbidden` before anything), ``do`` with it,
    its message in a flash, or the one-line reason of a ``SemanticaError`` it raised in
    an error flash (nothing done), then back where the form says (else ``fallback``)."""
    session, form = await action_form(request)
    try:
        message = await do(form)
    except SemanticaError as exc:
        session.flash(exc.message, "error")
    else:
        session.flash(message)
    return back(form.get("back"), fallback)


def fragment(request: Request, name: str, **context: Any) -> str:
    """A template rendered to a string (a live update of part of a page)."""
    return web_of(request).templates.get_template(name).render(**context)


def render(
    request: Request,
    name: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A whole page for a logged-in browser (or the login page, session None)."""
    context.setdefault("page", "")
    context["csrf"] = session.csrf if session else ""
    context["flashes"] = session.take_flashes() if session else []
    context["logged_in"] = session is not None
    return web_of(request).templates.TemplateResponse(
        request, name, context, status_code=status_code
    )


def local_path(target: object, fallback: str) -> str:
    """``target`` if it is a path of this view (``/jobs?state=FAILED``), else ``fallback``:
    never another site (``//evil``, ``/\\evil``, ``http:``), never a header break."""
    if (
        not isinstance(target, str)
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return fallback
    return target


def back(target: object, fallback: str) -> RedirectResponse:
    """303 to where an action's form said to go back to: a path of this view only."""
    return RedirectResponse(local_path(target, fallback), status_code=303)
