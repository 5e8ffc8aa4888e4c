"""The index on Milvus: the same read interface as ``qa.store.IndexStore``, data in Milvus.

For an archive of millions of passages and many readers. One setting chooses the store
(``--store`` / env ``QA_STORE``): ``faiss`` (default, the index folder), a path ending in
``.db`` (Milvus Lite, a local file, no server) or ``http(s)://host:port`` (a Milvus server;
token from env ``QA_MILVUS_TOKEN``).

Three collections per corpus (``<name>``, ``<name>_meta``, ``<name>_sentences``)::

    <name>            one row per passage: text, keyword text, dense vector, the passage's
                      BM25 term weights (``terms``, our tokenizer), a Milvus BM25 function
                      field (``bm25``, jieba analyzer) and the scalar fields filters need
                      (source, offsets, speaker, title, article, section path, asked, turn id)
    <name>_meta       JSON records: the manifest, one row per corpus file with its hash,
                      one per turn, one per keyword term with its document frequency
                      (what ``passages_with`` and the idf need)
    <name>_sentences  one row per quotable sentence of an indexed turn: turn id, span,
                      vector (the sentence-level evidence the FAISS folder keeps in
                      sentences.npz), fetched by turn id for a search's candidate turns

Keyword search ranks exactly as ``IndexStore`` does: ``terms`` holds the document half of
BM25 (tf·(k1+1)/(tf+k1·(1-b+b·len/avglen))) per ``qa.store.tokenize`` term, and the query
carries each term's idf, computed from the document frequencies at query time — so adding
a file changes no other file's rows. Milvus's own BM25 (``bm25``) splits text with its
jieba analyzer, which differs from ours (see ``bm25_search``); it is kept for Milvus-side
hybrid search and for other clients of the collection.

Rows: ``passages[i].id == i`` as the retriever expects; rows follow (source, position in
the file), so a build from the same corpus has the same rows as the FAISS folder. Each
passage's Milvus key is a hash of (source, position): re-indexing a file upserts the same
keys. Nothing is pickled: records are JSON strings.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

import numpy as np

from .errors import IndexProblem
from .settings import settings
from .store import (
    BM25_B,
    BM25_K1,
    EXACT_SEARCH_LIMIT,
    STOP_WORDS,
    SentenceIndex,
    _normalised,
    tokenize,
    tokenizer_signature,
)
from .types import Passage, Progress, Turn, say, section_path

FORMAT_VERSION = 2  # 2: the sentences collection
DEFAULT_COLLECTION = "zhihui_qa"
TOKEN_ENV = "QA_MILVUS_TOKEN"
MAX_VARCHAR = 65_535  # bytes: Milvus's VARCHAR limit
BATCH = 500  # rows per insert/upsert request (a gRPC message stays well under its 64 MB cap)
MAX_LIMIT = 16_384  # Milvus's largest search limit
TIE_MARGIN = 10  # extra hits fetched so that ties at the k-th place resolve as IndexStore's
FILTER_IN_LIMIT = 50_000  # most keys one `pk in [...]` filter may list
HNSW_M = 32  # as qa.store: fewer links lost recall on real e5 vectors
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 1024
MAX_KEY = 2048  # bytes of a meta row's key ("df:<term>"); longer terms get no statistics
META_DIM = 2  # every Milvus collection needs a vector field; the meta rows carry a dummy one
# Milvus's jieba analyzer, set as close to qa.store.tokenize as Milvus allows: search mode,
# no HMM, lower-cased, punctuation and our stop words dropped. Milvus Lite 3.2.2 honours
# only the search mode and the stop words (it keeps punctuation and the HMM).
ANALYZER = {
    "tokenizer": {"type": "jieba", "mode": "search", "hmm": False},  # dict: the default
    "filter": ["lowercase", "removepunct", {"type": "stop", "stop_words": sorted(STOP_WORDS)}],
}
_EMPTY_TERM = 0xFFFFFFFE  # a passage without terms still needs one nonzero sparse weight


# ---------------------------------------------------------------------------------------
# settings and connection


def store_setting(explicit: str | None = None) -> str:
    """--store, else env QA_STORE, else "faiss" (the index folder)."""
    value = (explicit or settings().store).strip()
    return "faiss" if value.lower() == "faiss" else value


def is_milvus(setting: str) -> bool:
    """A Milvus Lite file (``*.db``) or a Milvus server URI, as opposed to ``faiss``."""
    return setting.endswith(".db") or setting.startswith(("http://", "https://"))


def connect(uri: str):
    """A pymilvus client for a ``.db`` file or a server URI; one-line IndexProblem if not."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise IndexProblem(
            "the Milvus store needs pymilvus and milvus-lite: pip install -e '.[milvus]'"
        ) from None
    if not is_milvus(uri):
        raise IndexProblem(
            f"store {uri!r} is not a Milvus location: use a path ending in .db or http(s)://host:port"
        )
    if uri.endswith(".db"):
        folder = os.path.dirname(os.path.abspath(uri))
        if not os.path.isdir(folder):
            raise IndexProblem(f"folder {folder} for the Milvus Lite file does not exist")
    try:
        return MilvusClient(uri=uri, token=settings().milvus_token)
    except Exception as exc:  # pymilvus raises its own types for every connection failure
        raise IndexProblem(
            f"cannot open Milvus at {uri} ({_first_line(exc)}): is the server running, "
            f"is {TOKEN_ENV} right, is the .db file used by another process?"
        ) from None


