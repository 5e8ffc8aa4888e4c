"""The on-disk index: dense vectors (FAISS) + BM25 keyword weights + the records they point at.

One folder holds everything a query needs, written by ``build_index`` and read back by
``load_index``::

    manifest.json   what was built from what (model, corpus hashes, index type) + file checksums
    vectors.faiss   faiss.write_index of the L2-normalised passage vectors (inner product = cosine)
    bm25.npz        BM25 term-document weights as a CSC sparse matrix + the vocabulary (as JSON)
    passages.json   Passage.to_dict() records; row i of every matrix is passages[i]
    turns.json      Turn.to_dict() records the passages belong to

Nothing is pickled, so a folder from somewhere else cannot run code when loaded. A build
writes into a temporary sibling folder and renames it into place, so readers see either
the old index or the new one, never half of one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import threading
import time
import unicodedata
import zipfile
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import faiss
import jieba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from scipy import sparse
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from . import atomic
from .errors import IndexProblem, IndexUnwritable
from .types import Passage, Progress, Turn, say

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
BM25 = "bm25.npz"
PASSAGES = "passages.json"
TURNS = "turns.json"
DATA_FILES = (VECTORS, BM25, PASSAGES, TURNS)
SENTENCES = "sentences.npz"  # optional: sentence spans + vectors (see SentenceIndex)
# optional: every passage's distinct keyword terms and counts, so an update re-tokenizes
# only the files that changed (see update_index)
REUSE = "reuse.npz"
KNOWN_FILES = (MANIFEST, *DATA_FILES, SENTENCES, REUSE)  # a folder holding only these is ours
REBUILD = "rebuild it with `qa index`"

# Dense search is exact over at most this many rows; bigger indexes get an HNSW graph.
# Measured with eval/bench_scale.py --real-embed on 98k real e5 vectors of perturbed,
# repeated passages (the top 100 cosines of a query lie within ~0.01): exact search takes
# 14 ms a query on one thread and finds the true top 10; HNSW (M 32) recalls 0.80 of them at
# efSearch 128 (0.4 ms), 0.88 at 256, 0.93 at 512, 0.955 at 1024 (2.8 ms), 0.97 at 2048.
# Synthetic vectors had shown 0.999 at 128: real ones are far harder. So exact search up
# to 150k rows (~22 ms, inside the 60 ms goal for a whole ask), HNSW at efSearch 1024 above.
# HNSW over IVF (synthetic 100k): IVF with nprobe=32 of 632 lists fell to 0.71.
EXACT_SEARCH_LIMIT = 150_000
HNSW_M = 32  # graph links per vector: fewer lost recall (0.93 with M=16)
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 1024  # candidates explored per query

# OpenMP threads (faiss's setting is per calling thread): all cores to build; one to
# answer a query, which gains nothing from threads and ran ~4× slower with them while
# other processes held the cores.
BUILD_THREADS = faiss.omp_get_max_threads()

BM25_K1 = 1.5
BM25_B = 0.75

# ---------------------------------------------------------------------------------------
# tokenizer

# Words that carry no evidence: a passage should not match a question because both contain
# 的 or 什么. Greetings are here too, so "你好" finds nothing instead of everything.
CHINESE_STOP_WORDS = frozenset(
    """
    的 地 得 了 着 过 是 在 和 与 及 以及 或 或者 也 都 就 还 又 而 而且 并 并且 但 但是 却
    把 被 对 对于 从 向 于 以 为 为了 由 让 给 将 到 之 其 及其 所 这 那 这个 那个 这些 那些
    这样 那样 这种 那种 此 该 各 每 一个 一些 有 没有 不 没 很 更 最 非常 比较 已经 正在 可以
    能 会 要 应 应该 可能 需要 吧 啊 呀 哦 嗯 么 吗 呢 嘛 哈 啦 我 你 您 他 她 它 我们 你们
    您们 他们 她们 它们 咱们 大家 自己 什么 怎么 怎样 怎么样 如何 为什么 为何 哪 哪些 哪个
    哪里 哪儿 多少 几 是否 是不是 有没有 认为 觉得 看来 看待 看法 观点 谈谈 谈一谈 说说 讲讲
    介绍 一下 请 请问 问 你好 您好 大家好 谢谢 感谢 等 等等 方面 如果 因为 所以 因此
    虽然 然后 其中 什么样 之间
    """.split()
)
ENGLISH_STOP_WORDS = frozenset(
    """
    a an the and or but of to in on at by for with from as into about than then so if
    is are was were be been being am do does did done have has had having it its this that
    these those there here i me my we our us you your he him his she her they them their
    what which who whom whose how why when where can could should would will shall may might
    must not no yes please tell think hello hi thanks thank
    """.split()
)
STOP_WORDS = CHINESE_STOP_WORDS | ENGLISH_STOP_WORDS
JIEBA_HMM = False  # unknown words (names) become single characters, split the same way in
# documents and queries; the HMM guesses them differently by context and is 2× slower.

_jieba_lock = threading.Lock()
_jieba: jieba.Tokenizer | None = None


def _tokenizer() -> jieba.Tokenizer:
    """A private jieba instance, loaded once per process.

    Private so words another module adds to the global jieba cannot change how this index
    splits text (the index would silently stop matching its own queries).
    """
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
                _jieba = tok
    return _jieba


def tokenize(text: str) -> list[str]:
    """jieba search-mode tokens, lower-cased; punctuation, whitespace and stop words dropped.

    Search mode also emits the short words inside long ones (必然趋势 → 必然, 趋势,
    必然趋势), so a question using part of a compound still matches it.
    """
    # NFKC: full-width Ａ１ → A1 so both forms match; lower-casing first does not change
    # how jieba splits (it keeps runs of Latin letters together either way)
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for t in _tokenizer().lcut_for_search(text, HMM=JIEBA_HMM) if _is_content(t)]


def split_words(text: str) -> tuple[list[str], list[str]]:
    """(words, terms) from one jieba pass: ``words`` the plain segmentation in order (stop
    words and punctuation kept, for the question's analysis), ``terms`` exactly what
    ``tokenize`` returns (the search-mode terms)."""
    tok = _tokenizer()
    text = unicodedata.normalize("NFKC", text).lower()
    words = list(tok.cut(text, HMM=JIEBA_HMM))
    terms = []
    for w in words:  # jieba's cut_for_search, from the same cut
        if len(w) > 2:
            terms += [w[i : i + 2] for i in range(len(w) - 1) if tok.FREQ.get(w[i : i + 2])]
        if len(w) > 3:
            terms += [w[i : i + 3] for i in range(len(w) - 2) if tok.FREQ.get(w[i : i + 3])]
        terms.append(w)
    return words, [t for t in terms if _is_content(t)]


@functools.lru_cache(maxsize=1 << 17)
def _is_content(token: str) -> bool:
    """Not a stop word, not punctuation or whitespace. Cached: tokens repeat endlessly."""
    return token not in STOP_WORDS and any(ch.isalnum() for ch in token)


@functools.cache
def tokenizer_signature() -> str:
    """Changes whenever tokenize() would split a text differently (splitter, its version
    and dictionary, normalisation, stop words): a keyword index built with another
    signature no longer matches its queries."""
    with jieba.Tokenizer().get_dict_file() as fh:  # the dictionary _tokenizer() loads
        dictionary = hashlib.sha256(fh.read()).hexdigest()
    spec = {
        "splitter": "jieba.lcut_for_search",
        "jieba": getattr(jieba, "__version__", "?"),
        "dictionary": dictionary,
        "hmm": JIEBA_HMM,
        "normalise": "NFKC+lower",
        "stop_words": sorted(STOP_WORDS),
    }
    return hashlib.sha256(json.dumps(spec, ensure_ascii=False).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# building



def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero), so inner product is cosine."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def _build_dense(vectors: np.ndarray, path: Path) -> dict:
    """Write exact search while it is fast enough, an HNSW graph (≥ 0.95 recall@10) beyond
    that; returns what the manifest records about it.

    Runs on a worker thread beside the tokenizer (faiss releases the GIL), so it reports
    no progress of its own.
    """
    n, dim = vectors.shape
    faiss.omp_set_num_threads(BUILD_THREADS)
    if n <= EXACT_SEARCH_LIMIT:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        faiss.write_index(index, str(path))
        return {"type": "IndexFlatIP", "metric": "inner_product", "exact": True}

    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    faiss.write_index(index, str(path))
    return {
        "type": "IndexHNSWFlat",
        "metric": "inner_product",
        "exact": False,
        "M": HNSW_M,
        "ef_construction": HNSW_EF_CONSTRUCTION,
        "ef_search": HNSW_EF_SEARCH,
    }


@dataclass
class TermCounts:
    """Every passage's distinct keyword terms in order of first use, with their counts:
    enough to recompute BM25 weights for any set of passages without tokenizing again.
    Entries of passage i are ``indptr[i]:indptr[i + 1]``; ``terms`` index ``vocabulary``."""

    indptr: np.ndarray  # int64, n + 1
    terms: np.ndarray  # int32
    counts: np.ndarray  # int32
    doc_lengths: np.ndarray  # int64, tokens per passage (with repeats)
    vocabulary: list[str]

    def __len__(self) -> int:
        return len(self.doc_lengths)


def _count_terms(
    texts: Sequence[str], progress: Progress, vocab: dict[str, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Tokenize: (indptr, term ids, counts, doc lengths, vocab) with each passage's terms in
    order of first use; new terms are appended to ``vocab``."""
    n = len(texts)
    vocab = {} if vocab is None else vocab
    term_ids = array("i")  # every token of every passage: compact, no per-int objects
    doc_lengths = np.zeros(n, dtype=np.int64)
    t0 = last = time.perf_counter()
    for row, text in enumerate(texts):
        tokens = tokenize(text)
        doc_lengths[row] = len(tokens)
        term_ids.extend(vocab.setdefault(t, len(vocab)) for t in tokens)
        now = time.perf_counter()
        if now - last > 5:
            last = now
            rate = (row + 1) / (now - t0)
            say(progress, f"index: tokenized {row + 1:,}/{n:,} passages ({rate:,.0f}/s)")
    rows = np.repeat(np.arange(n, dtype=np.int64), doc_lengths)
    cols = np.frombuffer(term_ids, dtype=np.int32) if term_ids else np.zeros(0, np.int32)
    key = rows * max(len(vocab), 1) + cols
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")  # rows are contiguous: row order, then first use
    first = first[order]
    entry_rows = rows[first]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(entry_rows, minlength=n), out=indptr[1:])
    return indptr, cols[first].astype(np.int32), counts[order].astype(np.int32), doc_lengths, vocab


