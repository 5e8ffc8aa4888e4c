"""The question, analysed once: normalised text, tokens, language, named speakers, words.

Every later stage (retrieval, evidence, answer) reads this one record instead of
re-tokenising and re-guessing the language. Normalisation: NFKC (full width → half
width), traditional → simplified Chinese (OpenCC), speaker names written in pinyin
("Lu Yangchun") or with a homophone typo (卢杨春) → the name as the page prints it
(卢阳春). The user's own text stays in ``original``: answers and citations show it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .lexicon import (
    COLLOQUIAL,
    NUMBERS,
    PinyinIndex,
    chinese_words,
    compound_senses,
    corrected,
    english_words,
)
from .store import ENGLISH_STOP_WORDS, STOP_WORDS, split_words

# The one definition of "English": fewer than half of the letters are Chinese characters.
ENGLISH_BELOW_CJK_SHARE = 0.5


def cjk_share(text: str) -> float:
    """Share of the letters that are Chinese characters (0 for English, 1 for Chinese)."""
    letters = [c for c in text if c.isalpha()]
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / (len(letters) or 1)


def is_english(text: str) -> bool:
    """Answer in English? Only when the text has letters and most are not Chinese."""
    return any(c.isalpha() for c in text) and cjk_share(text) < ENGLISH_BELOW_CJK_SHARE


@functools.cache
def _converter():
    try:
        import opencc
    except ImportError:  # folding is a nicety: without it traditional text is searched as is
        return None
    return opencc.OpenCC("t2s")


def normalise(text: str) -> str:
    """NFKC (Ｑ１２３ → Q123, full-width punctuation → ASCII) and traditional → simplified.

    NFKC turns the full-width ？ into ?, which the sentence model treats alike."""
    text = unicodedata.normalize("NFKC", text)
    conv = _converter()
    return conv.convert(text) if conv is not None and re.search(r"[\u4e00-\u9fff]", text) else text


@functools.cache
def _syllable(ch: str) -> str:
    from pypinyin import lazy_pinyin

    return lazy_pinyin(ch)[0].lower()


def _syllables(text: str) -> tuple[str, ...]:
    return tuple(_syllable(c) for c in text)


@dataclass(frozen=True)
class Word:
    """One content word of the question and how to tell it is in a text."""

    label: str  # as in the question (a Chinese token, or an English word or phrase)
    forms: tuple[str, ...]  # Chinese words that show it is there (itself for Chinese)
    passages: int  # how many passages use it (the rarest form); 0 = the corpus never does
    share: float  # passages / all passages: lower is rarer
    sense: bool = False  # an English word found only through its dictionary senses

    @property
    def rare(self) -> bool:
        return 0 < self.share < RARE_SHARE


RARE_SHARE = 0.05  # a word in under 5 % of passages singles a passage out
JOIN_RARE = 2  # passages, at most, of the word on the page that a joined pair would hide
MAX_COMPOUNDS = 3  # an English word found only inside compounds: more of them say nothing
SENSES_PER_WORD = 2  # an English word's Chinese senses that stand for it in a search


@dataclass(frozen=True)
class Question:
    """Everything later stages need to know about the question, computed once."""

    original: str  # as asked (control characters removed): shown back to the user
    text: str  # normalised, names in characters: what is searched
    topic: str  # ``text`` without the named speakers (== text when nothing else is left)
    tokens: tuple[str, ...]  # tokenize(text)
    cjk_share: float
    english: bool
    speakers: tuple[str, ...]  # speakers the question names, as the page spells them
    words: tuple[Word, ...]  # content words (speaker names left out), question order
    many_speakers: bool  # 各位专家 / 三位专家 / all experts: one answer block per expert
    about_person: bool = False  # asks who someone is or where they work: a bio answers it

    @property
    def senses(self) -> tuple[str, ...]:
        """The Chinese words the corpus uses for an English question's words, question
        order, most used sense first: what the Chinese passages would say."""
        if not self.english:  # everyday words (饭碗 → 就业)
            return tuple(dict.fromkeys(f for w in self.words if w.sense and w.passages
                                       for f in w.forms[:SENSES_PER_WORD]))
        out = [f for w in self.words if w.passages for f in w.forms[:SENSES_PER_WORD]]
        return tuple(dict.fromkeys(f for f in out if re.search(r"[\u4e00-\u9fff]", f)))

    @property
    def has_content(self) -> bool:
        """Any word the corpus could answer about (names count)?"""
        return bool(self.words or self.speakers)


_MANY = re.compile(
    r"各位|几位|[两三四五六七八九十多]位专家|专家们|诸位|大家|每位|所有专家|"
    r"\b(?:all|each|every|several|the)\s+(?:the\s+)?(?:experts|speakers|interviewees)\b|"
    r"\bexperts\b",
    re.I | re.A,  # \b at an ASCII word's edge: "all experts的建议" counts
)
_ABOUT_PERSON = re.compile(
    r"\bwork(?:s|ed)?\b|\bwork unit\b|\btitle\b|\bposition\b|\baffiliat|\bwho is\b|"
    r"\bprofession|\bjob\b|\bemploy(?:er|ed)\b|单位|职称|职务|职位|任职|任教|工作|身份|是谁|"
    r"哪个(?:学校|机构|部门)",
    re.I | re.A,  # \b at an ASCII word's edge: "卢阳春的job title" counts
)
# How a question asks, not what it asks about: 怎么看/如何评价/有什么建议/一共/叫什么名字 frame
# any topic, so they are not content words (a passage holding 评价 does not answer
# 孙金华如何评价春节？, and 建议 missing from a page says nothing about its topics).
ASKING_WORDS = frozenset(
    """
    看 怎么看 如何看 评价 看待 认为 觉得 建议 意见 想法 看法 观点 态度 见解 说 讲 谈 谈到
    提到 表示 指出 主张 一共 总共 共有 名字 叫 叫做 意思 是指 指的是 含义 介绍 啥 咋
    办法 法子 招儿 高招
    """.split()
)
_NAME_SEP = r"[\s\-·.]*"
# the pinyin of the corpus's words is read from its first characters only (~0.3 s per
# 10,000): a name the page uses is nearly always there, and a large corpus stays cheap
PINYIN_TEXT_LIMIT = 400_000
_HONORIFIC_EN = r"(?:professor|prof\.?|mr\.?|mrs\.?|ms\.?|dr\.?|director|dean)"
_HONORIFIC_ZH = "教授|副教授|老师|先生|女士|研究员|院长|副院长|所长|副所长|博士"


def _content_words(text: str, cut: list[str], named: list[str]) -> list[str]:
    """The question's content words in order, from jieba's plain cut: the speakers' names
    left out, stop words and punctuation dropped, and runs of single characters that
    jieba could not place joined again (基金定投 → 基金, 定投 rather than 定, 投). A lone
    single character (看, 税) is too vague to count unless nothing else is left."""
    low = text.lower()
    taken = [False] * len(low)
    for name in named:
        for m in re.finditer(re.escape(name.lower()), low):
            taken[m.start() : m.end()] = [True] * len(name)
    out: list[str] = []
    run = ""
    pos = 0
    for w in cut:
        start, pos = pos, pos + len(w)
        keep = (
            not any(taken[start:pos])
            and w not in STOP_WORDS
            and w not in ASKING_WORDS
            and any(c.isalnum() for c in w)
            and not _MANY.fullmatch(w)
        )
        if keep and len(w) == 1 and "\u4e00" <= w <= "\u9fff":
            run += w
            continue
        if run:
            out.append(run)
            run = ""
        if keep:
            out.append(w)
    if run:
        out.append(run)
    longer = [w for w in out if len(w) > 1 or not w.isascii() and not ("\u4e00" <= w <= "\u9fff")]
    return [w for w in out if len(w) > 1 or w.isdigit()] if longer else out


@functools.cache
def _colloquial_pattern() -> re.Pattern:
    return re.compile("|".join(map(re.escape, sorted(COLLOQUIAL, key=len, reverse=True))))


class Analyser:
    """Turns question text into a ``Question``; one per index (it knows the names and
    how often each word is used)."""

    def __init__(
        self,
        speaker_names: Iterable[str],
        passages_with: Callable[[str], int],
        texts: Iterable[str],
    ):
        self.names = sorted(set(speaker_names), key=len, reverse=True)
        self._passages_with = passages_with
        texts = list(texts)
        self._text = "\n".join(texts).lower()  # to look up words the tokenizer splits
        self._n = max(1, len(texts))
        self._name_syllables = {
            n: _syllables(n) for n in self.names if re.fullmatch(r"[\u4e00-\u9fff]{2,4}", n)
        }
        self._pinyin_patterns = self._pinyin(self._name_syllables)
        self._surname_patterns = self._by_surname(self._name_syllables)
        self._pinyin_index: PinyinIndex | None = None  # built on the first pinyin lookup

    def pinyin_index(self) -> PinyinIndex:
        """Read the corpus's words as pinyin once (~1 s per 100,000 characters); the app
        does it at start-up, otherwise the first question with a pinyin word waits."""
        if self._pinyin_index is None:  # two first questions may both build it: harmless
            self._pinyin_index = PinyinIndex(self._text[:PINYIN_TEXT_LIMIT])
        return self._pinyin_index

    def pinyin_words(self, word: str) -> tuple[str, ...]:
        """The corpus's Chinese words written ``word`` in pinyin (Yukuaiban → 渝快办)."""
        return self.pinyin_index().lookup(word)

    @staticmethod
    def _pinyin(names: dict[str, tuple[str, ...]]) -> list[tuple[re.Pattern, str]]:
        """'Lu Yangchun', 'Yangchun Lu', 'luyangchun', 'Lu Yang-chun' → 卢阳春."""
        out = []
        for name, syl in names.items():
            if not all(s.isascii() and s.isalpha() for s in syl):
                continue
            family, given = syl[0], syl[1:]
            g = _NAME_SEP.join(given)
            pattern = rf"\b(?:{family}{_NAME_SEP}{g}|{g}{_NAME_SEP}{family})\b"
            # re.A: \b is an ASCII word edge, so "Lu Yangchun的观点" still matches
            out.append((re.compile(pattern, re.I | re.A), name))
        out.sort(key=lambda p: -len(p[0].pattern))
        return out

    @staticmethod
    def _by_surname(names: dict[str, tuple[str, ...]]) -> list[tuple[re.Pattern, str]]:
        """'Professor Zhu', 'Mr. Sun', 孙先生, 蔡教授 → the one speaker with that surname."""
        families: dict[str, list[str]] = {}
        for name, syl in names.items():
            families.setdefault(syl[0], []).append(name)
        out = []
        for family, members in families.items():
            if len(members) != 1 or not family.isascii():
                continue
            name = members[0]
            out.append((re.compile(rf"\b{_HONORIFIC_EN}\s*{family}\b", re.I | re.A), name))
            # a bare surname, capitalised after another word: "does Sun say", "in Cai's view"
            out.append((re.compile(rf"(?<=\w\s){family.capitalize()}\b", re.A), name))
            out.append((re.compile(rf"{re.escape(name[0])}(?:{_HONORIFIC_ZH})"), name))
        return out

    def speakers_in(self, text: str) -> tuple[str, list[str]]:
        """(text with every way of naming a speaker replaced by the name, names found)."""
        found: list[str] = []
        for pattern, name in self._pinyin_patterns + self._surname_patterns:
            if pattern.search(text):
                text = pattern.sub(name, text)
        for name in self.names:
            if name in text and name not in found:
                found.append(name)
        # homophone typos: 卢杨春 sounds like 卢阳春 (at most one character differs)
        for name, syl in self._name_syllables.items():
            if name in found:
                continue
            n = len(name)
            for i in range(len(text) - n + 1):
                if text[i] != name[0] and text[i + 1] != name[1]:
                    continue  # two characters already differ
                window = text[i : i + n]
                if not re.fullmatch(r"[\u4e00-\u9fff]+", window):
                    continue
                same = sum(a == b for a, b in zip(window, name, strict=True))
                if same >= n - 1 and _syllables(window) == syl:
                    text = text.replace(window, name)
                    found.append(name)
                    break
        order = {name: text.find(name) for name in found}
        return text, sorted(found, key=order.get)

    def _words(self, text: str, cut: list[str], english: bool, named: list[str]) -> list[Word]:
        content = list(dict.fromkeys(_content_words(text, cut, named)))
        sensed: set[str] = set()  # labels that stand for dictionary senses
        if english:
            pairs, read = self._english_split(text, named)
            sensed = {label for label, _ in pairs}
            pairs += read
            # a mixed question (Tencent、Alibaba这些公司在重庆设立了什么？): its Chinese words too
            pairs += [(w, (w,)) for w in content if re.search(r"[\u4e00-\u9fff]", w)]
        else:
            # a Chinese question's English words the corpus does not use (Big data智能化企业,
            # yukuaiban是什么) stand for their Chinese senses, in the question's order
            foreign = [w for w in content if w.isascii() and w.isalpha() and not self._count(w)]
            found, read = self._english_split(" ".join(foreign), named) if foreign else ([], [])
            sensed = {label for label, _ in found}
            senses = found + read
            phrase_of = {part: pair for pair in senses for part in pair[0].split()}
            pairs = []
            for w in content:
                pair = phrase_of.get(w, (w, (w,))) if w in foreign else (w, (w,))
                if pair not in pairs:
                    pairs.append(pair)
            pairs = self._colloquial(text, pairs, sensed)
        words = []
        for label, forms in pairs:
            counts = {f: self._count(f) for f in forms}
            used = sorted((f for f in forms if counts[f]), key=lambda f: -counts[f])
            count = max(counts.values())
            sense = label in sensed and label not in forms
            words.append(Word(label, tuple(used or forms), count, count / self._n, sense))
        # the parts of a word the corpus never uses (个人, 所得 of 个人所得税) are not
        # evidence: the whole word is what was asked about
        never = [w.label for w in words if not w.passages]
        words = [w for w in words if not any(w.label != n and w.label in n for n in never)]
        return words if english else self._joined(text, words)

    def _joined(self, text: str, words: list[Word]) -> list[Word]:
        """Two Chinese words written together, one of them never on the page (自动 + 驾驶,
        高考 + 改革), are one word the page never uses: 自动 alone on the page (自动调整红绿灯)
        is no evidence about 自动驾驶."""
        low = text.lower()
        out: list[Word] = []
        joined: set[str] = set()
        for w in words:
            prev = out[-1] if out else None
            if prev is not None and prev.label in joined:
                prev = None  # two words at most: 建设几个城市智能中枢 is no word
            label = prev.label + w.label if prev is not None else ""
            if (
                prev is not None
                and bool(prev.passages) != bool(w.passages)  # one on the page, one not
                and 0 < prev.passages + w.passages <= JOIN_RARE
                and len(prev.label) > 1 and len(w.label) > 1
                and not prev.sense and not w.sense
                and re.fullmatch(r"[\u4e00-\u9fff]+", label)
                and label in low  # written together in the question
                and not self._count(label)
            ):
                out[-1] = Word(label, (label,), 0, 0.0, False)
                joined.add(label)
                continue
            out.append(w)
        return out

    def _colloquial(
        self, text: str, pairs: list[tuple[str, tuple[str, ...]]], sensed: set[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Everyday words the page never uses (饭碗, 跑好几趟) stand for the written words it
        does use (就业, 跑腿), in place of the question's words they overlap."""
        found = _colloquial_pattern().findall(text)  # longest first: 老人家 before 老人
        for key in sorted(set(found), key=len, reverse=True):
            if any(key in label for label in sensed) or self._count(key):
                continue
            written = tuple(f for f in COLLOQUIAL[key] if self._count(f))
            if not written:
                continue
            if any(key in label and key != label for label, _ in pairs):
                continue  # 最低工资 asks more than 工资 would say
            at = [i for i, (label, _) in enumerate(pairs) if label in key]
            place = at[0] if at else len(pairs)
            pairs = [p for i, p in enumerate(pairs) if i not in at]
            pairs.insert(min(place, len(pairs)), (key, written))
            sensed.add(key)
        return pairs

    def _english_pairs(self, text: str, named: list[str]) -> list[tuple[str, tuple[str, ...]]]:
        """An English text's words and phrases with the Chinese words for them: the
        dictionary's senses, then what no dictionary knows read as pinyin."""
        senses, read = self._english_split(text, named)
        return senses + read

    def _english_split(
        self, text: str, named: list[str]
    ) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, tuple[str, ...]]]]:
        """``_english_pairs`` as (dictionary senses, pinyin readings)."""
        text = self._spelled(text)
        pairs = [
            (label, self._usable(label, forms))
            for label, forms in chinese_words(text, ENGLISH_STOP_WORDS).items()
            if not any(label in name or name in label for name in named)
        ]
        pairs = [(label, forms) for label, forms in pairs if forms]
        # a word none of whose senses the page uses may be a name in pinyin (Sichuan: the
        # dictionary's 巴蜀, the page's 四川)
        known = {w for label, forms in pairs if any(self._count(f) for f in forms)
                 for w in label.split()}
        read = self._pinyin_pairs(english_words(text), known, named)
        # a dictionary word inside a name in pinyin (the ban of Yu Kuai Ban) is the name's
        covered = {w for label, _ in read for w in label.split()}
        return [p for p in pairs if not set(p[0].split()) <= covered], read

    def _spelled(self, text: str) -> str:
        """English words misspelt by one letter, respelt (phsyical → physical), unless the
        corpus reads them as pinyin (a name is not a typo)."""
        for word in set(english_words(text)):
            right = corrected(word)
            if right and not self.pinyin_words(word):
                text = re.sub(rf"(?i)\b{word}\b", right, text)
        return text

    def _usable(self, label: str, forms: tuple[str, ...]) -> tuple[str, ...]:
        """The senses of an English word worth looking for: words only (a one-character
        sense, 前 or 头 for "top", matches nearly everything). A word none of whose senses
        the page uses is looked for in the compounds whose sense ends with it, if at most
        a few of them are on the page (chain → 产业链 "industry value chain")."""
        kept = tuple(f for f in forms if len(f) > 1 or label in NUMBERS)
        if " " in label or any(self._count(f) for f in kept):
            return kept
        # tokens only: a common word has hundreds of compounds, too many to scan the text for
        used = tuple(f for f in compound_senses(label) if self._passages_with(f))
        return kept + used if len(used) <= MAX_COMPOUNDS else kept

    def _pinyin_pairs(
        self, words: list[str], known: set[str], named: list[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Runs of words starting with one no dictionary knows, read as the corpus's words
        in pinyin: Yukuaiban → 渝快办, Liang Jiang → 两江, Yu Kuai Ban (up to four words)."""

        def word(w: str) -> bool:
            return w.isalpha() and w not in ENGLISH_STOP_WORDS and not self._named(w, named)

        out = []
        i = 0
        while i < len(words):
            step = 1
            n = 0
            if words[i] not in known:
                while n < 4 and i + n < len(words) and word(words[i + n]):
                    n += 1
            for size in range(n, 0, -1):
                forms = self.pinyin_words("".join(words[i : i + size]))
                if forms:
                    out.append((" ".join(words[i : i + size]), forms))
                    step = size
                    break
            i += step
        return list(dict.fromkeys(out))

    def _named(self, word: str, named: list[str]) -> bool:
        """Is this English word part of a speaker's name the question used (Zhibing)?"""
        return any(word in "".join(self._name_syllables.get(n, ())) for n in named)

    def _count(self, word: str) -> int:
        """Passages holding a word. A word the tokenizer does not keep whole (可支配收入,
        智慧城市建设) but that the text holds verbatim counts as rare (1)."""
        return self._passages_with(word) or int(word.lower() in self._text)

    def __call__(self, original: str) -> Question:
        text = normalise(original)
        text, named = self.speakers_in(text)
        share = cjk_share(text)
        english = any(c.isalpha() for c in text) and share < ENGLISH_BELOW_CJK_SHARE
        cut, tokens = split_words(text)
        topic = text
        for name in named:
            topic = topic.replace(name, " ")
        topic = " ".join(topic.split())
        if len(re.sub(r"\W", "", topic)) < 2:
            topic = text
        return Question(
            original=original,
            text=text,
            topic=topic,
            tokens=tuple(tokens),
            cjk_share=share,
            english=english,
            speakers=tuple(named),
            words=tuple(self._words(text, cut, english, named)),
            many_speakers=bool(_MANY.search(text)) and len(named) != 1,
            about_person=bool(_ABOUT_PERSON.search(text)),
        )
