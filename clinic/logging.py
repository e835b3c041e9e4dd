"""One structured (JSON) line per request, without patient data or form values.

The line carries the URL *rule* (``/patients/<int:patient_id>``), never the raw path or
query string, which could hold a name or a date of birth typed into a search.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, request
from flask_login import current_user

logger = logging.getLogger("clinic.request")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"level": record.levelname, "logger": record.name, "event": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        return json.dumps(payload, default=str)


def configure_logging(level: str) -> None:
    root = logging.getLogger("clinic")
    if not any(getattr(h, "_clinic", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._clinic = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


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
