"""Is there an answer? One decision from evidence signals, weighed by a fitted model.

The signals are computed once per question from what retrieval found: how well the best
passage and the best single sentence match (cosine), the rarity-weighted share of the
question's words in the cited turn, a rare word or phrase of the question found verbatim,
words of the question the corpus never uses (房地产税, 毕业: strong evidence against), and
whether a count or amount question finds such a figure in the sentence that matched.
A logistic regression, fitted on questions with known answers plus generated
unanswerable ones, turns them into a probability; two cut points make three outcomes:
answer, answer with a "low confidence" note, refuse with the closest topics.

    python -m qa.evidence fit [--gold eval/gold.jsonl] [--split dev]   # refit the weights

The weights live in qa/evidence_model.json with what they were fitted on.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .question import Question
from .retrieve import Hit, Retrieval, idf, is_bio, word_share

MODEL_FILE = Path(__file__).with_name("evidence_model.json")
HIGH, LOW, REFUSE = "high", "low", "refuse"

# -- answer types: a count or amount must be stated in the sentence that matched ---------

_CN_DIGIT = "零〇一二两三四五六七八九十百千万亿"
# an approximate figure is a figure too: 上百项, 数十个, 近千家, 几十万户, 逾万人
_ABOUT = r"(?:上|数|几|近|逾|约|超过?)[十百千万亿]{1,2}"
_NUM = rf"[0-9][0-9.,]*|{_ABOUT}|[{_CN_DIGIT}]{{2,}}|百分之[{_CN_DIGIT}]+"
_MEASURE = "个家户人名位项条座所次场件台套辆款种批元届"  # measure words a count ends with
_ASKS_MONEY = re.compile(
    r"多少钱|价格|票价|费用|花费|金额|\bhow much\b|\bprice\b|\bcost\b", re.I
)
# a Chinese count question names its measure word (多少家企业, 几条线): the figure must
# use the same one, and the thing counted (企业, 数据中心) must be named near the figure;
# 多少 alone (提高到多少？) asks for any figure
_ASKS_COUNT = re.compile(
    rf"多少(?P<unit>[{_MEASURE}])?(?P<noun>[0-9A-Za-z\u4e00-\u9fff]{{2,}})?|"
    rf"(?<!哪)几(?P<unit2>[{_MEASURE}])(?P<noun2>[0-9A-Za-z\u4e00-\u9fff]{{2,}})?|"
    r"\bhow many\b|\bwhat (?:percentage|share|proportion)\b",
    re.I,
)
_HAS_MONEY = re.compile(rf"(?:{_NUM})\s*(?:万|亿)?\s*(?:多|余)?\s*(?:元|美元|块钱)")
_PERCENT = re.compile(rf"百分之[{_CN_DIGIT}]+|[0-9.]+\s*[%‰]")
_ASKS_ID = re.compile(r"(?:编号|号码|电话|代码|代号|邮编)(?:是|为)?多少")
NOUN_NEAR = 12  # characters between the figure and the thing counted, either side


@functools.cache
def _quantity(unit: str | None) -> re.Pattern:
    """A number with a unit or measure word (3000多家, 3.9万户, 0.12%, 百分之八十五);
    not the 一 of 一方面, not a year."""
    units = re.escape(unit) if unit else rf"人次|[{_MEASURE}%‰]|平方|公里|千米|米|吨|倍|{_SPANS}"
    return re.compile(
        rf"{_PERCENT.pattern}|(?:{_NUM})\s*(?:万|亿)?\s*(?:多|余)?\s*(?:{units})|"
        rf"[{_CN_ONE}](?:{_SPANS}|{_COUNTED})"
    )


# a span of time or a share: 三分钟, 两个月, 三成. One Chinese numeral counts only before
# these (一 never: 一方面, 一个都不能少 are words, not figures)
_SPANS = "分钟|小时|天|周|个月|成|岁"
# ... and before a measure word that counts kinds: 四个自信, 两方面, 五类应用, 三项任务
_COUNTED = "个|项|类|种|方面|大"
_CN_ONE = "两三四五六七八九十"


_ANY_FIGURE = re.compile(rf"{_quantity(None).pattern}|{_HAS_MONEY.pattern}")


@dataclass(frozen=True)
class Figure:
    """What a count, amount, date, place or name question asks for: the kind of answer
    the sentence that matched must state, near the thing asked about."""

    pattern: re.Pattern  # the figure (a date, a place, a name)
    nouns: tuple[str, ...]  # the thing counted, any of these forms (empty when not named)
    kind: str = "figure"  # "figure" | "date" | "place" | "name"
    near: int = NOUN_NEAR  # characters either side of the match the noun must be within

    def in_text(self, text: str) -> bool:
        for m in self.pattern.finditer(text):
            near = text[max(0, m.start() - self.near) : m.end() + self.near].lower()
            if not self.nouns or any(n in near for n in self.nouns):
                return True
        return False


# -- answer types: a date, a place, a person's name ----------------------------------------
# 什么时候 / when asks for a date: a year, a month, a day, 今年 (近年来, 当前, 未来 are not
# dates); 哪个城市 / where … held asks for a place; 谁 / 哪位 / who asks for a person, and the
# speaker of a turn that matched is one (来自…的专家是哪位？ is answered by the bio line).
# 在哪里 alone is not a place question (短板在哪里？ asks for shortcomings), nor 几位专家 a
# name or count question (one block per expert answers it).
_ASKS_DATE = re.compile(
    r"什么时候|什么时间|哪一年|哪年|哪一天|哪天|何时|几月|几号|哪个月|"
    r"^\W*when\b|\bwhen (?:did|was|were|will|is|are|does|do|has|have)\b|"
    r"\b(?:what|which) (?:year|month|date|day)\b",
    re.I,
)
_HAS_DATE = re.compile(
    rf"(?<![0-9])(?:1[89]|20)[0-9]{{2}}(?![0-9])\s*年?|(?<![0-9.])[0-9]{{1,2}}\s*月|"
    rf"(?<![0-9.])[0-9]{{1,2}}\s*[日号]|[{_CN_DIGIT}]{{1,3}}月|[今去明前]年|年[底初中]|"
    r"[上下]半年|\b(?:january|february|march|april|may|june|july|august|september|"
    r"october|november|december)\b",
    re.I,
)
_PLACE_VERB = r"(?:举办|举行|召开|建设?|设立?|落户|成立|开|办|位于|在)"
_ASKS_PLACE = re.compile(
    r"哪(?:个|座|些)(?:城市|地方|省|市|区|县|国家)|什么地方|在哪(?:里|儿)?" + _PLACE_VERB + r"|"
    r"(?:举办|举行|召开|建|设|落户|成立|位于)(?:在)?哪(?:里|儿)|"
    r"\bwhere\b.*\b(?:held|located|built|based|hosted|set up|take place|took place|"
    r"headquartered)\b|\b(?:which|what) (?:city|cities|province|district|country|place)\b",
    re.I,
)
_HAS_PLACE = re.compile(
    r"重庆|成都|成渝|四川|欧洲|中国|全国|西部|北京|上海|巴渝|两江|中新|杭州|深圳|广州|"
    r"[\u4e00-\u9fff]{1,6}(?:省|市(?![场民])|区(?![域块别])|县|镇|乡|村|街道|园区|科学城|"
    r"智谷|体验园|展馆|学院|大学|党校|研究院|研究所|研究会|研究中心|办公厅)"
)
_ASKS_NAME = re.compile(
    r"(?<![几多])谁|哪(?:一)?位(?!专家们)|哪个人|什么人|叫什么名字|姓什么|"
    r"\bwho(?:se|m)?\b|\bwhich (?:expert|scholar|speaker|author|person|professor)\b",
    re.I,
)
_HAS_NAME = re.compile(
    r"(?:教授|研究员|院长|所长|理事|主任|书记|市长|记者|专家|学者)[\u4e00-\u9fff]{2,3}|"
    r"[\u4e00-\u9fff]{2,3}(?:教授|研究员|院长|所长|先生|女士|同志)"
)
NAME_NEAR = 24  # a date, place or name may sit a clause away from the thing asked about
_SEVERAL = re.compile(
    r"[几多]位(?:专家|嘉宾|学者|受访者)|多少位(?:专家|嘉宾|学者)|"
    r"\bhow many (?:experts|speakers|scholars|interviewees|people (?:were|are) interviewed)\b",
    re.I,
)
PERSON_KINDS = ("answer", "commentary", "bio")


def _topic(q: Question, asked: re.Match | None, every: bool = False) -> tuple[str, ...]:
    """The thing a date/place/name question is about: the question's rarest word that
    the page uses (not the asking words), as its forms' first two characters; with
    ``every``, any of its words the page uses (who: the speaker answers for the turn)."""
    span = (asked.start(), asked.end()) if asked else (0, 0)
    words = [
        w
        for w in q.words
        if w.passages
        and (len(w.label) > 1 or q.english)
        and not (span[0] <= q.text.lower().find(w.label.lower()) < span[1])
    ]
    if not words:
        return ()
    chosen = words if every else [min(words, key=lambda w: w.passages)]
    forms = [f for w in chosen for f in (w.forms if q.english else (w.label,))]
    return tuple(dict.fromkeys(f[:2] for f in forms if f))


def asks_type(q: Question) -> Figure | None:
    """The kind of answer the question asks for (a figure, a date, a place, a name);
    None when any passage may answer it."""
    figure = asks_figure(q)
    if figure is not None:
        return figure
    if _SEVERAL.search(q.text):
        return None
    for kind, asks, has in (
        ("date", _ASKS_DATE, _HAS_DATE),
        ("place", _ASKS_PLACE, _HAS_PLACE),
        ("name", _ASKS_NAME, _HAS_NAME),
    ):
        m = asks.search(q.text)
        if m:
            return Figure(has, _topic(q, m, every=kind == "name"), kind, NAME_NEAR)
    return None


def _counted(q: Question, at: int) -> tuple[str, ...]:
    """The thing a count question counts when no noun follows 多少 (区域总部一共有多少个？,
    准确率提高到多少？, How many companies…): the rarest word before the question word that
    the page uses, the most specific thing named (贫困发生率降到了多少: 发生率, not the verb
    降到, which the page writes 降至, nor 重庆, which is everywhere), or for English the
    first word after it, as its forms (first two characters)."""
    if q.english:  # the first two words after it (black-tech products: 黑科技 by "black")
        after = [w for w in q.words if q.text.lower().find(w.label.lower(), at) >= 0]
        return tuple(dict.fromkeys(f[:2] for w in after[:2] for f in w.forms))
    before = [
        w for w in q.words if 0 <= q.text.find(w.label) < at and len(w.label) > 1 and w.passages
    ]
    return (min(before, key=lambda w: w.passages).label[:2],) if before else ()


def asks_figure(q: Question) -> Figure | None:
    """The kind of figure the question asks for; None for other questions."""
    if _ASKS_ID.search(q.text):  # 编号是多少 asks for a code, not a count
        return None
    if _SEVERAL.search(q.text):  # 几位专家: one block per expert, not a figure
        return None
    if _ASKS_MONEY.search(q.text):
        return Figure(_HAS_MONEY, ())
    asks = _ASKS_COUNT.search(q.text)
    if not asks:
        return None
    noun = (asks.group("noun") or asks.group("noun2") or "")[:2]
    nouns = (noun,) if noun else _counted(q, asks.start())
    unit = asks.group("unit") or asks.group("unit2")
    if unit or q.english:
        return Figure(_quantity(unit), nouns)
    return Figure(_ANY_FIGURE, nouns)  # 突破了多少？: a count or a sum of money


def figure_found(q: Question, hits: tuple[Hit, ...]) -> bool:
    """A count/amount/date/place/name question: is such an answer, near the thing asked
    about, in a matched sentence of a top turn? (Not anywhere in a long answer: a
    sentence that matched.) For a name, the speaker of a turn whose matched sentence or
    title names the thing is the answer."""
    figure = asks_type(q)
    if figure is None:
        return True
    for h in hits[:3]:
        person = bool(h.turn.speaker) and h.turn.kind in PERSON_KINDS
        title = (h.turn.speaker_title or "").lower()
        for s in h.sentences[:3]:
            text = h.turn.text[s.start : s.end]
            if figure.in_text(text):
                return True
            if figure.kind == "name" and person:
                low = text.lower()
                if not figure.nouns or any(n in low or n in title for n in figure.nouns):
                    return True
    return False


# -- signals ------------------------------------------------------------------------------

FEATURES = (
    "dense",  # best passage cosine
    "sentence",  # best sentence cosine in the top three turns
    "peak",  # best passage cosine minus the candidates' mean
    "english",  # 1 for an English question (its cosines run lower)
    "english_dense",  # english × sentence
    "cover",  # rarity-weighted share of the question's words in the top turn
    "rarest_found",  # how rare the rarest question word found in a top turn is, relative to
    # the question's rarest word (a word the corpus never uses is the rarest of all)
    "verbatim",  # longest run of the question found verbatim in the top turn (0..1)
    "unknown",  # rarity-weighted share of the question's words the corpus never uses
    "no_words",  # no word of the question (names aside) that the corpus uses
    "odd",  # share of symbols that questions do not use (* = < > { } $ /): code, not a question
    "named",  # the question names a speaker
    # where the words are found: the answer must hold them, not only the page
    "sentence_cover",  # rarity-weighted share of the question's words in the best sentence
    "cover3",  # … in any of the top three turns
    "known_cover",  # … of the words the corpus does use, in the top turn
    "sentence_keyword",  # best keyword score of a sentence in the top three turns
    # how much the words the corpus never uses look like a topic, not a turn of phrase
    "unknown_count",  # how many (of two characters or more; 3 = all), / 3
    "unknown_general",  # the rarest one's rarity in general Chinese (jieba's dictionary):
    # 房地产税, 添加剂 are rare anywhere, 还有, 应当 are everyday words the page happens to lack
    # the same evidence weighs differently for a named speaker (the search is narrowed to
    # their turns, so cosines run high) and for English (dictionary senses, looser)
    "named*unknown",
    "named*cover",
    "named*unknown_general",
    "english*unknown",
    "english*cover",
    "sentence*unknown",
    # an English question found only through dictionary senses (rain → 下雨, view → 看法)
    # is weaker evidence than one whose names, pinyin or own words are on the page
    "sense_part",  # rarity-weighted share of the question matched only through senses
    "sense_only",  # 1 when every word found in the top turn is a sense and no one is named
    "typed",  # 1 when the question asks for a figure, date, place or name and a matched
    # sentence states one near the thing asked about (the check passed: evidence for)
)
INTERACTIONS = tuple(f for f in FEATURES if "*" in f)


@dataclass(frozen=True)
class Signals:
    values: tuple[float, ...]  # in FEATURES order
    figure_ok: bool  # count/amount question: the figure is there (True for others)
    unfound: tuple[str, ...]  # the question's words the corpus never uses (for the message)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.values, strict=True))


def _turn_text(h: Hit) -> str:
    t = h.turn
    return " ".join((t.speaker or "", t.speaker_title or "", *t.section, t.text)).lower()


def _runs(text: str) -> list[str]:
    """Runs of letters and digits (Chinese runs, English words)."""
    return re.findall(r"[\w]+", text.lower())


def _verbatim(q: Question, text: str) -> float:
    """Longest run of the question's Chinese characters (≥ 3) that the text holds, as a
    share of 8 characters: a quoted phrase (牛鼻子, “135”架构体系) is strong evidence."""
    best = 0
    for run in _runs(q.text):
        for name in q.speakers:
            run = run.replace(name, " ")
        for part in run.split():
            n = len(part)
            for size in range(min(n, 8), max(best, 2), -1):
                if any(part[i : i + size] in text for i in range(n - size + 1)):
                    best = size
                    break
    return min(best, 8) / 8 if best >= 3 else 0.0


_ODD = re.compile(r"[^\w\s,.?!'\"“”‘’，。？！、：:；;（）()《》「」—…·-]")


def _odd(text: str) -> float:
    return min(1.0, 4 * len(_ODD.findall(text)) / (len(text) or 1))


@functools.cache
def _general_rarity(word: str) -> float:
    """How rare a word is in general Chinese (jieba's dictionary frequencies), 0..1."""
    from .store import _tokenizer

    tok = _tokenizer()
    return min(1.0, math.log(tok.total / (tok.FREQ.get(word, 0) + 1)) / math.log(tok.total))


def _share(words, weights: dict[str, float], whole: float, texts: list[str]) -> float:
    found = [w for w in words if any(f in t for t in texts for f in w.forms)]
    return sum(weights[w.label] for w in found) / whole if whole else 0.0


def _with_interactions(base: dict[str, float]) -> tuple[float, ...]:
    for name in INTERACTIONS:
        a, b = name.split("*")
        base[name] = base[a] * base[b]
    return tuple(float(base[f]) for f in FEATURES)


def signals(r: Retrieval, total: int) -> Signals:
    """The evidence for and against answering, computed once per question."""
    q = r.question
    hits = r.hits
    words = q.words
    never = [w for w in words if w.passages == 0]
    weights = {w.label: idf(w.passages, total) for w in words}
    whole = sum(weights.values()) or 1.0
    unknown = sum(weights[w.label] for w in never) / whole if words else 0.0
    unfound = tuple(w.label for w in never if len(w.label) > 1 or len(never) == 1)
    unfound = tuple(w for w in unfound if not any(w != o and w in o for o in unfound))
    long_never = [w for w in never if len(w.label) > 1]
    general = max((_general_rarity(w.forms[0]) for w in never if w.forms), default=0.0)
    if not hits:
        base = dict.fromkeys(FEATURES, 0.0)
        base.update(
            english=float(q.english), unknown=unknown, no_words=1.0, odd=_odd(q.original),
            unknown_count=min(len(long_never), 3) / 3, unknown_general=general,
            sense_part=0.0, sense_only=0.0, typed=0.0,
        )
        return Signals(_with_interactions(base), True, unfound)
    top = _turn_text(hits[0])
    sentence = max((h.sentences[0].dense for h in hits[:3] if h.sentences), default=0.0)
    texts = [_turn_text(h) for h in hits[:3]]
    found = [weights[w.label] for w in words if any(f in t for t in texts for f in w.forms)]
    rarest_found = max(found, default=0.0) / max(weights.values(), default=1.0)
    has_words = any(w.passages for w in words)
    best = hits[0]
    best_sentence = (
        [best.turn.text[best.sentences[0].start : best.sentences[0].end].lower()]
        if best.sentences
        else []
    )
    known = [w for w in words if w.passages]
    base = {
        "dense": r.best_dense,
        "sentence": sentence,
        "peak": r.dense_peak,
        "english": float(q.english),
        "english_dense": float(q.english) * sentence,
        "cover": word_share(q, top, total),
        "rarest_found": rarest_found,
        "verbatim": 0.0 if q.english else _verbatim(q, top),
        "unknown": unknown,
        "no_words": float(not has_words),
        "odd": _odd(q.original),
        "named": float(bool(q.speakers)),
        "sentence_cover": _share(words, weights, whole if words else 0.0, best_sentence),
        "cover3": _share(words, weights, whole if words else 0.0, texts),
        "known_cover": _share(known, weights, sum(weights[w.label] for w in known), [top]),
        "sentence_keyword": max(
            (x.keyword for h in hits[:3] for x in h.sentences[:3]), default=0.0
        ),
        "unknown_count": min(len(long_never), 3) / 3,
        "unknown_general": general,
        "sense_part": _share(
            [w for w in words if w.sense], weights, whole if words else 0.0, texts
        ),
        "sense_only": float(
            not q.speakers
            and bool(in_top := [w for w in words if any(f in top for f in w.forms)])
            and all(w.sense for w in in_top)
        ),
    }
    found_type = figure_found(q, hits)
    base["typed"] = float(found_type and asks_type(q) is not None)
    return Signals(_with_interactions(base), found_type, unfound)


# -- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "high" | "low" | "refuse"
    probability: float  # that the question is answered by what was found
    signals: Signals

    @property
    def answerable(self) -> bool:
        return self.outcome != REFUSE


@dataclass(frozen=True)
class Model:
    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    refuse_below: float
    high_from: float

    def probability(self, values: tuple[float, ...]) -> float:
        x = (np.asarray(values) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = float(x @ np.asarray(self.weights) + self.bias)
        return 1 / (1 + math.exp(-max(-40.0, min(40.0, z))))

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> Model:
        data = json.loads(path.read_text("utf-8"))
        if tuple(data["features"]) != FEATURES:
            raise ValueError(
                f"{path} was fitted on other features: refit with python -m qa.evidence fit"
            )
        return cls(
            tuple(data["weights"]),
            data["bias"],
            tuple(data["mean"]),
            tuple(data["scale"]),
            data["refuse_below"],
            data["high_from"],
        )


def bio_answers(r: Retrieval) -> bool:
    """Where does 朱旭森 work? / 蔡之兵在哪里任教？: a question about a named speaker's work
    or title, and the best hit is that speaker's bio line: the bio is the answer."""
    q = r.question
    if not (q.about_person and q.speakers and r.hits):
        return False
    top = r.hits[0].turn
    return is_bio(top) and top.speaker in q.speakers


def nothing_to_match(q: Question) -> bool:
    """No word of the question is in the corpus, and it either names no speaker (hello,
    ?, 1234567890, an emoji) or asks about something the corpus never mentions (朱旭森
    毕业于哪所大学？: 毕业 and 大学 are nowhere). A question that only names a speaker
    (卢阳春说了什么？) still goes to the model."""
    if any(w.passages for w in q.words):
        return False
    return not q.speakers or any(len(w.label) > 1 for w in q.words)


def decide(r: Retrieval, total: int, model: Model) -> Verdict:
    """Answer, answer with low confidence, or refuse."""
    s = signals(r, total)
    if bio_answers(r):
        return Verdict(HIGH, 1.0, s)
    if not r.hits or not s.figure_ok or nothing_to_match(r.question):
        return Verdict(REFUSE, 0.0, s)
    if r.mode == "keyword":  # no cosines to weigh: words alone must cover the question
        cover = s.as_dict()["cover"]
        return Verdict(HIGH if cover >= 0.5 else REFUSE, cover, s)
    p = model.probability(s.values)
    outcome = REFUSE if p < model.refuse_below else LOW if p < model.high_from else HIGH
    return Verdict(outcome, p, s)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (Newton steps; a few dozen features at most)."""
    n, d = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    pos = y.mean()
    # balance the classes: each counts half
    sw = np.where(y == 1, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9))
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -40, 40)))
        g = a.T @ (sw * (p - y)) + reg * w
        h = (a * (sw * p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


# -- fitting ------------------------------------------------------------------------------
# Generated unanswerable questions: topics a page about smart cities does not cover, asked
# the ways users ask (about an expert, in English, as a count), and noise. Off-topic words
# are kept only when the corpus never uses them, so each one really has no answer.

OFF_TOPICS_ZH = (
    "股票行情 足球比赛 演唱会门票 减肥方法 高考分数线 养老金调整 医保报销 离婚手续 "
    "汽车保险 宠物狗 钓鱼技巧 装修风格 葡萄酒 感冒药 电影票房 天气预报 火锅底料 "
    "航班延误 签证办理 结婚彩礼 考研复试 网络游戏 健身计划 量子力学 恐龙化石 "
    "个人所得税 基金定投 比特币 咖啡豆 瑜伽课程 钢琴考级 动物园门票 菜谱 "
    "驾照考试 出国留学 房贷利率 彩票中奖 明星八卦 篮球联赛 马拉松报名"
).split()
OFF_TOPICS_EN = (
    "stock prices|football matches|weight loss|the college entrance exam|pension rates|"
    "divorce procedures|car insurance|pet dogs|fishing|wine tasting|cold medicine|"
    "box office numbers|visa applications|wedding costs|video games|quantum physics|"
    "dinosaur fossils|income tax|bitcoin|coffee beans|yoga classes|piano lessons|"
    "driving tests|studying abroad|mortgage rates|the lottery|celebrity gossip|basketball"
).split("|")
TEMPLATES_ZH = (
    "{t}怎么样？",
    "{t}是什么？",
    "{s}对{t}怎么看？",
    "{s}怎么评价{t}？",
    "关于{t}，专家们有什么建议？",
    "{t}多少钱？",
    "{s}是怎么看待{t}的？",
)
TEMPLATES_EN = (
    "What does {s} think about {t}?",
    "What is said about {t}?",
    "How much do {t} cost?",
    "What did {s} say about {t}?",
    "What do the experts recommend about {t}?",
)
PERSONAL_ZH = (
    "{s}今年多大？",
    "{s}的家乡在哪里？",
    "{s}有几个孩子？",
    "{s}的电话号码是多少？",
    "{s}喜欢吃什么？",
    "{s}的工资是多少？",
)


def _noise(rng: np.random.Generator, n: int) -> list[str]:
    """Random letters, digits, punctuation, code and pictographs (seeded)."""
    out = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(n):
        kind = i % 6
        if kind == 0:
            out.append(
                " ".join(
                    "".join(rng.choice(list(letters), rng.integers(3, 9)))
                    for _ in range(rng.integers(1, 4))
                )
            )
        elif kind == 1:
            out.append("".join(rng.choice(list("0123456789"), rng.integers(2, 14))))
        elif kind == 2:
            out.append("".join(rng.choice(list("?？!！.。,，~…"), rng.integers(1, 4))))
        elif kind == 3:
            out.append(
                str(
                    rng.choice(
                        [
                            "DROP TABLE passages;",
                            "<script>alert(1)</script>",
                            "print('hi')",
                            '{"a": 1}',
                            "rm -rf /",
                            "ls -la",
                            "UPDATE users SET x=1",
                            "a=b+c",
                        ]
                    )
                )
            )
        elif kind == 4:
            out.append("".join(chr(int(c)) for c in rng.integers(0x1F600, 0x1F64F, 3)))
        else:
            out.append(
                str(
                    rng.choice(
                        [
                            "你好",
                            "谢谢",
                            "在吗",
                            "好的",
                            "哈哈",
                            "嗯嗯",
                            "hi",
                            "thanks",
                            "ok",
                            "good morning",
                            "test",
                            "测试一下",
                        ]
                    )
                )
            )
    return out


def generated_negatives(engine, seed: int = 7) -> list[str]:
    from .followup import english_name

    rng = np.random.default_rng(seed)
    absent = lambda t: all(engine.store.passages_with(w) == 0 for w in [t])  # noqa: E731
    zh = [t for t in OFF_TOPICS_ZH if absent(t)]
    names = [n for n, _ in engine.speakers if n != "重庆日报"] or ["专家"]
    out = []
    for t in zh:
        tpl = TEMPLATES_ZH[int(rng.integers(len(TEMPLATES_ZH)))]
        out.append(tpl.format(t=t, s=str(rng.choice(names))))
    for t in OFF_TOPICS_EN:
        tpl = TEMPLATES_EN[int(rng.integers(len(TEMPLATES_EN)))]
        out.append(tpl.format(t=t, s=english_name(str(rng.choice(names)))))
    for tpl in PERSONAL_ZH:
        out.append(tpl.format(s=str(rng.choice(names))))
    return out + _noise(rng, 36)


def generated_positives(engine, seed: int = 11, limit: int = 40) -> list[str]:
    """Questions quoting a rare phrase of an expert's turn (the 牛鼻子 case): the answer
    is there, verbatim, even when the sentence model does not see it."""
    from .store import tokenize

    rng = np.random.default_rng(seed)
    turns = [
        t
        for t in dict.fromkeys(engine.store.turns[p.turn_id] for p in engine.store.passages)
        if t.speaker and t.kind in ("answer", "commentary")
    ]
    out = []
    for t in turns:
        rare = [
            w
            for w in dict.fromkeys(tokenize(t.text))
            if len(w) >= 3 and 1 <= engine.store.passages_with(w) <= 2
        ]
        for w in rng.permutation(rare)[:2]:
            tpl = ("“{w}”指的是什么？", "{s}说的{w}是什么意思？", "{s}怎么看{w}？")[
                int(rng.integers(3))
            ]
            out.append(tpl.format(w=w, s=t.speaker))
    return [str(x) for x in rng.permutation(out)[:limit]]


def _examples(
    engine, gold_paths: list[Path], split: str | None
) -> tuple[list[str], list[int], list[str]]:
    """(questions, labels, kinds) for fitting: the gold items of ``split`` (follow-ups,
    which need the previous turn, left out) plus this module's generated questions."""
    from eval.metrics import load_gold  # eval/ is importable from the project folder

    qs: list[str] = []
    ys: list[int] = []
    kinds: list[str] = []
    for path in gold_paths:
        items, _ = load_gold(path)
        for i in items:
            if (split and i.split != split) or getattr(i, "previous", None):
                continue
            qs.append(i.question)
            ys.append(0 if i.unanswerable else 1)
            kinds.append("gold" if i.kind and not i.kind.startswith("gen") else "gen")
    neg = generated_negatives(engine)
    pos = generated_positives(engine)
    qs += neg + pos
    ys += [0] * len(neg) + [1] * len(pos)
    kinds += ["neg"] * len(neg) + ["pos"] * len(pos)
    return qs, ys, kinds


def _features(engine, questions: list[str]) -> np.ndarray:
    from .engine import clean_question

    rows = []
    for text in questions:
        q = engine.retriever.analyse(clean_question(text))
        r = engine.retriever.search(q, k=5)
        s = signals(r, len(engine.store))
        # last column, as decide() rules before the model: 2 answered (the bio answers),
        # 0 refused (no hits, figure missing, nothing to match), 1 the model decides
        rule = (
            2.0 if bio_answers(r)
            else 0.0 if not r.hits or not s.figure_ok or nothing_to_match(q)
            else 1.0
        )
        rows.append((*s.values, rule))
    return np.asarray(rows, dtype=np.float64)


def _fit(x: np.ndarray, y: np.ndarray) -> dict:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    w, b = fit_logistic((x - mean) / scale, y)
    return {"weights": w.tolist(), "bias": b, "mean": mean.tolist(), "scale": scale.tolist()}


def _prob(m: dict, x: np.ndarray) -> np.ndarray:
    z = ((x - np.asarray(m["mean"])) / np.asarray(m["scale"])) @ np.asarray(m["weights"]) + m[
        "bias"
    ]
    return 1 / (1 + np.exp(-np.clip(z, -40, 40)))


# The targets are ≤ 1 % of answerable questions refused and ≥ 95 % of unanswerable ones:
# a wrong refusal of a question the page answers costs the reader's trust most, so the cut
# is set by the first target and the second is what it buys.
MAX_ANSWERABLE_REFUSED = 0.01


def _cuts(held: np.ndarray, y: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """(refuse below, high confidence from), chosen on held-out probabilities so they are
    not fitted twice. Refuse below the highest cut that refuses at most
    MAX_ANSWERABLE_REFUSED of the answerable questions the model weighs; above it,
    answers are "high" once at most 1 % of the unanswerable questions score that high."""
    pos, neg = (y == 1) & ok, (y == 0) & ok
    scores = np.sort(held[pos])
    allowed = int(math.floor(MAX_ANSWERABLE_REFUSED * len(scores)))
    refuse_below = float(scores[allowed]) if len(scores) > allowed else 0.5
    refuse_below = min(refuse_below, 0.5)
    above = np.sort(held[neg])
    high = float(above[int(0.99 * (len(above) - 1))]) + 1e-4 if len(above) else refuse_below
    return refuse_below, min(max(high, refuse_below), 0.9)


def _rates(p: np.ndarray, y: np.ndarray, rule: np.ndarray, cut: float) -> dict:
    refused = ((p < cut) & (rule == 1)) | (rule == 0)
    return {
        "answerable_refused": float(refused[y == 1].mean()) if (y == 1).any() else None,
        "unanswerable_refused": float(refused[y == 0].mean()) if (y == 0).any() else None,
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import hashlib
    import sys
    from datetime import UTC, datetime

    parser = argparse.ArgumentParser(prog="python -m qa.evidence")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="refit the answerability weights on a gold set")
    fit.add_argument(
        "--gold", nargs="+", default=["eval/gold.jsonl", "eval/generated_negatives.jsonl"]
    )
    fit.add_argument("--split", default="dev", help="gold items of this split (and unsplit ones)")
    fit.add_argument("--corpus")
    fit.add_argument("--index")
    fit.add_argument("--out", default=str(MODEL_FILE))
    fit.add_argument("--folds", type=int, default=5)
    fit.add_argument("--repeats", type=int, default=5, help="k-fold repeats (other folds)")
    args = parser.parse_args(argv)

    from .engine import Engine

    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    engine = Engine.open(args.corpus, args.index, progress=lambda m: print(m, file=sys.stderr))
    golds = [Path(g) for g in args.gold]
    questions, labels, kinds = _examples(engine, golds, args.split)
    print(f"fitting on {len(questions)} questions ({sum(labels)} answerable)…", file=sys.stderr)
    feats = _features(engine, questions)
    x, rule = feats[:, :-1], feats[:, -1]
    ok = rule == 1
    y = np.asarray(labels, dtype=np.float64)
    kinds_a = np.asarray(kinds)

    # k-fold, repeated with other fold assignments (29 hand-written unanswerables make one
    # split noisy): each question scored by models fitted without it; the cuts are chosen
    # on all the held-out scores together, the rates are averaged over the repeats
    helds = []
    for repeat in range(args.repeats):
        fold = np.random.default_rng(repeat).permutation(len(y)) % args.folds
        held = np.zeros(len(y))
        for f in range(args.folds):
            m = _fit(x[fold != f], y[fold != f])
            held[fold == f] = _prob(m, x[fold == f])
        helds.append(held)
    n = len(helds)
    refuse_below, high_from = _cuts(np.concatenate(helds), np.tile(y, n), np.tile(ok, n))
    model = _fit(x, y)

    def mean_rates(sel: np.ndarray) -> dict:
        each = [_rates(h[sel], y[sel], rule[sel], refuse_below) for h in helds]
        return {
            key: None if each[0][key] is None else float(np.mean([e[key] for e in each]))
            for key in each[0]
        }

    kfold = {
        "all": mean_rates(np.ones(len(y), dtype=bool)),
        **{k: mean_rates(kinds_a == k) for k in ("gold", "gen", "neg", "pos")},
    }
    out = {
        "features": list(FEATURES),
        **model,
        "refuse_below": refuse_below,
        "high_from": high_from,
        "fitted_on": {
            "gold": {str(g): hashlib.sha256(g.read_bytes()).hexdigest() for g in golds},
            "split": args.split,
            "corpus": engine.store.manifest.get("corpus"),
            "model": engine.embedder.name,
            "counts": {k: int((kinds_a == k).sum()) for k in ("gold", "gen", "neg", "pos")},
            "answerable": int(y.sum()),
            "unanswerable": int(len(y) - y.sum()),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "kfold": {"folds": args.folds, "repeats": args.repeats, **kfold},
    }
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(
        json.dumps(
            {"kfold": out["kfold"], "refuse_below": refuse_below, "high_from": high_from},
            ensure_ascii=False,
        )
    )
    weights = dict(zip(FEATURES, (round(v, 3) for v in model["weights"]), strict=True))
    print(json.dumps(weights), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
