"""What the corpus holds, as the page shows it: who was interviewed, what to ask.

Derived from the index at start-up, never typed in, so the app serves any folder of
interviews without a line of page-specific text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .followup import english_name
from .render import esc

if TYPE_CHECKING:
    from .engine import Engine

APP_TITLE = "智慧名城 QA"
MAX_NAMES = 5  # names the header lists before "等"
MAX_EXAMPLES_ZH = 4
GENERIC_EN = "What are the biggest challenges, according to the experts?"


@dataclass(frozen=True)
class CorpusGuide:
    """Who is in the corpus and what to ask it, as the page shows it.

    Everything is derived from the indexed turns, deterministically (same index, same
    page), so the app serves any folder of interviews without a line of page-specific text.
    """

    interviewees: tuple[str, ...] = ()  # speakers of "answer" turns
    interviewers: tuple[str, ...] = ()  # who asked: speakers of "question" turns
    authors: tuple[str, ...] = ()  # speakers of "commentary" turns
    experts: tuple[tuple[str, str | None], ...] = ()  # (name, title): whose words are cited
    examples_zh: tuple[str, ...] = ()
    examples_en: tuple[str, ...] = ()
    followups: tuple[str, ...] = ()  # Chinese follow-up hints
    followups_en: tuple[str, ...] = ()

    @property
    def subtitle(self) -> str:
        """'重庆日报专访蔡之兵、卢阳春、朱旭森，以及王正攀、孙金华的评论。'"""
        parts = []
        if self.interviewees:
            asked_by = _name_list(self.interviewers, 2, "家")
            parts.append(f"{asked_by}专访{_name_list(self.interviewees, MAX_NAMES, '位专家')}")
        if self.authors:
            authors = _name_list(self.authors, MAX_NAMES, "位作者")
            parts.append(f"以及{authors}的评论" if parts else f"{authors}的评论文章")
        return "，".join(parts) + "。" if parts else ""

    def header_html(self) -> str:
        brand, _, rest = APP_TITLE.partition(" ")
        return (
            f'<div id="qa-header"><h1><span class="qa-brand">{esc(brand)}</span> {esc(rest)}'
            " · 专家访谈问答</h1>"
            f"<p>{esc(self.subtitle)}提问（中文或英文），得到专家原话与出处。</p>"
            '<p class="qa-en">Ask in Chinese or English; get the experts\' own words, cited.</p>'
            "</div>"
        )

    def placeholder(self, english: bool = False) -> str:
        """The empty chat's text: one example question and the follow-ups it invites."""
        title = "Ask the experts · 问专家" if english else "问专家 · Ask the experts"
        examples = self.examples_en if english else self.examples_zh
        hints = self.followups_en if english else self.followups
        lines = [f"<b>{title}</b>"]
        if examples:
            lines.append(("e.g. " if english else "例如：") + esc(examples[0]))
        if hints:
            lines.append(
                ("Follow up: " if english else "可以追问：") + " / ".join(map(esc, hints[:2]))
            )
        return f"<div style='text-align:center;color:#6a737d'>{'<br>'.join(lines)}</div>"


def _name_list(names: Sequence[str], cap: int, unit: str) -> str:
    """'甲、乙、丙', or '甲、乙、丙等12位专家' past ``cap`` names."""
    if len(names) <= cap:
        return "、".join(names)
    return "、".join(names[:cap]) + f"等{len(names)}{unit}"


def _indexed_turns(engine: Engine) -> list:
    """The engine's indexed turns in corpus order; [] for an engine without an index store."""
    turns = getattr(getattr(engine, "store", None), "turns", None)
    return list(turns.values()) if isinstance(turns, dict) else []


_SENTENCE = re.compile(r"[^。！？!?]+[。！？!?]*")
_YOU_THINK = re.compile(r"^[您你](认为|觉得)")
_CLAUSE_END = re.compile(r"[，,；;：:。！？!?]")


def question_core(asked: str) -> str:
    """The question itself, without the lead-in: '智博会已经成为…名片。接下来重庆该如何…？'
    gives '接下来重庆该如何…？'."""
    sentences = [s.strip() for s in _SENTENCE.findall(asked.strip()) if s.strip()]
    asking = [s for s in sentences if s[-1] in "？?"]
    core = asking[-1] if asking else asked.strip()
    return core if len(core) >= 6 else asked.strip()


