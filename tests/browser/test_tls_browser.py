"""Behind a TLS-terminating reverse proxy, as the README's production set-up: Chromium signs
in, submits a form, signs out its other sessions and signs out.

The app sends ``Referrer-Policy: no-referrer``, so Chromium sends no ``Referer`` with its
form posts; the CSRF same-origin check reads ``Sec-Fetch-Site`` instead (clinic/csrf.py).
A form posted from another origin on the same host is still refused.

The test runs everything itself on loopback: the app (production settings, one trusted
proxy), a small TLS-terminating reverse proxy in front of it, and a self-signed
certificate made with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import secrets
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import expect

from tests.browser.conftest import UI
from tests.conftest import PASSWORD

NEW_PASSWORD = "copper lantern orbit meadow 7"
# Hop-by-hop headers (RFC 9110 7.6.1): a proxy never forwards them.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@pytest.fixture
def app_overrides():
    """The README's production settings, with what a test machine needs in place of the
    real services (rate-limit counters in memory)."""
    return {
        "CLINIC_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUDIT_HMAC_KEYS": "test:" + "a" * 64,
        "MFA_ENCRYPTION_KEYS": "A" * 43 + "=",  # a Fernet key (32 zero bytes)
        "RATELIMIT_STORAGE_URI": "memory://",
        "PROXY_FIX_X_FOR": 1,
    }


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for a day; (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinic test proxy")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TLSServer(ThreadingHTTPServer):
    """A threaded HTTPS server on loopback; the TLS handshake happens in the request's
    own thread, so a slow client never holds up the others."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = context

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, address = super().get_request()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # Chromium checks the self-signed certificate on some connections and drops
        # them ("certificate unknown") before it is told to ignore the error: not a fault.
        if not isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            super().handle_error(request, client_address)


def reverse_proxy_handler(backend: str) -> type[BaseHTTPRequestHandler]:
    """Forward every request to ``backend`` (``http://host:port``) as a TLS-terminating
    proxy does: the Host kept, X-Forwarded-For/-Proto set (never passed through)."""
    target = urlsplit(backend)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                lowered = name.lower()
                if lowered not in HOP_BY_HOP and not lowered.startswith("x-forwarded-"):
                    upstream.putheader(name, value)
            upstream.putheader("X-Forwarded-For", self.client_address[0])
            upstream.putheader("X-Forwarded-Proto", "https")
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
            upstream.close()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = forward

        def log_message(self, format: str, *args: object) -> None:
            pass  # the app logs its own requests

    return Proxy


def static_page_handler(html: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    """Serve one page (another origin on the same host, for the cross-origin check)."""

    class Page(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            data = html().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Page


@pytest.fixture
def tls_context(tmp_path) -> ssl.SSLContext:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _serve(server: TLSServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def tls_proxy(live_server, tls_context) -> Iterator[str]:
    """The app behind the TLS-terminating proxy: its public https:// address."""
    yield from _serve(TLSServer(reverse_proxy_handler(live_server), tls_context))


@pytest.fixture
def other_origin(tls_context) -> Iterator[tuple[str, dict]]:
    """Another origin on the same host (another port): (address, the page's contents)."""
    page: dict = {"html": "<!doctype html><html lang='en'><title>x</title></html>"}
    server = TLSServer(static_page_handler(lambda: page["html"]), tls_context)
    for address in _serve(server):
        yield address, page


@pytest.fixture
def new_tls_ui(browser, tls_proxy):
    """Open a new browser (its own cookies) on the app behind the proxy; returns its UI."""
    contexts, uis = [], []

    def make() -> UI:
        context = browser.new_context(ignore_https_errors=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        uis.append(UI(page, tls_proxy))
        return uis[-1]

    yield make
    for ui in uis:
        assert not ui.unchecked, f"pages loaded but never checked with axe: {ui.unchecked}"
    for context in contexts:
        context.close()


def sign_in(ui: UI, username: str, password: str = PASSWORD) -> None:
    page = ui.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check()


def test_forms_work_behind_a_tls_terminating_proxy(new_tls_ui, make_user, username_of):
    username = username_of(make_user("staff"))
    desk, laptop = new_tls_ui(), new_tls_ui()

    sign_in(desk, username)
    # The session cookie is the production one: __Host- prefixed, Secure, over HTTPS.
    [cookie] = [c for c in desk.page.context.cookies() if c["name"].startswith("__Host-")]
    assert cookie["secure"] is True
    assert desk.page.url.startswith("https://")
    sign_in(laptop, username)

    # Sign out all other sessions: the laptop's session ends.
    page = desk.goto("/account")
    page.get_by_role("button", name="Sign out all other sessions").click()
    expect(page.get_by_text("Ended 1 other session(s).")).to_be_visible()
    desk.check()
    laptop.goto("/account")
    expect(laptop.page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(laptop.page.get_by_text("Your session was ended. Please sign in again.")).to_be_visible()

    # A form: change the password.
    page = desk.goto("/account/password")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password was changed.")).to_be_visible()
    desk.check()

    # Sign out: the session really ends.
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    desk.check()
    desk.goto("/account")
    expect(desk.page.get_by_role("heading", name="Sign in")).to_be_visible()

    # and the new password is the one that works
    sign_in(laptop, username, NEW_PASSWORD)


def test_a_form_posted_from_another_origin_is_refused_behind_tls(
    new_tls_ui, other_origin, make_user, username_of
):
    """Another origin on the same host (same site, so the Lax session cookie is sent),
    even with the user's valid CSRF token, cannot sign the user out."""
    username = username_of(make_user("staff"))
    ui = new_tls_ui()
    sign_in(ui, username)
    token = ui.page.locator("input[name=csrf_token]").first.get_attribute("value")
    address, page_contents = other_origin
    page_contents["html"] = (
        "<!doctype html><html lang='en'><head><title>Another site</title></head><body><main>"
        f"<h1>Another site</h1><form method='post' action='{ui.base_url}/logout'>"
        f"<input type='hidden' name='csrf_token' value='{token}'>"
        "<button type='submit'>Sign out over there</button></form></main></body></html>"
    )
    foreign = ui.page.context.new_page()
    other = UI(foreign, address)
    other.goto("/")
    foreign.get_by_role("button", name="Sign out over there").click()
    expect(foreign.get_by_role("heading", name="Bad request")).to_be_visible()
    other.check()
    foreign.close()
    # still signed in
    page = ui.goto("/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
