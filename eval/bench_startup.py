"""Time from `python app.py` to ready, on a built index (issue #10.4).

    python eval/bench_startup.py [--runs 3]

"Ready" is /api/health 200 AND /api/ask answering a question; the chat page follows
(/api/health says "chat": "ready", / serves the chat). For each it prints the wall time
and the CPU time (user + system) of the app's process tree (the app and its embedding
workers, read from /proc), which is the fairer figure on a machine loaded by other jobs.
The index must exist (run `qa index` or `make run` once).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
QUESTION = json.dumps({"question": "智慧城市建设的重点是什么？", "k": 1}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants, from /proc."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return total


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _asks(url: str) -> bool:
    req = urllib.request.Request(
        url, data=QUESTION, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return "answerable" in json.loads(r.read())
    except (OSError, ValueError):
        return False


def one_run() -> dict[str, tuple[float, float]]:
    """{milestone: (wall s, CPU s of the process tree)} for one start."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[str, tuple[float, float]] = {}

    def mark(name: str) -> None:
        seen[name] = (time.perf_counter() - t0, tree_cpu_s(proc.pid))

    try:
        while "chat" not in seen:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with {proc.returncode}")
            if time.perf_counter() - t0 > 300:
                raise SystemExit("app.py not ready in 300 s")
            health = _get(base + "/api/health")
            if health is not None and "health" not in seen:
                mark("health")
                if _asks(base + "/api/ask"):
                    mark("ready")  # health 200 and a question answered
            if health is not None and health.get("chat", "ready") == "ready":
                with urllib.request.urlopen(base + "/", timeout=5) as r:
                    if r.status == 200 and b"gradio" in r.read().lower():
                        mark("chat")
            if not seen:
                time.sleep(0.05)
            elif "chat" not in seen:
                time.sleep(0.2)  # polling costs the app CPU too: less often once up
    finally:
        proc.terminate()
        proc.wait(15)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = []
    names = {
        "health": "/api/health 200",
        "ready": "ready (/api/ask answered)",
        "chat": "chat page served",
    }
    for i in range(args.runs):
        runs.append(one_run())
        shown = ", ".join(
            f"{names[k]} {w:.2f} s wall / {c:.2f} s CPU" for k, (w, c) in runs[-1].items()
        )
        print(f"run {i + 1}: {shown}", flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"median over {len(runs)} runs (load average {load}):")
    for key, label in names.items():
        walls = [r[key][0] for r in runs if key in r]
        cpus = [r[key][1] for r in runs if key in r]
        if walls:
            print(
                f"  {label:28s} {statistics.median(walls):6.2f} s wall  "
                f"{statistics.median(cpus):6.2f} s CPU"
            )


if __name__ == "__main__":
    main()