def _bm25_weights(counts: TermCounts) -> sparse.csc_matrix:
    """BM25 weight of every (passage, term) pair, so a query is a sum of a few columns."""
    n = len(counts)
    rows = np.repeat(np.arange(n, dtype=np.int32), np.diff(counts.indptr))
    tf = sparse.csr_matrix(
        (counts.counts.astype(np.float32), (rows, counts.terms)),
        shape=(n, len(counts.vocabulary)),
    )
    tf.sum_duplicates()
    doc_lengths = counts.doc_lengths
    df = np.bincount(tf.indices, minlength=len(counts.vocabulary))
    idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)  # never negative
    avg_len = max(float(doc_lengths.mean()) if n else 0.0, 1e-9)
    row_of_entry = np.repeat(np.arange(n), np.diff(tf.indptr))
    norm = BM25_K1 * (1 - BM25_B + BM25_B * doc_lengths[row_of_entry] / avg_len)
    tf.data = (idf[tf.indices] * tf.data * (BM25_K1 + 1) / (tf.data + norm)).astype(np.float32)
    return tf.tocsc()


def _build_bm25(texts: Sequence[str], progress: Progress) -> tuple[sparse.csc_matrix, TermCounts]:
    indptr, terms, counts, lengths, vocab = _count_terms(texts, progress)
    term_counts = TermCounts(indptr, terms, counts, lengths, list(vocab))
    return _bm25_weights(term_counts), term_counts


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), "utf-8")


