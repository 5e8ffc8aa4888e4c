"""Question → ranked turns: dense + keyword search, fused, filtered, merged per turn.

Chunks of one turn are merged into one hit (the turn is what a citation shows). A
speaker the question names (qa.question found it, in characters, pinyin or a homophone)
narrows the search to that speaker. Each hit's sentences are scored on their own (dense
and keyword together): the best one is what the answer quotes and what qa.evidence
weighs. Whether to answer at all is decided in qa.evidence, not here.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .embed import Embedder
from .question import Analyser, Question
from .store import IndexStore, tokenize
from .types import Passage, Turn, section_path

MODES = ("hybrid", "dense", "keyword")
NOTE = ("（作者单位", "(作者单位")  # a commentary's author note


def is_bio(turn: Turn) -> bool:
    """A bio line or a commentary's author note (作者单位): who someone is, not what they
    said."""
    return turn.kind == "bio" or turn.text.lstrip().startswith(NOTE)
SENTENCE_GAP = 0.05  # cosine a turn's best sentence may lag the best one's by (see below)


@dataclass(frozen=True)
class RetrieveConfig:
    candidates: int = 40  # per search side, before fusion
    # Measured on eval/gold.jsonl (hit@1 / MRR): rrf with keyword 0.5: 0.893 / 0.929;
    # scaled scores with keyword 0.3: 0.893 / 0.938, 0.5: 0.920 / 0.951, 0.7: 0.933 / 0.958.
    fusion: str = "score"  # "score" (scaled scores) or "rrf" (reciprocal rank)
    rrf_k: int = 60  # reciprocal-rank-fusion damping
    dense_weight: float = 1.0
    keyword_weight: float = 0.7
    keyword_weight_en: float = 0.5  # an English question's keywords are dictionary senses
    # A passage holding the interviewer's question (qa.chunk) is the same for every expert
    # who answered it, so it cannot tell their answers apart: it counts for less than a
    # passage in the expert's own words. Measured on eval/gold.jsonl (hit@1 / hit@5 / MRR):
    # 1.0: 0.933 / 0.987 / 0.958; 0.9: 0.933 / 1.000 / 0.959; 0.8: 0.947 / 1.000 / 0.970;
    # 0.7: 0.920 / 1.000 / 0.957; 0.5: 0.920 / 1.000 / 0.954; 0: 0.920 / 0.987 / 0.950.
    question_passage_weight: float = 0.8
    # A bio line or author note (作者单位) shares only the name with most questions; the
    # name alone must not carry it above what the expert said
    bio_weight: float = 1.0
    bio_weight_en: float = 0.8  # dev split, English: hit@1 same, speaker@1 0.833 → 0.867
    # An English question shares no words with the Chinese passages; its words' Chinese
    # senses that the corpus uses join the keyword search.
    english_keywords: bool = True
    # ...and the candidates are ranked by the rarity-weighted share of its words whose
    # Chinese forms they hold verbatim (a compound jieba splits, 小康社会, still counts)
    verbatim_weight_en: float = 0.5
    # A Chinese question quoting the page (云联数算用, “135”架构体系): the candidates holding
    # the longest run of its characters (≥ phrase_min) that few candidates share
    phrase_weight: float = 0.4  # dev: 0.3–0.5 hit@1 0.955 → 0.962 (0.2: none, 1.0: none)
    phrase_min: int = 4
    phrase_max_rows: int = 3
    # An English question is embedded with its words' Chinese senses after it: the model
    # matches English to Chinese only loosely, Chinese to Chinese well
    embed_senses: bool = True
    # A question naming a speaker is embedded once: its topic alone (the search is already
    # narrowed to the speaker), not the whole question and the topic.
    embed_topic: bool = True
    # sentence score = cosine + this × rarity-weighted share of the question's words in it
    sentence_keyword_weight: float = 0.3
    # dev, English: highlight 22 → 25 of 30 at 0.3 (0.5 the same), now that an English
    # word's senses are only those the corpus uses (at 0.0 when they were all of CC-CEDICT's)
    sentence_keyword_weight_en: float = 0.3
    # turn score += this × its best sentence's cosine, scaled among the candidates
    sentence_weight: float = 0.0  # dev split, Chinese: 0.5 lowers hit@1 0.963 → 0.939
    # dev split, English: speaker@1 0.867 → 0.900 at 0.5 (30 questions); on 91 (2026-12-06):
    # English hit@1 0.3 / 0.5 / 0.7–1.0 / 1.3: 0.923 / 0.934 / 0.945 / 0.912: the plateau's middle
    sentence_weight_en: float = 0.85


@dataclass(frozen=True)
class Sentence:
    """One sentence of a hit's turn, scored against the question."""

    start: int  # in the turn text
    end: int
    dense: float  # cosine with the question (0 when not searched densely)
    keyword: float  # rarity-weighted share of the question's words it holds
    score: float


