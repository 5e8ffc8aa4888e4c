"""The Gradio chat: the experts' own words, each cited to who said it and where.

Every string that comes from a user or from the corpus goes through ``esc`` before it
reaches the chat, which renders Markdown and HTML: a question like
``<img src=x onerror=alert(1)>`` must show as text, and a passage with ``*`` or ``$``
must not turn into emphasis or maths. Replies are built as one-line HTML (no blank
lines) so Markdown never reaches inside them.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (analytics must be off before the import)

from .engine import MAX_K, MAX_QUESTION_CHARS, Engine, clean_question  # noqa: E402
from .errors import BadQuestion, QAError  # noqa: E402
from .followup import (  # noqa: E402
    MORE,
    NO_ANTECEDENT,
    OTHERS,
    PRONOUN,
    SPEAKER_SWITCH,
    FollowUp,
    citation_id,
    english_name,
    resolve_followup,
)

APP_TITLE = "智慧名城 QA"
QUOTED = 3  # citations quoted in the reply body; the rest are listed as sources only
SPOKEN = ("answer", "commentary", "paragraph")  # kinds of turn that are someone's words
STREAM_PAUSE_S = 0.04  # between streamed pieces: long enough to see, short enough not to wait

MAX_NAMES = 5  # names the header lists before "等"
MAX_EXAMPLES_ZH = 4
GENERIC_EN = "What are the biggest challenges, according to the experts?"

# --- escaping and rendering -----------------------------------------------------------

# Characters Markdown (or KaTeX, or the chat's autolinker) would act on, as entities.
_MD_ACTIVE = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_[]()~$|!#{}:"})


def esc(text: object) -> str:
    """``text`` as inert HTML: tags, entities and Markdown syntax all shown literally."""
    out = html.escape(str(text), quote=True).translate(_MD_ACTIVE)
    return out.replace("\r\n", "\n").replace("\n", "<br>")


def highlight_html(full_text: str, highlight: str) -> str:
    """The passage, escaped, with the supporting sentence wrapped in ``<mark>``."""
    if highlight:
        at = full_text.find(highlight)
        if at >= 0:
            end = at + len(highlight)
            return f"{esc(full_text[:at])}<mark>{esc(highlight)}</mark>{esc(full_text[end:])}"
    return esc(full_text)


def _who(c: dict) -> str:
    if c.get("speaker"):
        return str(c["speaker"])
    return str(c.get("article") or c.get("source") or "原文")


def _where(c: dict) -> str:
    return " › ".join(p for p in (c.get("article"), c.get("section")) if p)


def _asked(c: dict) -> str:
    """The interviewer's question (the index keeps it without the interviewer's name)."""
    return str(c.get("asked") or "")


_KIND_LABEL = {
    "answer": "专访回答",
    "commentary": "评论文章",
    "intro": "导语",
    "bio": "简介",
    "paragraph": "正文",
    "question": "提问",
}


def render_quote(c: dict) -> str:
    """One expert quote for the answer body: the supporting words and who said them."""
    return (
        '<div class="qa-quote">'
        f'<div class="qa-quote-text">“{esc(c.get("highlight") or c.get("text") or "")}”</div>'
        f'<div class="qa-quote-by">— {esc(_who(c))}'
        f'<a class="qa-ref" title="出处 {int(c["rank"])}">[{int(c["rank"])}]</a></div>'
        "</div>"
    )


def render_citation(c: dict) -> str:
    """A citation card: number, speaker and title, where, the question; opens to the passage."""
    rank = int(c["rank"])
    title = c.get("speaker_title")
    kind = _KIND_LABEL.get(str(c.get("kind") or ""), "")
    asked = _asked(c)
    full = str(c.get("full_text") or c.get("text") or "")
    parts = [
        f'<details class="qa-cite" data-rank="{rank}"',
        f' data-speaker="{esc(c.get("speaker") or "")}">',
        "<summary>",
        f'<span class="qa-num">{rank}</span>',
        '<span class="qa-cite-head">',
        f'<span class="qa-speaker">{esc(_who(c))}</span>',
        f'<span class="qa-title">{esc(title)}</span>' if title else "",
        f'<span class="qa-kind">{esc(kind)}</span>' if kind else "",
        f'<span class="qa-where">{esc(_where(c))}</span>' if _where(c) else "",
        f'<span class="qa-asked"><b>问</b>{esc(asked)}</span>' if asked else "",
        "</span>",
        '<span class="qa-open">全文 ▸</span>',
        "</summary>",
        f'<div class="qa-full">{highlight_html(full, str(c.get("highlight") or ""))}</div>',
        f'<div class="qa-src">{esc(c.get("source") or "")} · {int(c.get("start") or 0)}'
        f"–{int(c.get('end') or 0)}</div>",
        "</details>",
    ]
    return "".join(parts)


def _note(fu: FollowUp | None, speaker_filter: str | None, section: str | None) -> str:
    """One line saying how a follow-up was understood, so nothing happens behind the back."""
    bits = []
    if fu is not None and fu.reason in (PRONOUN, MORE, SPEAKER_SWITCH, OTHERS):
        label = {
            PRONOUN: "追问",
            MORE: "继续追问",
            SPEAKER_SWITCH: "换一位专家",
            OTHERS: "其他专家",
        }[fu.reason]
        bits.append(f"{label} · 理解为：{esc(fu.question)}")
    if speaker_filter:
        bits.append(f"只看 {esc(speaker_filter)}")
    if fu is not None and fu.exclude_speaker:
        bits.append(f"不含 {esc(fu.exclude_speaker)}")
    if section:
        bits.append(f"栏目：{esc(section)}")
    if fu is not None and fu.reason == NO_ANTECEDENT:
        bits.append("没有可追问的上文，按新问题回答")
    if not bits:
        return ""
    return f'<div class="qa-note">↳ {"　".join(bits)}</div>'


def reply_pieces(
    answer: dict,
    fu: FollowUp | None = None,
    speaker: str | None = None,
    section: str | None = None,
    more_exhausted: bool = False,
) -> list[str]:
    """The reply as HTML pieces, in the order they stream in; joined, they are the reply."""
    pieces = [_note(fu, speaker, section)] if _note(fu, speaker, section) else []
    cites = answer.get("citations") or []
    if more_exhausted:
        who = esc(speaker or "这位专家")
        pieces.append(
            f'<div class="qa-empty">{who}关于这个话题的发言都已列出。'
            '<span class="qa-en">That is all this speaker said on it.</span></div>'
        )
        return pieces
    if not answer.get("answerable") or not cites:
        pieces.append(
            '<div class="qa-empty">访谈中没有能回答这个问题的专家原话。'
            '<span class="qa-en">The interviews do not answer this question.</span></div>'
        )
        topics = answer.get("suggestions") or []
        if topics:
            items = "".join(f"<li>{esc(t)}</li>" for t in topics)
            pieces.append(
                '<div class="qa-topics"><div class="qa-label">相近的话题 Closest topics'
                f"（点下方话题可直接提问 · click one below to ask）</div><ul>{items}</ul></div>"
            )
        return pieces
    # only words someone said are quoted; a bio or an intro is a source, not a quote
    quoted = [c for c in cites if c.get("kind", "answer") in SPOKEN][:QUOTED] or cites[:1]
    pieces.append('<div class="qa-label">专家原话 In their words</div>')
    pieces.extend(render_quote(c) for c in quoted)
    pieces.append(f'<div class="qa-label">出处 Sources · {len(cites)}</div>')
    pieces.extend(render_citation(c) for c in cites)
    return pieces


def wrap_reply(pieces: Sequence[str], pending: bool = False) -> str:
    body = "".join(pieces)
    if pending:
        body += '<div class="qa-pending">正在查找专家原话… Searching…</div>'
    return f'<div class="qa-reply">{body}</div>'


def render_user(question: str) -> str:
    """The user's own words, shown literally."""
    return f'<div class="qa-user">{esc(question)}</div>'


