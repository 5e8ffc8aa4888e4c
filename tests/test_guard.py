"""Issue #9: the public web surface — uploads, slow clients, floods — against real servers.

The session's app server (loopback, no rate limit) checks uploads; a second instance
with the limits turned on (as a public bind has them by default) checks the request
deadline, the per-client connection cap and the rate limit with real sockets.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from conftest import start_app

from qa.guard import Limits

UPLOADS = ("/gradio_api/upload", "/upload", "/embed/gradio_api/upload", "/gradio_api/upload/")


@pytest.mark.parametrize("path", UPLOADS)
def test_uploads_are_refused(app_server, path) -> None:
    files = {"files": ("x.html", b"<script>alert(1)</script>" + b"x" * 2_000_000, "text/html")}
    r = httpx.post(app_server.url + path, files=files, timeout=60)
    assert r.status_code == 403, r.text[:200]
    assert "upload" in r.json()["error"]


def test_limits_are_on_for_public_binds(monkeypatch) -> None:
    for name in ("QA_RATE_LIMIT", "QA_MAX_CONNECTIONS_PER_CLIENT", "QA_REQUEST_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    public, local = Limits.from_env("0.0.0.0"), Limits.from_env("127.0.0.1")
    assert public.asks_per_minute > 0 and public.connections_per_client > 0
    assert local.asks_per_minute == 0 and local.connections_per_client == 0
    assert public.request_timeout_s > 0 and local.request_timeout_s > 0
    monkeypatch.setenv("QA_RATE_LIMIT", "nonsense")
    assert Limits.from_env("0.0.0.0").asks_per_minute == public.asks_per_minute
    monkeypatch.setenv("QA_RATE_LIMIT", "0")
    assert Limits.from_env("0.0.0.0").asks_per_minute == 0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    with start_app(
        tmp_path_factory.mktemp("guarded"),
        QA_RATE_LIMIT="6",
        QA_MAX_CONNECTIONS_PER_CLIENT="20",
        QA_REQUEST_TIMEOUT_S="2",
    ) as server:
        yield server


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed this socket (it may say 408/429 first)."""
    try:
        while data := sock.recv(4096):
            if not data:
                break
        return True
    except (BlockingIOError, TimeoutError):
        return False
    except OSError:
        return True


def test_slow_clients_are_cut_off(guarded) -> None:
    """300 connections trickling a request body: refused past 20, closed after 2 s."""
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", guarded.port), timeout=5)
            s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            socks.append(s)
        for s in socks:
            s.setblocking(False)
        # refused as soon as the server accepts them: well before the 2 s request deadline
        # (polled, as the server's own start-up work may still hold the CPU for a moment)
        closed: set[int] = set()
        polled = time.monotonic()
        while len(closed) < 300 - 20 and time.monotonic() - polled < 1.5:
            time.sleep(0.1)
            closed |= {i for i, s in enumerate(socks) if i not in closed and _closed(s)}
        early = len(closed)
        assert early >= 300 - 20, f"only {early} of 300 refused at once"
        r = httpx.get(guarded.url + "/api/health", timeout=10)
        assert r.status_code == 429  # this address holds its 20 connections already
        t0 = time.monotonic()
        for s in socks:  # keep trickling: a byte does not buy more time
            try:
                s.send(b"X")
            except OSError:
                pass
        while time.monotonic() - t0 < 10:
            time.sleep(0.5)
            if all(_closed(s) for s in socks):
                break
        assert all(_closed(s) for s in socks), "a trickling client is still connected"
        assert time.monotonic() - t0 < 5
    finally:
        for s in socks:
            s.close()
    assert guarded.proc.poll() is None
    assert httpx.get(guarded.url + "/api/health", timeout=10).status_code == 200


def _wait_until_connections_free(url: str) -> None:
    """Connections an earlier test closed are released by the server a moment later."""
    deadline = time.monotonic() + 10
    while httpx.get(url + "/api/health", timeout=10).status_code == 429:
        assert time.monotonic() < deadline, "connections are still counted 10 s after closing"
        time.sleep(0.2)


def test_rate_limit_answers_429_with_retry_after(guarded) -> None:
    _wait_until_connections_free(guarded.url)
    statuses, retry = [], None
    with httpx.Client(timeout=120) as client:
        for _ in range(8):
            r = client.post(guarded.url + "/api/ask", json={"question": "卢阳春怎么看老年人？"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry = r.headers["retry-after"]
                assert "too many" in r.json()["error"]
        assert 200 in statuses and 429 in statuses, statuses
        assert retry is not None and int(retry) >= 1
        # the chat's queue draws on the same allowance
        r = client.post(guarded.url + "/gradio_api/queue/join", json={})
        assert r.status_code == 429
        r = client.post(guarded.url + "/api/chat", json={"question": "卢阳春怎么看老年人？"})
        assert r.status_code == 429
        # reading is not limited
        assert client.get(guarded.url + "/api/health").status_code == 200


def test_behind_a_local_proxy_each_forwarded_client_has_its_own_allowance(guarded) -> None:
    """A reverse proxy on this machine sends every request from 127.0.0.1 with the reader's
    address in X-Forwarded-For: uvicorn trusts it from 127.0.0.1 (FORWARDED_ALLOW_IPS), so
    one reader over the limit does not lock out the others."""
    _wait_until_connections_free(guarded.url)
    ask = {"question": "卢阳春怎么看老年人？"}
    with httpx.Client(timeout=120) as client:
        flood = [
            client.post(guarded.url + "/api/ask", json=ask,
                        headers={"X-Forwarded-For": "203.0.113.7"}).status_code
            for _ in range(8)
        ]
        assert 429 in flood, flood
        other = client.post(guarded.url + "/api/ask", json=ask,
                            headers={"X-Forwarded-For": "198.51.100.9"})
        assert other.status_code == 200, other.text
