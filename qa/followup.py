"""Resolve a follow-up question from the chat itself, with no LLM.

Users of other knowledge-base chats complain most that they cannot ask a follow-up
("他还说了什么？"). We resolve it from the conversation: a pronoun means the speaker the
previous reply cited first; "那朱旭森呢？" means the previous question asked of 朱旭森.
Everything here is a pure function of the history, so it is table-tested without a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from .question import is_english

#: How far back the resolver looks for a speaker or a question to reuse.
MAX_LOOKBACK = 8

# Reasons, stable strings the UI maps to a one-line explanation.
NEW = "new"  # a question of its own: left alone
PRONOUN = "pronoun"  # 他/她/这位专家 + a topic: that speaker, the new topic
MORE = "more"  # 他还说了什么 / 还有呢: the previous question again, minus what was shown
SPEAKER_SWITCH = "speaker_switch"  # 那朱旭森呢: the previous question, another speaker
OTHERS = "other_speakers"  # 其他专家怎么看: the previous question, the other speakers
TOPIC_SWITCH = "topic_switch"  # 那数据安全呢: a new topic, the speaker the thread was about
NO_ANTECEDENT = "no_antecedent"  # looks like a follow-up, but nothing to refer back to


@dataclass(frozen=True)
class FollowUp:
    """The question to retrieve for, and the speaker to restrict it to."""

    question: str
    speaker: str | None
    reason: str
    #: citation ids (turn ids) already shown, for "what else" follow-ups
    exclude: tuple[str, ...] = ()
    #: a speaker whose passages to leave out ("其他专家怎么看？")
    exclude_speaker: str | None = None


@dataclass(frozen=True)
class Context:
    """What a later follow-up may refer back to, from one earlier turn of the chat.

    Small on purpose: the JSON API takes a list of these from its client, and a chat
    turn (``qa.chat.ChatTurn.context``) gives one.
    """

    question: str  # what was retrieved for (a follow-up already resolved)
    speaker: str | None = None  # the speaker filter it ran with
    cited_speaker: str | None = None  # the speaker its reply cited first
    shown: tuple[str, ...] = ()  # ids of the passages the reader was shown (quoted)


# --- pronouns -------------------------------------------------------------------------

# 他/她 as a pronoun, not inside 其他, 他们, 吉他, 他人, 他乡 ...
_ZH_PRONOUN = re.compile(
    r"这位专家|这位学者|这位教授|这位老师|这位作者|这位研究员|该专家|该学者|该作者|此人|这位"
    r"|(?<![其吉利排自])[他她](?![们人乡国方处山])"
)
_EN_PRONOUN = re.compile(
    r"\b(?:this expert|that expert|the same expert|this author|this speaker|he|she|him|her|his)\b",
    re.IGNORECASE,
)
_ZH_OTHERS = re.compile(r"(?:其他|其它|别的|其余|另外的?)(?:几位)?(?:专家|学者|人|嘉宾)")
_EN_OTHERS = re.compile(r"\b(?:the )?other (?:experts?|speakers?|people)\b", re.IGNORECASE)

# Words that carry no topic in a follow-up; what is left after removing them is the topic.
_ZH_FILLER = sorted(
    """那么 那 呢 吗 嘛 啊 呀 吧 又 也 还有 还 再 另外 同样 此外 是 是否 对此 对这个
    这个问题 这一问题
    同一个问题 同一问题 同样的问题 这个 问题 怎么看待 怎么看 怎么说 怎么讲 怎么认为 如何看待 如何看
    如何评价 怎样看 有何看法 有什么看法 有什么观点 什么看法 什么观点 看法 观点 意见 见解 想法 的
    认为 觉得 说了 说过 说 讲了 讲过 讲 谈了 谈到了 谈到 谈过 谈 聊了 聊 提到了 提到过 提到 提了
    提过 提出了 提出 表示了 表示 还说 别的 其他的 其他 其它 更多 什么 哪些 些 内容 了 过 有 如何
    怎么 怎样 继续 接着 呢 请问 您 你""".split(),
    key=len,
    reverse=True,
)
_EN_FILLER = sorted(
    """what's what about how and else did does do say said says think thinks thought mention
    mentioned mentions talk talked talks tell me us anything something more other else the same
    question of on that this view views opinion opinions is was are were any again then go
    continue please also""".split(),
    key=len,
    reverse=True,
)
_MORE_CUE = re.compile(
    r"还|别的|其他|其它|另外|再|更多|继续|接着|\b(?:else|more|other|continue|go on)\b",
    re.IGNORECASE,
)
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)

# 那数据安全呢？ / 至于人才呢 / What about data security? — a bare topic, nothing asked of it.
_ZH_TOPIC_ONLY = re.compile(
    r"(?P<lead>那么?|那关于|至于|关于)?\s*(?P<topic>[^？?。！!，,]{1,16}?)\s*"
    r"(?P<tail>呢|又如何|又怎样|怎么样)?\s*[？?。！!]*"
)
_EN_TOPIC_ONLY = re.compile(
    r"(?:and |so |then |ok,? |okay,? )?(?:what|how) about (?P<topic>[^?]{1,60}?)\s*[?.!]*",
    re.IGNORECASE,
)
# A topic that asks something of its own is a question, not a bare topic.
_ASKS = re.compile(
    r"什么|怎么|怎样|如何|哪|谁|吗|多少|几|为何|为什么|是否|看法|观点|认为|说|讲|谈"
    r"|\b(?:it|this|that|them|these|those|him|her|you|me|us|why|how|what)\b",
    re.IGNORECASE,
)

_HONORIFICS = "老师|教授|副教授|研究员|院长|副院长|所长|副所长|博士|先生|女士|理事|专家|学者"
_EN_TITLES = r"(?:mr|ms|mrs|dr|prof|professor)\.?"


@lru_cache(maxsize=64)
def _pinyin(name: str) -> tuple[str, ...]:
    """Syllables of a Chinese name ('朱旭森' -> ('zhu', 'xu', 'sen')); () if not Chinese."""
    if not re.fullmatch(r"[\u4e00-\u9fff]{2,4}", name):
        return ()
    from pypinyin import lazy_pinyin

    return tuple(s.lower() for s in lazy_pinyin(name))


def english_name(name: str) -> str:
    """'朱旭森' -> 'Zhu Xusen' (surname first, as Chinese names are written in English)."""
    syl = _pinyin(name)
    if not syl:
        return name
    return f"{syl[0].capitalize()} {''.join(syl[1:]).capitalize()}"


@lru_cache(maxsize=64)
def _mention_patterns(speakers: tuple[str, ...]) -> tuple[tuple[re.Pattern[str], str, str], ...]:
    """(pattern, speaker, language) for every way a question can name a speaker."""
    surnames = [s[0] for s in speakers if s]
    out: list[tuple[re.Pattern[str], str, str]] = []
    for name in speakers:
        if not name:
            continue
        out.append((re.compile(re.escape(name)), name, "zh"))
        if surnames.count(name[0]) == 1 and len(name) >= 2:
            # 朱老师 / 卢教授: only when the surname picks out one speaker
            out.append((re.compile(re.escape(name[0]) + f"(?:{_HONORIFICS})"), name, "zh"))
        syl = _pinyin(name)
        if syl:
            sur, given = syl[0], syl[1:]
            given_re = r"[\s\-]*".join(given)
            out.append((re.compile(rf"\b{sur}[\s\-]*{given_re}\b", re.IGNORECASE), name, "en"))
            out.append((re.compile(rf"\b{given_re}\s+{sur}\b", re.IGNORECASE), name, "en"))
            if surnames.count(name[0]) == 1:
                out.append((re.compile(rf"\b{_EN_TITLES}\s+{sur}\b", re.IGNORECASE), name, "en"))
    return tuple(out)


def find_speakers(text: str, speakers: Sequence[str]) -> list[tuple[int, int, str, str]]:
    """Every mention of a known speaker in ``text`` as (start, end, speaker, lang), in order."""
    found: list[tuple[int, int, str, str]] = []
    for pattern, name, lang in _mention_patterns(tuple(speakers)):
        for m in pattern.finditer(text):
            if not any(s < m.end() and m.start() < e for s, e, _, _ in found):
                found.append((m.start(), m.end(), name, lang))
    return sorted(found)


def _strip(text: str, words: Sequence[str], english: bool) -> str:
    """``text`` without filler words and punctuation: what topic is left."""
    if english:
        pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
        text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    else:
        for w in words:
            text = text.replace(w, "")
    return _PUNCT.sub("", text)


def _is_topicless(text: str) -> bool:
    """True when ``text`` (a speaker or pronoun already removed) asks nothing of its own."""
    rest = _strip(text, _EN_FILLER, english=True)
    rest = _strip(rest, _ZH_FILLER, english=False)
    return rest == ""


def _replace_speakers(text: str, new: str | None, speakers: Sequence[str]) -> str:
    """``text`` with every named speaker replaced by ``new`` (or removed when None)."""
    out, last = [], 0
    for start, end, _, lang in find_speakers(text, speakers):
        out.append(text[last:start])
        if new is not None:
            out.append(english_name(new) if lang == "en" else new)
        last = end
    out.append(text[last:])
    result = "".join(out)
    return re.sub(r"\s{2,}", " ", result).strip() if new is None else result


def resolve_followup(
    history: Sequence[Context], question: str, speakers: Sequence[str]
) -> FollowUp:
    """The question (and speaker filter) to retrieve for, given the chat so far.

    ``history`` holds the earlier turns' contexts, oldest first; ``speakers`` are the
    known speaker names.
    """
    history = list(history)[-MAX_LOOKBACK:]
    q = question.strip()
    speakers = [s for s in speakers if s]
    prev = _previous(history, speakers)

    mentions = find_speakers(q, speakers)
    named = {m[2] for m in mentions}

    # 那朱旭森呢？ / What about Zhu Xusen? — a speaker and nothing else: reuse the question.
    if len(named) == 1:
        rest = _replace_speakers(q, None, speakers)
        if _is_topicless(rest):
            speaker = next(iter(named))
            if prev is None:
                return FollowUp(q, speaker, NO_ANTECEDENT)
            prev_q, _, _ = prev
            return FollowUp(_replace_speakers(prev_q, speaker, speakers), speaker, SPEAKER_SWITCH)
        return FollowUp(q, None, NEW)
    if named:
        return FollowUp(q, None, NEW)

    # 其他专家怎么看？ — the previous question for everyone but the speaker just cited.
    others = _ZH_OTHERS.search(q) or _EN_OTHERS.search(q)
    if others:
        rest = q[: others.start()] + q[others.end() :]
        if _is_topicless(rest):
            if prev is None:
                return FollowUp(q, None, NO_ANTECEDENT)
            prev_q, prev_shown, prev_speaker = prev
            return FollowUp(
                _replace_speakers(prev_q, None, speakers),
                None,
                OTHERS,
                exclude=prev_shown,
                exclude_speaker=prev_speaker,
            )
        return FollowUp(q, None, NEW)

    pronoun = _ZH_PRONOUN.search(q) or _EN_PRONOUN.search(q)
    if pronoun:
        if prev is None or prev[2] is None:
            return FollowUp(q, None, NO_ANTECEDENT)
        prev_q, prev_shown, speaker = prev
        rest = q[: pronoun.start()] + q[pronoun.end() :]
        if _is_topicless(rest):
            # 他还说了什么？ — the same question of the same speaker, minus what was shown.
            exclude = prev_shown if _MORE_CUE.search(rest) else ()
            return FollowUp(
                _replace_speakers(prev_q, speaker, speakers),
                speaker,
                MORE,
                exclude=exclude,
            )
        # 这位专家怎么看老年人？ — the pronoun's speaker, this question's topic.
        word = pronoun.group(0)
        if is_english(word):
            name = english_name(speaker)
            replacement = f"{name}'s" if word.lower() == "his" else name
        else:
            replacement = speaker
        return FollowUp(q[: pronoun.start()] + replacement + q[pronoun.end() :], speaker, PRONOUN)

    # 还有呢？ / Anything else? — the previous question again, minus what was shown.
    if _MORE_CUE.search(q) and _is_topicless(q):
        if prev is None:
            return FollowUp(q, None, NO_ANTECEDENT)
        prev_q, prev_shown, _ = prev
        return FollowUp(prev_q, history[-1].speaker, MORE, exclude=prev_shown)

    topic = _bare_topic(q)
    if topic and history:
        return _topic_switch(history[-1], topic, speakers)
    return FollowUp(q, None, NEW)


def _bare_topic(q: str) -> str | None:
    """The topic of 那数据安全呢 / What about data security?, or None for a real question."""
    m = _EN_TOPIC_ONLY.fullmatch(q)
    if m is None:
        m = _ZH_TOPIC_ONLY.fullmatch(q)
        # a follow-up by its form: 那… or …呢, not a one-word question of its own
        if m is None or not (m.group("lead") or m.group("tail")):
            return None
    topic = m.group("topic").strip()
    if not topic or _ASKS.search(topic) or _is_topicless(topic):
        return None
    return topic


def _topic_switch(last: Context, topic: str, speakers: Sequence[str]) -> FollowUp:
    """A new topic asked of the speaker the last turn was about (only if it was about one).

    The speaker is the one the last question was restricted to or named, not the one its
    reply happened to cite first: after 智慧城市有哪些瓶颈？, 那人才呢？ asks everyone.
    """
    speaker = last.speaker
    if speaker is None:
        named = {m[2] for m in find_speakers(last.question, speakers)}
        speaker = next(iter(named)) if len(named) == 1 else None
    if is_english(topic):
        if speaker:
            asked = f"What does {english_name(speaker)} say about {topic}?"
            return FollowUp(asked, speaker, TOPIC_SWITCH)
        return FollowUp(f"What do the experts say about {topic}?", None, TOPIC_SWITCH)
    return FollowUp(f"{speaker or ''}怎么看{topic}？", speaker, TOPIC_SWITCH)


def _previous(
    history: Sequence[Context], speakers: Sequence[str]
) -> tuple[str, tuple[str, ...], str | None] | None:
    """(question, shown ids, speaker) of the most recent turn to refer back to.

    The speaker is the first cited speaker of the latest reply that cites one; failing
    that, the speaker that turn was restricted to or named.
    """
    if not history:
        return None
    last = history[-1]
    speaker = next((c.cited_speaker for c in reversed(history) if c.cited_speaker), None)
    if speaker is None:
        speaker = last.speaker
    if speaker is None:
        named = {m[2] for m in find_speakers(last.question, speakers)}
        speaker = next(iter(named)) if len(named) == 1 else None
    return last.question, tuple(last.shown), speaker
