"""Engine: the one object the CLI, the UI, the HTTP API and the evaluation call.

Expensive things — the sentence model, the index, jieba's dictionary — load once, here,
and every request shares them. Opening an engine builds the index when it is missing
or stale (changed corpus, other model), and says why.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import store as store_mod
from .answer import compose
from .chunk import ChunkConfig, chunk_turns, context_line, embedding_text, quotable_sentences
from .corpus import corpus_fingerprint, parse_text, read_corpus
from .embed import Embedder, load_embedder, model_setting
from .errors import BadQuestion, IndexProblem
from .evidence import MODEL_FILE as EVIDENCE_MODEL
from .evidence import Model, decide
from .retrieve import MODES, RetrieveConfig, Retriever
from .types import SECTION_SEP, Answer

PROJECT_DIR = Path(__file__).resolve().parent.parent
MAX_QUESTION_CHARS = 2000
MAX_K = 20
# How passages are made; any change here makes existing indexes stale (see store.stale_reason).
PASSAGE_SETTINGS = {
    "chunk_max_chars": ChunkConfig().max_chars,
    "overlap_sentences": ChunkConfig().overlap_sentences,
    "embedded_text": "speaker+passage/v1",
    "question_passages": True,
    "sentences": "quotable/v1",  # sentence vectors for evidence and quoting (helper "quality")
}

Progress = Callable[[str], None]


def default_corpus() -> Path:
    return Path(os.environ.get("QA_CORPUS") or PROJECT_DIR / "corpus")


def default_index() -> Path:
    return Path(os.environ.get("QA_INDEX") or PROJECT_DIR / "index")


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


def build(
    corpus: Path,
    index: Path,
    embedder: Embedder,
    progress: Progress = print,
    files: list[tuple[str, str]] | None = None,
) -> store_mod.IndexStore:
    """Parse → chunk → embed → write the index atomically; returns the loaded index.

    ``files`` is the corpus as already read (``read_corpus``), so it is not read twice.
    """
    files = read_corpus(corpus) if files is None else files
    t0 = time.perf_counter()
    turns = [t for source, text in files for t in parse_text(text, source)]
    passages = chunk_turns(turns, ChunkConfig())
    speakers = {t.speaker for t in turns if t.speaker}
    progress(
        f"parsed {len(files)} file(s): {len(turns)} turns, {len(passages)} passages, "
        f"{len(speakers)} speakers"
    )
    turn_by_id = {t.id: t for t in turns}
    texts = [embedding_text(turn_by_id[p.turn_id], p) for p in passages]
    vectors = embedder.embed_passages(texts, progress=progress)
    with_passages = {p.turn_id for p in passages}
    indexed_turns = [t for t in turns if t.id in with_passages]
    sentences = embed_sentences(indexed_turns, embedder, progress)
    store_mod.build_index(
        index,
        indexed_turns,
        passages,
        vectors,
        model_name=embedder.name,
        corpus_hashes=corpus_fingerprint(files),
        progress=progress,
        keyword_texts=[f"{context_line(turn_by_id[p.turn_id])} {p.text}" for p in passages],
        settings=PASSAGE_SETTINGS,
        sentences=sentences,
    )
    progress(f"index built in {time.perf_counter() - t0:.1f} s at {index}")
    return store_mod.load_index(index)


def embed_sentences(
    turns: list, embedder: Embedder, progress: Progress = print
) -> store_mod.SentenceIndex:
    """Every quotable sentence of the indexed turns, embedded on its own (no speaker
    prefix: the sentence's own words are the evidence)."""
    rows = [(t.id, a, b) for t in turns for a, b in quotable_sentences(t.text)]
    by_id = {t.id: t for t in turns}
    progress(f"embedding {len(rows)} sentences…")
    texts = [by_id[tid].text[a:b] for tid, a, b in rows]
    vectors = (
        embedder.embed_passages(texts, progress=progress)
        if texts
        else np.zeros((0, embedder.dimension), np.float32)
    )
    return store_mod.SentenceIndex([r[0] for r in rows], [(a, b) for _, a, b in rows], vectors)


class Engine:
    def __init__(self, store: store_mod.IndexStore, embedder: Embedder, index_dir: Path):
        self.store = store
        self.embedder = embedder
        self.index_dir = index_dir
        self.retriever = Retriever(store, embedder, RetrieveConfig())
        # the answerability weights (qa/evidence_model.json); None until (re)fitted
        try:
            self.evidence: Model | None = Model.load()
        except (OSError, ValueError, KeyError, TypeError):
            self.evidence = None
        turns = [store.turns[tid] for tid in dict.fromkeys(p.turn_id for p in store.passages)]
        titles: dict[str, str | None] = {}
        for t in turns:
            if t.speaker and (t.speaker not in titles or not titles[t.speaker]):
                titles[t.speaker] = t.speaker_title
        self.speakers: list[tuple[str, str | None]] = list(titles.items())
        self.sections: list[str] = list(
            dict.fromkeys(SECTION_SEP.join(p for p in (t.article, *t.section) if p) for t in turns)
        )

    @classmethod
    def open(
        cls,
        corpus: Path | str | None = None,
        index: Path | str | None = None,
        model: str | None = None,
        progress: Progress = print,
    ) -> Engine:
        corpus_dir = Path(corpus) if corpus else default_corpus()
        index_dir = Path(index) if index else default_index()
        setting = model_setting(model)
        files = read_corpus(corpus_dir)
        hashes = corpus_fingerprint(files)
        reason = store_mod.stale_reason(index_dir, hashes, setting, PASSAGE_SETTINGS)
        embedder = load_embedder(setting, progress=progress)
        if reason is None:
            try:
                loaded = store_mod.load_index(index_dir)
                if loaded.dimension != embedder.dimension:
                    raise IndexProblem(
                        f"index vectors have {loaded.dimension} dimensions, "
                        f"model has {embedder.dimension}"
                    )
                return cls(loaded, embedder, index_dir)
            except IndexProblem as exc:
                reason = str(exc)
        progress(f"building the index ({reason})")
        built = build(corpus_dir, index_dir, embedder, progress, files=files)
        return cls(built, embedder, index_dir)

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
        asked = self.retriever.analyse(question)
        # a question about several experts looks further, for every expert who answered
        retrieval = self.retriever.search(
            asked, k=MAX_K if asked.many_speakers else k, speaker=speaker or None,
            section=section or None, mode=mode,
        )
        if self.evidence is None:
            raise IndexProblem(
                f"{EVIDENCE_MODEL} is missing or outdated: fit it with "
                "`python -m qa.evidence fit`"
            )
        t1 = time.perf_counter()
        verdict = decide(retrieval, len(self.store), self.evidence)
        answer = compose(retrieval, verdict, k)
        answer.timings_ms["answer"] = round((time.perf_counter() - t1) * 1000, 2)
        answer.timings_ms["total"] = round((time.perf_counter() - t0) * 1000, 2)
        return answer

    def health(self) -> dict:
        m = self.store.manifest
        return {
            "status": "ok",
            "index": str(self.index_dir),
            "model": self.embedder.name,
            "dimension": self.embedder.dimension,
            "built": m.get("created"),
            "files": len(m.get("corpus", {})),
            "turns": len({p.turn_id for p in self.store.passages}),
            "passages": len(self.store.passages),
            "speakers": [name for name, _ in self.speakers],
        }