# --- feedback -------------------------------------------------------------------------


class FeedbackLog:
    """Appends one JSON line per like/dislike; a lock keeps concurrent lines whole."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, question: str, answer: dict, vote: str) -> dict:
        row = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "vote": vote,
            "question": question,
            "asked": answer.get("question"),
            "answer": answer.get("answer", ""),
            "answerable": answer.get("answerable"),
            "citation_ids": [citation_id(c) for c in answer.get("citations") or []],
        }
        line = json.dumps(row, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        return row


def default_feedback_path() -> Path:
    return Path(os.environ.get("QA_FEEDBACK") or "feedback.jsonl")


# --- the chat logic (plain functions: testable without a browser) -----------------------


def answer_turn(
    engine: Engine,
    turns: Sequence[dict],
    question: str,
    k: int = 5,
    speaker: str | None = None,
    section: str | None = None,
) -> tuple[dict, FollowUp, str | None, bool]:
    """Resolve a follow-up, ask, and drop what an "else" follow-up has already shown.

    The answer dict keeps ``shown``: the citations quoted so far in this thread of "else"
    follow-ups, so "他还说了什么？" asked twice moves on each time.
    Returns (answer dict as shown, follow-up, speaker used, nothing-more-to-show).
    """
    history = [(t["question"], t["answer"]) for t in turns]
    names = [name for name, _ in engine.speakers]
    fu = resolve_followup(history, question, names)
    spk = speaker or fu.speaker
    exclude = set(fu.exclude)
    ask_k = min(MAX_K, k + len(exclude) + (k if fu.exclude_speaker else 0))
    ans = engine.ask(fu.question, k=ask_k, speaker=spk, section=section).to_dict()
    kept = [
        c
        for c in ans["citations"]
        if citation_id(c) not in exclude
        and not (fu.exclude_speaker and c.get("speaker") == fu.exclude_speaker)
        # "what else did he say" wants his words, not his bio
        and (fu.reason != MORE or c.get("kind", "answer") in SPOKEN)
    ][:k]
    exhausted = bool(ans["answerable"] and ans["citations"] and not kept)
    kept = [{**c, "rank": i + 1} for i, c in enumerate(kept)]
    ans["citations"] = kept
    if exhausted:
        ans["answerable"] = False
    quoted = [citation_id(c) for c in kept if c.get("kind", "answer") in SPOKEN][:QUOTED]
    carried = sorted(exclude) if fu.reason == MORE else []
    ans["shown"] = carried + [i for i in quoted if i not in carried]
    return ans, fu, spk, exhausted


def _too_long_message(text: str) -> str:
    return (
        f"问题太长（{len(text):,} 字），最多 {MAX_QUESTION_CHARS:,} 字，请精简后再问。"
        f" Too long: at most {MAX_QUESTION_CHARS:,} characters."
    )


def bad_input_message(text: str, exc: BadQuestion, example: str = "") -> str:
    """A gentle, bilingual line for input the engine refused."""
    if not text or not text.strip() or "empty" in str(exc):
        hint = f"，例如：{example}" if example else "。"
        return f"请先输入一个问题{hint} Please type a question."
    if "too long" in str(exc):
        return _too_long_message(text)
    return f"无法处理这个问题：{exc}"


def _messages(turns: Sequence[dict]) -> list[dict]:
    out: list[dict] = []
    for t in turns:
        out.append({"role": "user", "content": t["user_html"]})
        out.append({"role": "assistant", "content": t["html"]})
    return out


def _status(text: str = "", kind: str = "info") -> str:
    return f'<div class="qa-status qa-status-{kind}">{esc(text)}</div>' if text else ""


def make_handlers(
    engine: Engine, feedback: FeedbackLog, guide: CorpusGuide | None = None
) -> dict[str, Any]:
    """The event functions, closed over the one shared engine."""
    guide = guide or corpus_guide(engine)
    example = guide.examples_zh[0] if guide.examples_zh else ""

    def respond(
        message: str | None,
        turns: list[dict] | None,
        speaker: str | None = None,
        section: str | None = None,
        k: float | int | None = 5,
    ) -> Iterator[tuple[list[dict], list[dict], Any, str, Any]]:
        turns = list(turns or [])
        raw = message or ""
        try:
            question = clean_question(raw)
        except BadQuestion as exc:
            yield (
                _messages(turns),
                turns,
                gr.update(),
                _status(bad_input_message(raw, exc, example), "warn"),
                gr.update(),
            )
            return
        k_int = max(1, min(MAX_K, int(k or 5)))
        user_html = render_user(question)
        pending = _messages(turns) + [
            {"role": "user", "content": user_html},
            {"role": "assistant", "content": wrap_reply([], pending=True)},
        ]
        yield pending, turns, "", _status(), gr.update()
        try:
            ans, fu, spk, exhausted = answer_turn(
                engine, turns, question, k_int, speaker or None, section or None
            )
        except QAError as exc:
            pending[-1]["content"] = wrap_reply([f'<div class="qa-empty">出错了：{esc(exc)}</div>'])
            yield pending, turns, gr.update(), _status(), gr.update()
            return
        pieces = reply_pieces(ans, fu, spk, section or None, exhausted)
        for i in range(1, len(pieces)):
            pending[-1]["content"] = wrap_reply(pieces[:i], pending=True)
            yield pending, turns, gr.update(), _status(), gr.update()
            time.sleep(STREAM_PAUSE_S)
        final = wrap_reply(pieces)
        turns.append({"question": question, "answer": ans, "user_html": user_html, "html": final})
        topics = ans.get("suggestions") or []
        if not ans.get("answerable") and topics:
            sugg = gr.update(samples=[[t] for t in topics], visible=True)
        else:
            sugg = gr.update(visible=False)
        yield _messages(turns), turns, gr.update(), _status(), sugg

    def on_like(turns: list[dict] | None, data: gr.LikeData) -> str:
        turns = turns or []
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        turn = int(index) // 2
        if not 0 <= turn < len(turns):
            return _status()
        liked = data.liked
        if isinstance(liked, str):
            vote = liked.strip().lower() or "like"
        else:
            vote = "like" if liked else "dislike"
        feedback.record(turns[turn]["question"], turns[turn]["answer"], vote)
        return _status("感谢反馈 Thanks for the feedback.", "ok")

    def clear() -> tuple[list, list, str, str, Any]:
        return [], [], "", _status(), gr.update(visible=False)

    def ask_api(question: str, k: int = 5, speaker: str = "", section: str = "") -> dict:
        """Ask the interviews; returns the same JSON as `qa ask --json`."""
        try:
            return engine.ask(
                question, k=int(k), speaker=speaker or None, section=section or None
            ).to_dict()
        except QAError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return {"respond": respond, "on_like": on_like, "clear": clear, "ask_api": ask_api}


# --- what the corpus holds: derived from the index at start-up, never typed in ---------


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


def expert_speakers(engine: Engine) -> list[tuple[str, str | None]]:
    """Speakers worth filtering by: those whose words are cited (answers, commentary),
    not the interviewer."""
    return list(corpus_guide(engine).experts)


# --- layout ---------------------------------------------------------------------------

CSS = """
:root { --qa-accent: #b4232a; --qa-ink: #1f2328; --qa-muted: #6a737d; --qa-line: #e6e1dc; }
.gradio-container { max-width: 1200px !important; }
#qa-header { padding: 10px 4px 2px; }
#qa-header h1 { font-size: 1.45rem; margin: 0; color: var(--qa-ink); letter-spacing: .02em; }
#qa-header h1 .qa-brand { color: var(--qa-accent); }
#qa-header p { margin: 4px 0 0; color: var(--qa-muted); font-size: .9rem; }
#qa-header p.qa-en { margin-top: 0; font-size: .82rem; }
.qa-reply { font-size: .95rem; line-height: 1.65; color: var(--qa-ink); }
.qa-user { white-space: pre-wrap; word-break: break-word; }
.qa-label { font-size: .78rem; font-weight: 600; color: var(--qa-muted); letter-spacing: .04em;
  margin: 10px 0 6px; text-transform: uppercase; }
.qa-label:first-child { margin-top: 0; }
.qa-note { font-size: .82rem; color: var(--qa-muted); background: #f6f3ef; border-radius: 6px;
  padding: 4px 8px; margin-bottom: 8px; }
.qa-quote { border-left: 3px solid var(--qa-accent); padding: 2px 0 2px 12px; margin: 6px 0 10px; }
.qa-quote-text { color: var(--qa-ink); }
.qa-quote-by { font-size: .85rem; color: var(--qa-muted); margin-top: 2px; }
.qa-ref { color: var(--qa-accent) !important; font-weight: 600; margin-left: 4px;
  text-decoration: none !important; font-size: .8rem; vertical-align: super; }
details.qa-cite { border: 1px solid var(--qa-line); border-radius: 10px; margin: 8px 0;
  background: #fffdfb; overflow: hidden; }
details.qa-cite > summary { list-style: none; cursor: pointer; display: flex; gap: 10px;
  align-items: flex-start; padding: 10px 12px; }
details.qa-cite > summary::-webkit-details-marker { display: none; }
details.qa-cite[open] > summary { border-bottom: 1px solid var(--qa-line); background: #faf6f1; }
.qa-num { flex: none; width: 22px; height: 22px; border-radius: 50%; background: var(--qa-accent);
  color: #fff; font-size: .75rem; font-weight: 700; display: inline-flex; align-items: center;
  justify-content: center; margin-top: 2px; }
.qa-cite-head { flex: 1; display: flex; flex-wrap: wrap; gap: 2px 8px; align-items: baseline;
  min-width: 0; }
.qa-speaker { font-weight: 700; color: var(--qa-ink); }
.qa-title { font-size: .8rem; color: var(--qa-muted); }
.qa-kind { font-size: .7rem; color: var(--qa-accent); border: 1px solid #e7c4c6;
  border-radius: 4px; padding: 0 4px; }
.qa-where { flex-basis: 100%; font-size: .82rem; color: #44505c; }
.qa-asked { flex-basis: 100%; font-size: .82rem; color: var(--qa-muted); }
.qa-asked b { color: var(--qa-accent); margin-right: 4px; }
.qa-open { flex: none; font-size: .75rem; color: var(--qa-accent); white-space: nowrap;
  margin-top: 3px; }
details.qa-cite[open] .qa-open { visibility: hidden; }
.qa-full { padding: 10px 14px 4px; white-space: normal; color: #333; }
.qa-full mark { background: #fde9a8; color: inherit; padding: 0 1px; border-radius: 2px; }
.qa-src { padding: 0 14px 10px; font-size: .72rem; color: #9aa1a8; }
.qa-empty { padding: 6px 0; }
.qa-en { display: block; font-size: .85rem; color: var(--qa-muted); }
.qa-topics ul { margin: 4px 0 0 1.1em; padding: 0; }
.qa-pending { color: var(--qa-muted); font-size: .85rem; animation: qa-pulse 1.2s infinite; }
@keyframes qa-pulse { 50% { opacity: .4; } }
.qa-status { font-size: .85rem; padding: 4px 2px; }
#qa-input-row { align-items: flex-end; }
#qa-send { align-self: flex-end; }
.qa-status-warn { color: #9a3412; }
.qa-status-ok { color: #166534; }
#qa-side .qa-side-title { font-weight: 600; font-size: .9rem; margin: 4px 0; }
#qa-footer { font-size: .78rem; color: var(--qa-muted); text-align: center; }
#qa-footer a { color: var(--qa-muted); }
.qa-compact .main.app { padding: 8px 10px 4px !important; }
.qa-compact .contain > .column { gap: 8px !important; }
.qa-compact #qa-chat .placeholder-content { padding: 8px; }
#qa-chat .user-row { background: transparent !important; }
#qa-chat .user.message { min-height: 0 !important; padding: 2px 6px !important;
  background: #f6f3ef !important; border-color: transparent !important; }
#qa-chat .role:has(> .user.message) .message-buttons { display: none !important; }
.qa-user { font-weight: 600; color: var(--qa-ink); }
"""


def theme() -> gr.themes.Base:
    """System CJK fonts only: nothing is fetched from a font CDN."""
    return gr.themes.Soft(
        primary_hue="red",
        neutral_hue="stone",
        font=["Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"],
        font_mono=["Noto Sans Mono CJK SC", "monospace"],
    )


def build_ui(
    engine: Engine,
    feedback: FeedbackLog | None = None,
    compact: bool = False,
    guide: CorpusGuide | None = None,
) -> gr.Blocks:
    """The chat page; ``compact`` is the widget's panel (chat only, no side column).

    Its header, examples and hints come from ``guide`` (by default derived from the
    engine's index), so nothing on the page is specific to one corpus.
    """
    feedback = feedback or FeedbackLog(default_feedback_path())
    guide = guide or corpus_guide(engine)
    h = make_handlers(engine, feedback, guide)
    speaker_choices = [("全部专家 All speakers", "")] + [
        (f"{name}" + (f" · {title}" if title else ""), name) for name, title in guide.experts
    ]
    section_choices = [("全部栏目 All sections", "")] + [(s, s) for s in engine.sections]

    with gr.Blocks(title=APP_TITLE, fill_height=compact) as demo:
        turns = gr.State([])
        if not compact:
            gr.HTML(guide.header_html())
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=320):
                chatbot = gr.Chatbot(
                    elem_id="qa-chat",
                    label="对话 Chat",
                    show_label=False,
                    height="68vh" if not compact else "calc(100vh - 92px)",
                    min_height=360 if not compact else 240,
                    scale=1,
                    latex_delimiters=[],
                    sanitize_html=True,
                    placeholder=guide.placeholder(),
                    buttons=["copy"],
                    feedback_options=("Like", "Dislike"),
                    layout="panel",
                    autoscroll=True,
                    examples=(
                        [{"text": q} for q in guide.examples_zh[:2] + guide.examples_en[:1]]
                        if compact
                        else None
                    ),
                )
                with gr.Row(equal_height=False, elem_id="qa-input-row"):
                    box = gr.Textbox(
                        elem_id="qa-input",
                        show_label=False,
                        placeholder=(
                            "输入问题，回车发送…"
                            if compact
                            else "输入问题，回车发送 · Type a question, press Enter"
                        ),
                        lines=1,
                        max_lines=6,
                        scale=8,
                        autofocus=not compact,
                        container=False,
                    )
                    send = gr.Button(
                        "提问" if compact else "提问 Ask",
                        variant="primary",
                        scale=1,
                        min_width=64 if compact else 90,
                        elem_id="qa-send",
                    )
                status = gr.HTML("", elem_id="qa-status")
                suggestions = gr.Dataset(
                    components=[gr.Textbox(visible=False, render=False)],
                    samples=[[""]],
                    label="相近的话题 Closest topics",
                    elem_id="qa-suggestions",
                    visible=False,
                    layout="table",
                )
            if not compact:
                with gr.Column(scale=3, min_width=240, elem_id="qa-side"):
                    speaker = gr.Dropdown(
                        speaker_choices, value="", label="专家 Speaker", elem_id="qa-speaker"
                    )
                    section = gr.Dropdown(
                        section_choices, value="", label="栏目 Section", elem_id="qa-section"
                    )
                    k = gr.Slider(1, 10, value=5, step=1, label="出处条数 Citations")
                    clear = gr.Button("清空对话 Clear", variant="secondary", elem_id="qa-clear")
                    examples = gr.Dataset(
                        components=[gr.Textbox(visible=False, render=False)],
                        samples=[[q] for q in guide.examples_zh + guide.examples_en],
                        label="示例问题 Examples",
                        elem_id="qa-examples",
                        layout="table",
                    )
                    gr.Markdown(
                        "可以追问 Follow-ups: " + " · ".join(map(esc, guide.followups)),
                        elem_classes=["qa-hint"],
                    )
            else:
                speaker = gr.State("")
                section = gr.State("")
                k = gr.State(3)
                clear = None
        if not compact:
            gr.HTML(
                '<div id="qa-footer">JSON API: <a href="/docs" target="_blank">/docs</a>'
                ' · 嵌入 Embed: <code>&lt;script src="/widget.js" defer&gt;&lt;/script&gt;</code>'
                "</div>"
            )

        inputs = [box, turns, speaker, section, k]
        outputs = [chatbot, turns, box, status, suggestions]
        ask_opts: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
        box.submit(h["respond"], inputs, outputs, **ask_opts)
        send.click(h["respond"], inputs, outputs, **ask_opts)

        def pick(sample: list[str]) -> str:
            return sample[0] if sample else ""

        for ds in (suggestions,) if compact else (examples, suggestions):
            ds.click(pick, ds, box, api_visibility="private", show_progress="hidden").then(
                h["respond"], inputs, outputs, **ask_opts
            )
        if compact:
            chatbot.example_select(
                _example_text, None, box, api_visibility="private", show_progress="hidden"
            ).then(h["respond"], inputs, outputs, **ask_opts)
        chatbot.like(h["on_like"], turns, status, api_visibility="private")
        if clear is not None:
            clear.click(h["clear"], None, outputs, api_visibility="private")
        if compact:

            def compact_lang(request: gr.Request) -> tuple[Any, Any, Any]:
                """The widget passes ``?lang=en``: English placeholder text in its panel."""
                lang = (request.query_params.get("lang") or "zh") if request else "zh"
                if lang.lower().startswith("en"):
                    return (
                        gr.update(placeholder=guide.placeholder(english=True)),
                        gr.update(placeholder="Ask a question, press Enter…"),
                        gr.update(value="Ask"),
                    )
                return gr.update(), gr.update(), gr.update()

            demo.load(compact_lang, None, [chatbot, box, send], api_visibility="private")
        gr.api(h["ask_api"], api_name="ask")
    return demo


def _example_text(data: gr.SelectData) -> str:
    """The text of the example card clicked in the empty chat."""
    value = data.value
    return str(value.get("text", "")) if isinstance(value, dict) else str(value or "")
