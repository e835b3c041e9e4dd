"""The page benchmark's browser: a Flask test client that signs in through ``/login`` and
submits forms as a browser would (the form's own fields, its CSRF and submission tokens),
read from the page's HTML with the standard library's parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    """A ``<form>`` of a page: where it posts and the values a browser would send as is
    (hidden and text inputs, checked boxes, selected options, textareas); ``options``:
    every checkbox, radio and select value the form offers, by field name."""

    action: str
    method: str
    values: list[tuple[str, str]] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)

    def data(self, **changes: str | list[str]) -> dict[str, str | list[str]]:
        """The values to post, with ``changes`` (a list: several values of one name)."""
        sent: dict[str, str | list[str]] = {}
        for name, value in self.values:
            if name in sent:
                previous = sent[name]
                sent[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                sent[name] = value
        sent.update(changes)
        return sent


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._option_value: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = Form(
                action=a.get("action") or "", method=(a.get("method") or "get").lower()
            )
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            value = a.get("value") or ""
            if kind in ("checkbox", "radio"):
                form.options.setdefault(name, []).append(value or "on")
                if "checked" in a:
                    form.values.append((name, value or "on"))
            elif kind not in ("submit", "button", "image", "reset", "file"):
                form.values.append((name, value))
        elif tag == "select" and name:
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value", "")
            self._option_value = value
            form.options.setdefault(self._select, []).append(value)
            if self._select_first is None:
                self._select_first = value
            if "selected" in a and not self._select_chosen:
                form.values.append((self._select, value))
                self._select_chosen = True
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select and self._form is not None:
            if not self._select_chosen and self._select_first is not None:
                self._form.values.append((self._select, self._select_first))
            self._select = None
        elif tag == "textarea" and self._textarea and self._form is not None:
            self._form.values.append((self._textarea, "".join(self._text).lstrip("\n")))
            self._textarea = None


def forms_of(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def form_posting_to(html: str, action_part: str, page_url: str = "") -> Form:
    """The page's POST form whose action (``page_url`` when it has none: the form posts
    to its own page) contains ``action_part``; KeyError when none."""
    for form in forms_of(html):
        if form.method == "post" and action_part in (form.action or page_url):
            return form
    raise KeyError(f"no form posting to {action_part!r}")


NEXT_LINK = re.compile(r'<a\b[^>]*href="([^"]+)"[^>]*>\s*(?:Next|Older|More)\b', re.IGNORECASE)
REL_NEXT = re.compile(
    r'<a\b[^>]*rel="next"[^>]*href="([^"]+)"|<a\b[^>]*href="([^"]+)"[^>]*rel="next"'
)


def next_link(html: str) -> str | None:
    """The page's link to the next page of its list (``rel="next"``, else a link named
    Next / Older / More), HTML entities undone; None when there is none."""
    import html as html_module

    match = REL_NEXT.search(html)
    if match:
        return html_module.unescape(match.group(1) or match.group(2))
    match = NEXT_LINK.search(html)
    return html_module.unescape(match.group(1)) if match else None


class Browser:
    """A signed-in test client of ``app`` (``login()`` posts the real login form)."""

    def __init__(self, app, username: str, password: str) -> None:
        self.app = app
        self.client = app.test_client()
        self.username = username
        self.password = password

    def login(self) -> None:
        page = self.client.get("/login")
        form = form_posting_to(page.get_data(as_text=True), "/login", "/login")
        response = self.client.post(
            "/login", data=form.data(username=self.username, password=self.password)
        )
        if response.status_code != 302 or "/login" in response.headers.get("Location", "/login"):
            raise RuntimeError(
                f"login as {self.username} failed: {response.status_code} "
                f"{response.headers.get('Location')}"
            )

    def get(self, url: str):
        return self.client.get(url)

    def post(self, url: str, data: dict):
        return self.client.post(url, data=data)

    def form(self, url: str) -> Form:
        """The POST form of the page at ``url`` that posts to ``url`` (or to itself)."""
        path = url.split("?")[0]
        return form_posting_to(self.html(url), path, path)

    def html(self, url: str) -> str:
        response = self.client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} as {self.username}: {response.status_code}")
        return response.get_data(as_text=True)