@dataclass(frozen=True)
class Hit:
    """One turn, with the passage of it that matched best and how it was found."""

    turn: Turn
    passage: Passage
    score: float  # fused score, higher is better
    dense: float  # best cosine among the turn's passages (0 when not searched)
    keyword: float  # best raw BM25 among the turn's passages
    passage_scores: dict[int, float] = field(default_factory=dict)  # passage id -> fused
    sentences: tuple[Sentence, ...] = ()  # best first

    @property
    def best_sentence(self) -> Sentence | None:
        return self.sentences[0] if self.sentences else None


@dataclass(frozen=True)
class Retrieval:
    question: Question
    hits: tuple[Hit, ...]
    speakers: tuple[str, ...]  # speakers the search was narrowed to
    mode: str
    best_dense: float  # best passage cosine (0 in keyword mode)
    timings_ms: dict
    # how far the best cosine stands above the candidates' mean: an off-topic question is
    # about as close to every passage, an answered one peaks
    dense_peak: float = 0.0


Ranked = list[tuple[int, float]]  # (passage row, score), best first


def _fuse(views: list[tuple[float, Ranked]], cfg: RetrieveConfig) -> dict[int, float]:
    """Combine ranked lists into one score per row.

    "score": each list's scores scaled to [0, 1] within the list, then weighted. Unlike
    reciprocal-rank fusion it keeps how far ahead a result is: a passage holding every
    rare word of the question (BM25 far above the rest) is not outvoted by a dense list
    whose top scores all lie within 0.01 of each other.
    """
    fused: dict[int, float] = {}
    for weight, ranked in views:
        if not ranked:
            continue
        if cfg.fusion == "rrf":
            for rank, (row, _) in enumerate(ranked):
                fused[row] = fused.get(row, 0.0) + weight / (cfg.rrf_k + rank + 1)
            continue
        scores = np.array([s for _, s in ranked], dtype=np.float64)
        lo, hi = float(scores.min()), float(scores.max())
        floor = lo if len(ranked) > 1 else 0.0
        span = (hi - floor) or 1.0
        for row, s in ranked:
            fused[row] = fused.get(row, 0.0) + weight * (s - floor) / span
    return fused


def idf(passages: int, total: int) -> float:
    """How much finding a word says: rare words much, common ones little."""
    return math.log((total + 1) / (passages + 0.5))


def word_share(question: Question, text: str, total: int) -> float:
    """Rarity-weighted share of the question's words found in ``text``; a word the corpus
    never uses weighs most and is never found."""
    return WordShare(question, total)(text.lower())


class WordShare:
    """``word_share`` with the question's word weights computed once, for many texts
    (already lower-cased)."""

    def __init__(self, question: Question, total: int):
        # one pattern per word: a search in C instead of a Python loop over its forms
        self.weights = [
            (idf(w.passages, total),
             re.compile("|".join(re.escape(f.lower()) for f in w.forms)).search)
            for w in question.words
        ]
        self.whole = sum(x for x, _ in self.weights)

    def __call__(self, low: str) -> float:
        if not self.whole:
            return 0.0
        return sum(x for x, found in self.weights if found(low)) / self.whole


