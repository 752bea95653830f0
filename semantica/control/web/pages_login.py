"""Logging in and out.

``GET /login?code=CODE`` with the code ``semctl web`` printed opens a session and goes
to the dashboard; the code works once. ``POST /login`` takes the supervisor's token
pasted into the form, and goes on to the page that sent the browser to log in
(``next``, a path of this view only). ``POST /logout`` ends the session
(CSRF-checked like any action).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from semantica.control.web.access import action_form, local_path, render, web_of
from semantica.control.web.sessions import COOKIE, Session


def _logged_in(session: Session, target: str = "/") -> Response:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, session.key, httponly=True, samesite="strict", path="/")
    return response


def _page(request: Request, why: str = "", then: object = None) -> Response:
    return render(
        request,
        "login.html",
        None,
        status_code=401 if why else 200,
        refused=why,
        token_file=web_of(request).token_file,
        then=local_path(then, "/"),
    )


def _refused(request: Request, why: str, then: object = None) -> Response:
    return _page(request, why, then)


async def login_page(request: Request) -> Response:
    code = request.query_params.get("code")
    if code is None:
        return _page(request, then=request.query_params.get("next"))
    session = web_of(request).sessions.redeem_code(code)
    if session is None:
        return _refused(request, "That login link was used already or has expired.")
    return _logged_in(session)


async def login_with_token(request: Request) -> Response:
    form = await request.form()
    token = form.get("token")
    session = web_of(request).sessions.login_with_token(token if isinstance(token, str) else "")
    if session is None:
        return _refused(request, "That is not the supervisor's token.", form.get("next"))
    return _logged_in(session, local_path(form.get("next"), "/"))


async def logout(request: Request) -> Response:
    session, _ = await action_form(request)
    web_of(request).sessions.end(session.key)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


ROUTES = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_with_token, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
