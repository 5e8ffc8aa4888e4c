"""Drive the JSON API with many concurrent clients; print requests, errors, p50/p95.

    python eval/load_test.py                    # app already running on 127.0.0.1:7860
    python eval/load_test.py --spawn            # start app.py on a free port, test, stop it
    python eval/load_test.py --clients 50 --duration 60

Goal: 0 errors and p95 <= 1 s with 50 clients for 60 s. Loopback only, on purpose: this
is a tool for measuring our own server, not for pointing at someone else's. Bounded in
time (``--duration`` plus one request timeout) and in connections (one per client).
The last line printed is JSON, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
_TLS = ssl.create_default_context()

QUESTIONS = [
    "卢阳春认为老年人使用政务平台有什么困难？",
    "重庆建设“智慧名城”有哪些优势和瓶颈？",
    "如何推进市域社会治理智能化？",
    "蔡之兵怎么看智博会上的“黑科技”？",
    "朱旭森认为重庆建设智慧名城的优势是什么？",
    "怎样让智慧生活全民共享？",
    "如何借助大数据智能化建设绿色智慧城市？",
    "重庆该如何借助智博会平台提速智慧名城建设？",
    "智慧城市的本质是什么？",
    "王正攀对智能政务体系建设有什么建议？",
    "孙金华怎么看提升公共服务效能？",
    "什么是“135”架构体系？",
    "What does Zhu Xusen say about green smart cities?",
    "How can smart technology be shared by everyone in daily life?",
    "What are the bottlenecks for Chongqing's smart city?",
    "今天天气怎么样？",
]


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_app(timeout: float = 600.0) -> tuple[subprocess.Popen, str]:
    """Start app.py on a free loopback port and wait until /api/health answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"app.py not ready after {timeout:.0f} s")


async def client(
    url: str,
    until: float,
    k: int,
    seed: int,
    timeout: float,
    unique: bool,
    latencies: list[float],
    errors: list[str],
) -> None:
    """One simulated user: its own connection, one request at a time, no think time.

    A client each rather than one shared pool: with 50 users on one httpx pool, the pool's
    own bookkeeping, not the server, becomes what is measured.
    """
    rnd = random.Random(seed)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # one TLS context for all: building one per client loads the CA bundle 50 times
    # (about 90 ms each, on the event loop), which would be measured as server latency
    async with httpx.AsyncClient(timeout=timeout, limits=limits, verify=_TLS) as http:
        while time.monotonic() < until:
            question = rnd.choice(QUESTIONS)
            if unique:  # defeat the engine's query cache: every request embeds anew
                question += f"（{seed}-{rnd.randrange(10**9)}）"
            body = {"question": question, "k": k}
            t0 = time.perf_counter()
            try:
                r = await http.post(url + "/api/ask", json=body)
                ok = r.status_code == 200 and "citations" in r.json()
                if not ok:
                    errors.append(f"HTTP {r.status_code}")
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(exc.__class__.__name__)
            latencies.append(time.perf_counter() - t0)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run(
    url: str, clients: int, duration: float, k: int, timeout: float, unique: bool = False
) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=timeout, verify=_TLS) as http:
        # one warm-up request, so the first client does not pay for lazy loading
        await http.post(url + "/api/ask", json={"question": QUESTIONS[0], "k": k})
    t0 = time.monotonic()
    until = t0 + duration
    await asyncio.gather(
        *(client(url, until, k, i, timeout, unique, latencies, errors) for i in range(clients))
    )
    elapsed = time.monotonic() - t0
    lat_ms = sorted(v * 1000 for v in latencies)
    return {
        "url": url,
        "clients": clients,
        "unique_questions": unique,
        "duration_s": round(elapsed, 1),
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "rps": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(_pct(lat_ms, 50), 1),
        "p95_ms": round(_pct(lat_ms, 95), 1),
        "p99_ms": round(_pct(lat_ms, 99), 1),
        "max_ms": round(lat_ms[-1], 1) if lat_ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:7860", help="the app (loopback only)")
    ap.add_argument("--spawn", action="store_true", help="start app.py on a free port first")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument(
        "--unique",
        action="store_true",
        help="make every question new (no cache hits): the worst case, not the usual mix",
    )
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 500 or not 0 < args.duration <= 600:
        ap.error("clients must be 1-500 and duration 0-600 s")

    proc = None
    url = args.url.rstrip("/")
    if args.spawn:
        proc, url = spawn_app()
    elif not _loopback(url):
        ap.error(f"{url} is not a loopback address: this tool only measures a local server")
    try:
        print(
            f"load: {args.clients} clients for {args.duration:.0f} s against {url}/api/ask",
            flush=True,
        )
        res = asyncio.run(run(url, args.clients, args.duration, args.k, args.timeout, args.unique))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"requests  {res['requests']}  ({res['rps']} per s)")
    print(f"errors    {res['errors']}" + (f"  {res['error_kinds']}" if res["errors"] else ""))
    print(
        f"latency   p50 {res['p50_ms']} ms   p95 {res['p95_ms']} ms   "
        f"p99 {res['p99_ms']} ms   max {res['max_ms']} ms"
    )
    goal = res["errors"] == 0 and res["p95_ms"] <= 1000
    print("goal (0 errors, p95 <= 1 s): " + ("met" if goal else "NOT met"))
    print(json.dumps(res, ensure_ascii=False))
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