def check_buildable(index_dir: Path) -> None:
    """Refuse, before any work, an --index that is a file or a folder this project did not
    make (a typo'd path must not eat data), and a folder where a build cannot be written."""
    index_dir = Path(index_dir)
    problem = atomic.refusal(index_dir, KNOWN_FILES)
    if problem:
        raise IndexProblem(f"{problem}: choose another --index path (or QA_INDEX)")
    problem = atomic.unwritable(index_dir)
    if problem:
        raise IndexUnwritable(
            f"cannot build the index at {index_dir}: {problem}; make it writable or choose "
            "a writable --index path (or QA_INDEX)"
        )


def build_index(
    index_dir: Path,
    turns: list[Turn],
    passages: list[Passage],
    vectors: np.ndarray,
    model_name: str,
    corpus_hashes: dict[str, str],
    progress: Progress = print,
    keyword_texts: Sequence[str] | None = None,
    settings: dict | None = None,
    sentences: SentenceIndex | None = None,
) -> None:
    """Write a complete index folder, replacing any previous one atomically.

    ``sentences`` (optional) are the turns' sentences and their vectors, written to
    ``sentences.npz`` and checksummed like the other files.

    ``keyword_texts`` (one per passage) is what BM25 indexes when it should see more than
    the passage text, e.g. the speaker and section line; by default the passage text.
    ``settings`` records how passages were made (chunking, embedded text): an index
    built with other settings is stale. A failure at any point leaves the previous
    index untouched.
    """
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    n = len(passages)
    if n == 0:
        raise IndexProblem("nothing to index (no passages): add interview files to the corpus")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise ValueError(f"need one vector per passage: {n} passages, vectors {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    if any(p.id != row for row, p in enumerate(passages)):
        raise ValueError("passage ids must be their row numbers 0..n-1, in order")
    turn_ids = {t.id for t in turns}
    missing = sorted({p.turn_id for p in passages} - turn_ids)
    if missing:
        raise ValueError(f"passages refer to turns not given: {missing[:3]}")
    if keyword_texts is None:
        keyword_texts = [p.text for p in passages]
    if len(keyword_texts) != n:
        raise ValueError(f"need one keyword text per passage: {n} vs {len(keyword_texts)}")

    check_buildable(index_dir)
    _write_index(
        index_dir, turns, passages, vectors, keyword_texts, model_name, corpus_hashes,
        settings, sentences, progress, t0,
    )


def _write_index(
    index_dir: Path,
    turns: list[Turn],
    passages: list[Passage],
    vectors: np.ndarray,
    keyword_texts: Sequence[str] | None,
    model_name: str,
    corpus_hashes: dict[str, str],
    settings: dict | None,
    sentences: SentenceIndex | None,
    progress: Progress,
    t0: float,
    term_counts: TermCounts | None = None,
) -> tuple[dict, sparse.csc_matrix]:
    """Write the folder atomically; returns its manifest and keyword weights."""
    n = len(passages)
    turn_ids = {t.id for t in turns}
    try:
        with atomic.building(index_dir) as work:
            files, dense_info, vocabulary, weights = _write_files(
                work, passages, turns, vectors, keyword_texts, progress, term_counts
            )
            if sentences is not None:  # -- sentence-level evidence (helper "quality") --
                sentences.save(work / SENTENCES, turn_ids, normalise=term_counts is None)
                atomic.fsync(work / SENTENCES)
                files[SENTENCES] = {
                    "sha256": _sha256_file(work / SENTENCES),
                    "bytes": (work / SENTENCES).stat().st_size,
                }
            manifest = {
                "format_version": FORMAT_VERSION,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": model_name,
                "settings": settings or {},
                "dimension": int(vectors.shape[1]),
                "corpus": dict(sorted(corpus_hashes.items())),
                "counts": {
                    "turns": len(turns),
                    "passages": n,
                    "vocabulary": len(vocabulary),
                    **({"sentences": len(sentences)} if sentences is not None else {}),
                },
                "dense": dense_info,
                "keyword": {
                    "scheme": "bm25",
                    "k1": BM25_K1,
                    "b": BM25_B,
                    "tokenizer": tokenizer_signature(),
                },
                "files": files,
                "build_seconds": round(time.perf_counter() - t0, 2),
            }
            text = json.dumps(manifest, ensure_ascii=False, indent=2)
            (work / MANIFEST).write_text(text, "utf-8")
            atomic.fsync(work / MANIFEST)
    except OSError as exc:  # full disk, folder made read-only mid-build, …
        raise IndexUnwritable(
            f"cannot write the index at {index_dir} ({exc.strerror or exc}); the previous "
            "index is untouched: free some space or choose another --index path"
        ) from None
    size = sum(f["bytes"] for f in files.values())
    say(
        progress,
        f"index: ready at {index_dir} ({n:,} passages, {len(vocabulary):,} terms, "
        f"{dense_info['type']}, {size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s",
    )
    return manifest, weights


def _write_files(
    work: Path,
    passages: list[Passage],
    turns: list[Turn],
    vectors: np.ndarray,
    keyword_texts: Sequence[str] | None,
    progress: Progress,
    term_counts: TermCounts | None = None,
) -> tuple[dict, dict, list[str], sparse.csc_matrix]:
    """Every data file of an index into ``work``; returns (checksums, dense info, vocabulary,
    keyword weights).

    With ``term_counts`` (an update) the keyword weights come from them and ``vectors`` are
    already unit length; else the texts are tokenized and the vectors normalised here."""
    n = len(passages)
    if term_counts is None:
        vectors = _normalised(vectors)
    kind = "exact" if n <= EXACT_SEARCH_LIMIT else "HNSW graph"
    say(
        progress,
        f"index: dense search ({kind}) over {n:,} vectors of {vectors.shape[1]} dimensions, "
        "keyword search (BM25) alongside…",
    )
    # the graph and the tokenizer each keep a core busy: build them side by side
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-dense-index") as pool:
        dense_job = pool.submit(_build_dense, vectors, work / VECTORS)
        if term_counts is None:
            weights, term_counts = _build_bm25(keyword_texts or [], progress)
        else:
            weights = _bm25_weights(term_counts)
        vocabulary = term_counts.vocabulary
        if not dense_job.done():
            say(progress, "index: keyword search done; waiting for the dense index…")
        dense_info = dense_job.result()
    np.savez(
        work / BM25,
        data=weights.data,
        indices=weights.indices,
        indptr=weights.indptr,
        shape=np.asarray(weights.shape, dtype=np.int64),
        vocabulary_json=_json_bytes(vocabulary),
    )
    np.savez(
        work / REUSE,
        indptr=term_counts.indptr,
        terms=term_counts.terms,
        counts=term_counts.counts,
        doc_lengths=term_counts.doc_lengths,
    )
    _write_json(work / PASSAGES, [p.to_dict() for p in passages])
    _write_json(work / TURNS, [t.to_dict() for t in turns])
    files = {}
    for name in (*DATA_FILES, REUSE):
        atomic.fsync(work / name)
        files[name] = {
            "sha256": _sha256_file(work / name),
            "bytes": (work / name).stat().st_size,
        }
    return files, dense_info, vocabulary, weights


def _json_bytes(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


# ---------------------------------------------------------------------------------------
# freshness


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class _Dense(_Strict):
    type: Literal["IndexFlatIP", "IndexHNSWFlat"]
    metric: Literal["inner_product"]
    exact: bool
    ef_search: int | None = Field(default=None, ge=1)


class _Keyword(_Strict):
    scheme: Literal["bm25"]
    k1: float
    b: float
    tokenizer: str


class Manifest(_Strict):
    """What manifest.json must hold; anything else is a corrupt index (rebuilt)."""

    format_version: int
    created: str
    model: str
    settings: dict[str, Any]
    dimension: int = Field(gt=0)
    corpus: dict[str, str]
    counts: dict[str, int]
    dense: _Dense
    keyword: _Keyword
    files: dict[str, _FileEntry]


class _PassageRecord(TypedDict):
    id: int
    turn_id: str
    text: str
    source: str
    start: int
    end: int


class _TurnRecord(TypedDict):
    id: str
    source: str
    article: str
    section: list[str]
    speaker: str | None
    speaker_title: str | None
    asked: str | None
    kind: str
    text: str
    start: int
    end: int


_STRICT = ConfigDict(strict=True)
_PASSAGES = TypeAdapter(list[_PassageRecord], config=_STRICT)
_TURNS = TypeAdapter(list[_TurnRecord], config=_STRICT)


def _schema_error(exc: ValidationError) -> str:
    """The first mismatch as a short phrase: 'files: Input should be a valid dictionary'."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "top level"
    return f"{where}: {first['msg']}"


def read_manifest(index_dir: Path) -> tuple[dict | None, str | None]:
    """(the manifest, None) when it exists and has the right shape, else (None, why not).

    The dict is the file as written (validated), so callers may read fields directly.
    An older format is reported as such before its shape is judged.
    """
    try:
        raw = json.loads((Path(index_dir) / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        return None, f"{MANIFEST} missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{MANIFEST} is not valid JSON"
    if isinstance(raw, dict) and raw.get("format_version") != FORMAT_VERSION:
        return None, (
            f"format {raw.get('format_version')!r}, "
            f"this version of qa reads format {FORMAT_VERSION}"
        )
    try:
        Manifest.model_validate(raw)
    except ValidationError as exc:
        return None, f"{MANIFEST} malformed ({_schema_error(exc)})"
    return raw, None


def _name_some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def stale_reason(
    index_dir: Path, corpus_hashes: dict[str, str], model_name: str, settings: dict | None = None
) -> str | None:
    """Why the index must be rebuilt before use, as a sentence; None when it is usable.

    Cheap (reads the manifest and file sizes only): callers ask on every start-up.
    Checksums are verified by load_index.
    """
    index_dir = Path(index_dir)
    if not index_dir.exists():
        return "no index yet"
    manifest, problem = read_manifest(index_dir)
    if manifest is None:
        return f"the index is unusable: {problem}"
    if manifest.get("model") != model_name:
        return f"the index was built with model {manifest.get('model')}, not {model_name}"
    if settings is not None and manifest.get("settings") != settings:
        return "the index was built with other passage settings (chunking or embedded text)"
    built = manifest["corpus"]
    added = sorted(set(corpus_hashes) - set(built))
    removed = sorted(set(built) - set(corpus_hashes))
    changed = sorted(f for f in set(built) & set(corpus_hashes) if built[f] != corpus_hashes[f])
    if added or removed or changed:
        parts = [
            f"{_name_some(names)} {verb}"
            for names, verb in ((added, "added"), (changed, "changed"), (removed, "removed"))
            if names
        ]
        return "corpus changed: " + "; ".join(parts)
    if manifest["keyword"]["tokenizer"] != tokenizer_signature():
        return "the keyword tokenizer changed since the index was built"
    files = manifest["files"]
    optional = tuple(name for name in (SENTENCES, REUSE) if name in files)
    damaged = [
        name
        for name in (*DATA_FILES, *optional)
        if not (index_dir / name).is_file()
        or name not in files
        or (index_dir / name).stat().st_size != files[name]["bytes"]
    ]
    if damaged:
        return f"index files missing or damaged: {', '.join(damaged)}"
    return None


# ---------------------------------------------------------------------------------------
# loading and searching


def _corrupt(index_dir: Path, what: str) -> IndexProblem:
    return IndexProblem(f"index at {index_dir} is corrupt ({what}): {REBUILD}")


def _turn_from_dict(d: dict) -> Turn:
    return Turn(**{**d, "section": tuple(d["section"]), "offsets": ()})


class IndexStore:
    """A loaded index: the records, the dense index and the BM25 weights. Read-only and
    safe to search from several threads."""

    def __init__(
        self,
        index_dir: Path,
        manifest: dict,
        turns: dict[str, Turn],
        passages: list[Passage],
        dense: faiss.Index,
        keyword_weights: sparse.csc_matrix,
        vocabulary: list[str],
        sentences: SentenceIndex | None = None,
    ):
        self.index_dir = index_dir
        self.sentences = sentences  # None for an index built without them
        self.manifest = manifest
        self.turns = turns
        self.passages = passages
        self._dense = dense
        # exact search over the same vectors: the index itself, or the HNSW graph's storage
        self._exact = faiss.downcast_index(dense.storage) if hasattr(dense, "hnsw") else dense
        self._dense_info = manifest["dense"]
        self._weights = keyword_weights
        self._term_id = {term: i for i, term in enumerate(vocabulary)}
        self.changes: list[str] = []  # what the build that made it did (qa.engine.build)

    def __len__(self) -> int:
        return len(self.passages)

    def unit_vectors(self) -> np.ndarray:
        """A copy of every passage's unit vector, row i for passage i."""
        return self._exact.reconstruct_n(0, self._exact.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.manifest["dimension"])

    def _check_allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (len(self.passages),):
            raise ValueError(
                f"allowed must be a boolean mask of {len(self.passages)} rows, "
                f"got shape {allowed.shape}"
            )
        return allowed

    def dense_search(
        self, query_vec: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (row, cosine) by inner product, best first, only from ``allowed`` rows.

        Always min(k, allowed rows) results. A filter that leaves few rows is searched
        exactly (cheap: only allowed rows are scored); a wide one walks the graph further,
        and falls back to exact search if the graph still yields too few.
        """
        allowed = self._check_allowed(allowed)
        n = len(self.passages)
        query = np.ascontiguousarray(np.asarray(query_vec, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.dimension:
            raise IndexProblem(
                f"query vector has {query.shape[1]} dimensions but the index at "
                f"{self.index_dir} has {self.dimension}: {REBUILD} using the same model"
            )
        available = n if allowed is None else int(allowed.sum())
        want = min(int(k), available)
        if want <= 0:
            return []

        selector = bits = None
        if allowed is not None and available < n:
            bits = np.packbits(allowed, bitorder="little")  # faiss reads bit i of byte i>>3
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        exact_params = faiss.SearchParameters(sel=selector) if selector is not None else None
        faiss.omp_set_num_threads(1)

        if self._exact is self._dense or (selector is not None and available <= EXACT_SEARCH_LIMIT):
            hits = self._search(self._exact, query, want, exact_params)
        else:
            # a filter passing a fraction f of rows needs ~1/f more candidates for as many hits
            ef = max(want, math.ceil(int(self._dense_info["ef_search"]) * n / available))
            params = faiss.SearchParametersHNSW(efSearch=min(ef, 4096))
            if selector is not None:
                params.sel = selector
            hits = self._search(self._dense, query, want, params)
            if len(hits) < want:
                hits = self._search(self._exact, query, want, exact_params)
        del bits  # the selector reads this buffer: keep it alive until the searches are done
        return hits

    @staticmethod
    def _search(
        index: faiss.Index, query: np.ndarray, k: int, params: faiss.SearchParameters | None
    ) -> list[tuple[int, float]]:
        scores, rows = index.search(query, k, params=params)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]

    def passages_with(self, term: str) -> int:
        """How many passages contain a keyword term (its document frequency)."""
        j = self._term_id.get(term)
        return 0 if j is None else int(self._weights.indptr[j + 1] - self._weights.indptr[j])

    def keyword_search(
        self, query: str, k: int, allowed: np.ndarray | None = None,
        terms: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (row, raw BM25 score) of passages sharing a content word with the query.

        Empty when the query has only stop words or words no passage uses: no keyword
        evidence is better than matching everything weakly.
        """
        allowed = self._check_allowed(allowed)
        if k <= 0:
            return []
        terms = tokenize(query) if terms is None else terms  # terms: already tokenized
        term_ids = sorted({self._term_id[t] for t in terms if t in self._term_id})
        if not term_ids:
            return []
        w = self._weights
        spans = [(w.indptr[j], w.indptr[j + 1]) for j in term_ids]
        rows = np.concatenate([w.indices[a:b] for a, b in spans])
        weights = np.concatenate([w.data[a:b] for a, b in spans])
        if allowed is not None:
            keep = allowed[rows]
            rows, weights = rows[keep], weights[keep]
        if rows.size == 0:
            return []
        # summing the query terms' columns: O(postings + passages), ~1 ms at 100k passages
        totals = np.bincount(rows, weights=weights, minlength=w.shape[0])
        candidates = np.flatnonzero(totals)  # BM25 weights are > 0: nonzero = matched
        scores = totals[candidates]
        if candidates.size > k:
            top = np.argpartition(-scores, k - 1)[:k]
            candidates, scores = candidates[top], scores[top]
        order = np.lexsort((candidates, -scores))  # best first; ties by row for stable output
        return [(int(candidates[i]), float(scores[i])) for i in order]


def load_index(index_dir: Path) -> IndexStore:
    """Open an index folder after checking it is complete, intact and of this format.

    Raises IndexProblem with a one-line message that says how to fix it.
    """
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise IndexProblem(f"no index at {index_dir}: build it with `qa index`")
    manifest, problem = read_manifest(index_dir)
    if manifest is None:
        raise _corrupt(index_dir, problem or "")
    files = manifest["files"]
    for name in DATA_FILES:
        path = index_dir / name
        if not path.is_file():
            raise IndexProblem(f"index at {index_dir} is incomplete ({name} missing): {REBUILD}")
        if name not in files or _sha256_file(path) != files[name]["sha256"]:
            raise _corrupt(index_dir, f"{name} checksum mismatch")

    try:
        records = _PASSAGES.validate_json((index_dir / PASSAGES).read_bytes())
        passages = [Passage(**d) for d in records]
    except ValidationError as exc:
        raise _corrupt(index_dir, f"{PASSAGES} malformed ({_schema_error(exc)})") from None
    try:
        turn_records = _TURNS.validate_json((index_dir / TURNS).read_bytes())
        turn_list = [_turn_from_dict(d) for d in turn_records]
    except ValidationError as exc:
        raise _corrupt(index_dir, f"{TURNS} malformed ({_schema_error(exc)})") from None
    try:
        dense = faiss.read_index(str(index_dir / VECTORS))
    except RuntimeError:
        raise _corrupt(index_dir, f"{VECTORS} unreadable") from None
    expected_type = manifest["dense"]["type"]
    if type(dense).__name__ != expected_type:  # read_index returns the concrete class
        raise _corrupt(index_dir, f"{VECTORS} is not an {expected_type}")
    if dense.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise _corrupt(index_dir, f"{VECTORS} does not use inner product")
    weights, vocabulary = _read_bm25(index_dir, len(passages))

    n = len(passages)
    if dense.ntotal != n:
        raise _corrupt(index_dir, f"{dense.ntotal} vectors for {n} passages")
    if dense.d != manifest["dimension"]:
        raise _corrupt(index_dir, f"vectors have {dense.d} dimensions, manifest says otherwise")
    if any(p.id != row for row, p in enumerate(passages)):
        raise _corrupt(index_dir, "passage ids out of order")
    turns = {t.id: t for t in turn_list}
    if any(p.turn_id not in turns for p in passages):
        raise _corrupt(index_dir, "a passage refers to a missing turn")
    if REUSE in files:  # read by updates only, but a damaged file is never trusted
        if not (index_dir / REUSE).is_file():
            raise IndexProblem(f"index at {index_dir} is incomplete ({REUSE} missing): {REBUILD}")
        if _sha256_file(index_dir / REUSE) != files[REUSE]["sha256"]:
            raise _corrupt(index_dir, f"{REUSE} checksum mismatch")
    sentences = None
    if SENTENCES in files:  # -- sentence-level evidence (helper "quality") --
        path = index_dir / SENTENCES
        if not path.is_file():
            raise IndexProblem(
                f"index at {index_dir} is incomplete ({SENTENCES} missing): {REBUILD}"
            )
        if _sha256_file(path) != files[SENTENCES]["sha256"]:
            raise _corrupt(index_dir, f"{SENTENCES} checksum mismatch")
        sentences = SentenceIndex.load(path, turns, dense.d)
        if sentences is None:
            raise _corrupt(index_dir, f"{SENTENCES} malformed")
    _tokenizer()  # load jieba now, not during the first question
    return IndexStore(index_dir, manifest, turns, passages, dense, weights, vocabulary, sentences)


# bm25.npz arrays: (name, dtype kinds allowed); every one 1-D
_BM25_ARRAYS = {"data": "f", "indices": "iu", "indptr": "iu", "shape": "iu", "vocabulary_json": "u"}


def _read_bm25(index_dir: Path, n: int) -> tuple[sparse.csc_matrix, list[str]]:
    """The keyword weights after checking every array's dtype and shape (np.load never
    unpickles here), so a wrong-typed file is a corrupt index, not a crash at query time."""
    bad = f"{BM25} malformed"
    try:
        with np.load(index_dir / BM25, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _BM25_ARRAYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(index_dir, f"{BM25} unreadable: {exc.__class__.__name__}") from None
    for name, kinds in _BM25_ARRAYS.items():
        if arrays[name].ndim != 1 or arrays[name].dtype.kind not in kinds:
            raise _corrupt(index_dir, f"{bad} ({name}: {arrays[name].dtype} {arrays[name].shape})")
    try:
        vocabulary = json.loads(arrays["vocabulary_json"].astype(np.uint8).tobytes().decode())
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(index_dir, f"{bad} (vocabulary is not JSON)") from None
    if not isinstance(vocabulary, list) or not all(isinstance(t, str) for t in vocabulary):
        raise _corrupt(index_dir, f"{bad} (vocabulary is not a list of terms)")
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    shape = tuple(int(x) for x in arrays["shape"])
    if shape != (n, len(vocabulary)):
        raise _corrupt(index_dir, f"keyword weights shaped {shape} for {n} passages")
    if (
        len(indptr) != shape[1] + 1
        or len(indices) != len(data)
        or indptr[0] != 0
        or indptr[-1] != len(data)
        or np.any(np.diff(indptr.astype(np.int64)) < 0)
        or (len(indices) and (indices.min() < 0 or indices.max() >= n))
        or not np.isfinite(data).all()
    ):
        raise _corrupt(index_dir, f"{bad} (sparse matrix structure)")
    weights = sparse.csc_matrix(
        (data.astype(np.float32), indices.astype(np.int32), indptr.astype(np.int64)), shape=shape
    )
    return weights, vocabulary


# ---------------------------------------------------------------------------------------
# sentence-level evidence (helper "quality"): every sentence of every indexed turn, with
# its vector, so the answer quotes the sentence that matched and the answerability check
# sees how well the best single sentence matches (a long passage dilutes it).


class SentenceIndex:
    """Sentences of the indexed turns: ``turn_ids[i]`` holds ``spans[i]`` (start, end in the
    turn text), ``vectors[i]`` is its L2-normalised vector; ``rows[turn_id]`` its rows."""

    def __init__(self, turn_ids: Sequence[str], spans: np.ndarray, vectors: np.ndarray):
        self.turn_ids = list(turn_ids)
        self.spans = np.asarray(spans, dtype=np.int32).reshape(-1, 2)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows: dict[str, list[int]] = {}
        for i, tid in enumerate(self.turn_ids):
            rows.setdefault(tid, []).append(i)
        self.rows = {tid: np.asarray(r, dtype=np.int64) for tid, r in rows.items()}

    def __len__(self) -> int:
        return len(self.turn_ids)

    def of_turns(self, turn_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """turn id → (spans, vectors) of its sentences, for the given turns that have any
        (the one call the retriever makes, so a store may fetch them: qa.milvus_store)."""
        found = ((t, self.rows.get(t)) for t in turn_ids)
        return {t: (self.spans[r], self.vectors[r]) for t, r in found if r is not None and len(r)}

    def save(self, path: Path, known_turns: set[str], normalise: bool = True) -> None:
        """Write as plain arrays (no pickle); every sentence must belong to a known turn.
        ``normalise=False``: the vectors are unit length already (rows kept bit for bit)."""
        if len(self.vectors) != len(self.turn_ids) or not np.isfinite(self.vectors).all():
            raise ValueError("need one finite vector per sentence")
        missing = set(self.turn_ids) - known_turns
        if missing:
            raise ValueError(f"sentences refer to turns not given: {sorted(missing)[:3]}")
        names = list(dict.fromkeys(self.turn_ids))
        order = {tid: i for i, tid in enumerate(names)}
        np.savez(
            path,
            turn=np.asarray([order[t] for t in self.turn_ids], dtype=np.int32),
            turn_ids_json=np.frombuffer(json.dumps(names, ensure_ascii=False).encode(), np.uint8),
            spans=self.spans,
            vectors=_normalised(self.vectors) if normalise and len(self.vectors) else self.vectors,
        )

    @classmethod
    def load(cls, path: Path, turns: dict[str, Turn], dimension: int) -> SentenceIndex | None:
        try:
            with np.load(path, allow_pickle=False) as npz:
                names = json.loads(npz["turn_ids_json"].tobytes().decode("utf-8"))
                turn = npz["turn"]
                spans, vectors = npz["spans"], npz["vectors"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if len(turn) != len(spans) or len(turn) != len(vectors):
            return None
        if len(vectors) and (vectors.ndim != 2 or vectors.shape[1] != dimension):
            return None
        if len(turn) and (turn.min() < 0 or turn.max() >= len(names)):
            return None
        ids = [names[i] for i in turn]
        if any(t not in turns for t in names):
            return None
        return cls(ids, spans, vectors)


# ---------------------------------------------------------------------------------------
# incremental updates: only the files that changed are parsed, embedded and tokenized


@dataclass(frozen=True)
class CorpusChange:
    """Corpus files against the previous build, by content hash (sorted names)."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]

    @property
    def to_index(self) -> list[str]:
        """The files to parse and embed: added and changed."""
        return sorted(self.added + self.changed)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def corpus_change(previous: dict[str, str], current: dict[str, str]) -> CorpusChange:
    """What changed from ``previous`` to ``current`` (file → sha256, as in the manifest)."""
    both = set(previous) & set(current)
    return CorpusChange(
        added=sorted(set(current) - set(previous)),
        changed=sorted(f for f in both if previous[f] != current[f]),
        removed=sorted(set(previous) - set(current)),
        unchanged=sorted(f for f in both if previous[f] == current[f]),
    )


@dataclass
class PreviousBuild:
    """What an update keeps from the last build: its records, unit vectors and term counts."""

    manifest: dict
    passages: list[Passage]
    turns: list[Turn]
    vectors: np.ndarray  # unit rows, as stored in the FAISS file
    sentences: SentenceIndex
    term_counts: TermCounts


def previous_build(
    index_dir: Path, model_name: str, settings: dict | None, loaded: IndexStore | None = None
) -> tuple[PreviousBuild | None, str | None]:
    """(the previous build, None) when an update can start from it, else (None, why not):
    no index, another model / passage recipe / tokenizer, an index from before term counts
    were kept, or a damaged file. ``loaded``: the index already in memory (a server's),
    used when it is what the folder holds, so only the term counts are read from disk."""
    index_dir = Path(index_dir)
    manifest, problem = read_manifest(index_dir)
    if manifest is None:
        return None, f"no usable index ({problem})"
    if manifest["model"] != model_name:
        return None, f"the index was built with model {manifest['model']}, not {model_name}"
    if settings is not None and manifest["settings"] != settings:
        return None, "the index was built with other passage settings"
    if manifest["keyword"]["tokenizer"] != tokenizer_signature():
        return None, "the keyword tokenizer changed"
    files = manifest["files"]
    if REUSE not in files or SENTENCES not in files:
        return None, f"the index has no {REUSE} (built by an older version)"

    def checked(name: str) -> Path:
        path = index_dir / name
        if not path.is_file() or _sha256_file(path) != files[name]["sha256"]:
            raise _corrupt(index_dir, f"{name} missing or checksum mismatch")
        return path

    try:
        if loaded is not None and loaded.manifest == manifest and loaded.sentences is not None:
            passages, turns = loaded.passages, list(loaded.turns.values())
            vectors, sentences = loaded.unit_vectors(), loaded.sentences
        else:
            passages = [
                Passage(**d) for d in _PASSAGES.validate_json(checked(PASSAGES).read_bytes())
            ]
            turns = [
                _turn_from_dict(d) for d in _TURNS.validate_json(checked(TURNS).read_bytes())
            ]
            dense = faiss.read_index(str(checked(VECTORS)))
            flat = faiss.downcast_index(dense.storage) if hasattr(dense, "hnsw") else dense
            vectors = flat.reconstruct_n(0, flat.ntotal)
            sentences = SentenceIndex.load(
                checked(SENTENCES), {t.id: t for t in turns}, int(manifest["dimension"])
            )
            if sentences is None:
                raise _corrupt(index_dir, f"{SENTENCES} malformed")
        with np.load(checked(BM25), allow_pickle=False) as npz:
            vocabulary = json.loads(npz["vocabulary_json"].tobytes().decode("utf-8"))
        with np.load(checked(REUSE), allow_pickle=False) as npz:
            term_counts = TermCounts(
                npz["indptr"].astype(np.int64), npz["terms"].astype(np.int32),
                npz["counts"].astype(np.int32), npz["doc_lengths"].astype(np.int64),
                vocabulary,
            )
    except (IndexProblem, ValidationError, RuntimeError, OSError, ValueError, KeyError,
            EOFError, zipfile.BadZipFile) as exc:
        return None, f"the index cannot be reused ({exc.__class__.__name__}: {exc})"
    n = len(passages)
    tc = term_counts
    if (
        len(vectors) != n
        or len(tc) != n
        or len(tc.indptr) != n + 1
        or tc.indptr[-1] != len(tc.terms)
        or len(tc.counts) != len(tc.terms)
        or (len(tc.terms) and (tc.terms.min() < 0 or tc.terms.max() >= len(vocabulary)))
        or any(p.id != row for row, p in enumerate(passages))
    ):
        return None, f"the index cannot be reused ({REUSE} does not match the passages)"
    return PreviousBuild(manifest, passages, turns, vectors, sentences, term_counts), None


def _runs(sources: Sequence[str]) -> dict[str, tuple[int, int]] | None:
    """source → (start, end) of its rows; None unless each source's rows are contiguous."""
    runs: dict[str, tuple[int, int]] = {}
    start = 0
    for i in range(1, len(sources) + 1):
        if i == len(sources) or sources[i] != sources[start]:
            if sources[start] in runs:
                return None
            runs[sources[start]] = (start, i)
            start = i
    return runs


def update_index(
    index_dir: Path,
    previous: PreviousBuild,
    change: CorpusChange,
    new_files: dict[str, Any],
    model_name: str,
    corpus_hashes: dict[str, str],
    settings: dict | None = None,
    progress: Progress = print,
) -> IndexStore | None:
    """Write the index for ``corpus_hashes`` from the previous build and the pieces
    (``qa.engine.IndexPieces``: turns, passages, vectors, keyword_texts, sentences) of the
    added and changed files, atomically; returns it loaded. Unchanged files keep their
    vectors and term counts; the BM25 statistics (document frequencies, corpus size, mean
    length) and the dense index are recomputed over the result, so it is identical to a
    full build of the same corpus. Exact search (≤ EXACT_SEARCH_LIMIT rows) just copies
    the vectors in; above that the HNSW graph is rebuilt (minutes at a few 100k rows).
    None when the previous rows are not laid out file by file (build from scratch)."""
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    check_buildable(index_dir)
    old = previous
    passage_runs = _runs([p.source for p in old.passages])
    turn_source = {t.id: t.source for t in old.turns}
    sentence_runs = _runs([turn_source[t] for t in old.sentences.turn_ids])
    turn_runs = _runs([t.source for t in old.turns])
    if passage_runs is None or sentence_runs is None or turn_runs is None:
        return None
    old_tc = old.term_counts
    vocab = {term: i for i, term in enumerate(old_tc.vocabulary)}
    turns: list[Turn] = []
    passages: list[Passage] = []
    vectors, terms, counts, entries, lengths = [], [], [], [], []
    s_ids: list[str] = []
    s_spans, s_vectors = [], []
    dim = int(old.manifest["dimension"])
    for source in corpus_hashes:
        if source in new_files:
            piece = new_files[source]
            turns += piece.turns
            row0 = len(passages)
            passages += [replace(p, id=row0 + i) for i, p in enumerate(piece.passages)]
            vectors.append(_normalised(np.asarray(piece.vectors, np.float32).reshape(-1, dim)))
            indptr, t, c, dl, vocab = _count_terms(piece.keyword_texts, progress, vocab)
            terms.append(t)
            counts.append(c)
            entries.append(np.diff(indptr))
            lengths.append(dl)
            sent = piece.sentences
            s_ids += sent.turn_ids
            s_spans.append(sent.spans)
            s_vectors.append(_normalised(sent.vectors.reshape(-1, dim)))
            continue
        a, b = passage_runs.get(source, (0, 0))
        ta, tb = turn_runs.get(source, (0, 0))
        turns += old.turns[ta:tb]
        row0 = len(passages)
        passages += [replace(p, id=row0 + i) for i, p in enumerate(old.passages[a:b])]
        vectors.append(old.vectors[a:b])
        ea, eb = old_tc.indptr[a], old_tc.indptr[b]
        terms.append(old_tc.terms[ea:eb])
        counts.append(old_tc.counts[ea:eb])
        entries.append(np.diff(old_tc.indptr[a : b + 1]))
        lengths.append(old_tc.doc_lengths[a:b])
        sa, sb = sentence_runs.get(source, (0, 0))
        s_ids += old.sentences.turn_ids[sa:sb]
        s_spans.append(old.sentences.spans[sa:sb])
        s_vectors.append(old.sentences.vectors[sa:sb])
    n = len(passages)
    if n == 0:
        raise IndexProblem("nothing to index (no passages): add interview files to the corpus")
    # the vocabulary in order of first use, as a full build numbers it; unused terms dropped
    union = np.concatenate(terms) if terms else np.zeros(0, np.int32)
    used, first = np.unique(union, return_index=True)
    used = used[np.argsort(first, kind="stable")]
    remap = np.full(len(vocab), -1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    words = list(vocab)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate(entries), out=indptr[1:])
    term_counts = TermCounts(
        indptr, remap[union], np.concatenate(counts).astype(np.int32),
        np.concatenate(lengths).astype(np.int64), [words[i] for i in used],
    )
    sentences = SentenceIndex(
        s_ids, np.concatenate(s_spans).reshape(-1, 2),
        np.concatenate(s_vectors).reshape(-1, dim),
    )
    all_vectors = np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32)
    kept = len(change.unchanged)
    say(
        progress,
        f"index: updating ({len(change.to_index)} file(s) embedded, {len(change.removed)} "
        f"removed, {kept} kept): {n:,} passages",
    )
    manifest, weights = _write_index(
        index_dir, turns, passages, all_vectors, None, model_name, corpus_hashes, settings,
        sentences, progress, t0, term_counts=term_counts,
    )
    dense = faiss.read_index(str(index_dir / VECTORS))
    return IndexStore(
        index_dir, manifest, {t.id: t for t in turns}, passages, dense, weights,
        term_counts.vocabulary, sentences,
    )
