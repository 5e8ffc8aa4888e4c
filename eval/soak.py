"""Does the server's memory stay flat over many questions? (issue #10.4: RSS flat after
10,000 questions including long ones; no torch load on the query path.)

    python eval/soak.py                       # start app.py on a free port, 10,000 questions
    python eval/soak.py --questions 2000 --clients 4

Starts its own app.py (loopback, free port) and stops it after. Sends every question new
(a counter appended, so the engine's cache cannot hide growth), one in ten long (about
1,900 characters), one in five through /api/chat with history. Prints the RSS of the
app's process tree (the app and its embedding workers) after a warm-up and then as it
goes, and whether torch was ever mapped into the app. Bounded by --max-seconds.
A check to run by hand, not a timed test; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eval.load_test import QUESTIONS, spawn_app  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
LONG = "请结合访谈内容详细说明重庆建设智慧名城的优势、瓶颈、路径和政策建议。" * 55  # ~1,900 chars


def tree_rss_mb(root: int) -> dict[int, float]:
    """Resident memory (MB) of ``root`` and each live descendant, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out[pid] = pages * PAGE / 2**20
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return out


def torch_mapped(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def question(i: int, rnd: random.Random) -> str:
    base = LONG if i % 10 == 0 else rnd.choice(QUESTIONS)
    return f"{base}（{i}）"


async def one_client(
    url: str, ids: list[int], seed: int, deadline: float, errors: list[str], done: list[int]
) -> None:
    rnd = random.Random(seed)
    async with httpx.AsyncClient(timeout=60) as http:
        for i in ids:
            if time.monotonic() > deadline:
                return
            q = question(i, rnd)
            try:
                if i % 5 == 0:
                    history = [{"question": rnd.choice(QUESTIONS)}]
                    r = await http.post(
                        url + "/api/chat", json={"question": q, "k": 5, "history": history}
                    )
                else:
                    r = await http.post(url + "/api/ask", json={"question": q, "k": 5})
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                errors.append(exc.__class__.__name__)
            done.append(i)


async def soak(url: str, pid: int, total: int, clients: int, max_s: float) -> dict:
    errors: list[str] = []
    done: list[int] = []
    deadline = time.monotonic() + max_s
    warm = min(500, total // 10)
    ids = list(range(total))

    async def batch(part: list[int]) -> None:
        await asyncio.gather(
            *(one_client(url, part[c::clients], c, deadline, errors, done) for c in range(clients))
        )

    await batch(ids[:warm])
    start = tree_rss_mb(pid)
    print(
        f"after {warm} warm-up questions: app {start.get(pid, 0):.0f} MB, "
        f"tree {sum(start.values()):.0f} MB",
        flush=True,
    )
    t0 = time.monotonic()
    step = max(1, (total - warm) // 5)
    for lo in range(warm, total, step):
        await batch(ids[lo : lo + step])
        now = tree_rss_mb(pid)
        print(
            f"{len(done):>6} questions  app {now.get(pid, 0):.0f} MB  "
            f"tree {sum(now.values()):.0f} MB  errors {len(errors)}  "
            f"{len(done) / (time.monotonic() - t0 + 1e-9):.0f}/s",
            flush=True,
        )
        if time.monotonic() > deadline:
            print(f"stopped at --max-seconds {max_s:.0f}", flush=True)
            break
    end = tree_rss_mb(pid)
    return {
        "questions": len(done),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "app_rss_mb_after_warmup": round(start.get(pid, 0), 1),
        "app_rss_mb_end": round(end.get(pid, 0), 1),
        "tree_rss_mb_after_warmup": round(sum(start.values()), 1),
        "tree_rss_mb_end": round(sum(end.values()), 1),
        "torch_loaded": torch_mapped(pid),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    args = ap.parse_args(argv)
    if not 100 <= args.questions <= 100_000 or not 1 <= args.clients <= 50:
        ap.error("questions must be 100-100,000 and clients 1-50")
    proc, url = spawn_app()
    try:
        res = asyncio.run(soak(url, proc.pid, args.questions, args.clients, args.max_seconds))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    growth = res["tree_rss_mb_end"] - res["tree_rss_mb_after_warmup"]
    print(
        f"RSS growth of the process tree after warm-up: {growth:+.1f} MB; "
        f"torch loaded: {res['torch_loaded']}; errors: {res['errors']}"
    )
    print(json.dumps(res, ensure_ascii=False))
    return 0 if res["errors"] == 0 and not res["torch_loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
