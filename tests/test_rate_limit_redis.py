"""The sign-in rate limit with its counters in Redis, as production runs it (several app
servers share the counters). Needs Redis on 127.0.0.1:6379: skipped without it, unless
REQUIRE_REDIS=1 (CI), when it fails."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.conftest import make_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_url():
    if not _redis_available():
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis does not answer at {REDIS_URL}")
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    return REDIS_URL


def test_two_app_servers_share_the_sign_in_limit(database_uri, redis_url):
    settings = {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": redis_url,
        "LOGIN_RATE_LIMIT": "3 per minute",
        # A key prefix of its own, so parallel runs do not share counters.
        "RATELIMIT_KEY_PREFIX": f"clinic-test-{uuid.uuid4().hex}",
    }
    servers = [make_app(database_uri, **settings), make_app(database_uri, **settings)]
    statuses = []
    for attempt in range(4):
        client = servers[attempt % 2].test_client()
        response = client.post("/login", data={"username": "x", "password": "y"})
        statuses.append(response.status_code)
    # CSRF refuses each POST (400) but the limit counts it; the 4th, on either server, is 429.
    assert 429 not in statuses[:3]
    assert statuses[3] == 429
