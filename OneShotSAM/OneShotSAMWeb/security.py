"""Who may talk to the browser app.

* Listening on a loopback address (the default, ``127.0.0.1``): only this
  computer can connect; requests whose ``Host`` header is not a loopback name
  are refused (a web page elsewhere cannot reach the app through DNS rebinding).
* Listening beyond the loopback (``--host 0.0.0.0`` or a LAN address): every
  HTTP request and every websocket upgrade must carry the access token, either
  as ``?token=...`` (the URL printed at start) or as the HttpOnly cookie the
  first tokened page load sets (the page's scripts and its websocket then send
  it). Anything else gets 403.

The check is an aiohttp middleware on the app's one web server, so it covers
static files, the websocket and the download route alike.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Any

COOKIE = "oneshotsam_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A URL-safe random access token (192 bits)."""
    return secrets.token_urlsafe(24)


def _host_name(host_header: str) -> str:
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def token_ok(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), token)


def make_middleware(listen_host: str, token: str | None) -> Any:
    """The aiohttp middleware enforcing the rules above.

    Args:
        listen_host: the address the server binds.
        token: required beyond the loopback; ignored (may be None) on loopback.
    """
    from aiohttp import web

    loopback = is_loopback(listen_host)
    if not loopback and not token:
        raise ValueError("a token is required when listening beyond the loopback")

    @web.middleware
    async def guard(request: "web.Request", handler: Any) -> Any:
        if loopback:
            if not is_loopback(_host_name(request.headers.get("Host", ""))):
                raise web.HTTPForbidden(text="forbidden: this app only answers on the loopback")
            return await handler(request)
        query_token = request.query.get("token")
        if token_ok(query_token, token) or token_ok(request.cookies.get(COOKIE), token):
            response = await handler(request)
            if token_ok(query_token, token) and not getattr(response, "prepared", True):
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return response
        raise web.HTTPForbidden(text="forbidden: open the URL with the access token printed at start")

    return guard