def _topic(turns: Sequence, speaker: str) -> str:
    """A short topic this speaker spoke to: the shortest of their section (or article)
    titles, cut at the first comma, without their own name."""
    seen: list[str] = []
    for t in turns:
        if t.speaker != speaker or t.kind not in ("answer", "commentary"):
            continue
        for title in (t.section[-1] if t.section else "", t.article):
            head = _CLAUSE_END.split(title.strip(), maxsplit=1)[0].strip()
            if len(head) >= 4 and speaker not in head and head not in seen:
                seen.append(head)
    return min(seen, key=len) if seen else ""


def _view_question(turns: Sequence, speaker: str) -> str:
    topic = _topic(turns, speaker)
    return f"{speaker}怎么看{topic}？" if topic else f"{speaker}有哪些主要观点？"


def corpus_guide(engine: Engine) -> CorpusGuide:
    """The header's who's who, the example questions and the follow-up hints of this index."""
    turns = _indexed_turns(engine)
    kinds: dict[str, set[str]] = {}
    for t in turns:
        if t.speaker:
            kinds.setdefault(t.speaker, set()).add(t.kind)
    names = [name for name, _ in engine.speakers]
    if turns:
        interviewees = [n for n in names if "answer" in kinds.get(n, ())]
        authors = [n for n in names if "commentary" in kinds.get(n, ()) and n not in interviewees]
    else:  # no turn kinds to go by: everyone with passages is an expert
        interviewees, authors = names, []
    cited = set(interviewees) | set(authors)
    experts = [(n, title) for n, title in engine.speakers if n in cited]
    asking = [t.speaker for t in turns if t.kind == "question" and t.speaker]
    # an index may keep only the interviewer's intro (its questions have no passages)
    asking = asking or [t.speaker for t in turns if t.kind == "intro" and t.speaker]
    interviewers = [n for n in dict.fromkeys(asking) if n not in cited]

    # the interviewer's questions, each with who answered it, in corpus order
    answered: dict[str, list[str]] = {}
    for t in turns:
        if t.kind == "answer" and t.asked:
            who = answered.setdefault(question_core(t.asked), [])
            if t.speaker and t.speaker not in who:
                who.append(t.speaker)
    by_length = sorted(answered, key=len)  # stable: ties keep corpus order

    zh: list[str] = []
    # a question put to the one who answered it: 您认为… → 卢阳春认为…
    for q in by_length:
        if _YOU_THINK.match(q) and answered[q]:
            zh.append(answered[q][0] + q[1:])
            break
    # the shortest of the interviewer's own questions, as asked
    plain = [q for q in by_length if len(q) >= 8 and not re.match(r"^[您你]", q)]
    zh.extend(plain[: MAX_EXAMPLES_ZH - 2])
    # a named speaker's view on one of their topics: a commentary author first, if any
    named = {n for q in zh for n in names if n in q}
    viewers = [n for n in authors + interviewees if n not in named] or interviewees + authors
    zh.extend(_view_question(turns, n) for n in viewers[: MAX_EXAMPLES_ZH - len(zh)])
    if not zh:
        zh.append("这些访谈谈到了哪些话题？")

    # English: a speaker named in pinyin (one the Chinese examples leave out), and a generic one
    named = {n for q in zh for n in names if n in q}
    said = [n for n in interviewees if n not in named] or interviewees
    wrote = [n for n in authors if n not in named] or authors
    en = [f"What did {english_name(said[0])} say?"] if said else []
    en += [f"What did {english_name(wrote[0])} write?"] if wrote and not said else []
    en.append(GENERIC_EN)

    # 那X呢 / What about X?: someone other than the speaker of the first example
    def other_than(example: str) -> str | None:
        first = next((n for n in names if n in example or english_name(n) in example), None)
        return next((n for n in interviewees + authors if n != first), None)

    followups = ["他还说了什么？"]
    followups_en = ["What else did this expert say?"]
    if other := other_than(zh[0]):
        followups += [f"那{other}呢？", "其他专家怎么看？"]
    if other := other_than(en[0]):
        followups_en.append(f"What about {english_name(other)}?")
    return CorpusGuide(
        interviewees=tuple(interviewees),
        interviewers=tuple(interviewers),
        authors=tuple(authors),
        experts=tuple(experts),
        examples_zh=tuple(zh),
        examples_en=tuple(en),
        followups=tuple(followups),
        followups_en=tuple(followups_en),
    )
