"""Liveness and readiness (maps.ops.probes) and the probe command (geoshare.probe)."""

import subprocess
import sys

import httpx
import pytest
import redis as redis_client

from geoshare.probe import probe_host
from tests.servers import ROOT, Project, RedisServer, Uvicorn, free_port, redis_url

slow = pytest.mark.slow

#: Production settings for a real server behind no proxy (DEBUG off, HTTPS redirect on).
PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "s" * 50, "ALLOWED_HOSTS": "maps.example.org",
              "CSRF_TRUSTED_ORIGINS": "https://maps.example.org"}
HOST = {"Host": "maps.example.org"}
READY = {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


def test_healthz_answers_json_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
async def test_readyz_checks_database_and_channel_layer(async_client):
    response = await async_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == READY


@pytest.mark.django_db(transaction=True)
async def test_readyz_names_the_database_when_it_fails(async_client, monkeypatch):
    from django.db import OperationalError

    from maps.ops import probes

    async def broken():
        raise OperationalError("connection refused")

    monkeypatch.setattr(probes, "_database_query", broken)
    response = await async_client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable",
                               "checks": {"database": "unavailable", "channel_layer": "ok"}}


@pytest.mark.django_db(transaction=True)
async def test_readyz_leaves_no_channel_behind(async_client):
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    before = set(layer.channels)
    for _ in range(3):
        assert (await async_client.get("/readyz")).status_code == 200
    assert set(layer.channels) == before


def test_probe_host_is_the_first_allowed_host():
    assert probe_host({"ALLOWED_HOSTS": " maps.example.org, other.example"}) == (
        "maps.example.org")
    assert probe_host({"ALLOWED_HOSTS": ".example.org"}) == "example.org"
    assert probe_host({}) == "127.0.0.1"


def _probe(port, path, **env):
    return subprocess.run(
        [sys.executable, "-m", "geoshare.probe", "--port", str(port), "--path", path,
         "--timeout", "3"],
        cwd=ROOT, env={**PRODUCTION, "PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=30)


@slow
def test_probes_answer_plain_http_with_production_settings(tmp_path):
    with redis_url() as (url, _server):
        project = Project(tmp_path, **PRODUCTION, REDIS_URL=url,
                          REDIS_PREFIX="probes").migrate()
        with Uvicorn(project) as server:
            # Everything else is sent to HTTPS; the probes answer on plain HTTP.
            home = httpx.get(f"{server.http}/", headers=HOST)
            assert home.status_code == 301
            assert home.headers["Location"] == "https://maps.example.org/"
            assert httpx.get(f"{server.http}/healthz", headers=HOST).json() == {
                "status": "ok"}
            ready = httpx.get(f"{server.http}/readyz", headers=HOST)
            assert (ready.status_code, ready.json()) == (200, READY)
            # A Host the site does not serve is refused, probes included.
            assert httpx.get(f"{server.http}/healthz").status_code == 400
            # The probe command sends the allowed Host itself.
            assert _probe(server.port, "/readyz").returncode == 0
            assert _probe(server.port, "/healthz").returncode == 0
        refused = _probe(server.port, "/healthz")
        assert refused.returncode == 1
        assert "ConnectionRefusedError" in refused.stderr


@slow
def test_readyz_is_503_when_redis_dies(tmp_path):
    redis = RedisServer()
    try:
        redis.start()
    except RuntimeError as exc:
        from tests.servers import skip_or_fail

        skip_or_fail(str(exc))
    project = Project(tmp_path, **PRODUCTION, REDIS_URL=redis.url,
                      REDIS_PREFIX="probes").migrate()
    try:
        with Uvicorn(project) as server:
            for _ in range(3):
                ready = httpx.get(f"{server.http}/readyz", headers=HOST)
                assert (ready.status_code, ready.json()) == (200, READY)
            # Each probe's channel was unsubscribed again: probes leave nothing behind.
            # What stays is the process's key-cache listener (maps.access.keycache): its own
            # channel and its group's.
            channels = redis_client.Redis.from_url(redis.url).pubsub_channels()
            listener = [c for c in channels if c.endswith(b"__group__geoshare.keys")
                        or c.startswith(b"probeskeys.")]
            assert sorted(channels) == sorted(listener) and len(listener) == 2
            redis.kill()
            ready = httpx.get(f"{server.http}/readyz", headers=HOST, timeout=10)
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "checks": {
                "database": "ok", "channel_layer": "unavailable"}}
            # Alive all the same: restarting the process would not bring Redis back.
            assert httpx.get(f"{server.http}/healthz", headers=HOST).status_code == 200
    finally:
        redis.kill()


@slow
def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    # Nothing listens there: every connection is refused.
    unreachable = f"postgres://geoshare@127.0.0.1:{free_port()}/geoshare"
    project = Project(tmp_path, database_url=unreachable, **PRODUCTION)
    with Uvicorn(project) as server:
        ready = httpx.get(f"{server.http}/readyz", headers=HOST, timeout=10)
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "checks": {
            "database": "unavailable", "channel_layer": "ok"}}
        assert httpx.get(f"{server.http}/healthz", headers=HOST).status_code == 200
        assert _probe(server.port, "/readyz").returncode == 1