@contextlib.contextmanager
def _milvus_errors(uri: str) -> Iterator[None]:
    """A failed Milvus call (server down, timeout, refused request) as one IndexProblem
    line naming the server, not a pymilvus/gRPC traceback for a client to see."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith(("pymilvus", "grpc")):
            raise
        raise IndexProblem(
            f"Milvus at {uri} failed ({getattr(exc, 'message', '') or _first_line(exc)}): "
            "check that it is running and "
            f"reachable, then retry"
        ) from None


class NoIndex(IndexProblem):
    """There is no usable index at this Milvus location (missing, other format,
    inconsistent): a writer builds one; Milvus itself answered fine."""


def _rebuild(uri: str) -> str:
    return f"rebuild it with `qa index --store {uri}`"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__


def rebuild_reason(store: MilvusStore, model_name: str, settings: dict | None = None) -> str | None:
    """Why the whole index must be rebuilt (model, passage settings or tokenizer changed),
    as a sentence; None when changed files can be applied one by one (corpus_changes)."""
    m = store.manifest
    if m.get("model") != model_name:
        return f"the index was built with model {m.get('model')}, not {model_name}"
    if settings is not None and m.get("settings") != settings:
        return "the index was built with other passage settings (chunking or embedded text)"
    if (m.get("keyword") or {}).get("tokenizer") != tokenizer_signature():
        return "the keyword tokenizer changed since the index was built"
    return None


def corpus_changes(
    store: MilvusStore, corpus_hashes: dict[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """(added, changed, removed) files against the index: what upsert_file/delete_file fix."""
    built = store.manifest.get("corpus") or {}
    added = sorted(set(corpus_hashes) - set(built))
    removed = sorted(set(built) - set(corpus_hashes))
    changed = sorted(f for f in set(built) & set(corpus_hashes) if built[f] != corpus_hashes[f])
    return added, changed, removed


# ---------------------------------------------------------------------------------------
# filters and keys


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression. Filter templates (filter_params)
    fail on Milvus Lite, so values are quoted here: backslashes, quotes and line breaks
    escaped."""
    return '"' + str(value).translate(_ESCAPES) + '"'


# what Milvus's filter grammar (and Milvus Lite's) reads back as the character itself; a raw
# line break would end the literal
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _in_list(field: str, values: Iterable[str | int]) -> str:
    items = ", ".join(str(v) if isinstance(v, int) else quote(v) for v in values)
    return f"{field} in [{items}]"


def passage_key(source: str, seq: int) -> int:
    """The Milvus primary key of a file's seq-th passage: stable across re-indexing."""
    digest = hashlib.blake2b(f"{source}\0{seq}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def sentence_key(source: str, seq: int) -> int:
    """The Milvus primary key of a file's seq-th sentence (its own collection)."""
    return passage_key(f"{source}\0sentence", seq)


def text_hash(text: str) -> int:
    """A turn text's fingerprint, kept on its sentence rows: a reader whose records are
    older than a file's new sentence rows (or newer) skips rows of another text."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def term_id(term: str) -> int:
    """Sparse-vector dimension of a keyword term (32-bit FNV-1a, as Milvus Lite hashes)."""
    h = 0x811C9DC5
    for b in term.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % 0xFFFFFFFE  # Milvus allows dimensions up to 2**32 - 2; _EMPTY_TERM stays free


def idf(df: int, n: int) -> float:
    """qa.store's BM25 idf (never negative)."""
    return math.log1p((n - df + 0.5) / (df + 0.5))


def _term_weights(tokens: list[str], avg_len: float) -> dict[int, float]:
    """The document half of BM25 for one passage: term id → tf·(k1+1)/(tf+norm)."""
    if not tokens:
        return {_EMPTY_TERM: 1e-6}
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(tokens) / max(avg_len, 1e-9))
    weights: dict[int, float] = {}
    for term, tf in Counter(tokens).items():
        tid = term_id(term)
        weights[tid] = weights.get(tid, 0.0) + tf * (BM25_K1 + 1) / (tf + norm)
    return weights


def _check_varchar(value: str, what: str) -> str:
    if len(value.encode("utf-8")) > MAX_VARCHAR:
        raise IndexProblem(
            f"{what} is longer than Milvus's {MAX_VARCHAR} bytes: lower chunk_max_chars "
            "or split the file"
        )
    return value


def _turn_from_dict(d: dict) -> Turn:
    return Turn(**{**d, "section": tuple(d["section"]), "offsets": ()})


def _physical(manifest: dict) -> str | None:
    """The collection of passages a manifest was written with (switched in by an alias)."""
    return (manifest.get("store") or {}).get("physical")


def _storable(term: str) -> bool:
    """Short enough for its document-frequency row (a 700-letter run without spaces is not:
    such a term is never searched for)."""
    return len(term.encode("utf-8")) + 3 <= MAX_KEY


def _path(turn: Turn) -> str:
    """The "article › section" string retrieve.py's section filter matches against."""
    return section_path(turn.article, *turn.section)


# ---------------------------------------------------------------------------------------
# the store


