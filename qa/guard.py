"""What keeps the public web surface from being abused: uploads, floods and slow clients.

- ``NoUploads``: the app takes no files, so Gradio's upload routes answer 403.
- ``RateLimit``: each client may ask so many questions a minute (JSON API and chat);
  past that, 429 with Retry-After.
- ``GuardedH11``: uvicorn's HTTP protocol with a deadline for receiving a whole request
  (headers and body) and a cap on one client's open connections, so trickling clients
  cannot hold the server's sockets.

Limits come from ``Limits.from_env``: on by default when the server listens beyond
this machine, off (or generous) on loopback so tests and the load test run unthrottled.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _env_number(name: str, default: float) -> float:
    """A non-negative number from the environment; the default when unset or malformed."""
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value >= 0 and math.isfinite(value) else default


@dataclass(frozen=True)
class Limits:
    """Per-client limits; 0 turns one off."""

    asks_per_minute: float  # questions (API and chat) per client per minute
    connections_per_client: int  # open connections per client address
    request_timeout_s: float  # to receive a request's headers and body
    keep_alive_s: int  # an idle kept-alive connection is closed after this

    @classmethod
    def from_env(cls, host: str) -> Limits:
        """QA_RATE_LIMIT (asks/min), QA_MAX_CONNECTIONS_PER_CLIENT, QA_REQUEST_TIMEOUT_S."""
        public = host not in LOOPBACK
        return cls(
            asks_per_minute=_env_number("QA_RATE_LIMIT", 30 if public else 0),
            connections_per_client=int(
                _env_number("QA_MAX_CONNECTIONS_PER_CLIENT", 20 if public else 0)
            ),
            request_timeout_s=_env_number("QA_REQUEST_TIMEOUT_S", 10),
            keep_alive_s=5,
        )


async def _send_json(send: Send, status: int, body: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def is_upload(path: str) -> bool:
    return path.rstrip("/").endswith(("/gradio_api/upload", "/upload"))


class NoUploads:
    """Refuses Gradio's upload routes: the app has no file inputs, so no one needs them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_upload(scope["path"]):
            await _send_json(send, 403, b'{"error": "this app takes no file uploads"}')
            return
        await self.app(scope, receive, send)


def is_ask(method: str, path: str) -> bool:
    """A request that asks the engine: the JSON API, or a chat event joining the queue."""
    if method != "POST":
        return False
    return path in ("/api/ask", "/api/chat") or path.endswith("/gradio_api/queue/join")


class RateLimit:
    """A token bucket per client address for requests that ask the engine."""

    def __init__(self, app: ASGIApp, per_minute: float, burst: int | None = None) -> None:
        self.app = app
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(1, int(per_minute // 2)))
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    def take(self, client: str) -> float:
        """0 when the client may go ahead, else the seconds until it may."""
        now = time.monotonic()
        tokens, then = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens >= 1:
            self.buckets[client] = (tokens - 1, now)
            if len(self.buckets) > 50_000:  # forget full buckets
                self.buckets = {k: v for k, v in self.buckets.items() if v[0] < self.burst}
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.rate > 0 and scope["type"] == "http" and is_ask(scope["method"], scope["path"]):
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.take(client)
            if wait > 0:
                retry = str(max(1, math.ceil(wait))).encode()
                body = b'{"error": "too many questions from this address: wait and retry"}'
                await _send_json(send, 429, body, [(b"retry-after", retry)])
                return
        await self.app(scope, receive, send)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol, plus: a whole request must arrive within the deadline, and
    one address may hold only so many connections. Set ``limits`` before serving."""

    limits = Limits(0, 0, 10, 5)
    _open: dict[str, int] = {}  # client address -> open connections (one event loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._host = self.client[0] if self.client else ""
        cap = self.limits.connections_per_client
        if cap and self._open.get(self._host, 0) >= cap:
            self._host = ""  # not counted
            transport.write(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 5\r\ncontent-length: 0\r\n"
                b"connection: close\r\n\r\n"
            )
            transport.close()
            return
        if self._host:
            self._open[self._host] = self._open.get(self._host, 0) + 1
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if getattr(self, "_host", ""):
            left = self._open.get(self._host, 1) - 1
            if left > 0:
                self._open[self._host] = left
            else:
                self._open.pop(self._host, None)
            self._host = ""
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is not h11.DONE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is h11.DONE:  # the whole request is in
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle from here: the keep-alive timeout takes over

    def _arm(self) -> None:
        if self._deadline is None and self.limits.request_timeout_s > 0:
            self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._expire)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.DONE or self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_started is False:
            try:
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                    b"connection: close\r\n\r\n"
                )
            except Exception:  # the socket is already gone
                pass
        self.transport.close()
