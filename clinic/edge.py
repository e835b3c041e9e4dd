"""What arrives at the edge of the app, checked before any view sees it.

- **The proxy chain** (``PROXY_FIX_X_FOR``): Werkzeug's ProxyFix trusts that many
  ``X-Forwarded-For``/``-Proto`` values, and only from a peer that is one of the proxies
  (``TRUSTED_PROXIES``: addresses or networks, default loopback). From any other peer the
  forwarded headers are dropped before ProxyFix reads them, so a client that reaches the
  app server directly cannot choose the address the rate limits and the audit trail see.
- **The Host header** (``ALLOWED_HOSTS``): a request for another host name answers 400
  with the ordinary error page before any view, so a forged ``Host`` never reaches a
  redirect's ``Location`` or a link. The raw value is recorded nowhere.
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
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, abort, current_app, request
from werkzeug.sansio.utils import host_is_trusted

from clinic.forms import SINGLE_LINE_REFUSED

# What a single-line form field refuses (``clinic.forms``): every C0 control (tab and
# newline included: no search box or filter needs them), DEL, C1, the bidi controls and
# the invisible spaces and separators.
QUERY_REFUSED = SINGLE_LINE_REFUSED
# The longest textual IPv6 address, with an embedded IPv4 one.
MAX_ADDRESS_LENGTH = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")
# What a proxy adds (RFC 7239 and the de-facto X-Forwarded-*), as WSGI environ keys.
FORWARDED_HEADERS = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
)
# Where gunicorn's access log (clinic.server) finds what the app noted of a request (its
# URL rule): a dict shared by the environ copies the middlewares below may make.
ACCESS_NOTE = "clinic.access_note"

# An ALLOWED_HOSTS entry: a DNS name or IPv4 address, a leading dot for its subdomains, a
# port (which the check ignores).
HOST_NAME = re.compile(
    r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?"
)

# Probes (no URL built, nothing of the request echoed), answered whatever the Host.
ANY_HOST_ENDPOINTS = frozenset({"main.healthz", "main.readyz"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(raw: str | None) -> str | None:
    """``raw`` as a normalised IP address (``"2001:db8::1"``, ``"192.0.2.7"``), or None
    when it is not one (garbage, too long, an IPv6 zone such as ``fe80::1%eth0``)."""
    if not raw or len(raw) > MAX_ADDRESS_LENGTH or "%" in raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``"127.0.0.1, ::1, 10.0.0.0/8"`` as networks (an address is a network of one).
    Raises ValueError naming the entry that is neither."""
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(networks)


def parse_hosts(raw: str) -> list[str]:
    """``"clinic.example.org, .example.net"`` as lower-case host names; a leading dot
    accepts every subdomain (Werkzeug's ``host_is_trusted``). Raises ValueError naming the
    entry that is not a host name (a URL, a path, a ``*`` wildcard, an IPv6 literal):
    no request's ``Host`` would ever match it, and every page would answer 400 while the
    health checks, which answer any host, said all was well."""
    hosts = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for host in hosts:
        if not HOST_NAME.fullmatch(host):
            raise ValueError(
                f"not a host name: {host!r} (a name or IPv4 address such as "
                "clinic.example.org, or .example.org for its subdomains; no scheme, path or "
                "wildcard)"
            )
    return hosts


def peer_is_trusted(raw: str | None, proxies: tuple[Network, ...]) -> bool:
    """Whether the immediate peer ``raw`` (``REMOTE_ADDR`` as the server set it) is one of
    ``proxies``. A peer without an IP address (gunicorn on a ``unix:`` socket, whose file
    permissions choose who connects) counts as the proxy, as gunicorn's own
    ``forwarded_allow_ips`` treats it."""
    if not raw:
        return True
    address = client_address(raw)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in proxies)


class TrustedProxyMiddleware:
    """WSGI middleware, outside ProxyFix: the forwarded headers are kept only when the
    immediate peer is one of ``proxies``; from any other peer they are removed, so ProxyFix
    leaves ``REMOTE_ADDR`` and the scheme as the connection gave them."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], proxies: tuple[Network, ...]):
        self.wsgi_app = wsgi_app
        self.proxies = proxies

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if not peer_is_trusted(environ.get("REMOTE_ADDR"), self.proxies):
            forged = [key for key in FORWARDED_HEADERS if key in environ]
            if forged:
                environ = {k: v for k, v in environ.items() if k not in forged}
        return self.wsgi_app(environ, start_response)


class AccessNoteMiddleware:
    """WSGI middleware, outermost: puts an empty dict at ``environ[ACCESS_NOTE]`` that the
    app fills (``note_rule``) and the server's access log reads. The inner middlewares copy
    the environ shallowly, so every copy shares this one dict."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        environ.setdefault(ACCESS_NOTE, {})
        return self.wsgi_app(environ, start_response)


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


def refuse_unknown_host() -> None:
    """400 for a ``Host`` that is not one of ``ALLOWED_HOSTS`` (port ignored; a leading
    dot accepts subdomains). Open when the setting is empty (development, testing). The
    health checks answer any host: a load balancer's or orchestrator's probe sends the
    server's own address, and they build no URL."""
    allowed = current_app.config["ALLOWED_HOST_NAMES"]
    if request.endpoint in ANY_HOST_ENDPOINTS:
        return
    if allowed and not host_is_trusted(request.host.lower(), allowed):
        abort(400)


def note_rule(response):  # type: ignore[no-untyped-def]
    """The request's URL rule (``/patients/<int:patient_id>``, never the raw path) for the
    server's access log."""
    note = request.environ.get(ACCESS_NOTE)
    if note is not None:
        note["rule"] = request.url_rule.rule if request.url_rule else None
    return response


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
    # between the two; the peer check sits outside ProxyFix, and the access note outside
    # all: AccessNote(TrustedProxy(ProxyFix(ClientAddressMiddleware(Flask)))).
    wsgi_app: Callable[..., Iterable[bytes]] = ClientAddressMiddleware(app.wsgi_app)
    trusted = app.config["PROXY_FIX_X_FOR"]
    if trusted:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # x_proto: the proxy terminates TLS, so the scheme it saw is the one that counts
        # (secure cookies, HSTS, the CSRF origin check).
        wsgi_app = ProxyFix(wsgi_app, x_for=trusted, x_proto=1)
        # Outside ProxyFix: it must see the peer the connection came from.
        wsgi_app = TrustedProxyMiddleware(wsgi_app, parse_networks(app.config["TRUSTED_PROXIES"]))
    app.wsgi_app = AccessNoteMiddleware(wsgi_app)  # type: ignore[method-assign]
    app.config["ALLOWED_HOST_NAMES"] = parse_hosts(app.config["ALLOWED_HOSTS"])
    app.before_request(refuse_unknown_host)
    app.before_request(refuse_control_characters)
    app.after_request(note_rule)
