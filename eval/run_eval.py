"""Evaluate retrieval on a gold set: hybrid vs dense vs BM25 vs the naive LangChain pipeline.

    python eval/run_eval.py [--gold FILE] [--k 5] [--out DIR] [--index DIR] [--model NAME]

Prints a table and the failed questions, writes report.json / report.md / eval.png to --out,
shows progress on stderr, and ends stdout with one JSON line: the default configuration's
metrics (so scripts can read the last line).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eval import report as report_mod  # noqa: E402
from eval.metrics import (  # noqa: E402
    GoldItem,
    Outcome,
    format_table,
    judge,
    load_gold,
    missed_targets,
    summarize,
)

DEFAULT_CONFIG = "hybrid"
ENGINE_MODES = {"hybrid": "hybrid", "dense": "dense", "bm25": "keyword"}
ALL_CONFIGS = [*ENGINE_MODES, "naive"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """A one-line counter on a terminal, sparse lines in a log."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 5)

    def update(self, done: int, qid: str) -> None:
        if self.tty:
            end = "\n" if done == self.total else ""
            print(
                f"\r[{self.label}] {done}/{self.total} {qid:<8}",
                end=end,
                file=sys.stderr,
                flush=True,
            )
        elif done == self.total or done % self.step == 0:
            log(f"[{self.label}] {done}/{self.total}")


def cold_start(embedder) -> None:
    """Forget cached query vectors so every configuration pays for embedding its questions.

    The engine's embedder caches repeated queries; without this the configurations run after
    the first would report latencies without the (dominant) query-embedding cost.
    """
    embedder.clear_cache()


def run_engine(engine, mode: str, label: str, items: list[GoldItem], k: int) -> list[Outcome]:
    """Ask the engine every gold question in one retrieval mode."""
    from qa.errors import QAError

    progress = Progress(label, len(items))
    outcomes = []
    for i, item in enumerate(items, 1):
        t0 = time.perf_counter()
        try:
            answer = engine.ask(item.question, k=k, mode=mode)
            answered, cites = answer.answerable, [c.to_dict() for c in answer.citations]
        except QAError as exc:  # a user's gold question the engine refuses (e.g. too long)
            log(f"{item.id}: engine refused the question: {exc}")
            answered, cites = False, []
        ms = (time.perf_counter() - t0) * 1000
        outcomes.append(judge(item, answered, cites, ms))
        progress.update(i, item.id)
    return outcomes


def run_naive(pipeline, items: list[GoldItem], k: int) -> list[Outcome]:
    """The naive pipeline always answers and has no speaker/section fields."""
    progress = Progress("naive", len(items))
    outcomes = []
    for i, item in enumerate(items, 1):
        cites, ms = pipeline.search(item.question, k)
        outcomes.append(judge(item, None, cites, ms, has_fields=False))
        progress.update(i, item.id)
    return outcomes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--gold",
        type=Path,
        default=ROOT / "eval" / "gold.jsonl",
        help="gold JSONL file (default: eval/gold.jsonl)",
    )
    ap.add_argument("--k", type=int, default=5, help="citations per question (default 5)")
    ap.add_argument(
        "--out", type=Path, default=Path("build/eval"), help="report folder (default build/eval/)"
    )
    ap.add_argument("--corpus", type=Path, default=None, help="corpus folder (engine default)")
    ap.add_argument("--index", type=Path, default=None, help="index folder (engine default)")
    ap.add_argument("--model", default=None, help="embedding model (engine default)")
    ap.add_argument(
        "--configs",
        default=",".join(ALL_CONFIGS),
        help=f"comma-separated subset of {','.join(ALL_CONFIGS)}",
    )
    args = ap.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in ALL_CONFIGS]
    if unknown:
        ap.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {ALL_CONFIGS}")
    if DEFAULT_CONFIG not in args.configs:
        args.configs.insert(0, DEFAULT_CONFIG)
    if not 1 <= args.k <= 20:
        ap.error("--k must be from 1 to 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.gold.is_file():
        log(f"error: gold file {args.gold} not found; pass --gold FILE")
        return 2
    items, problems = load_gold(args.gold)
    for p in problems:
        log(f"{args.gold}: {p}")
    if not items:
        log(f"error: no usable questions in {args.gold}; see the lines reported above")
        return 2

    from qa.engine import Engine, default_corpus
    from qa.errors import QAError

    try:
        engine = Engine.open(args.corpus, args.index, args.model, progress=log)
    except QAError as exc:
        log(f"error: {exc}")
        return 2

    configs: dict[str, list[Outcome]] = {}
    for name in args.configs:
        cold_start(engine.embedder)
        if name == "naive":
            from eval.baseline import NaivePipeline

            log("[naive] splitting and embedding the raw corpus")
            pipeline = NaivePipeline(args.corpus or default_corpus(), engine.embedder)
            configs[name] = run_naive(pipeline, items, args.k)
        else:
            configs[name] = run_engine(engine, ENGINE_MODES[name], name, items, args.k)

    results = {name: summarize(outs) for name, outs in configs.items()}
    report = {
        "gold": str(args.gold),
        "k": args.k,
        "model": engine.embedder.name,
        "index": str(engine.index_dir),
        "n_questions": len(items),
        "n_unanswerable": sum(i.unanswerable for i in items),
        "default": DEFAULT_CONFIG,
        "gold_problems": problems,
        "configs": {
            name: {"metrics": results[name], "questions": [o.to_dict() for o in outs]}
            for name, outs in configs.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    chart = report_mod.write_chart(report, args.out)
    report_mod.write_json(report, args.out)
    report_mod.write_markdown(report, args.out, chart.name)

    print(format_table(results))
    print()
    missed = missed_targets(results[DEFAULT_CONFIG])
    print("targets (default): " + ("all met" if not missed else "missed " + "; ".join(missed)))
    fails = report_mod.failure_lines(report["configs"][DEFAULT_CONFIG]["questions"])
    print(f"\nfailed questions ({DEFAULT_CONFIG}): {'none' if not fails else ''}")
    for line in fails:
        print(line)
    for name, c in report["configs"].items():
        if name != DEFAULT_CONFIG:
            ids = [q["id"] for q in c["questions"] if q["failures"]]
            print(f"{name}: {len(ids)} failed" + (f": {' '.join(ids)}" if ids else ""))
    if problems:
        print(f"\nskipped {len(problems)} gold line(s):")
        for p in problems:
            print(f"  {p}")
    print(f"\nreport: {args.out / 'report.md'}, {args.out / 'report.json'}, {chart}")
    line = {"config": DEFAULT_CONFIG, **report_mod.metrics_line(results[DEFAULT_CONFIG])}
    print(json.dumps(line, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
