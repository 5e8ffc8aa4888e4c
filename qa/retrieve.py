"""Question → ranked turns: dense + keyword search, fused, filtered, merged per turn.

Chunks of one turn are merged into one hit (the turn is what a citation shows). A
speaker named in the question — in Chinese or in pinyin ("Lu Yangchun") — narrows the
search to that speaker. ``evidence`` tells the answer stage whether anything really
supports an answer: a keyword hit alone (Chatchat's "你好" problem) does not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from .embed import Embedder
from .lexicon import chinese_words
from .store import ENGLISH_STOP_WORDS, IndexStore, tokenize
from .types import Passage, Turn

MODES = ("hybrid", "dense", "keyword")

# Answer types (the classic check of IR-based QA): a question asking "how much money" or
# "how many" is answered only by a passage that states such a figure. This catches
# near-topic questions (智博会门票多少钱？) that a small embedding model scores high. The
# figure must be in a passage that matched, not anywhere in a long answer, and it must be
# a quantity — a number with a unit or measure word — not the 一 of 一方面.
_NUM = r"[0-9０-９][0-9０-９.．,，]*|[一二两三四五六七八九十百千]{2,}"
_MEASURE = "个家户人名位项条座所次场件台套辆款种批元"  # measure words a count ends with
_ASKS_MONEY = re.compile(r"多少钱|价格|票价|费用|花费|\bhow much\b|\bprice\b|\bcost\b", re.I)
# a Chinese count question names its measure word (多少家企业, 几条线): the answer's
# figure must use the same one
_ASKS_COUNT = re.compile(
    rf"多少(?P<unit>[{_MEASURE}])?|(?<!哪)几(?P<unit2>[{_MEASURE}])|\bhow many\b", re.I
)
_HAS_MONEY = re.compile(rf"(?:{_NUM})\s*(?:多|余)?\s*(?:元|美元|块钱|万元|亿元)")


def _quantity(unit: str | None) -> re.Pattern:
    """A number with a unit or measure word (3000多家, 3.9万户, 0.12%); not the 一 of
    一方面, not a year."""
    units = re.escape(unit) if unit else rf"人次|[{_MEASURE}%％‰]|平方|公里|千米|米|吨"
    return re.compile(rf"(?:{_NUM})\s*(?:万|亿)?\s*(?:多|余)?\s*(?:{units})")


@dataclass(frozen=True)
class RetrieveConfig:
    candidates: int = 40  # per search side, before fusion
    # Measured on eval/gold.jsonl (hit@1 / MRR): rrf with keyword 0.5: 0.893 / 0.929;
    # scaled scores with keyword 0.3: 0.893 / 0.938, 0.5: 0.920 / 0.951, 0.7: 0.933 / 0.958.
    fusion: str = "score"  # "score" (scaled scores) or "rrf" (reciprocal rank)
    rrf_k: int = 60  # reciprocal-rank-fusion damping
    dense_weight: float = 1.0
    keyword_weight: float = 0.7
    # A passage holding the interviewer's question (qa.chunk) is the same for every expert
    # who answered it, so it cannot tell their answers apart: it counts for less than a
    # passage in the expert's own words. Measured on eval/gold.jsonl (hit@1 / hit@5 / MRR):
    # 1.0: 0.933 / 0.987 / 0.958; 0.9: 0.933 / 1.000 / 0.959; 0.8: 0.947 / 1.000 / 0.970;
    # 0.7: 0.920 / 1.000 / 0.957; 0.5: 0.920 / 1.000 / 0.954; 0: 0.920 / 0.987 / 0.950.
    question_passage_weight: float = 0.8
    # Abstention, calibrated on eval/gold.jsonl (eval/run_eval.py prints the margins). The
    # best cosine of an e5 model is higher for a Chinese question against Chinese text
    # than for an English one, so the bar moves with the question's share of CJK.
    min_dense_zh: float = 0.862
    min_dense_en: float = 0.770
    # A Chinese question must find one of its distinctive words — one in fewer than this
    # share of passages — in a top passage, or its speaker, title or section. Measured on
    # eval/gold.jsonl: any share from 0.2 to 0.3 keeps every answerable question and turns
    # away 明天重庆会下雨吗？ (重庆 is everywhere; 明天 and 下雨 nowhere); 0.1 loses one
    # answerable paraphrase, 0.5 lets the weather question through on 重庆.
    distinctive_share: float = 0.25
    # ...unless its best cosine clears the bar by this much on its own: a paraphrase can
    # share no distinctive word with its answer (answerable questions without one: +0.098
    # over the bar; the weather question: +0.008).
    clear_margin: float = 0.05


@dataclass(frozen=True)
class Hit:
    """One turn, with the passage of it that matched best and how it was found."""

    turn: Turn
    passage: Passage
    score: float  # fused score, higher is better
    dense: float  # best cosine among the turn's passages (0 when not searched)
    keyword: float  # best raw BM25 among the turn's passages
    passage_scores: dict[int, float] = field(default_factory=dict)  # passage id -> fused


@dataclass(frozen=True)
class Retrieval:
    question: str
    hits: tuple[Hit, ...]
    speakers: tuple[str, ...]  # speakers the search was narrowed to
    supported: bool  # is there real evidence for an answer?
    best_dense: float
    keyword_cover: float
    timings_ms: dict
    # when it abstained without them: the question's distinctive words that no passage
    # uses (明天, 下雨), so the answer can say what the interviews never mention
    unfound: tuple[str, ...] = ()


def _pinyin_names(names: list[str]) -> dict[str, str]:
    """'lu yangchun' / 'luyangchun' / 'yangchun lu' → 卢阳春, for English questions."""
    try:
        from pypinyin import lazy_pinyin
    except ImportError:  # pinyin matching is a nicety, not a requirement
        return {}
    out: dict[str, str] = {}
    for name in names:
        syl = [s.lower() for s in lazy_pinyin(name)]
        if not syl or not all(s.isascii() and s.isalpha() for s in syl):
            continue
        family, given = syl[0], "".join(syl[1:])
        for form in (f"{family} {given}", f"{given} {family}", family + given):
            out[form] = name
    return out


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
        self.pinyin = _pinyin_names(self.speaker_names)
        self._paths = [" › ".join((t.article, *t.section)) for t in self.turn_of]
        self._question_rows = {
            p.id for p, t in zip(store.passages, self.turn_of, strict=True) if p.text == t.asked
        }
        self._speaker_rows = {
            s: np.array([t.speaker == s for t in self.turn_of]) for s in self.speaker_names
        }

    # -- filters ------------------------------------------------------------------------

    def speakers_in(self, question: str) -> list[str]:
        """Speakers the question names, in Chinese or pinyin."""
        found = [s for s in self.speaker_names if s in question]
        low = re.sub(r"[^a-z ]", " ", question.lower())
        low = " ".join(low.split())
        for form, name in self.pinyin.items():
            if re.search(rf"\b{re.escape(form)}\b", low) and name not in found:
                found.append(name)
        return found

    def with_chinese_names(self, question: str) -> str:
        """'What did Cai Zhibing say…' → 'What did 蔡之兵 say…': the passages spell the name
        in characters, and the sentence model matches characters to characters far better."""
        for form, name in sorted(self.pinyin.items(), key=lambda kv: -len(kv[0])):
            pattern = r"\b" + r"[\s-]*".join(re.escape(p) for p in form.split()) + r"\b"
            question = re.sub(pattern, name, question, flags=re.I)
        return question

    @staticmethod
    def _without_names(text: str, named: list[str]) -> str:
        """The question's topic: once the search is narrowed to the speakers it names, the
        names carry no more information."""
        stripped = text
        for name in named:
            stripped = stripped.replace(name, " ")
        stripped = " ".join(stripped.split())
        return stripped if len(re.sub(r"\W", "", stripped)) >= 2 else text

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

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        question: str,
        k: int = 5,
        speaker: str | None = None,
        section: str | None = None,
        mode: str = "hybrid",
    ) -> Retrieval:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        cfg = self.config
        timings: dict[str, float] = {}
        named = [speaker] if speaker else self.speakers_in(question)
        mask = self._mask(named, section)
        if mask is not None and not mask.any():
            mask = self._mask([], section) if named and not speaker else mask

        dense: list[tuple[int, float]] = []
        topic: list[tuple[int, float]] = []  # dense, with the named speakers left out
        keyword: list[tuple[int, float]] = []
        t0 = time.perf_counter()
        if mode in ("hybrid", "dense"):
            full = self.with_chinese_names(question)
            qvec = self.embedder.embed_query(full)
            without_names = self._without_names(full, named)
            tvec = self.embedder.embed_query(without_names) if without_names != full else None
            timings["embed"] = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
            dense = self.store.dense_search(qvec, cfg.candidates, mask)
            if tvec is not None:
                topic = self.store.dense_search(tvec, cfg.candidates, mask)
            timings["dense"] = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        q_tokens = set(tokenize(question))
        if mode in ("hybrid", "keyword"):
            keyword = self.store.keyword_search(question, cfg.candidates, mask)
        timings["keyword"] = (time.perf_counter() - t2) * 1000

        # with a speaker named, the whole question and its topic alone each cast half the
        # dense vote: the name alone would favour passages that hold little but the name
        views = (
            [(cfg.dense_weight / 2, dense), (cfg.dense_weight / 2, topic)]
            if topic
            else [(cfg.dense_weight, dense)]
        )
        fused = _fuse([*views, (cfg.keyword_weight, keyword)], cfg)
        for row in self._question_rows & fused.keys():
            fused[row] *= cfg.question_passage_weight
        dense_of = dict(dense)
        keyword_of = dict(keyword)

        by_turn: dict[str, list[int]] = {}
        for row in sorted(fused, key=fused.get, reverse=True):
            by_turn.setdefault(self.store.passages[row].turn_id, []).append(row)
        hits = []
        for turn_id, rows in by_turn.items():
            best = rows[0]
            hits.append(
                Hit(
                    turn=self.store.turns[turn_id],
                    passage=self.store.passages[best],
                    score=fused[best],
                    dense=max((dense_of.get(r, 0.0) for r in rows), default=0.0),
                    keyword=max((keyword_of.get(r, 0.0) for r in rows), default=0.0),
                    passage_scores={self.store.passages[r].id: fused[r] for r in rows},
                )
            )
        hits.sort(key=lambda h: h.score, reverse=True)
        hits = hits[:k]

        best_dense = max((s for _, s in dense), default=0.0)
        cover = self._keyword_cover(q_tokens, hits)
        missing = {} if mode == "keyword" else self._missing_distinctive(question, hits)
        supported = self._supported(mode, question, best_dense, cover, hits, not missing)
        unfound = () if supported else self._never_used(missing)
        return Retrieval(
            question=question,
            hits=tuple(hits),
            speakers=tuple(named),
            supported=supported,
            best_dense=best_dense,
            keyword_cover=cover,
            timings_ms=timings,
            unfound=unfound,
        )

    def _keyword_cover(self, q_tokens: set[str], hits: list[Hit]) -> float:
        """Share of the question's content words that the best passage contains."""
        if not q_tokens or not hits:
            return 0.0
        best = 0.0
        for h in hits[:3]:
            text = h.turn.text.lower()
            best = max(best, sum(1 for t in q_tokens if t in text) / len(q_tokens))
        return best

    def _supported(
        self,
        mode: str,
        question: str,
        best_dense: float,
        cover: float,
        hits: list[Hit],
        anchored: bool,
    ) -> bool:
        """Is there real evidence? A keyword hit alone is not (Chatchat's "你好" problem);
        a dense score just over the bar is not either when none of the question's
        distinctive words appears in what was found."""
        if not hits or not self.answer_type_met(question, hits):
            return False
        if mode == "keyword":
            return cover >= 0.5
        bar = self.min_dense(question)
        if best_dense < bar:
            return False
        return best_dense >= bar + self.config.clear_margin or anchored

    def _matched_texts(self, hits: list[Hit]) -> list[str]:
        """The passages that matched in the top three turns (not the whole answers)."""
        return [self.store.passages[pid].text for h in hits[:3] for pid in h.passage_scores]

    def answer_type_met(self, question: str, hits: list[Hit]) -> bool:
        """A money or count question needs a figure of that kind in a matched passage."""
        if _ASKS_MONEY.search(question):
            return any(_HAS_MONEY.search(t) for t in self._matched_texts(hits))
        asks = _ASKS_COUNT.search(question)
        if asks:
            quantity = _quantity(asks.group("unit") or asks.group("unit2"))
            return any(quantity.search(t) for t in self._matched_texts(hits))
        return True

    def anchored(self, question: str, hits: list[Hit]) -> bool:
        """Does a top turn contain one of the question's distinctive words?

        A small embedding model scores any question about 重庆 close to a page about
        重庆, so the dense score alone is not evidence: one of the question's words that
        few passages use must appear in a top turn (its text, speaker, title or section).
        An English question's words are looked for through their Chinese senses
        (qa.lexicon). A question with no such word (智慧城市是什么？) passes.
        """
        return not self._missing_distinctive(question, hits)

    def _missing_distinctive(self, question: str, hits: list[Hit]) -> dict[str, tuple[str, ...]]:
        """The question's distinctive words when no top turn contains any of them; empty
        when one is found, or when the question has none."""
        limit = self.config.distinctive_share * len(self.store)
        distinctive = {
            label: alternatives
            for label, alternatives in self._question_words(question)
            if all(self._passages_with(word) < limit for word in alternatives)
        }
        for h in hits[:3]:
            t = h.turn
            text = " ".join((t.speaker or "", t.speaker_title or "", *t.section, t.text)).lower()
            if any(word in text for words in distinctive.values() for word in words):
                return {}
        return distinctive

    def _never_used(self, words: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        """Of the question's words, those no passage uses at all — what the answer can say
        the interviews never mention (明天, 下雨): a one-character word (做) only when no
        longer one is missing, and 红烧肉 rather than also its parts 红烧, 烧肉."""
        labels = [
            w
            for w, alternatives in words.items()
            if not any(self._passages_with(a) for a in alternatives)
        ]
        longer = [w for w in labels if len(w) > 1]
        labels = longer or labels
        return tuple(w for w in labels if not any(w != o and w in o for o in labels))

    def _question_words(self, question: str) -> list[tuple[str, tuple[str, ...]]]:
        """The question's content words, each with the Chinese words that would show it is
        there: itself for a Chinese word; its dictionary senses for an English one (an
        English word with no Chinese sense in the dictionary is left out)."""
        if _cjk_share(question) >= 0.5:
            return [(word, (word,)) for word in dict.fromkeys(tokenize(question))]
        question = self.with_chinese_names(question)
        named = [(name, (name,)) for name in self.speakers_in(question)]
        return named + list(chinese_words(question, ENGLISH_STOP_WORDS).items())

    def _passages_with(self, word: str) -> int:
        """How many passages hold a word; a dictionary word that the tokenizer splits
        (可支配收入) is taken to be as common as its rarest part."""
        return self.store.passages_with(word) or min(
            (self.store.passages_with(t) for t in tokenize(word)), default=0
        )

    def min_dense(self, question: str) -> float:
        cfg = self.config
        cjk = _cjk_share(question)
        return cfg.min_dense_en + (cfg.min_dense_zh - cfg.min_dense_en) * min(1.0, cjk * 2)


def _cjk_share(text: str) -> float:
    """Share of the letters that are Chinese characters (0 for English, 1 for Chinese)."""
    letters = [c for c in text if c.isalpha()]
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / (len(letters) or 1)
