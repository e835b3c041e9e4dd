"""Logs without patient data, search terms or form values, in every mode.

- One structured (JSON) line per request with the URL *rule*
  (``/patients/<int:patient_id>``), never the raw path or query string, which could hold a
  name or a date of birth typed into a search.
- An unhandled exception is logged as ``unhandled exception in <rule> [<method>]`` with
  its type and traceback (``exc_type``, ``traceback``). The traceback keeps the frames
  (file, line, function, source line) and the exception *types* of the chain, but never an
  exception's message: messages carry values (SQL parameters, the text that failed to
  parse, a path).
- The development server's access line (``flask run``, ``make run``) keeps the path but
  drops the query string (``"GET /patients/ HTTP/1.1" 200``), through a filter on the
  ``werkzeug`` logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from types import TracebackType

from flask import Flask, Response, g, request
from flask_login import current_user

logger = logging.getLogger("clinic.request")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_exception_without_values(exc: BaseException) -> str:
    """The traceback of ``exc`` and of the exceptions chained to it, as Python prints it,
    but with each exception's message left out: only its type is shown."""
    # Outermost first; each entry says how it led to the one before it.
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = exc
    link = ""
    while current is not None and all(current is not seen for seen, _ in chain):
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    lines: list[str] = []
    for item, link in reversed(chain):  # innermost first, as Python prints it
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.StackSummary.extract(traceback.walk_tb(item.__traceback__)).format())
        lines.append(f"{_type_name(type(item))}\n")
        lines.append(link)
    return "".join(lines).rstrip("\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"level": record.levelname, "logger": record.name, "event": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            payload["exc_type"] = _type_name(record.exc_info[0] or type(record.exc_info[1]))
            payload["traceback"] = format_exception_without_values(record.exc_info[1])
        return json.dumps(payload, default=str)


# In a request line "METHOD TARGET HTTP/x.y" (maybe wrapped in ANSI colour codes): the
# query string, from "?" up to " HTTP/", or up to a colour code or the end.
_QUERY_IN_REQUEST_LINE = re.compile(r"\?.*(?= HTTP/)|\?[^\x1b]*")


class DropQueryString(logging.Filter):
    """On the ``werkzeug`` logger: the development server's request lines without their
    query string (``GET /patients/?q=smi+j`` is logged as ``GET /patients/``), in the
    access line and in its "bad request" lines alike."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and "?" in str(record.args):
            record.args = tuple(
                _QUERY_IN_REQUEST_LINE.sub("", arg, count=1)
                if isinstance(arg, str) and "\n" not in arg
                else arg
                for arg in record.args
            )
        return True


def configure_logging(level: str) -> None:
    from flask.logging import default_handler

    root = logging.getLogger("clinic")
    # Flask's own handler would print the exception's message: ours alone writes.
    root.removeHandler(default_handler)
    werkzeug_logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropQueryString) for f in werkzeug_logger.filters):
        werkzeug_logger.addFilter(DropQueryString())
    if not any(getattr(h, "_clinic", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._clinic = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def log_exception(app: Flask, exc_info: ExcInfo) -> None:
    """What ``Flask.log_exception`` does, without the raw path: the URL rule and method,
    with the exception's type and traceback (formatted by ``JsonFormatter``)."""
    rule = request.url_rule.rule if request.url_rule else None
    app.logger.error(
        "unhandled exception in %s [%s]",
        rule or "(no rule)",
        request.method,
        exc_info=exc_info,
        extra={
            "fields": {"rule": rule, "method": request.method, "request_id": g.get("request_id")}
        },
    )


def register(app: Flask) -> None:
    configure_logging(app.config["LOG_LEVEL"])

    @app.before_request
    def start_request() -> None:
        g.request_started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        user_id = current_user.get_id() if current_user and current_user.is_authenticated else None
        logger.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "rule": request.url_rule.rule if request.url_rule else None,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "user_id": user_id,
                    "request_id": request_id,
                }
            },
        )
        return response
