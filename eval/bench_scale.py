"""How the whole pipeline behaves at 10k and 100k passages: build speed, index size,
memory, query latency, and how much the approximate dense index loses against exact search.

    .venv/bin/python eval/bench_scale.py                  # 10k and 100k, synthetic vectors
    .venv/bin/python eval/bench_scale.py --sizes 20000    # any sizes
    .venv/bin/python eval/bench_scale.py --real-embed     # embed with the real model (slow)

The corpus is written as files: interviews in the transcript form (# title, ## section,
重庆日报's questions, experts' answers), ~18 answers a file, whose sentences are this page's
own, recombined and with ~10 % of words swapped for other dictionary words (so the
vocabulary grows with size the way real text's does). They go through the real pipeline
— qa.engine.build: read, parse, chunk, embed, index — and are queried through the real
Engine.ask: the query embedded by the real model, hybrid search, abstention checks, the
answer composed.

Only the passage vectors are synthetic unless --real-embed: the model embeds ~26–30
passages/s on 2 CPU cores, so 100k real passages take about an hour. The synthetic ones
are unit vectors clustered around a few hundred centroids, each cluster spread along its
own subspace. Uniform random vectors have no neighbourhoods at all, and tight clusters make
every approximate index look perfect. These sit between, yet they are still far easier
than the real thing. At 98k passages, HNSW at efSearch 128 recalled 0.999 of the exact top
10 on synthetic vectors and 0.80 on real ones (see qa/store.py). Recall against exact
search is measured with query vectors of the same kind (or the real questions' vectors
with --real-embed).

Each size runs as two child processes — build, then load and query — so each reports its
own peak memory. The last line printed is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa import store  # noqa: E402
from qa.corpus import read_corpus  # noqa: E402
from qa.engine import Engine, build  # noqa: E402

K = 10
TIE = 1e-5  # scores this close to the K-th best are ties (float32 sums differ in order)
DIMENSION = 384  # multilingual-e5-small
CLUSTERS = 300
# each cluster spreads along its own 64-dimensional subspace, wide enough that clusters
# overlap: a deliberately hard case (IVF with nprobe=32 of 632 lists recalls only ~0.7 of
# the true top 10 here), so the approximate index's recall is a pessimistic figure
CLUSTER_RANK = 64
CLUSTER_SPREAD = 0.5
NOISE = 0.05
SPEAKERS = 30  # distinct expert names across the corpus
EXPERTS_PER_FILE = 3
SECTIONS_PER_FILE = 3
QUESTIONS_PER_SECTION = 2
FAMILY = "蔡卢朱王孙李张刘陈杨"
GIVEN = ("之兵", "阳春", "旭森")
GOAL_P50_MS = 60.0
GOAL_RSS_MB = 2048.0
QUESTION_FRAMES = ("{}", "{}是什么意思？", "专家怎么看{}", "关于{}有哪些观点", "如何理解{}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000, 3)


# ---------------------------------------------------------------------------------------
# synthetic corpus


def corpus_sentences() -> list[str]:
    """Sentences of the real corpus, with the print layout's line wraps undone."""
    text = "".join(
        line.strip() for p in sorted((ROOT / "corpus").glob("*.txt")) for line in open(p)
    )
    parts = re.findall(r"[^。！？；]+[。！？；]?", text)
    return [s for s in parts if len(s) >= 8]


def synthetic_texts(n: int, seed: int) -> list[str]:
    """n passages of 2–4 recombined corpus sentences with ~10 % of words swapped for other
    dictionary words drawn by their frequency (so the vocabulary grows with size the way
    real text's does), at most 260 characters like qa.chunk's windows."""
    tok = store._tokenizer()
    sentences = [tok.lcut(s, HMM=False) for s in corpus_sentences()]
    words, freqs = zip(
        *((w, f) for w, f in tok.FREQ.items() if f > 0 and 2 <= len(w) <= 4 and w.isalpha()),
        strict=True,
    )
    draw = random.Random(seed)
    fillers = draw.choices(words, weights=freqs, k=min(n * 10, 2_000_000))
    texts = []
    f = 0
    for _ in range(n):
        out: list[str] = []
        for s in draw.choices(sentences, k=draw.randint(2, 4)):
            for w in s:
                if len(w) >= 2 and draw.random() < 0.10:
                    w = fillers[f % len(fillers)]
                    f += 1
                out.append(w)
        texts.append("".join(out)[:260])
    return texts


