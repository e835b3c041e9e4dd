"""What arrives at the edge of the app, checked before any view sees it.

- **The proxy chain** (``PROXY_FIX_X_FOR``): Werkzeug's ProxyFix trusts that many
  ``X-Forwarded-For``/``-Proto`` values.
- **The client address**: after ProxyFix, ``REMOTE_ADDR`` must be an IPv4 or IPv6 address
  (normalised), or it is removed (``request.remote_addr`` is then None). A forged
  ``X-Forwarded-For`` such as ``=cmd|' /C calc'!A0`` or 10,000 characters never reaches
  the sessions table, the audit trail or the rate limiter's keys.
- **The query string** (search boxes, filters, ``next=``): a key or value holding a C0
  control character, DEL, a C1 control or a bidirectional override/isolate answers 400
  with the ordinary error page, before the login gate and any view. The raw value is
  recorded nowhere. The same for a ``User-Agent`` header, which is stored with each
  session. (Form fields are checked by ``clinic.forms.ClinicForm``, with an error next to
  the field.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, abort, request

from clinic.forms import SINGLE_LINE_REFUSED

# What a single-line form field refuses (``clinic.forms``): every C0 control (tab and
# newline included: no search box or filter needs them), DEL, C1, the bidi controls and
# the invisible spaces and separators.
QUERY_REFUSED = SINGLE_LINE_REFUSED
# The longest textual IPv6 address, with an embedded IPv4 one.
MAX_ADDRESS_LENGTH = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")


def client_address(raw: str | None) -> str | None:
    """``raw`` as a normalised IP address (``"2001:db8::1"``, ``"192.0.2.7"``), or None
    when it is not one (garbage, too long, an IPv6 zone such as ``fe80::1%eth0``)."""
    if not raw or len(raw) > MAX_ADDRESS_LENGTH or "%" in raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None


class ClientAddressMiddleware:
    """WSGI middleware: ``REMOTE_ADDR`` is a valid, normalised address, or absent."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        address = client_address(environ.get("REMOTE_ADDR"))
        if address != environ.get("REMOTE_ADDR"):
            # A copy: the server's own environ keeps its key (its access log reads it).
            environ = {k: v for k, v in environ.items() if k != "REMOTE_ADDR"}
            if address is not None:
                environ["REMOTE_ADDR"] = address
        return self.wsgi_app(environ, start_response)


def refuse_control_characters() -> None:
    """400 for a query string (or User-Agent) carrying control or invisible formatting
    characters."""
    for key, value in request.args.items(multi=True):
        if QUERY_REFUSED.search(key) or QUERY_REFUSED.search(value):
            abort(400)
    if QUERY_REFUSED.search(request.headers.get("User-Agent", "")):
        abort(400)


def register(app: Flask) -> None:
    """Wrap the WSGI app and add the query-string guard. ``create_app`` calls it before
    the extensions (CSRF), the login gate and the blueprints register their
    ``before_request`` functions, so the guard answers before any of them."""
    # ProxyFix rewrites REMOTE_ADDR before it calls the app it wraps, so the check sits
    # between the two: ProxyFix(ClientAddressMiddleware(Flask)).
    wsgi_app: Callable[..., Iterable[bytes]] = ClientAddressMiddleware(app.wsgi_app)
    trusted = app.config["PROXY_FIX_X_FOR"]
    if trusted:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # x_proto: the proxy terminates TLS, so the scheme it saw is the one that counts
        # (secure cookies, HSTS, the CSRF origin check).
        wsgi_app = ProxyFix(wsgi_app, x_for=trusted, x_proto=1)
    app.wsgi_app = wsgi_app  # type: ignore[method-assign]
    app.before_request(refuse_control_characters)
