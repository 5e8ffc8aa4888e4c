"""What adding or removing one interview costs on a ~98k-passage index folder (issue #11).

    .venv/bin/python eval/bench_incremental.py                 # 98k passages
    .venv/bin/python eval/bench_incremental.py --passages 20000

The bulk corpus is eval/bench_scale.py's synthetic interviews, built once with synthetic
vectors recorded under the default model's name (an hour of real embedding otherwise);
the added file (~20 passages) is embedded by the real default model. Measured, each in its
own process so peak memory is its own:

  (a) a running server: Engine.open, then the file appears, Engine.refresh()
      (the corpus watcher's call), then the file is removed, refresh() again;
  (b) cold `qa index` after adding the file; (c) cold `qa index` after removing it.

Wall and CPU seconds (CPU: all threads and the embedding worker processes), peak RSS.
Figures, not a test; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.bench_scale import SyntheticVectors, write_corpus  # noqa: E402
from qa.corpus import read_corpus  # noqa: E402
from qa.embed import model_setting  # noqa: E402
from qa.engine import Engine, build  # noqa: E402

NEW = "zz-new-interview.md"


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def workers_cpu(pids: list[int]) -> float:
    """CPU seconds of running processes (the embedding workers: not reaped children)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def quiet(_message: str) -> None:
    pass


def make(work: Path, passages: int) -> dict:
    corpus = work / "corpus"
    files = write_corpus(corpus, passages, seed=11)
    bulk = SyntheticVectors(seed=11)
    bulk.name = model_setting(None)  # recorded as the default model: updates may reuse it
    t0 = time.perf_counter()
    built = build(corpus, work / "index", bulk, quiet, files=read_corpus(corpus))
    extra = work / "extra"
    write_corpus(extra, 20, seed=99)
    (extra / "interview-00000.md").rename(work / NEW)
    return {"files": files, "passages": len(built.passages),
            "build_s": round(time.perf_counter() - t0, 1)}


def timed(fn, pids=lambda: []) -> dict:
    t0, c0, w0 = time.perf_counter(), cpu_seconds(), workers_cpu(pids())
    fn()
    return {"wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(cpu_seconds() - c0 + workers_cpu(pids()) - w0, 2)}


def serve(work: Path) -> dict:
    corpus = work / "corpus"
    t0 = time.perf_counter()
    engine = Engine.open(corpus, work / "index", progress=quiet)
    out: dict = {"open_s": round(time.perf_counter() - t0, 1), "rss_open_mb": round(peak_mb())}
    shutil.copy(work / NEW, corpus / NEW)
    lines: list[str] = []
    workers = engine.embedder.worker_pids
    out["add"] = timed(lambda: engine.refresh(progress=lines.append), workers)
    out["add"]["peak_rss_mb"] = round(peak_mb())
    out["add"]["lines"] = [line for line in lines if line.startswith("index: ")]
    (corpus / NEW).unlink()
    lines.clear()
    out["remove"] = timed(lambda: engine.refresh(progress=lines.append), workers)
    out["remove"]["peak_rss_mb"] = round(peak_mb())
    out["remove"]["lines"] = [line for line in lines if line.startswith("index: ")]
    out["passages"] = len(engine.store.passages)
    return out


def cold(work: Path) -> dict:
    def qa_index() -> dict:
        t0, kids = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-m", "qa", "index", "--corpus", str(work / "corpus"),
             "--index", str(work / "index")],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime, 2),
            "peak_rss_mb": round(after.ru_maxrss / 1024),  # the largest child so far
            "lines": done.stdout.strip().splitlines()[:-1],
        }

    shutil.copy(work / NEW, work / "corpus" / NEW)
    add = qa_index()
    (work / "corpus" / NEW).unlink()
    remove = qa_index()
    return {"add": add, "remove": remove}


def child(step: str, work: Path, passages: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--step", step, "--workdir", str(work),
         "--passages", str(passages)],
        cwd=ROOT, capture_output=True, text=True,
    )
    if done.returncode:
        sys.exit(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=98_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--step", choices=("make", "serve", "cold"), default=None)
    args = ap.parse_args()
    if args.step:
        fn = {"make": lambda: make(args.workdir, args.passages),
              "serve": lambda: serve(args.workdir), "cold": lambda: cold(args.workdir)}
        print(json.dumps(fn[args.step](), ensure_ascii=False))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="qa-bench-incremental-"))
    result = {}
    if not (work / "index").exists():
        result["make"] = child("make", work, args.passages)
        print(f"made: {result['make']}", flush=True)
    result["serve"] = child("serve", work, args.passages)
    s = result["serve"]
    print(f"server (Engine.refresh), index of {s['passages']:,} passages, opened in "
          f"{s['open_s']} s ({s['rss_open_mb']} MB):")
    for what in ("add", "remove"):
        r = s[what]
        print(f"  {what}: {r['wall_s']} s wall, {r['cpu_s']} s CPU, peak RSS "
              f"{r['peak_rss_mb']} MB  {r['lines'][:3]}", flush=True)
    result["cold"] = child("cold", work, args.passages)
    print("cold `qa index`:")
    for what in ("add", "remove"):
        r = result["cold"][what]
        print(f"  {what}: {r['wall_s']} s wall, {r['cpu_s']} s CPU, peak RSS "
              f"{r['peak_rss_mb']} MB  {r['lines'][:3]}", flush=True)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
