"""The Milvus store (Milvus Lite) beside the default store (the FAISS folder) at scale:
build throughput, open time, query p50/p95 (dense, keyword, hybrid, one-speaker filter),
peak memory, and the cost of adding and removing one 20-passage file.

    .venv/bin/python eval/bench_milvus.py                   # 10k passages
    .venv/bin/python eval/bench_milvus.py --sizes 10000 100000
    .venv/bin/python eval/bench_milvus.py --uri http://127.0.0.1:19530   # a Milvus server
    .venv/bin/python eval/bench_milvus.py --real-model   # the added file embedded for real

The corpus is eval/bench_scale.py's synthetic interviews (this page's sentences,
recombined) through the real parser and chunker; the vectors are its clustered synthetic
unit vectors, so no model runs (except with --real-model, for the added file). Both
stores hold the sentence rows as the engine writes them. Each store is measured in its
own child process, so each reports its own peak memory (Milvus Lite's server runs inside
that process). The FAISS
folder has no per-file update: adding a file there is a full rebuild, which is the figure
shown for it. The last line printed is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval"))

from bench_scale import (  # noqa: E402
    SyntheticVectors,
    expert_names,
    peak_rss_mb,
    percentile_ms,
    synthetic_vectors,
    write_corpus,
)

from qa import store  # noqa: E402
from qa.corpus import corpus_fingerprint, read_corpus  # noqa: E402
from qa.engine import index_pieces, passage_settings  # noqa: E402

K = 10
CANDIDATES = 40  # what the retriever asks each search side for
SMALL_FILE_PASSAGES = 20


def small_file(work: Path, seed: int) -> tuple[str, str]:
    """One new interview file of about 20 passages."""
    folder = work / "small"
    write_corpus(folder, SMALL_FILE_PASSAGES, seed + 1000)
    (path,) = folder.iterdir()
    return f"new/{path.name}", path.read_text("utf-8")


def queries(n_queries: int, passages, embedder: SyntheticVectors, seed: int):
    rng = np.random.default_rng(seed + 1)
    texts = []
    for s in rng.choice(len(passages), size=n_queries):
        text = passages[s].text
        a = int(rng.integers(0, max(1, len(text) - 12)))
        texts.append(text[a : a + 12])
    return texts, synthetic_vectors(n_queries, rng, embedder.centroids)


def timed(fn, items) -> dict:
    fn(items[0])  # warm up
    seconds = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - t)
    return {"p50_ms": percentile_ms(seconds, 50), "p95_ms": percentile_ms(seconds, 95)}


def run(
    kind: str, work: Path, n: int, n_queries: int, seed: int, uri: str | None, real: bool
) -> dict:
    corpus_dir = work / "corpus"
    if not corpus_dir.exists():
        write_corpus(corpus_dir, n, seed)
    files = read_corpus(corpus_dir)
    embedder = SyntheticVectors(seed)
    made = index_pieces(files, embedder, None)  # passages and sentences, as the engine
    turns, passages, vectors, keyword_texts = (
        made.turns, made.passages, made.vectors, made.keyword_texts
    )
    hashes = corpus_fingerprint(files)
    question_texts, query_vectors = queries(n_queries, passages, embedder, seed)
    speaker = expert_names()[1]
    out: dict = {"store": kind, "passages": len(passages), "files": len(files),
                 "sentences": len(made.sentences)}  # fmt: skip

    t = time.perf_counter()
    if kind == "faiss":
        folder = work / "index"
        store.build_index(folder, turns, passages, vectors, embedder.name, hashes, None,
                          keyword_texts, passage_settings(), made.sentences)  # fmt: skip
        out["build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index = store.load_index(folder)
    else:
        from qa.milvus_store import MilvusStore

        location = uri or str(work / "qa.db")
        MilvusStore(location, "bench").build(
            turns, passages, vectors, embedder.name, hashes, None, keyword_texts,
            passage_settings(), made.sentences,
        )  # fmt: skip
        out["build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index = MilvusStore.open(location, "bench")
    out["open_s"] = round(time.perf_counter() - t, 2)
    out["build_passages_per_s"] = round(len(passages) / out["build_s"], 1)

    mask = np.array([index.turns[p.turn_id].speaker == speaker for p in index.passages])
    pairs = list(zip(query_vectors, question_texts, strict=True))
    out["dense"] = timed(lambda q: index.dense_search(q, CANDIDATES), list(query_vectors))
    out["keyword"] = timed(lambda q: index.keyword_search(q, CANDIDATES), question_texts)
    if kind == "faiss":
        # what the retriever does today: both searches, fused in Python
        def both(pair):
            index.dense_search(pair[0], CANDIDATES)
            index.keyword_search(pair[1], CANDIDATES)

        out["hybrid"] = timed(both, pairs)
        out["filtered"] = timed(lambda q: index.dense_search(q, CANDIDATES, mask),
                                list(query_vectors))  # fmt: skip
    else:
        out["hybrid"] = timed(lambda p: index.hybrid_search(p[0], p[1], CANDIDATES), pairs)
        out["filtered"] = timed(
            lambda q: index.dense_search(q, CANDIDATES, speakers=[speaker]), list(query_vectors)
        )
        out["filtered_by_mask"] = timed(
            lambda q: index.dense_search(q, CANDIDATES, mask), list(query_vectors[:50])
        )
        out["passages_with"] = timed(index.passages_with, [t[:2] for t in question_texts])

    source, text = small_file(work, seed)
    t = time.perf_counter()
    if real:  # the file embedded by the default model, as `qa index` does it
        from qa.embed import load_embedder

        model = load_embedder(progress=None)
        model.embed_passages(["预热"])  # loading the model is not part of adding a file
        t = time.perf_counter()
        new = index_pieces([(source, text)], model, None)
    else:
        new = index_pieces([(source, text)], embedder, None)
    out["embed_file_s"] = round(time.perf_counter() - t, 2)
    out["small_file_passages"] = len(new.passages)
    if kind == "faiss":
        # no per-file update: the whole folder is rebuilt with the file added
        offset = len(passages)
        moved = [replace(p, id=p.id + offset) for p in new.passages]
        both = store.SentenceIndex(
            made.sentences.turn_ids + new.sentences.turn_ids,
            np.vstack([made.sentences.spans, new.sentences.spans]),
            np.vstack([made.sentences.vectors, new.sentences.vectors]),
        )
        store.build_index(work / "index", turns + new.turns, passages + moved,
                          np.vstack([vectors, new.vectors]), embedder.name, hashes, None,
                          keyword_texts + new.keyword_texts, passage_settings(),
                          both)  # fmt: skip
        out["add_file_s"] = round(time.perf_counter() - t, 2)
        out["add_file_how"] = "full rebuild"
    else:
        index.upsert_file(source, new.turns, new.passages, new.vectors, new.keyword_texts,
                          corpus_hash="0", sentences=new.sentences)  # fmt: skip
        out["add_file_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index.delete_file(source)
        out["delete_file_s"] = round(time.perf_counter() - t, 2)
        out["add_file_how"] = "upsert_file (then delete_file)"
        out["db_mb"] = round(_size_mb(work / "qa.db"), 1) if uri is None else None
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"bench child {args} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict]) -> None:
    cols = ["dense", "keyword", "hybrid", "filtered"]
    print(f"{'store':8} {'passages':>9} {'build s':>8} {'/s':>6} {'open s':>7} "
          + " ".join(f"{c + ' p50/p95 ms':>22}" for c in cols)
          + f" {'add 20-passage file':>22} {'peak MB':>8}")  # fmt: skip
    for r in rows:
        lat = " ".join(f"{r[c]['p50_ms']:>10.2f} / {r[c]['p95_ms']:>9.2f}" for c in cols)
        print(f"{r['store']:8} {r['passages']:>9,} {r['build_s']:>8.1f} "
              f"{r['build_passages_per_s']:>6.0f} {r['open_s']:>7.2f} {lat} "
              f"{r['add_file_s']:>9.2f} s ({r['add_file_how'].split(' (')[0]}; "
              f"embedding {r['embed_file_s']:.2f} s) "
              f"{r['peak_rss_mb']:>8.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--uri", help="a Milvus server instead of Milvus Lite")
    parser.add_argument("--workdir", type=Path, help="keep indexes here (default: temp)")
    parser.add_argument(
        "--real-model", action="store_true",
        help="embed the added file with the default model (the time it takes is included)",
    )  # fmt: skip
    parser.add_argument("--child", choices=["faiss", "milvus"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run(args.child, args.workdir, args.size, args.queries, args.seed, args.uri,
                     args.real_model)  # fmt: skip
        print(json.dumps(result))
        return

    base = args.workdir or Path(tempfile.mkdtemp(prefix="qa-bench-milvus-"))
    rows = []
    try:
        for n in args.sizes:
            work = base / f"n{n}"
            work.mkdir(parents=True, exist_ok=True)
            write_corpus(work / "corpus", n, args.seed)
            for kind in ("faiss", "milvus"):
                print(f"== {n:,} passages, {kind}…", flush=True)
                extra = ["--uri", args.uri] if args.uri and kind == "milvus" else []
                extra += ["--real-model"] if args.real_model else []
                rows.append(child(["--child", kind, "--size", str(n), "--workdir", str(work),
                                   "--queries", str(args.queries), "--seed", str(args.seed),
                                   *extra]))  # fmt: skip
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    report(rows)
    print(json.dumps(rows, ensure_ascii=False))


if __name__ == "__main__":
    main()
