"""Evaluate retrieval on a gold set: hybrid vs dense vs BM25 vs the naive LangChain pipeline.

    python eval/run_eval.py [--configs hybrid] [--gold FILE] [--negatives FILE] [--k 5]
                            [--out DIR] [--index DIR] [--store S] [--model NAME]

The gold set carries a fixed dev/test split (eval/split.py): tune on dev, report test.
Prints, per split, a table of the configurations, the dev−test gap in hit@1, the generated
negatives (eval/generated_negatives.jsonl) refused, the issue's targets checked on test,
and the failed questions; writes report.json / report.md / eval.png to --out; shows
progress on stderr; and ends stdout with one JSON line: the default configuration's
metrics (all hand-written questions at the top level, plus "dev", "test", "generated").
`--configs hybrid` runs the default configuration only (fast).
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
    SPLITS,
    GoldItem,
    Outcome,
    by_kind,
    fold_hit1,
    judge,
    load_gold,
    missed_targets,
    summarize,
    target_figures,
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


class _InMode:
    """The engine with its retrieval mode fixed, for the chat code that calls ask() itself."""

    def __init__(self, engine, mode: str):
        self.engine, self.mode = engine, mode
        self.speakers = engine.speakers

    def ask(self, question: str, **kw):
        return self.engine.ask(question, mode=self.mode, **kw)


def ask_followup(engine, mode: str, item: GoldItem, k: int) -> tuple[dict, str, float]:
    """Ask ``item.previous``, then the follow-up as every front end does (qa.chat.next_turn:
    resolve_followup, the speaker restriction, what was already shown left out).
    Returns the follow-up's answer dict, how it was read, and its latency (ms)."""
    from qa.chat import next_turn

    chat = _InMode(engine, mode)
    first = next_turn(chat, [], item.previous, k=k)
    t0 = time.perf_counter()
    turn = next_turn(chat, [first], item.question, k=k)
    ms = (time.perf_counter() - t0) * 1000
    how = f"{turn.followup.reason}: {turn.question}"
    how += f" [{turn.speaker}]" if turn.speaker else ""
    return turn.answer.to_dict(), how, ms


def run_engine(engine, mode: str, label: str, items: list[GoldItem], k: int) -> list[Outcome]:
    """Ask the engine every gold question in one retrieval mode (follow-ups as a chat)."""
    from qa.errors import QAError

    progress = Progress(label, len(items))
    outcomes = []
    for i, item in enumerate(items, 1):
        resolved = ""
        t0 = time.perf_counter()
        try:
            if item.previous:
                ans, resolved, ms = ask_followup(engine, mode, item, k)
                answered, cites = ans["answerable"], ans["citations"]
            else:
                answer = engine.ask(item.question, k=k, mode=mode)
                answered, cites = answer.answerable, [c.to_dict() for c in answer.citations]
                ms = (time.perf_counter() - t0) * 1000
        except QAError as exc:  # a user's gold question the engine refuses (e.g. too long)
            log(f"{item.id}: engine refused the question: {exc}")
            answered, cites, ms = False, [], (time.perf_counter() - t0) * 1000
        outcome = judge(item, answered, cites, ms)
        outcome.resolved = resolved
        outcomes.append(outcome)
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
    ap.add_argument(
        "--negatives",
        type=Path,
        default=ROOT / "eval" / "generated_negatives.jsonl",
        help="generated unanswerable questions, reported apart ('none' to skip)",
    )
    ap.add_argument("--k", type=int, default=5, help="citations per question (default 5)")
    ap.add_argument("--folds", type=int, default=5, help="hash folds for k-fold hit@1 (default 5)")
    ap.add_argument(
        "--out", type=Path, default=Path("build/eval"), help="report folder (default build/eval/)"
    )
    ap.add_argument("--corpus", type=Path, default=None, help="corpus folder (engine default)")
    ap.add_argument("--index", type=Path, default=None, help="index folder (engine default)")
    ap.add_argument(
        "--store", default=None,
        help="faiss (default), a Milvus Lite *.db or http(s)://host:port (env QA_STORE)",
    )  # fmt: skip
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
    if not 2 <= args.folds <= 20:
        ap.error("--folds must be from 2 to 20")
    if str(args.negatives).lower() == "none":
        args.negatives = None
    return args