def synthetic_vectors(n: int, rng: np.random.Generator, centroids: np.ndarray) -> np.ndarray:
    """Unit vectors around the centroids, made in blocks to keep memory flat."""
    out = np.empty((n, centroids.shape[1]), dtype=np.float32)
    basis_rng = np.random.default_rng(99)  # the same cluster shapes for corpus and queries
    shape = (len(centroids), CLUSTER_RANK, centroids.shape[1])
    bases = basis_rng.standard_normal(shape).astype(np.float32)
    bases /= np.sqrt(centroids.shape[1])
    for start in range(0, n, 4096):
        m = min(4096, n - start)
        cluster = rng.integers(0, len(centroids), size=m)
        along = rng.standard_normal((m, CLUSTER_RANK)).astype(np.float32) * CLUSTER_SPREAD
        block = centroids[cluster] + np.einsum("mk,mkd->md", along, bases[cluster])
        block += rng.standard_normal(block.shape).astype(np.float32) * NOISE
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


class SyntheticVectors:
    """Stands in for the sentence model at build time only: clustered unit vectors."""

    name = "synthetic"
    dimension = DIMENSION

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.centroids = self.rng.standard_normal((CLUSTERS, DIMENSION)).astype(np.float32)
        self.centroids /= np.linalg.norm(self.centroids, axis=1, keepdims=True)

    def embed_passages(self, texts: list[str], progress=None) -> np.ndarray:
        vectors = synthetic_vectors(len(texts), self.rng, self.centroids)
        if progress is not None:
            progress(f"embedded {len(texts)}/{len(texts)} passages")
        return vectors


def expert_names() -> list[str]:
    return [f + g for f in FAMILY for g in GIVEN][:SPEAKERS]


def write_corpus(folder: Path, passages: int, seed: int) -> int:
    """Interview files holding about ``passages`` passages once chunked; returns the number
    of files. Each answer (2–4 sentences, ≤ 260 characters) makes ~1.8 windows plus the
    passage holding its question."""
    folder.mkdir(parents=True, exist_ok=True)
    answers_needed = max(1, round(passages / 2.8))
    texts = synthetic_texts(answers_needed, seed)
    draw = random.Random(seed + 1)
    names = expert_names()
    sentences = corpus_sentences()
    per_file = SECTIONS_PER_FILE * QUESTIONS_PER_SECTION * EXPERTS_PER_FILE
    files = 0
    for start in range(0, len(texts), per_file):
        answers = iter(texts[start : start + per_file])
        experts = draw.sample(names, EXPERTS_PER_FILE)
        lines = [f"# 合成访谈第{files}篇：{draw.choice(sentences)[:16]}", ""]
        done = False
        for section in range(SECTIONS_PER_FILE):
            lines += [f"## 第{section + 1}部分 {draw.choice(sentences)[:10]}", ""]
            for _ in range(QUESTIONS_PER_SECTION):
                lines.append(f"重庆日报：{draw.choice(sentences)[:24].rstrip('。！？；')}？")
                for expert in experts:
                    text = next(answers, None)
                    if text is None:
                        done = True
                        break
                    lines.append(f"{expert}（研究员）：{text}")
                lines.append("")
                if done:
                    break
            if done:
                break
        (folder / f"interview-{files:05d}.md").write_text("\n".join(lines), encoding="utf-8")
        files += 1
    return files


def filter_masks(index: store.IndexStore) -> dict[str, np.ndarray]:
    """A one-speaker filter (~1/30 of the rows) and a half-of-the-files filter."""
    first = expert_names()[0]
    speakers = np.array([index.turns[p.turn_id].speaker == first for p in index.passages])
    files = np.array([int(p.source[-8:-3]) % 2 == 0 for p in index.passages])
    return {"one_speaker": speakers, "half": files}


