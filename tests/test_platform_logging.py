"""Logs carry what an operator needs (the URL rule, the exception's type and traceback)
and never a path, a query string or a form value, in every mode."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

import pytest
from werkzeug.serving import make_server

from clinic.logging import DropQueryString, JsonFormatter, format_exception_without_values


@pytest.fixture
def failing_view(app):
    """A view that fails with a message holding the values it was given."""

    def explode(patient_id: int):
        from flask import request

        raise LookupError(f"no chart for {request.args.get('q')} ({patient_id})")

    explode._clinic_access = "public"
    app.add_url_rule("/test/explode/<int:patient_id>", view_func=explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def _error_records(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "clinic"]


def test_an_exception_is_logged_with_type_and_traceback_but_no_path_or_query(
    failing_view, client, caplog
):
    caplog.set_level(logging.INFO)
    response = client.get("/test/explode/99999999?q=Smith+Jo")
    assert response.status_code == 500

    [record] = _error_records(caplog)
    assert record.getMessage() == "unhandled exception in /test/explode/<int:patient_id> [GET]"
    assert record.exc_info is not None and record.exc_info[0] is LookupError

    line = JsonFormatter().format(record)
    logged = json.loads(line)
    assert logged["exc_type"] == "LookupError"
    assert logged["rule"] == "/test/explode/<int:patient_id>"
    assert logged["traceback"].startswith("Traceback (most recent call last):")
    assert "in explode" in logged["traceback"]  # the frame of the view
    assert logged["traceback"].endswith("LookupError")
    # The values the exception's message held (the source lines of the frames stay).
    for secret in ("Smith", "99999999", "q=", "no chart for Smith"):
        assert secret not in line, secret


def test_no_log_record_of_a_failed_request_holds_its_path_or_query(failing_view, client, caplog):
    caplog.set_level(logging.DEBUG)
    client.get("/test/explode/424242?q=Smith+Jo")
    formatter = JsonFormatter()
    for record in caplog.records:
        text = record.getMessage() + formatter.format(record)
        assert "424242" not in text and "Smith" not in text, record.name


def _read(value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise RuntimeError(f"could not read {value}") from exc


def test_chained_exceptions_keep_every_type_and_no_message():
    name = "".join(["Smi", "th"])  # a value that appears in no source line
    with pytest.raises(RuntimeError) as caught:
        _read(name)
    text = format_exception_without_values(caught.value)
    assert "ValueError" in text and "RuntimeError" in text
    assert "The above exception was the direct cause" in text
    assert text.index("ValueError") < text.index("RuntimeError")  # as Python prints it
    assert "in _read" in text
    assert "Smith" not in text


def test_database_errors_never_carry_their_parameters(app):
    """A failed statement's message (which reaches any error page or log) names no value."""
    import sqlalchemy as sa

    from clinic.extensions import db

    with app.app_context(), pytest.raises(sa.exc.DBAPIError) as caught:
        db.session.execute(sa.text("SELECT * FROM no_such_table WHERE x = :v"), {"v": "Smith"})
    assert "Smith" not in str(caught.value)


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        ("GET /patients/?q=smi+j HTTP/1.1", "GET /patients/ HTTP/1.1"),
        ("GET /patients/?q=smi j HTTP/1.1", "GET /patients/ HTTP/1.1"),
        ("\x1b[33mGET /x?q=a HTTP/1.1\x1b[0m", "\x1b[33mGET /x HTTP/1.1\x1b[0m"),
        ("GET /patients/42 HTTP/1.1", "GET /patients/42 HTTP/1.1"),
        ("GET /?q=smi", "GET /"),  # a request line without its protocol
    ],
)
def test_the_development_server_log_drops_the_query_string(line, logged):
    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '127.0.0.1 - - [x] "%s" %s %s',
        (line, "200", "-"),
        None,
    )
    assert DropQueryString().filter(record) is True
    assert record.args == (logged, "200", "-")


def test_the_development_server_logs_requests_without_their_query(app, caplog):
    """The server ``flask run`` (and ``make run``) uses, on a real socket."""
    caplog.set_level(logging.INFO, logger="werkzeug")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/healthz?q=smi+j&dob=1980-04-02"
        with urllib.request.urlopen(url) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        thread.join(timeout=5)
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("GET /healthz HTTP/1.1" in line for line in lines), lines
    assert not any("smi" in line or "1980" in line for line in lines), lines
