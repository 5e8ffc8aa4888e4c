"""Shared fixtures: one real app server (``python app.py``) for the web and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 900  # the first run on a fresh machine builds the index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str
    port: int
    feedback: Path
    log: Path
    proc: subprocess.Popen


@contextmanager
def start_app(
    tmp: Path, host: str = "127.0.0.1", wait_for_chat: bool = True, **env: str
) -> Iterator[AppServer]:
    """The real app (``python app.py``) on a free port, with extra environment; stopped after.

    Yielded once its chat pages are up too (/api/health says ``"chat": "ready"``), or
    with ``wait_for_chat=False`` as soon as /api/health answers.
    """
    import httpx

    port = free_port()
    feedback = tmp / "feedback.jsonl"
    log = tmp / "app.log"
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "QA_ALLOWED_ORIGINS": "*"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            # QA_TEST_APP: another start script taking app.py's arguments (debugging only)
            [
                sys.executable,
                os.environ.get("QA_TEST_APP") or str(ROOT / "app.py"),
                "--host",
                host,
                "--port",
                str(port),
                "--feedback",
                str(feedback),
            ],
            cwd=ROOT,
            env={**full_env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                health = httpx.get(url + "/api/health", timeout=2)
                # the API answers first; the chat pages follow within seconds
                if health.status_code == 200 and (
                    not wait_for_chat or health.json().get("chat", "ready") == "ready"
                ):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield AppServer(url=url, port=port, feedback=feedback, log=log, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The real app, started once per test session on a free port, stopped at the end."""
    with start_app(tmp_path_factory.mktemp("app")) as server:
        yield server


@pytest.fixture(scope="session")
def engine():
    """The real engine on the real corpus and model (builds index/ if missing or stale)."""
    from qa.engine import Engine

    return Engine.open(progress=lambda _msg: None)
