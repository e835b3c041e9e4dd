"""Settings from the environment: a decimal where the setting is a duration."""

from __future__ import annotations

import pytest

import config
from tests.conftest import make_app


def test_idle_timeout_accepts_a_decimal_number_of_minutes():
    settings = config.load_config("testing", {"SESSION_IDLE_TIMEOUT_MINUTES": "0.5"})
    assert settings["SESSION_IDLE_TIMEOUT_MINUTES"] == 0.5


def test_idle_timeout_from_the_environment_sets_the_sign_out(monkeypatch, database_uri):
    from clinic.accounts.user_sessions import idle_timeout

    monkeypatch.setenv("SESSION_IDLE_TIMEOUT_MINUTES", "0.5")
    app = make_app(database_uri)
    with app.app_context():
        assert idle_timeout().total_seconds() == 30


def test_whole_minutes_and_hours_are_still_accepted():
    settings = config.load_config(
        "testing",
        {"SESSION_IDLE_TIMEOUT_MINUTES": "5", "SESSION_ABSOLUTE_TIMEOUT_HOURS": "8"},
    )
    assert settings["SESSION_IDLE_TIMEOUT_MINUTES"] == 5
    assert settings["SESSION_ABSOLUTE_TIMEOUT_HOURS"] == 8


@pytest.mark.parametrize("raw", ["half", "", "nan", "inf"])
def test_a_timeout_that_is_not_a_number_is_refused(raw):
    with pytest.raises(ValueError, match=repr(raw) if raw in {"nan", "inf"} else None):
        config.load_config("testing", {"SESSION_IDLE_TIMEOUT_MINUTES": raw})


def test_integer_settings_still_refuse_a_decimal():
    with pytest.raises(ValueError):
        config.load_config("testing", {"LOGIN_LOCKOUT_FAILURES": "2.5"})
