"""CSRF protection: Flask-WTF's token check plus a same-origin check that works behind TLS.

Flask-WTF checks the token, then (over HTTPS only) insists on a ``Referer`` from the same
host. This app sends ``Referrer-Policy: no-referrer`` on every page, so browsers send no
``Referer`` — and every form POST behind a TLS-terminating proxy was refused ("Sign out"
did nothing). We keep ``no-referrer`` rather than loosen it: with ``same-origin`` every
page's full URL (patient search terms included) would travel in ``Referer`` and land in
the reverse proxy's access log, and with ``strict-origin`` the clinic's host name would go
to every other site a page links to.

Instead, the Referer check is replaced by ``same_origin_refusal()``, which reads, in order:

1. ``Sec-Fetch-Site`` (every current browser sends it; page scripts cannot set it): only
   ``same-origin`` is accepted — ``same-site`` (a sibling subdomain), ``cross-site`` and
   ``none`` are refused.
2. ``Origin``, when it is a real origin (``no-referrer`` makes browsers send ``null`` with
   form POSTs): it must be this app's scheme, host and port.
3. ``Referer``, when present: the same.
4. None of them: refused over HTTPS, where every browser sends ``Sec-Fetch-Site`` (as
   Flask-WTF refused a missing Referer); allowed over plain HTTP (development, tests),
   where the token alone protects the form.

Cross-origin POSTs are therefore refused whatever the scheme, and a refusal goes through
the same ``CSRFError`` handler as a bad token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, request
from flask_wtf.csrf import CSRFProtect

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a malformed port or IPv6 literal
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def is_this_origin(url: str) -> bool:
    """True when ``url`` (an origin or a full URL) has this request's scheme, host and
    port (default ports made explicit, so ``https://h`` equals ``https://h:443``)."""
    theirs = _origin_of(url)
    return theirs is not None and theirs == _origin_of(f"{request.scheme}://{request.host}")


def same_origin_refusal() -> str | None:
    """Why this state-changing request does not come from one of our own pages, or None.
    The reason is a fixed text (it goes to the log): never a header's value."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return None if fetch_site == "same-origin" else "The request came from another site."
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return None if is_this_origin(origin) else "The origin does not match the host."
    if request.referrer:
        return None if is_this_origin(request.referrer) else "The referrer does not match."
    if request.is_secure:
        return "The request carries no Sec-Fetch-Site, Origin or Referer header."
    return None


class ClinicCSRFProtect(CSRFProtect):
    """``CSRFProtect`` with the same-origin check above instead of the Referer check."""

    def init_app(self, app):  # type: ignore[no-untyped-def]
        super().init_app(app)
        # Replaced by same_origin_refusal(), which also runs over HTTPS (module doc).
        app.config["WTF_CSRF_SSL_STRICT"] = False

    def protect(self, apply_exemptions: bool = False) -> None:
        if apply_exemptions and (not request.endpoint or self._is_exempt()):
            return
        if request.method not in current_app.config["WTF_CSRF_METHODS"]:
            return
        super().protect(apply_exemptions=False)  # the token
        reason = same_origin_refusal()
        if reason is not None:
            g.pop("csrf_valid", None)  # the token alone does not make this request valid
            self._error_response(reason)