def split_metrics(outcomes: list[Outcome], folds: int) -> dict:
    """One configuration's figures: all hand-written questions, each split, the gap."""
    out = {"all": summarize(outcomes)}
    for split in SPLITS:
        out[split] = summarize([o for o in outcomes if o.item.split == split])
    dev, test = out["dev"].get("hit@1"), out["test"].get("hit@1")
    out["gap_hit@1"] = None if dev is None or test is None else round(dev - test, 4)
    out["by_kind"] = by_kind(outcomes)
    out["folds_hit@1"] = fold_hit1(outcomes, folds)
    return out


def negatives_metrics(outcomes: list[Outcome]) -> dict:
    """Generated negatives: the share refused, overall and per split."""
    out = {"all": summarize(outcomes)}
    for split in SPLITS:
        out[split] = summarize([o for o in outcomes if o.item.split == split])
    return out


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
        engine = Engine.open(args.corpus, args.index, args.model, progress=log, store=args.store)
    except QAError as exc:
        log(f"error: {exc}")
        return 2

    negatives: list[GoldItem] = []
    if args.negatives is not None:
        if not args.negatives.is_file():
            log(
                f"error: {args.negatives} not found; run eval/generate_negatives.py "
                "or pass --negatives none"
            )
            return 2
        negatives, neg_problems = load_gold(args.negatives)
        problems += [f"{args.negatives.name} {p}" for p in neg_problems]

    configs: dict[str, dict] = {}
    for name in args.configs:
        cold_start(engine.embedder)
        gen: list[Outcome] = []
        if name == "naive":
            from eval.baseline import NaivePipeline

            log("[naive] splitting and embedding the raw corpus")
            pipeline = NaivePipeline(args.corpus or default_corpus(), engine.embedder)
            outs = run_naive(pipeline, items, args.k)  # it cannot refuse: no negatives
        else:
            outs = run_engine(engine, ENGINE_MODES[name], name, items, args.k)
            if negatives:
                gen = run_engine(engine, ENGINE_MODES[name], f"{name} generated", negatives, args.k)
        figures = split_metrics(outs, args.folds)
        configs[name] = {
            "metrics": figures["all"],
            **{key: figures[key] for key in (*SPLITS, "gap_hit@1", "by_kind", "folds_hit@1")},
            "generated": negatives_metrics(gen) if gen else None,
            "questions": [o.to_dict() for o in outs],
            "generated_failed": [o.to_dict() for o in gen if o.failures()],
        }

    default = configs[DEFAULT_CONFIG]
    gen_test = (default["generated"] or {}).get("test")
    targets = target_figures(default["test"], default["dev"], gen_test)
    report = {
        "gold": str(args.gold),
        "negatives": str(args.negatives) if args.negatives else None,
        "k": args.k,
        "model": engine.embedder.name,
        "index": engine.milvus or str(engine.index_dir),
        "n_questions": len(items),
        "n_unanswerable": sum(i.unanswerable for i in items),
        "n_split": {s: sum(i.split == s for i in items) for s in SPLITS},
        "n_generated": len(negatives),
        "default": DEFAULT_CONFIG,
        "targets": {"figures": targets, "missed": missed_targets(targets)},
        "gold_problems": problems,
        "configs": configs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    chart = report_mod.write_chart(report, args.out)
    report_mod.write_json(report, args.out)
    report_mod.write_markdown(report, args.out, chart.name)

    for block in report_mod.summary_lines(report):
        print(block)
    print(f"\nreport: {args.out / 'report.md'}, {args.out / 'report.json'}, {chart}")
    line = {"config": DEFAULT_CONFIG, **report_mod.metrics_line(default["metrics"])}
    for split in SPLITS:
        line[split] = report_mod.metrics_line(default[split])
    line["gap_hit@1"] = default["gap_hit@1"]
    line["generated"] = (
        report_mod.metrics_line(default["generated"]["all"]) if (default["generated"]) else None
    )
    line["targets_missed"] = report["targets"]["missed"]
    print(json.dumps(line, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
