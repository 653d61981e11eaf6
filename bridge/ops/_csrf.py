"""Cross-site request forgery protection for the dashboard's forms.

The dashboard signs operators in with HTTP Basic auth and keeps no sessions. A browser attaches
saved Basic credentials to every request to the site, including a form that a page on another site
makes it post, so a valid password proves nothing about where a POST came from. Two independent
checks do:

- A token. The first page sets a random nonce in a cookie (``HttpOnly``, ``SameSite=Strict``, path
  ``/dashboard``, ``Secure`` over HTTPS) and every form carries ``HMAC(key, nonce)``; a POST must bring
  both, and they must match (``hmac.compare_digest``). Another site cannot read our pages to learn the
  token, and SameSite=Strict keeps the cookie off its requests anyway. The token is signed rather than
  a plain copy of the cookie ("double submit"): whoever can plant a cookie for our host (a sibling
  subdomain, a network attacker on plain HTTP) could set cookie and field to the same value, but
  cannot compute the HMAC.
- The origin. A POST whose ``Origin`` (or, without one, ``Referer``) names another host, or ``null``
  (sandboxed frames, opaque redirects), is refused; it also holds in a browser that ignores SameSite.

The key is derived from the dashboard password instead of drawn at random in each process: Heroku
sends each request to any web dyno and restarts dynos daily, and a per-process secret would refuse
a form served by another dyno or before a restart. A page on another site knows neither the
password nor the key, and changing the password voids every open form, as it should.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "bridge_dashboard_csrf"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)

Refusal = Literal["foreign origin", "no token", "wrong token"]


class CsrfGuard:
    """Issues form tokens and checks posted ones; ``path`` scopes the cookie."""

    def __init__(self, *, password: str, path: str) -> None:
        self._key = hmac.new(password.encode(), b"bridge dashboard csrf v1", hashlib.sha256).digest()
        self._path = path

    def token(self, request: Request) -> tuple[str, str | None]:
        """The token for this request's forms, and the nonce to set as a cookie when it has none yet."""
        nonce = request.cookies.get(COOKIE, "")
        if _NONCE.match(nonce):
            return self._sign(nonce), None
        nonce = secrets.token_urlsafe(32)
        return self._sign(nonce), nonce

    def set_cookie(self, request: Request, response: Response, nonce: str) -> None:
        https = request.url.scheme == "https"  # uvicorn has applied X-Forwarded-Proto from a trusted proxy
        response.set_cookie(COOKIE, nonce, path=self._path, httponly=True, samesite="strict", secure=https)

    def check(self, request: Request, given: str) -> Refusal | None:
        """Why a POST carrying ``given`` as its token must be refused, or None when it came from our page."""
        if not _same_origin(request):
            return "foreign origin"
        nonce = request.cookies.get(COOKIE, "")
        if not given or not _NONCE.match(nonce):
            return "no token"
        if not hmac.compare_digest(given.encode(), self._sign(nonce).encode()):
            return "wrong token"
        return None

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> bool:
    """Whether the page that posted is on this host. Browsers send ``Origin`` with every POST; some
    privacy settings drop it, and then the ``Referer`` (our pages ask for same-origin referrers) is
    used. A request with neither relies on the token alone."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True
    host = request.headers.get("host", "")
    # The scheme is not compared: behind a router that ends TLS the browser's https is our http.
    return bool(host) and source != "null" and urlsplit(source).netloc.lower() == host.lower()
