"""Trying geoshare on a phone: docker/Caddyfile.lan in front of `make run`, for real.

A phone cannot reach 127.0.0.1, and phone browsers share location only from a secure
context, so README.md ("On a phone") puts Caddy's internal TLS on the computer's LAN
address in front of geoshare. This test runs that Caddyfile with the real ``caddy``
on a free port, geoshare behind it (its uvicorn, ``make run``'s flags and ``DEBUG``),
and does what a phone's browser does over HTTPS: signs in with the link
``manage.py demo`` printed, opens the map page and its WebSocket. The client trusts
Caddy's local CA (its root certificate, as a phone that installed it does).

127.0.0.2 stands in for the LAN address: it is not 127.0.0.1, so ``ALLOWED_HOSTS``
must name it, exactly as it must name 192.168.1.20.
"""

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess

import httpx
import pytest
import websockets

from tests.servers import ROOT, Project, Uvicorn, free_port, skip_or_fail, wait_for

pytestmark = pytest.mark.slow

CADDYFILE = ROOT / "docker" / "Caddyfile.lan"
LAN_IP = "127.0.0.2"


def start_caddy(home, port, upstream):
    """Run ``caddy`` with docker/Caddyfile.lan; its data (the local CA) under ``home``."""
    if shutil.which("caddy") is None:
        skip_or_fail("caddy is not installed (apt-get install caddy): cannot try "
                     "docker/Caddyfile.lan")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_DATA_HOME": str(home),
           "XDG_CONFIG_HOME": str(home), "LAN_IP": LAN_IP, "LAN_PORT": str(port),
           "GEOSHARE_UPSTREAM": f"127.0.0.1:{upstream}", "CADDY_ADMIN": "off"}
    log = open(home / "caddy.log", "wb")
    process = subprocess.Popen(["caddy", "run", "--config", str(CADDYFILE),
                                "--adapter", "caddyfile"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    log.close()
    return process


def trusted_root(home):
    """A TLS context that trusts Caddy's local CA once it has made its root."""
    root = home / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    wait_for(root.exists, timeout=30)
    return ssl.create_default_context(cafile=str(root))


def test_lan_caddyfile_serves_the_map_and_its_socket_over_https(tmp_path):
    port = free_port()
    origin = f"https://{LAN_IP}:{port}"
    # What README.md tells to set for a LAN address: the host, and the https origin
    # (behind Caddy geoshare sees plain http, so a browser's https Origin is another
    # origin unless listed).
    project = Project(tmp_path, ALLOWED_HOSTS=f"{LAN_IP},127.0.0.1,localhost",
                      CSRF_TRUSTED_ORIGINS=origin, GEOSHARE_DEMO_WALKER="0").migrate()
    home = tmp_path / "caddy-home"
    home.mkdir()
    with Uvicorn(project) as server:
        printed = project.manage("demo", "--host", "127.0.0.1", "--port", str(server.port))
        signin_path = re.search(r"/signin/[A-Za-z0-9_-]+/", printed).group(0)
        caddy = start_caddy(home, port, server.port)
        try:
            asyncio.run(_as_a_phone(home, origin, signin_path, caddy))
        except BaseException:
            print((home / "caddy.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            caddy.terminate()
            caddy.wait(10)


async def _as_a_phone(home, origin, signin_path, caddy):
    tls = await asyncio.to_thread(trusted_root, home)

    async def served():
        assert caddy.poll() is None, "caddy exited"
        try:
            async with httpx.AsyncClient(verify=tls, trust_env=False) as probe:
                return (await probe.get(origin + "/healthz")).status_code == 200
        except httpx.TransportError:  # the certificate is still being issued
            return False

    deadline = asyncio.get_running_loop().time() + 30
    while not await served():
        assert asyncio.get_running_loop().time() < deadline, "caddy never served"
        await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=origin, verify=tls, trust_env=False,
                                 timeout=10) as phone:
        asking = await phone.get(signin_path)
        assert asking.status_code == 200
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', asking.text).group(1)
        # Another origin is refused: CSRF_TRUSTED_ORIGINS is what lets the LAN one in.
        refused = await phone.post(signin_path, data={"csrfmiddlewaretoken": csrf},
                                   headers={"Origin": f"https://{LAN_IP}:1"})
        assert refused.status_code == 403
        signed = await phone.post(signin_path, data={"csrfmiddlewaretoken": csrf},
                                  headers={"Origin": origin})
        assert signed.status_code == 302, signed.text
        room_path = signed.headers["Location"]
        room = room_path.strip("/").split("/")[-1]
        page = await phone.get(room_path)
        assert page.status_code == 200
        assert "Demo" in page.text and 'id="map"' in page.text
        session = phone.cookies["sessionid"]

    socket = await websockets.connect(
        f"wss://{LAN_IP}:{origin.rsplit(':', 1)[1]}/ws/rooms/{room}/", ssl=tls,
        origin=origin, additional_headers={"Cookie": f"sessionid={session}"}, proxy=None)
    try:
        first = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert first["type"] == "snapshot"
        assert first["room"]["name"] == "Demo room"
        names = {member["id"]: member["name"] for member in first["members"]}
        # The socket is the signed-in browser's: the demo room's owner.
        assert names[first["you"]] == "Demo owner"
        assert "Demo walker" in names.values()
    finally:
        await socket.close()
