"""Speed and memory of the default pipeline on this corpus (a script, not a test).

Prints model preparation time (into a fresh cache folder), index build time, model load
time, warm `ask` latency p50/p95 over the gold questions, and peak RSS (this process, and
the embedding workers'); the last line is JSON. Goal on 2 cores: warm ask p50 ≤ 30 ms,
p95 ≤ 60 ms.

The floor — one bare query embedding plus one FAISS search, no question analysis, BM25,
fusion or answer — is measured in the same run on the same (uncached) questions, and
the ask latencies are printed as a multiple of it: figures from a busy machine stay
comparable, and the ratio is what our own Python adds.

    python eval/bench.py [--corpus corpus] [--gold eval/gold.jsonl] [--rounds 3]
    python eval/bench.py --skip-prepare --profile   # cProfile of warm asks (make profile)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import embed  # noqa: E402
from qa.engine import Engine, build  # noqa: E402
from qa.store import load_index  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by this process and the given live processes: a measure
    of work that, unlike wall time, hardly moves when other programs share the cores."""
    total = sum(os.times()[:2])
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _peak_rss_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def questions(gold: Path) -> list[str]:
    out = []
    for line in gold.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line)["question"])
        except (ValueError, KeyError):
            continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    ap.add_argument("--gold", type=Path, default=ROOT / "eval" / "gold.jsonl")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the questions")
    ap.add_argument("--skip-prepare", action="store_true", help="do not time model preparation")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the warm asks with cProfile and print the top entries")
    ap.add_argument("--top", type=int, default=25, help="profile entries to print")
    args = ap.parse_args()
    quiet = lambda _msg: None  # noqa: E731
    figures: dict[str, float] = {}

    if not args.skip_prepare:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            embed.prepare_default_model(Path(tmp) / "model", progress=quiet)
            figures["model_prepare_s"] = round(time.perf_counter() - t0, 2)
            print(f"model preparation:  {figures['model_prepare_s']:.2f} s (fresh cache)")

    t0 = time.perf_counter()
    embedder = embed.load_embedder(None, progress=quiet)
    embedder.embed_query("warm up")
    figures["model_load_s"] = round(time.perf_counter() - t0, 2)
    print(f"model load:         {figures['model_load_s']:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        t0, cpu0 = time.perf_counter(), _cpu_s(embedder.worker_pids())
        build(args.corpus, Path(tmp) / "index", embedder, progress=quiet)
        figures["index_build_s"] = round(time.perf_counter() - t0, 2)
        figures["index_build_cpu_s"] = round(_cpu_s(embedder.worker_pids()) - cpu0, 2)
        print(f"index build:        {figures['index_build_s']:.2f} s "
              f"({figures['index_build_cpu_s']:.1f} CPU-s, workers included; {args.corpus})")

        engine = Engine(load_index(Path(tmp) / "index"), embedder, Path(tmp) / "index")
        qs = questions(args.gold)
        if len(qs) < 40:
            sys.exit(f"need at least 40 questions in {args.gold}, found {len(qs)}")
        for q in qs[:5]:
            engine.ask(q)  # warm caches that a long-running server has warm
        # ... and what app.py loads in the background once it listens (the English–Chinese
        # dictionary, the corpus as pinyin), else the first English question pays ~2 s
        from qa import lexicon

        lexicon.load()
        engine.retriever.analyse.pinyin_index()
        # vary the text each round so no query-embedding cache can answer
        rounds = [[q if r == 0 else f"{q}{'？' * r}" for q in qs] for r in range(args.rounds)]
        times = []
        stages: dict[str, list[float]] = {}
        embedder.clear_cache()
        for texts in rounds:
            for q in texts:
                t0 = time.perf_counter()
                answer = engine.ask(q)
                times.append((time.perf_counter() - t0) * 1000)
                for stage, ms in answer.timings_ms.items():
                    stages.setdefault(stage, []).append(ms)
        floor = []
        embedder.clear_cache()
        for texts in rounds:
            for q in texts:
                t0 = time.perf_counter()
                engine.store.dense_search(embedder.embed_query(q), 5)
                floor.append((time.perf_counter() - t0) * 1000)
        figures["queries"] = len(times)
        figures["floor_p50_ms"] = round(statistics.median(floor), 2)
        figures["floor_p95_ms"] = round(percentile(floor, 0.95), 2)
        figures["ask_p50_ms"] = round(statistics.median(times), 2)
        figures["ask_p95_ms"] = round(percentile(times, 0.95), 2)
        figures["ask_p50_x_floor"] = round(figures["ask_p50_ms"] / figures["floor_p50_ms"], 2)
        figures["ask_p95_x_floor"] = round(figures["ask_p95_ms"] / figures["floor_p95_ms"], 2)
        print(
            f"embed+FAISS floor:  p50 {figures['floor_p50_ms']:.1f} ms, "
            f"p95 {figures['floor_p95_ms']:.1f} ms (one query embedding + one search)"
        )
        print(
            f"warm ask latency:   p50 {figures['ask_p50_ms']:.1f} ms "
            f"({figures['ask_p50_x_floor']:.2f}× floor), p95 {figures['ask_p95_ms']:.1f} ms "
            f"({figures['ask_p95_x_floor']:.2f}× floor) over {len(times)} questions"
        )
        # where a warm ask's time goes, from the answers' own timings_ms
        order = ["analyse", "embed", "dense", "keyword", "sentences", "evidence", "answer"]
        shown = [k for k in order if k in stages] + sorted(set(stages) - set(order) - {"total"})
        total = statistics.mean(stages.get("total", [0.0])) or 1.0
        print("stages of a warm ask (mean ms, share of the total):")
        for stage in shown:
            mean = statistics.mean(stages[stage])
            figures[f"stage_{stage}_ms"] = round(mean, 3)
            print(f"  {stage:10s} {mean:7.2f} ms  {100 * mean / total:5.1f} %")
        rest = total - sum(statistics.mean(stages[k]) for k in shown)
        print(f"  {'other':10s} {rest:7.2f} ms  {100 * rest / total:5.1f} %  (fusion, checks)")
        print(f"  {'total':10s} {total:7.2f} ms")
        if args.profile:
            embedder.clear_cache()
            profiler = cProfile.Profile()
            profiler.enable()
            for texts in rounds:
                for q in texts:
                    engine.ask(q)
            profiler.disable()
            print(f"\nprofile of {len(times)} warm asks (cumulative time, top {args.top}):")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)

    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    workers = [_peak_rss_mb(pid) for pid in embedder.worker_pids()]
    figures["workers_peak_rss_mb"] = round(sum(workers), 1)
    print(f"peak RSS:           {figures['peak_rss_mb']:.0f} MB, embedding workers "
          f"{' + '.join(f'{w:.0f}' for w in workers) or '—'} MB")
    print(f"cores: {os.cpu_count()}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