def exact_top(
    vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth: exact top-K rows by inner product (numpy, independent of faiss), and
    each query's K-th best score (real passages repeated with small changes tie often)."""
    out = np.full((len(queries), K), -1, dtype=np.int64)  # -1 pads when fewer rows than K
    kth = np.full(len(queries), -np.inf, dtype=np.float32)
    rows = np.flatnonzero(mask) if mask is not None else np.arange(len(vectors))
    k = min(K, len(rows))
    sub = vectors[rows]
    for i in range(0, len(queries), 64):
        scores = queries[i : i + 64] @ sub.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = top_scores.argsort(axis=1)[:, ::-1]
        out[i : i + 64, :k] = rows[np.take_along_axis(top, order, axis=1)]
        kth[i : i + 64] = top_scores.min(axis=1)
    return out, kth


# ---------------------------------------------------------------------------------------
# child: build


def run_build(n: int, work: Path, queries: int, real_embed: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    corpus_dir = work / "corpus"
    t = time.perf_counter()
    n_files = write_corpus(corpus_dir, n, seed)
    write_s = time.perf_counter() - t

    if real_embed:
        from qa.embed import load_embedder

        embedder = load_embedder(progress=lambda _m: None)
    else:
        embedder = SyntheticVectors(seed)
    index_dir = work / "index"
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(message: str) -> None:
        # build() reports parse, then embedding, then indexing: time each stage
        now = time.perf_counter()
        stage = (
            "read_parse_chunk"
            if message.startswith("parsed")
            else ("embed" if "embedded" in message or "loading" in message else "index")
        )
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now

    t = last[0] = time.perf_counter()
    index = build(corpus_dir, index_dir, embedder, progress, files=read_corpus(corpus_dir))
    build_s = time.perf_counter() - t
    n_passages = len(index)

    vectors = index._exact.reconstruct_n(0, n_passages)
    question_texts = []
    for s in rng.choice(n_passages, size=queries):
        text = index.passages[s].text
        a = int(rng.integers(0, max(1, len(text) - 12)))
        question_texts.append(QUESTION_FRAMES[s % len(QUESTION_FRAMES)].format(text[a : a + 12]))
    if real_embed:
        query_vectors = np.stack([embedder.embed_query(q) for q in question_texts])
    else:
        query_vectors = synthetic_vectors(queries, embedder.rng, embedder.centroids)

    truth = {"all": exact_top(vectors, query_vectors, None)}
    for name, mask in filter_masks(index).items():
        truth[name] = exact_top(vectors, query_vectors, mask)
    np.savez(
        work / "queries.npz",
        vectors=query_vectors,
        **{f"truth_{k}": rows for k, (rows, _) in truth.items()},
        **{f"kth_{k}": kth for k, (_, kth) in truth.items()},
    )
    (work / "questions.json").write_text(json.dumps(question_texts, ensure_ascii=False), "utf-8")
    manifest = index.manifest
    return {
        "passages": n_passages,
        "files": n_files,
        "corpus_mb": round(sum(f.stat().st_size for f in corpus_dir.iterdir()) / 1e6, 1),
        "vectors": "real" if real_embed else "synthetic",
        "write_corpus_s": round(write_s, 2),
        "build_s": round(build_s, 2),
        "build_stages_s": {k: round(v, 2) for k, v in stages.items()},
        "build_passages_per_s": round(n_passages / build_s, 1),
        "index_mb": round(sum(f.stat().st_size for f in index_dir.iterdir()) / 1e6, 1),
        "vocabulary": manifest["counts"]["vocabulary"],
        "dense_index": manifest["dense"],
        "build_peak_rss_mb": round(peak_rss_mb(), 1),
    }


# ---------------------------------------------------------------------------------------
# child: load and query


def run_query(work: Path) -> dict:
    t = time.perf_counter()
    index = store.load_index(work / "index")
    load_s = time.perf_counter() - t
    data = np.load(work / "queries.npz", allow_pickle=False)
    query_vectors = data["vectors"]
    questions = json.loads((work / "questions.json").read_text("utf-8"))
    masks = {"all": None, **filter_masks(index)}

    out: dict = {"load_s": round(load_s, 2)}
    for name, mask in masks.items():
        index.dense_search(query_vectors[0], K, mask)  # warm up
        seconds, found = [], []
        for q in query_vectors:
            t = time.perf_counter()
            hits = index.dense_search(q, K, mask)
            seconds.append(time.perf_counter() - t)
            found.append(hits)
        truth = [set(t[t >= 0].tolist()) for t in data[f"truth_{name}"]]
        # a row scoring as high as the exact K-th is as right as the row numpy listed
        recall = np.mean(
            [
                sum(1 for row, score in f if row in t or score >= kth - TIE) / len(t)
                for f, t, kth in zip(found, truth, data[f"kth_{name}"], strict=True)
            ]
        )
        found = [[row for row, _ in f] for f in found]
        allowed_ok = mask is None or all(mask[r] for f in found for r in f)
        out[f"dense_{name}"] = {
            "p50_ms": percentile_ms(seconds, 50),
            "p95_ms": percentile_ms(seconds, 95),
            "recall_at_10": round(float(recall), 4),
            "only_allowed_rows": bool(allowed_ok),
            "full_k": all(len(f) == len(t) for f, t in zip(found, truth, strict=True)),
        }

    index.keyword_search(questions[0], K)
    seconds, hit_counts = [], []
    for q in questions:
        t = time.perf_counter()
        hits = index.keyword_search(q, K)
        seconds.append(time.perf_counter() - t)
        hit_counts.append(len(hits))
    out["keyword"] = {
        "p50_ms": percentile_ms(seconds, 50),
        "p95_ms": percentile_ms(seconds, 95),
        "queries_with_hits": sum(1 for c in hit_counts if c) / len(hit_counts),
    }
    out["store_peak_rss_mb"] = round(peak_rss_mb(), 1)

    # what a user waits for: Engine.ask with the real model embedding the question
    from qa.embed import load_embedder

    engine = Engine(index, load_embedder(progress=lambda _m: None), work / "index")
    engine.ask(questions[0])  # warm up
    seconds, answered = [], 0
    for q in questions[1:]:
        t = time.perf_counter()
        answered += engine.ask(q).answerable
        seconds.append(time.perf_counter() - t)
    named = expert_names()[1]
    named_seconds = []
    for q in questions[1:51]:
        t = time.perf_counter()
        engine.ask(f"{named}怎么看{q}")  # names a speaker: filtered, embedded twice
        named_seconds.append(time.perf_counter() - t)
    out["ask"] = {
        "p50_ms": percentile_ms(seconds, 50),
        "p95_ms": percentile_ms(seconds, 95),
        "named_speaker_p50_ms": percentile_ms(named_seconds, 50),
        "named_speaker_p95_ms": percentile_ms(named_seconds, 95),
        "answered_share": round(answered / len(seconds), 3),
    }
    out["query_peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


# ---------------------------------------------------------------------------------------
# parent


def child(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench child {args} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real-embed", action="store_true", help="embed with qa.embed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="keep indexes here (default: temp)")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--query", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()

    if args.build is not None:
        result = run_build(args.build, args.workdir, args.queries, args.real_embed, args.seed)
        print(json.dumps(result))
        return
    if args.query:
        print(json.dumps(run_query(args.workdir)))
        return

    if args.real_embed:
        try:
            import qa.embed  # noqa: F401
        except ImportError:
            raise SystemExit("--real-embed needs qa/embed.py") from None
    base = args.workdir or Path(tempfile.mkdtemp(prefix="qa-bench-"))
    results = {}
    try:
        for n in args.sizes:
            work = base / f"n{n}"
            work.mkdir(parents=True, exist_ok=True)
            common = ["--workdir", str(work), "--queries", str(args.queries)]
            extra = ["--real-embed"] if args.real_embed else []
            print(f"== {n:,} passages: building…", flush=True)
            built = child(["--build", str(n), "--seed", str(args.seed), *common, *extra])
            print(f"== {n:,} passages: querying…", flush=True)
            queried = child(["--query", *common])
            results[n] = {**built, **queried}
            report(results[n])
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)

    largest = results[max(results)]
    goal = {
        "size": max(results),
        "ask_p50_ms": largest["ask"]["p50_ms"],
        "query_peak_rss_mb": largest["query_peak_rss_mb"],
    }
    goal["met"] = goal["ask_p50_ms"] <= GOAL_P50_MS and goal["query_peak_rss_mb"] <= GOAL_RSS_MB
    print(json.dumps({"results": results, "goal": goal}, ensure_ascii=False))


def report(r: dict) -> None:
    d = r["dense_index"]
    kind = d["type"] + ("" if d.get("exact") else f" M={d['M']} efSearch={d['ef_search']}")
    stages = ", ".join(f"{k} {v} s" for k, v in r["build_stages_s"].items())
    print(
        f"  corpus           {r['files']:,} files, {r['corpus_mb']} MB, {r['passages']:,} "
        f"passages, {r['vectors']} vectors"
    )
    print(f"  dense index      {kind}")
    print(
        f"  build            {r['build_s']} s ({r['build_passages_per_s']:,.0f} passages/s: "
        f"{stages}), {r['index_mb']} MB on disk, {r['vocabulary']:,} terms, "
        f"peak RSS {r['build_peak_rss_mb']:.0f} MB"
    )
    print(f"  load             {r['load_s']} s")
    for name in ("all", "one_speaker", "half"):
        q = r[f"dense_{name}"]
        print(
            f"  dense {name:<12}p50 {q['p50_ms']} ms  p95 {q['p95_ms']} ms  "
            f"recall@10 {q['recall_at_10']}  filter respected {q['only_allowed_rows']}"
        )
    q = r["keyword"]
    print(f"  keyword          p50 {q['p50_ms']} ms  p95 {q['p95_ms']} ms")
    a = r["ask"]
    print(
        f"  Engine.ask       p50 {a['p50_ms']} ms  p95 {a['p95_ms']} ms "
        f"(naming a speaker: p50 {a['named_speaker_p50_ms']} ms  "
        f"p95 {a['named_speaker_p95_ms']} ms), peak RSS {r['query_peak_rss_mb']:.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    main()