class MilvusSentences:
    """``IndexStore.sentences`` for an index in Milvus: the sentences of a search's
    candidate turns, fetched by turn id in one query (``of_turns``), so a replica holds no
    sentence vectors. Rows written for another text of a turn than the one served (a
    file changed since the records were read) are left out."""

    def __init__(self, store: MilvusStore, count: int):
        self.store = store
        self.count = count

    def __len__(self) -> int:
        return self.count

    def of_turns(self, turn_ids: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """turn id → (spans (n, 2), unit vectors (n, d)) for the given turns that have any."""
        turns = self.store.turns
        wanted = [t for t in dict.fromkeys(turn_ids) if t in turns]
        rows: dict[str, list[dict]] = {}
        fields = ["turn_id", "start", "end", "th", "vec"]
        for i in range(0, len(wanted), 200):
            expr = _in_list("turn_id", wanted[i : i + 200])
            with _milvus_errors(self.store.uri):
                found = self.store.client.query(
                    self.store.sent_name, filter=expr, output_fields=fields, limit=MAX_LIMIT
                )
            for r in found:
                rows.setdefault(r["turn_id"], []).append(r)
        out = {}
        for tid, got in rows.items():
            th = text_hash(turns[tid].text)
            got = sorted((r for r in got if int(r["th"]) == th), key=lambda r: int(r["start"]))
            if got:
                spans = np.array([[int(r["start"]), int(r["end"])] for r in got], dtype=np.int32)
                vecs = np.array([r["vec"] for r in got], dtype=np.float32)
                out[tid] = (spans, vecs)
        return out


class MilvusStore:
    """A corpus index in Milvus with IndexStore's read interface (``passages``, ``turns``,
    ``manifest``, ``dimension``, ``len``, ``dense_search``, ``keyword_search``,
    ``passages_with``) plus filters pushed down to Milvus and per-file updates.

    The passage and turn records are held in memory (the retriever indexes them by row);
    vectors, keyword weights and document frequencies stay in Milvus. ``refresh()``
    re-reads the records after another process changed the collection.
    """

    # the retriever passes speaker/section filters (not a row mask): Milvus filters on them
    filters_by_field = True

    def __init__(self, uri: str, name: str = DEFAULT_COLLECTION, client=None):
        """Connect (nothing read yet): ``build`` a new index or ``refresh`` from one."""
        self.client = client if client is not None else connect(uri)
        self.uri = uri
        self.name = name
        self.meta_name = f"{name}_meta"
        self.sent_name = f"{name}_sentences"
        self.manifest: dict = {}
        self.turns: dict[str, Turn] = {}
        self.passages: list[Passage] = []
        self._keys = np.zeros(0, dtype=np.int64)  # row → Milvus primary key
        self._row_of: dict[int, int] = {}
        self._paths: list[str] = []
        self._records: list[dict] = []
        # IndexStore's sentence-level evidence: read from Milvus per search (None for an
        # index written without sentences)
        self.sentences: MilvusSentences | None = None

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, uri: str, name: str = DEFAULT_COLLECTION) -> MilvusStore:
        """Open an existing collection (loading it for search) and read its records."""
        store = cls(uri, name)
        with _milvus_errors(uri):
            for collection in store._names():
                if not store.client.has_collection(collection):
                    raise NoIndex(f"no index collection {collection!r} at {uri}: "
                                       f"{_rebuild(uri)}")  # fmt: skip
                store.client.load_collection(collection)  # a reopened one must be loaded
            store.refresh()
        return store

    def _names(self) -> tuple[str, str, str]:
        """The three aliases readers use: passages, records, sentences."""
        return self.name, self.meta_name, self.sent_name

    def refresh(self) -> None:
        """Read manifest, turns and passage records from Milvus (after a change elsewhere).

        Retried when a writer changed the index while it was being read (a new manifest
        revision, or a rebuild whose names were switched half-way)."""
        for _attempt in range(5):
            manifest = self._meta_value("manifest")
            if manifest is None:
                raise NoIndex(
                    f"index collection {self.name!r} at {self.uri} has no manifest: "
                    f"{_rebuild(self.uri)}"
                )
            if manifest.get("format_version") != FORMAT_VERSION:
                raise NoIndex(
                    f"index collection {self.name!r} has format "
                    f"{manifest.get('format_version')}, this version of qa reads "
                    f"{FORMAT_VERSION}: {_rebuild(self.uri)}"
                )
            files = self._iterate(self.meta_name, 'kind == "file"', ["source", "value"])
            corpus = {r["source"]: json.loads(r["value"]) for r in files}
            manifest["corpus"] = dict(sorted(corpus.items()))
            turns = {}
            for row in self._iterate(self.meta_name, 'kind == "turn"', ["value"]):
                turn = _turn_from_dict(json.loads(row["value"]))
                turns[turn.id] = turn
            fields = ["pk", "source", "seq", "turn_id", "text", "start", "end"]
            rows = sorted(
                self._iterate(self.name, "pk >= 0", fields), key=lambda r: (r["source"], r["seq"])
            )
            after = self._meta_value("manifest") or {}
            steady = after.get("revision") == manifest.get("revision")
            if steady and self._alias_target(self.name) in (None, _physical(manifest)):
                break
            time.sleep(0.2)
        self.manifest = manifest
        self._set_records(turns, rows)
        count = manifest["counts"].get("sentences")
        self.sentences = MilvusSentences(self, int(count)) if count is not None else None

    def _set_records(self, turns: dict[str, Turn], rows: list[dict]) -> None:
        """Hold these turns and passage rows (sorted by source and seq) as the records."""
        passages = [
            Passage(i, r["turn_id"], r["text"], r["source"], int(r["start"]), int(r["end"]))
            for i, r in enumerate(rows)
        ]
        if any(p.turn_id not in turns for p in passages):
            raise NoIndex(
                f"index collection {self.name!r} at {self.uri} has a passage of a "
                f"missing turn: {_rebuild(self.uri)}"
            )
        self.turns = turns
        self.passages = passages
        self._records = rows  # the passage fields as read, for per-file updates
        self._keys = np.array([int(r["pk"]) for r in rows], dtype=np.int64)
        self._row_of = {int(k): i for i, k in enumerate(self._keys)}
        self._paths = [_path(turns[p.turn_id]) for p in passages]

    def _replace_file_records(self, source: str, rows: list[dict], turns: list[Turn]) -> None:
        """The records after one file changed, without re-reading the others from Milvus."""
        fields = ("pk", "source", "seq", "turn_id", "text", "start", "end")
        kept = [r for r in self._records if r["source"] != source]
        merged = sorted(
            kept + [{f: r[f] for f in fields} for r in rows], key=lambda r: (r["source"], r["seq"])
        )
        kept_turns = {i: t for i, t in self.turns.items() if t.source != source}
        self._set_records({**kept_turns, **{t.id: t for t in turns}}, merged)
        if self.sentences is not None:  # a new object: a snapshot taken before keeps its own
            self.sentences = MilvusSentences(self, int(self.manifest["counts"]["sentences"]))

    def _alias_target(self, alias: str) -> str | None:
        """The collection an alias names; None when it is no alias. Looks only at our
        builds' collections (``<alias>__<stamp>``): describe_alias on a missing alias
        makes pymilvus log an error."""
        for collection in self.client.list_collections():
            if collection.startswith(f"{alias}__"):
                if alias in (self.client.list_aliases(collection).get("aliases") or []):
                    return collection
        return None

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> Iterable[dict]:
        if self.uri.endswith(".db"):
            # Milvus Lite lacks the timestamp call the iterator starts with; the iterator
            # falls back to the client's clock, but the in-process server logs a traceback
            # and pymilvus a warning each time: quiet those two for Lite only
            logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        iterator = self.client.query_iterator(
            collection, batch_size=1000, filter=expr, output_fields=fields
        )
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    def _select(self, collection: str, expr: str, fields: list[str]) -> list[dict]:
        """The rows of one file (usually far fewer than a query's limit): one query, and
        the iterator only when they fill it (an iterator costs a round trip to set up)."""
        rows = self.client.query(collection, filter=expr, output_fields=fields, limit=MAX_LIMIT)
        return rows if len(rows) < MAX_LIMIT else list(self._iterate(collection, expr, fields))

    def _meta_value(self, key: str) -> dict | None:
        with _milvus_errors(self.uri):
            rows = self.client.query(
                self.meta_name, filter=f"key == {quote(key)}", output_fields=["value"]
            )
        return json.loads(rows[0]["value"]) if rows else None

    # -- the IndexStore read interface ---------------------------------------------------

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def dimension(self) -> int:
        return int(self.manifest["dimension"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"])

    def dense_search(
        self,
        query_vec: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        *,
        speakers: Sequence[str] | None = None,
        section: str | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (row, cosine), best first, searched and filtered in Milvus.

        ``speakers``/``section`` filter in Milvus on the passage's scalar fields (the same
        rule as retrieve.py: any of the speakers; the section as a substring of the
        "article › section" path); a bare ``allowed`` row mask becomes a key filter.
        """
        query = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise IndexProblem(
                f"query vector has {query.shape[0]} dimensions but the index at {self.uri} has "
                f"{self.dimension}: {_rebuild(self.uri)} using the same model"
            )
        expr = self._filter(allowed, speakers, section)
        if expr == "false" or k <= 0 or not self.passages:
            return []
        params = {"metric_type": "IP", "params": {"ef": max(HNSW_EF_SEARCH, int(k))}}
        return self._search(query.tolist(), "dense", int(k), expr, params)

    def keyword_search(
        self,
        query: str,
        k: int,
        allowed: np.ndarray | None = None,
        terms: Sequence[str] | None = None,
        *,
        speakers: Sequence[str] | None = None,
        section: str | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (row, BM25 score) of passages sharing a content word with the query: the
        scores of qa.store.IndexStore.keyword_search, computed in Milvus. ``terms``: the
        query already tokenized (as IndexStore takes them)."""
        expr = self._filter(allowed, speakers, section)
        if expr == "false" or k <= 0:
            return []
        weights = self.query_weights(query, terms)
        if not weights:
            return []
        return self._search(weights, "terms", int(k), expr, {"metric_type": "IP"})

    def passages_with(self, term: str) -> int:
        """How many passages contain a keyword term (its document frequency)."""
        return self.document_frequencies([term]).get(term, 0)

    # -- beyond IndexStore ---------------------------------------------------------------

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """Document frequency of each term that any passage uses (one Milvus query)."""
        keys = [f"df:{t}" for t in dict.fromkeys(terms)]
        if not keys:
            return {}
        with _milvus_errors(self.uri):
            rows = self.client.query(
                self.meta_name, filter=_in_list("key", keys), output_fields=["key", "count"]
            )
        return {r["key"][3:]: int(r["count"]) for r in rows}

    def query_weights(self, query: str, terms: Sequence[str] | None = None) -> dict[int, float]:
        """The query half of BM25: term id → idf, for terms some passage uses."""
        df = self.document_frequencies(tokenize(query) if terms is None else terms)
        n = int(self.manifest["counts"]["passages"])
        weights: dict[int, float] = {}
        for term, count in df.items():
            if count > 0:
                weights[term_id(term)] = idf(count, n)
        return weights

    def bm25_search(
        self, query: str, k: int, *, speakers=None, section=None
    ) -> list[tuple[int, float]]:
        """Top-k by Milvus's own BM25 function (jieba analyzer on the keyword text).

        Its tokens differ from qa.store.tokenize (Milvus Lite keeps punctuation and uses
        jieba's HMM) and Milvus Lite keeps idf per segment, so rankings differ from
        keyword_search; Milvus Lite returns these scores negated, hence abs().
        """
        expr = self._filter(None, speakers, section)
        if expr == "false" or k <= 0 or not query.strip():
            return []
        return self._search(query, "bm25", int(k), expr, {"metric_type": "BM25"}, absolute=True)

    def hybrid_search(
        self,
        query_vec: np.ndarray,
        query: str,
        k: int,
        *,
        speakers: Sequence[str] | None = None,
        section: str | None = None,
        rrf_k: int = 60,
        per_turn: bool = False,
    ) -> list[tuple[int, float]]:
        """Dense + keyword in one Milvus request, fused by reciprocal rank in Milvus (RRF:
        Milvus Lite normalises weighted-ranker scores unlike a real Milvus). With
        ``per_turn`` Milvus keeps the best passage of each turn (group by turn id)."""
        from pymilvus import AnnSearchRequest, RRFRanker

        expr = self._filter(None, speakers, section)
        if expr == "false" or k <= 0:
            return []
        vec = np.asarray(query_vec, dtype=np.float32).reshape(-1).tolist()
        requests = [AnnSearchRequest([vec], "dense", {"metric_type": "IP"}, int(k), expr=expr)]
        weights = self.query_weights(query)
        if weights:
            requests.append(
                AnnSearchRequest([weights], "terms", {"metric_type": "IP"}, int(k), expr=expr)
            )
        extra = {"group_by_field": "turn_id"} if per_turn else {}
        with _milvus_errors(self.uri):
            result = self.client.hybrid_search(
                self.name, requests, RRFRanker(rrf_k), limit=int(k), output_fields=["pk"], **extra
            )
        return self._rows(result[0])

    def _search(
        self, data, field: str, k: int, expr: str, params: dict, absolute: bool = False
    ) -> list[tuple[int, float]]:
        with _milvus_errors(self.uri):
            result = self.client.search(
                self.name,
                data=[data],
                anns_field=field,
                limit=min(k + TIE_MARGIN, MAX_LIMIT),
                filter=expr,
                search_params=params,
                output_fields=["pk"],
            )
        # equal scores in row order, as IndexStore: Milvus picks among rows tied at the
        # cut-off arbitrarily, so a few more are fetched; float32 sums differ in the last bits
        hits = self._rows(result[0])
        if absolute:  # Milvus Lite returns BM25 scores negated, a real Milvus does not
            hits = [(row, abs(score)) for row, score in hits]
        hits.sort(key=lambda h: (-round(h[1], 5), h[0]))
        return hits[:k]

    def _rows(self, hits) -> list[tuple[int, float]]:
        out = []
        for hit in hits:
            row = self._row_of.get(int(hit["pk"] if "pk" in hit else hit["id"]))
            if row is not None:  # a row added by another process since refresh()
                out.append((row, float(hit["distance"])))
        return out

    def _filter(self, allowed, speakers, section) -> str:
        """A Milvus filter expression ("" = everything, "false" = nothing)."""
        parts = []
        if speakers:
            parts.append(_in_list("speaker", speakers))
        if section:
            paths = sorted({p for p in self._paths if section in p})
            if not paths:
                return "false"
            if len(paths) < len(set(self._paths)):
                parts.append(_in_list("path", paths))
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (len(self.passages),):
                raise ValueError(
                    f"allowed must be a boolean mask of {len(self.passages)} rows, "
                    f"got shape {allowed.shape}"
                )
            kept = int(allowed.sum())
            if kept == 0:
                return "false"
            if kept < len(allowed):
                inside = kept <= len(allowed) - kept
                keys = self._keys[allowed if inside else ~allowed]
                if len(keys) > FILTER_IN_LIMIT:
                    raise IndexProblem(
                        f"a row filter of {len(keys):,} passages is too long for Milvus: "
                        "filter by speaker or section instead"
                    )
                listed = ", ".join(str(int(x)) for x in keys)
                parts.append(f"pk in [{listed}]" if inside else f"pk not in [{listed}]")
        return " and ".join(f"({p})" for p in parts)

    # -- writing --------------------------------------------------------------------------

    def _create(self, dimension: int, n_expected: int, target: dict[str, str]) -> None:
        """Create the three collections under these (physical) names; Strong consistency,
        so a write is visible to the next read (the writer re-reads right after writing)."""
        passages, meta = target[self.name], target[self.meta_name]
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("source", DataType.VARCHAR, max_length=1024)
        schema.add_field("seq", DataType.INT64)
        schema.add_field("turn_id", DataType.VARCHAR, max_length=1100)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        for name in ("speaker", "speaker_title", "article", "path", "asked", "kind"):
            schema.add_field(name, DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field(
            "keywords",
            DataType.VARCHAR,
            max_length=MAX_VARCHAR,
            enable_analyzer=True,
            analyzer_params=ANALYZER,
        )
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("terms", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("bm25", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="keywords_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["keywords"],
                output_field_names=["bm25"],
            )
        )
        index = self.client.prepare_index_params()
        if n_expected <= EXACT_SEARCH_LIMIT:  # exact up to where qa.store is exact
            index.add_index("dense", index_type="FLAT", metric_type="IP")
        else:
            index.add_index(
                "dense",
                index_type="HNSW",
                metric_type="IP",
                params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
            )
        index.add_index("terms", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        index.add_index(
            "bm25",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": BM25_K1, "bm25_b": BM25_B},
        )
        for name in ("source", "speaker", "path", "turn_id"):
            index.add_index(name, index_type="INVERTED")
        self.client.create_collection(
            passages, schema=schema, index_params=index, consistency_level="Strong"
        )

        meta_schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        meta_schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_KEY)
        meta_schema.add_field("kind", DataType.VARCHAR, max_length=16)
        meta_schema.add_field("source", DataType.VARCHAR, max_length=1024)
        meta_schema.add_field("count", DataType.INT64)
        meta_schema.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
        meta_schema.add_field("vec", DataType.FLOAT_VECTOR, dim=META_DIM)
        meta_index = self.client.prepare_index_params()
        meta_index.add_index("vec", index_type="FLAT", metric_type="L2")
        meta_index.add_index("kind", index_type="INVERTED")
        self.client.create_collection(
            meta, schema=meta_schema, index_params=meta_index, consistency_level="Strong"
        )

        sent = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        sent.add_field("pk", DataType.INT64, is_primary=True)
        sent.add_field("source", DataType.VARCHAR, max_length=1024)
        sent.add_field("seq", DataType.INT64)
        sent.add_field("turn_id", DataType.VARCHAR, max_length=1100)
        sent.add_field("start", DataType.INT64)
        sent.add_field("end", DataType.INT64)
        sent.add_field("th", DataType.INT64)  # text_hash of the turn's text
        sent.add_field("vec", DataType.FLOAT_VECTOR, dim=dimension)
        sent_index = self.client.prepare_index_params()
        sent_index.add_index("vec", index_type="FLAT", metric_type="IP")  # looked up by turn
        for name in ("source", "turn_id"):
            sent_index.add_index(name, index_type="INVERTED")
        self.client.create_collection(
            target[self.sent_name], schema=sent, index_params=sent_index,
            consistency_level="Strong",
        )  # fmt: skip

    def _file_row(self, source: str, corpus_hash: str) -> dict:
        return self._meta_row(f"file:{source}", "file", corpus_hash, source)

    @staticmethod
    def _meta_row(key: str, kind: str, value: object = None, source: str = "", count: int = 0):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return {
            "key": _check_varchar(key, "a keyword term"),
            "kind": kind,
            "source": source,
            "count": int(count),
            "value": _check_varchar(text, f"record {key}"),
            "vec": [0.0] * META_DIM,
        }

    def _upsert(
        self,
        collection: str,
        rows: Iterable[dict],
        progress: Progress = None,
        what: str = "",
        total: int = 0,
    ) -> None:
        """Write rows in batches, made as they are sent (a million rows of 384 floats as
        Python lists would not fit in memory at once)."""
        t0 = last = time.perf_counter()
        rows, done = iter(rows), 0
        while batch := list(itertools.islice(rows, BATCH)):
            self.client.upsert(collection, batch)
            done += len(batch)
            now = time.perf_counter()
            if progress is not None and what and now - last > 5:
                last = now
                of = f"/{total:,}" if total else ""
                progress(f"milvus: {what} {done:,}{of} ({done / (now - t0):,.0f}/s)")

    def _passage_rows(
        self,
        turns: dict[str, Turn],
        passages: Sequence[Passage],
        vectors: np.ndarray,
        keyword_texts: Sequence[str],
        avg_len: float,
        tokens: list[list[str]],
    ) -> Iterator[dict]:
        """One Milvus row per passage, made lazily; seq counts each file's passages."""
        seq_of: Counter = Counter()
        for p, vec, kw, toks in zip(passages, vectors, keyword_texts, tokens, strict=True):
            t = turns[p.turn_id]
            seq = seq_of[p.source]
            seq_of[p.source] += 1
            norm = float(np.linalg.norm(vec))
            yield {
                "pk": passage_key(p.source, seq),
                "source": p.source,
                "seq": seq,
                "turn_id": p.turn_id,
                "start": p.start,
                "end": p.end,
                "speaker": t.speaker or "",
                "speaker_title": t.speaker_title or "",
                "article": t.article,
                "path": _path(t),
                "asked": t.asked or "",
                "kind": t.kind,
                "text": _check_varchar(p.text, f"a passage of {p.source}"),
                "keywords": _check_varchar(kw, f"a keyword text of {p.source}"),
                "dense": (vec / norm if norm > 0 else vec).astype(np.float32).tolist(),
                "terms": _term_weights(toks, avg_len),
            }

    @staticmethod
    def _validate(turns, passages, vectors, keyword_texts) -> tuple[np.ndarray, list[str]]:
        vectors = np.asarray(vectors, dtype=np.float32)
        n = len(passages)
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise ValueError(f"need one vector per passage: {n} passages, vectors {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        keyword_texts = [p.text for p in passages] if keyword_texts is None else list(keyword_texts)
        if len(keyword_texts) != n:
            raise ValueError(f"need one keyword text per passage: {n} vs {len(keyword_texts)}")
        missing = sorted({p.turn_id for p in passages} - {t.id for t in turns})
        if missing:
            raise ValueError(f"passages refer to turns not given: {missing[:3]}")
        return vectors, keyword_texts

    def build(
        self,
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
        """Replace the index with a complete new one (same inputs as store.build_index).

        Written into new collections, then the names readers use (Milvus aliases) are
        switched to them and the old ones dropped: readers keep the old index until then,
        and a failed build leaves it untouched.
        """
        t0 = time.perf_counter()
        if not passages:
            raise IndexProblem("nothing to index (no passages): add interview files to the corpus")
        vectors, keyword_texts = self._validate(turns, passages, vectors, keyword_texts)
        say(progress, f"milvus: tokenizing {len(keyword_texts):,} keyword texts…")
        tokens = [tokenize(text) for text in keyword_texts]
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:6]
        target = {alias: f"{alias}__{stamp}" for alias in self._names()}
        try:
            self._create(vectors.shape[1], len(passages), target)
            about = {"model": model_name, "settings": settings or {}, "corpus": corpus_hashes}
            if sentences is not None:  # before the manifest, which counts them
                self._write_sentences(target[self.sent_name], turns, sentences, progress)
                about["sentences"] = len(sentences)
            self._fill(target, about, turns, passages, vectors, keyword_texts, tokens, progress)
            for collection in target.values():
                self.client.flush(collection)
                self.client.load_collection(collection)
        except BaseException:
            for collection in target.values():
                if self.client.has_collection(collection):
                    self.client.drop_collection(collection)
            raise
        # records first, passages last: refresh() retries while they name different builds
        for alias in (self.meta_name, self.sent_name, self.name):
            self._point(alias, target[alias])
        self.refresh()
        say(
            progress,
            f"milvus: ready ({len(self.passages):,} passages, "
            f"{self.manifest['counts']['vocabulary']:,} terms) in {time.perf_counter() - t0:.1f} s",
        )

    def _point(self, alias: str, collection: str) -> None:
        """Make ``alias`` name ``collection``; drop what it named before."""
        old = self._alias_target(alias)
        if old is None:
            if self.client.has_collection(alias):  # a plain collection of that name
                self.client.drop_collection(alias)
            self.client.create_alias(collection, alias)
        else:
            self.client.alter_alias(collection, alias)
            if old != collection:
                self.client.drop_collection(old)

    def _fill(self, target, about, turns, passages, vectors, keyword_texts, tokens, progress):
        """Write every row and the manifest into the new collections."""
        t0 = time.perf_counter()
        lengths = [len(t) for t in tokens]
        avg_len = sum(lengths) / len(lengths)
        turn_by_id = {t.id: t for t in turns}
        say(progress, f"milvus: writing {len(passages):,} passages to {self.name!r} at {self.uri}")
        rows = self._passage_rows(turn_by_id, passages, vectors, keyword_texts, avg_len, tokens)
        self._upsert(target[self.name], rows, progress, "passages", len(passages))
        df = Counter(term for toks in tokens for term in set(toks) if _storable(term))
        meta = [self._meta_row(f"turn:{t.id}", "turn", t.to_dict(), t.source) for t in turns]
        meta += [self._meta_row(f"df:{term}", "df", None, count=c) for term, c in df.items()]
        meta += [self._file_row(source, h) for source, h in about["corpus"].items()]
        self._upsert(target[self.meta_name], meta, progress, "records", len(meta))
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": about["model"],
            "settings": about["settings"],
            "dimension": int(vectors.shape[1]),
            "corpus": dict(sorted(about["corpus"].items())),
            "counts": {
                "turns": len(turns),
                "passages": len(passages),
                "tokens": sum(lengths),
                "vocabulary": len(df),
                **({"sentences": about["sentences"]} if "sentences" in about else {}),
            },
            "dense": {
                "type": "FLAT" if len(passages) <= EXACT_SEARCH_LIMIT else "HNSW",
                "metric": "inner_product",
            },
            "keyword": {
                "scheme": "bm25",
                "k1": BM25_K1,
                "b": BM25_B,
                "tokenizer": tokenizer_signature(),
                "idf": "at query time",
            },
            "store": {"uri": self.uri, "collection": self.name, "physical": target[self.name]},
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        self._put_manifest(manifest, target[self.meta_name])

    def _sentence_rows(self, turns: dict[str, Turn], sentences: SentenceIndex) -> Iterator[dict]:
        """One Milvus row per sentence, in order; seq counts each file's sentences."""
        seq_of: Counter = Counter()
        vectors = _normalised(sentences.vectors) if len(sentences) else sentences.vectors
        hashes: dict[str, int] = {}
        for tid, (a, b), vec in zip(sentences.turn_ids, sentences.spans, vectors, strict=True):
            turn = turns[tid]
            seq = seq_of[turn.source]
            seq_of[turn.source] += 1
            if tid not in hashes:
                hashes[tid] = text_hash(turn.text)
            yield {
                "pk": sentence_key(turn.source, seq),
                "source": turn.source,
                "seq": seq,
                "turn_id": tid,
                "start": int(a),
                "end": int(b),
                "th": hashes[tid],
                "vec": vec.tolist(),
            }

    def _write_sentences(self, collection, turns, sentences, progress=None) -> int:
        """Upsert the sentence rows of these turns; returns how many were written."""
        by_id = {t.id: t for t in turns}
        missing = set(sentences.turn_ids) - set(by_id)
        if missing:
            raise ValueError(f"sentences refer to turns not given: {sorted(missing)[:3]}")
        say(progress, f"milvus: writing {len(sentences):,} sentences")
        self._upsert(collection, self._sentence_rows(by_id, sentences), progress, "sentences",
                     len(sentences))  # fmt: skip
        return len(sentences)

    def _put_manifest(self, manifest: dict, collection: str | None = None) -> None:
        """Write the manifest with a new revision: readers compare it to notice a change
        (``refresh_if_changed``)."""
        manifest = {**manifest, "revision": uuid.uuid4().hex,
                    "updated": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        # the corpus hashes have a row per file (an archive's list outgrows one VARCHAR)
        stored = {k: v for k, v in manifest.items() if k != "corpus"}
        row = self._meta_row("manifest", "manifest", stored)
        self.client.upsert(collection or self.meta_name, [row])
        self.manifest = manifest

    def snapshot(self) -> MilvusStore:
        """A copy sharing the connection whose records later changes to this one leave
        alone (every change replaces the record lists, never edits them). The engine
        serves one snapshot and swaps in the changed copy whole, as it does with folders:
        ``new = served.snapshot(); new.upsert_file(...); swap(new)``."""
        new = copy.copy(self)
        if self.sentences is not None:
            new.sentences = MilvusSentences(new, len(self.sentences))
        return new

    def changed(self) -> bool:
        """Did another process change the index since these records were read (one small
        query: the manifest's revision)?"""
        stored = self._meta_value("manifest")
        return stored is not None and stored.get("revision") != self.manifest.get("revision")

    def refresh_if_changed(self) -> bool:
        """Re-read the records when another process changed the index (one small query);
        a reader replica calls this every few seconds. True when it re-read."""
        if not self.changed():
            return False
        self.refresh()
        return True

    def upsert_file(
        self,
        source: str,
        turns: list[Turn],
        passages: list[Passage],
        vectors: np.ndarray,
        keyword_texts: Sequence[str] | None = None,
        corpus_hash: str | None = None,
        sentences: SentenceIndex | None = None,
    ) -> dict:
        """Add or replace one file's passages, turns and sentences (``sentences``: those of
        this file's turns, as ``qa.engine.index_pieces`` makes them); no other file's rows
        are touched.

        The file's rows are upserted under the same keys, then its surplus rows deleted, so
        a reader never sees the file missing. Document frequencies and the passage and
        token counts move with it (idf is applied at query time, so other rows stay
        valid; their length normalisation keeps the average length of when they were
        written). Returns what changed.
        """
        if any(p.source != source for p in passages) or any(t.source != source for t in turns):
            raise ValueError(f"every passage and turn given must come from {source}")
        if not passages:
            return self.delete_file(source, corpus_hash_removed=False)
        vectors, keyword_texts = self._validate(turns, passages, vectors, keyword_texts)
        if vectors.shape[1] != self.dimension:
            raise IndexProblem(
                f"vectors have {vectors.shape[1]} dimensions, the index "
                f"{self.dimension}: embed with the index's model {self.model_name}"
            )
        self.refresh_if_changed()
        old_tokens, old_turns = self._file_contents(source)
        tokens = [tokenize(text) for text in keyword_texts]
        counts = self.manifest["counts"]
        n = counts["passages"] - len(old_tokens) + len(tokens)
        total = counts["tokens"] - sum(map(len, old_tokens)) + sum(map(len, tokens))
        avg_len = total / max(n, 1)
        turn_by_id = {t.id: t for t in turns}
        rows = list(
            self._passage_rows(turn_by_id, passages, vectors, keyword_texts, avg_len, tokens)
        )
        self._upsert(self.name, rows)
        self.client.delete(self.name, filter=f"source == {quote(source)} and seq >= {len(rows)}")
        old_sentences = self._count(self.sent_name, f"source == {quote(source)}")
        written = 0
        if sentences is not None and self.sentences is not None:
            written = self._write_sentences(self.sent_name, turns, sentences)
        self.client.delete(
            self.sent_name, filter=f"source == {quote(source)} and seq >= {written}"
        )
        meta = [self._meta_row(f"turn:{t.id}", "turn", t.to_dict(), source) for t in turns]
        self._upsert(self.meta_name, meta)
        stale = sorted(old_turns - set(turn_by_id))
        for i in range(0, len(stale), BATCH):
            self.client.delete(self.meta_name, ids=[f"turn:{t}" for t in stale[i : i + BATCH]])
        self._move_df(old_tokens, tokens)
        manifest = dict(self.manifest)
        manifest["counts"] = {
            **counts,
            "passages": n,
            "tokens": total,
            "turns": counts["turns"] - len(old_turns) + len(turns),
        }
        if "sentences" in counts:
            manifest["counts"]["sentences"] = counts["sentences"] - old_sentences + written
        if corpus_hash is not None:
            self.client.upsert(self.meta_name, [self._file_row(source, corpus_hash)])
            manifest["corpus"] = dict(sorted({**manifest["corpus"], source: corpus_hash}.items()))
        self._put_manifest(manifest)
        self._replace_file_records(source, rows, turns)
        removed = max(0, len(old_tokens) - len(rows))
        return {"source": source, "passages": len(rows), "removed": removed}

    def delete_file(self, source: str, corpus_hash_removed: bool = True) -> dict:
        """Remove one file's passages, turns and their share of the document frequencies."""
        self.refresh_if_changed()  # start from what another writer may have left
        old_tokens, old_turns = self._file_contents(source)
        old_sentences = self._count(self.sent_name, f"source == {quote(source)}")
        self.client.delete(self.name, filter=f"source == {quote(source)}")
        self.client.delete(self.sent_name, filter=f"source == {quote(source)}")
        self.client.delete(self.meta_name, filter=f'kind == "turn" and source == {quote(source)}')
        self._move_df(old_tokens, [])
        counts = self.manifest["counts"]
        manifest = dict(self.manifest)
        manifest["counts"] = {
            **counts,
            "passages": counts["passages"] - len(old_tokens),
            "tokens": counts["tokens"] - sum(map(len, old_tokens)),
            "turns": counts["turns"] - len(old_turns),
        }
        if "sentences" in counts:
            manifest["counts"]["sentences"] = counts["sentences"] - old_sentences
        if corpus_hash_removed:
            self.client.delete(self.meta_name, ids=[f"file:{source}"])
            manifest["corpus"] = {f: h for f, h in manifest["corpus"].items() if f != source}
        self._put_manifest(manifest)
        self._replace_file_records(source, [], [])
        return {"source": source, "passages": 0, "removed": len(old_tokens)}

    def _count(self, collection: str, expr: str) -> int:
        """How many rows match (for the manifest's counts)."""
        return len(self._select(collection, expr, ["pk"]))

    def _file_contents(self, source: str) -> tuple[list[list[str]], set[str]]:
        """The tokens of a file's indexed passages and its turn ids, as stored now."""
        rows = self._select(self.name, f"source == {quote(source)}", ["keywords"])
        tokens = [tokenize(r["keywords"]) for r in rows]
        turns = {
            r["key"][5:]
            for r in self._select(
                self.meta_name, f'kind == "turn" and source == {quote(source)}', ["key"]
            )
        }
        return tokens, turns

    def _move_df(self, old: list[list[str]], new: list[list[str]]) -> None:
        """Document frequencies minus the old passages' terms plus the new ones'."""
        delta: Counter = Counter()
        for toks in old:
            delta.subtract(set(toks))
        for toks in new:
            delta.update(set(toks))
        changed = [t for t, d in delta.items() if d and _storable(t)]
        if not changed:
            return
        current = {}
        for i in range(0, len(changed), BATCH):
            current.update(self.document_frequencies(changed[i : i + BATCH]))
        keep, drop = [], []
        for term in changed:
            count = current.get(term, 0) + delta[term]
            if count > 0:
                keep.append(self._meta_row(f"df:{term}", "df", None, count=count))
            else:
                drop.append(f"df:{term}")
        self._upsert(self.meta_name, keep)
        for i in range(0, len(drop), BATCH):
            self.client.delete(self.meta_name, ids=drop[i : i + BATCH])

    def drop(self) -> None:
        """Delete this index: its three aliases and the collections they name."""
        for alias in self._names():
            target = self._alias_target(alias)
            if target is not None:
                self.client.drop_alias(alias)  # Milvus refuses to drop an aliased collection
                self.client.drop_collection(target)
            elif self.client.has_collection(alias):
                self.client.drop_collection(alias)

    def close(self) -> None:
        self.client.close()



# ---------------------------------------------------------------------------------------
# what the engine calls: open the index for serving, keep it in step with the corpus


def sync(
    uri: str,
    files: list[tuple[str, str]],
    embedder,
    progress: Progress = print,
    served: MilvusStore | None = None,
) -> tuple[MilvusStore, list[str]]:
    """Bring the Milvus index at ``uri`` in step with these corpus files: a full build
    when there is none or the model, passage recipe or tokenizer changed; otherwise only
    the added, changed and removed files are embedded and written. Returns the store to
    serve (``served`` itself when nothing changed, else a changed snapshot of it, so the
    caller swaps it in whole) and what changed, a line per file. A failing Milvus is one
    IndexProblem line; the served store is never changed in place."""
    with _milvus_errors(uri):
        return _sync(uri, files, embedder, progress, served)


def _sync(uri, files, embedder, progress, served) -> tuple[MilvusStore, list[str]]:
    from .corpus import corpus_fingerprint
    from .engine import index_pieces, passage_settings

    hashes = corpus_fingerprint(files)
    store, reason = served, None
    if store is None:
        try:
            store = MilvusStore.open(uri)
        except NoIndex as exc:  # (Milvus unreachable is another IndexProblem: raised)
            reason = str(exc).split(": rebuild")[0]
    elif store.changed():  # another writer moved on: start from a fresh copy
        store = follow(uri, store)
    if store is not None:
        reason = rebuild_reason(store, embedder.name, passage_settings())
    if reason is not None:
        say(progress, f"building the Milvus index at {uri} ({reason})")
        pieces = index_pieces(files, embedder, progress)
        new = MilvusStore(uri) if store is None else store.snapshot()
        new.build(
            pieces.turns, pieces.passages, pieces.vectors, embedder.name, hashes, progress,
            pieces.keyword_texts, passage_settings(), pieces.sentences,
        )  # fmt: skip
        return new, [f"built: {len(files)} file(s), {len(new):,} passages"]
    added, changed, removed = corpus_changes(store, hashes)
    if not (added or changed or removed):
        return store, []
    new, lines, text_of = store.snapshot(), [], dict(files)
    for source in added + changed:
        t0 = time.perf_counter()
        pieces = index_pieces([(source, text_of[source])], embedder, None)
        did = new.upsert_file(
            source, pieces.turns, pieces.passages, pieces.vectors, pieces.keyword_texts,
            corpus_hash=hashes[source], sentences=pieces.sentences,
        )  # fmt: skip
        verb = "added" if source in added else "changed"
        lines.append(f"{verb}: {source} ({did['passages']} passages, "
                     f"{time.perf_counter() - t0:.1f} s)")  # fmt: skip
    for source in removed:
        did = new.delete_file(source)
        lines.append(f"removed: {source} ({did['removed']} passages)")
    for line in lines:
        say(progress, f"milvus: {line}")
    return new, lines


def open_for_serving(
    uri: str,
    files: list[tuple[str, str]] | None,
    embedder,
    progress: Progress = print,
) -> MilvusStore:
    """The index to serve. ``files`` None: a reader replica (QA_MILVUS_READER=1) that
    opens what the writer built and never writes; else ``sync`` first."""
    if files is None:
        store = MilvusStore.open(uri)
        if store.model_name != embedder.name or store.dimension != embedder.dimension:
            raise IndexProblem(
                f"the Milvus index at {uri} was built with model {store.model_name}, this "
                f"replica runs {embedder.name}: set the same QA_EMBED_MODEL as the writer"
            )
        return store
    store, _ = sync(uri, files, embedder, progress)
    return store


def follow(uri: str, served: MilvusStore) -> MilvusStore:
    """For a reader replica: ``served`` when the index did not change, else a fresh
    snapshot read from Milvus (requests in flight keep the old one)."""
    if not served.changed():
        return served
    new = served.snapshot()
    new.refresh()
    return new