class Retriever:
    def __init__(
        self, store: IndexStore, embedder: Embedder, config: RetrieveConfig = RetrieveConfig()
    ):
        self.store = store
        self.embedder = embedder
        self.config = config
        self.turn_of = [store.turns[p.turn_id] for p in store.passages]
        self.speaker_names = sorted(
            {t.speaker for t in self.turn_of if t.speaker}, key=len, reverse=True
        )
        self.analyse = Analyser(
            self.speaker_names, store.passages_with, (p.text for p in store.passages)
        )
        self._paths = [section_path(t.article, *t.section) for t in self.turn_of]
        self._question_rows = {
            p.id for p, t in zip(store.passages, self.turn_of, strict=True) if p.text == t.asked
        }
        self._bio_rows = {
            p.id
            for p, t in zip(store.passages, self.turn_of, strict=True)
            if t.kind in ("bio", "intro") or p.text.startswith(NOTE)
        }
        self._speaker_rows = {
            s: np.array([t.speaker == s for t in self.turn_of]) for s in self.speaker_names
        }

    def _mask(self, speakers: list[str], section: str | None) -> np.ndarray | None:
        mask = None
        if speakers:
            mask = np.zeros(len(self.turn_of), dtype=bool)
            for s in speakers:
                mask |= self._speaker_rows.get(s, False)
        if section:
            sec = np.array([section in path for path in self._paths])
            mask = sec if mask is None else mask & sec
        return mask

    def _where(self, mask: np.ndarray | None, speakers: list[str], section: str | None) -> dict:
        """The filter as the store takes it: the row mask for the index folder; speaker
        and section for a store that filters on those fields itself (Milvus: a list of
        rows would not scale to an archive)."""
        if mask is None or not getattr(self.store, "filters_by_field", False):
            return {"allowed": mask}
        return {"allowed": None, "speakers": speakers or None, "section": section or None}

    def _keyword_terms(self, q: Question, narrowed_to: list[str]) -> list[str]:
        """The question's search terms; for an English question also the Chinese senses
        of its words that the corpus uses (measured on the dev split: off is better)."""
        if not q.english or q.about_person:
            # a Chinese question's everyday words (饭碗) search as the page's (就业)
            senses = [] if q.english else list(q.senses)
            return [*q.tokens, *tokenize(" ".join(senses))] if senses else list(q.tokens)
        # an English question's tokens that match Chinese passages are the names; once
        # the search is narrowed to those speakers they would only favour the shortest
        # passage holding the name (an author note)
        terms = [t for t in q.tokens if not any(t in name for name in narrowed_to)]
        if not self.config.english_keywords:
            return terms
        extra = [f for w in q.words if w.passages for f in w.forms if self.store.passages_with(f)]
        return [*terms, *tokenize(" ".join(extra))] if extra else terms

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        question: Question | str,
        k: int = 5,
        speaker: str | None = None,
        section: str | None = None,
        mode: str = "hybrid",
    ) -> Retrieval:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        q = question if isinstance(question, Question) else self.analyse(question)
        cfg = self.config
        timings: dict[str, float] = {}
        named = [speaker] if speaker else list(q.speakers)
        mask = self._mask(named, section)
        kept = named  # the speakers the mask keeps
        if mask is not None and not mask.any() and named and not speaker:
            mask, kept = self._mask([], section), []
        where = self._where(mask, kept, section)

        dense: Ranked = []
        keyword: Ranked = []
        qvec = None
        t0 = time.perf_counter()
        if mode in ("hybrid", "dense"):
            narrowed = mask is not None and bool(named)
            text = q.topic if (cfg.embed_topic and narrowed) else q.text
            if cfg.embed_senses and q.senses:
                text = f"{text} {' '.join(q.senses)}"
            qvec = self.embedder.embed_query(text)
            timings["embed"] = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
            dense = self.store.dense_search(qvec, cfg.candidates, **where)
            timings["dense"] = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        if mode in ("hybrid", "keyword"):
            keyword = self.store.keyword_search(
                q.text,
                cfg.candidates,
                terms=self._keyword_terms(q, named if mask is not None else []),
                **where,
            )
        timings["keyword"] = (time.perf_counter() - t2) * 1000

        # an English question about a person searches the name only (_keyword_terms), not
        # dictionary senses: its keywords weigh as a Chinese question's do
        senses = q.english and not q.about_person
        kw_weight = cfg.keyword_weight_en if senses else cfg.keyword_weight
        views = [(cfg.dense_weight, dense), (kw_weight, keyword)]
        if q.english and cfg.verbatim_weight_en and q.senses:
            views.append((cfg.verbatim_weight_en, self._verbatim(q, dense, keyword)))
        if not q.english and cfg.phrase_weight:
            views.append((cfg.phrase_weight, self._phrase(q, dense, keyword)))
        fused = _fuse(views, cfg)
        for row in self._question_rows & fused.keys():
            fused[row] *= cfg.question_passage_weight
        bio_weight = cfg.bio_weight_en if q.english else cfg.bio_weight
        if bio_weight != 1.0 and not q.about_person:
            for row in self._bio_rows & fused.keys():
                fused[row] *= bio_weight
        dense_of = dict(dense)
        keyword_of = dict(keyword)

        by_turn: dict[str, list[int]] = {}
        for row in sorted(fused, key=fused.get, reverse=True):
            by_turn.setdefault(self.store.passages[row].turn_id, []).append(row)
        t3 = time.perf_counter()
        hits = [
            Hit(
                turn=self.store.turns[turn_id],
                passage=self.store.passages[rows[0]],
                score=fused[rows[0]],
                dense=max((dense_of.get(r, 0.0) for r in rows), default=0.0),
                keyword=max((keyword_of.get(r, 0.0) for r in rows), default=0.0),
                passage_scores={self.store.passages[r].id: fused[r] for r in rows},
            )
            for turn_id, rows in by_turn.items()
        ]
        # Sentences are scored for the hits that are returned; an English question's best
        # sentence re-ranks every candidate (sentence_weight_en), so there all of them.
        sentence_weight = cfg.sentence_weight_en if q.english else cfg.sentence_weight
        rerank = bool(sentence_weight and qvec is not None)
        if not rerank:
            hits.sort(key=lambda h: h.score, reverse=True)
            del hits[k:]
        hits = self._with_sentences(q, qvec, hits)
        if rerank:
            hits = self._with_sentence_scores(hits, sentence_weight)
            hits.sort(key=lambda h: h.score, reverse=True)
        timings["sentences"] = (time.perf_counter() - t3) * 1000
        return Retrieval(
            question=q,
            hits=tuple(hits[:k]),
            speakers=tuple(named),
            mode=mode,
            best_dense=max((s for _, s in dense), default=0.0),
            timings_ms=timings,
            dense_peak=dense[0][1] - float(np.mean([s for _, s in dense])) if dense else 0.0,
        )

    def _phrase(self, q: Question, *ranked: Ranked) -> Ranked:
        """The candidates holding a run of the question's characters verbatim (at least
        ``phrase_min`` long, held by at most ``phrase_max_rows`` candidates, so that
        智慧名城建设 says nothing), scored by the longest such run (best first)."""
        cfg = self.config
        rows = sorted({row for r in ranked for row, _ in r})
        if not rows:
            return []
        texts = [self.store.passages[r].text.lower() for r in rows]
        runs = re.findall(r"\w+", q.topic.lower())
        grams = {
            run[i : i + n]
            for run in runs
            for n in range(cfg.phrase_min, min(len(run), 12) + 1)
            for i in range(len(run) - n + 1)
        }
        best = dict.fromkeys(rows, 0)
        for gram in sorted(grams, key=len, reverse=True):
            holders = [r for r, t in zip(rows, texts, strict=True) if gram in t]
            if 0 < len(holders) <= cfg.phrase_max_rows:
                for r in holders:
                    best[r] = max(best[r], len(gram))
        return sorted(((r, float(n)) for r, n in best.items() if n), key=lambda x: (-x[1], x[0]))

    def _verbatim(self, q: Question, *ranked: Ranked) -> Ranked:
        """The candidates holding an English question's words in Chinese, verbatim, by
        the rarity-weighted share of its words they hold (best first, none = left out)."""
        rows = {row for r in ranked for row, _ in r}
        share = WordShare(q, len(self.store))
        out = [(row, share(self.store.passages[row].text.lower())) for row in rows]
        return sorted(((r, s) for r, s in out if s > 0), key=lambda x: (-x[1], x[0]))

    def _with_sentence_scores(self, hits: list[Hit], w: float) -> list[Hit]:
        """Each turn loses up to ``w`` for how far its best sentence's cosine is behind the
        best one's (a full point at SENTENCE_GAP behind): a turn whose passage matched
        well but holds no sentence that matches as well drops below one that does."""
        best = [h.sentences[0].dense if h.sentences else 0.0 for h in hits]
        hi = max(best, default=0.0)
        return [
            Hit(**{**h.__dict__, "score": h.score - w * min(1.0, (hi - b) / SENTENCE_GAP)})
            for h, b in zip(hits, best, strict=True)
        ]

    def _with_sentences(
        self, q: Question, qvec: np.ndarray | None, hits: list[Hit]
    ) -> list[Hit]:
        """The hits with their turns' sentences (spans and vectors from the store's
        ``sentences.of_turns``) scored against the question, best first."""
        index = self.store.sentences
        if index is None or not hits:
            return hits
        found = index.of_turns([h.turn.id for h in hits])
        share = WordShare(q, len(self.store))
        cfg = self.config
        weight = cfg.sentence_keyword_weight_en if q.english else cfg.sentence_keyword_weight
        out = []
        for h in hits:
            spans_vectors = found.get(h.turn.id)
            if spans_vectors is None:
                out.append(h)
                continue
            spans, vectors = spans_vectors
            cos = vectors @ qvec if qvec is not None else np.zeros(len(spans))
            text = h.turn.text
            scored = []
            for (a, b), c in zip(spans.tolist(), cos.tolist(), strict=True):
                kw = share(text[a:b].lower())
                scored.append(Sentence(a, b, c, kw, c + weight * kw))
            scored.sort(key=lambda s: (-s.score, s.start))
            out.append(replace(h, sentences=tuple(scored)))
        return out
