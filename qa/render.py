"""HTML for the chat: a reply's quotes and source cards, the user's words, status lines.

Every string that comes from a user or from the corpus goes through ``esc`` before it
reaches the chat, which renders Markdown and HTML: a question like
``<img src=x onerror=alert(1)>`` must show as text, and a passage with ``*`` or ``$``
must not turn into emphasis or maths. Replies are built as one-line HTML (no blank
lines) so Markdown never reaches inside them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from .chat import ChatTurn, quoted
from .engine import MAX_QUESTION_CHARS
from .errors import BadQuestion
from .followup import MORE, NO_ANTECEDENT, OTHERS, PRONOUN, SPEAKER_SWITCH, TOPIC_SWITCH
from .types import Citation, SpeakerBlock, section_path

# Characters Markdown (or KaTeX, or the chat's autolinker) would act on, as entities.
_MD_ACTIVE = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_[]()~$|!#{}:"})

_KIND_LABEL = {
    "answer": "专访回答",
    "commentary": "评论文章",
    "intro": "导语",
    "bio": "简介",
    "paragraph": "正文",
    "question": "提问",
}
_FOLLOWUP_LABEL = {
    PRONOUN: "追问",
    MORE: "继续追问",
    SPEAKER_SWITCH: "换一位专家",
    OTHERS: "其他专家",
    TOPIC_SWITCH: "换个话题",
}


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


def _who(c: Citation) -> str:
    return c.speaker or c.article or c.source or "原文"


def render_quote(c: Citation) -> str:
    """One expert quote for the answer body: the supporting words and who said them."""
    return (
        '<div class="qa-quote">'
        f'<div class="qa-quote-text">“{esc(c.highlight or c.text)}”</div>'
        f'<div class="qa-quote-by">— {esc(_who(c))}'
        f'<a class="qa-ref" title="出处 {c.rank}">[{c.rank}]</a></div>'
        "</div>"
    )


def render_block(block: SpeakerBlock) -> str:
    """One expert's part of the answer: a short header, then their sentences with [n]."""
    head = esc(block.speaker or "原文")
    if block.short_title:
        head += f'<span class="qa-block-title">{esc(block.short_title)}</span>'
    quotes = "".join(
        f'<div class="qa-quote-text">“{esc(q.text)}”'
        f'<a class="qa-ref" title="出处 {q.rank}">[{q.rank}]</a></div>'
        for q in block.quotes
    )
    return f'<div class="qa-quote"><div class="qa-block-head">{head}</div>{quotes}</div>'


def render_citation(c: Citation) -> str:
    """A citation card: number, speaker and title, where, the question; opens to the passage."""
    kind = _KIND_LABEL.get(c.kind, "")
    where = section_path(c.article, c.section)
    parts = [
        f'<details class="qa-cite" data-rank="{c.rank}" data-speaker="{esc(c.speaker or "")}">',
        "<summary>",
        f'<span class="qa-num">{c.rank}</span>',
        '<span class="qa-cite-head">',
        f'<span class="qa-speaker">{esc(_who(c))}</span>',
        f'<span class="qa-title">{esc(c.speaker_title)}</span>' if c.speaker_title else "",
        f'<span class="qa-kind">{esc(kind)}</span>' if kind else "",
        f'<span class="qa-where">{esc(where)}</span>' if where else "",
        # the interviewer's question (the index keeps it without the interviewer's name)
        f'<span class="qa-asked"><b>问</b>{esc(c.asked)}</span>' if c.asked else "",
        "</span>",
        '<span class="qa-open">全文 ▸</span>',
        "</summary>",
        f'<div class="qa-full">{highlight_html(c.full_text or c.text, c.highlight)}</div>',
        f'<div class="qa-src">{esc(c.source)} · {c.start}–{c.end}</div>',
        "</details>",
    ]
    return "".join(parts)


def render_note(turn: ChatTurn) -> str:
    """One line saying how a follow-up was understood, so nothing happens behind the back."""
    fu = turn.followup
    bits = []
    if fu.reason in _FOLLOWUP_LABEL:
        bits.append(f"{_FOLLOWUP_LABEL[fu.reason]} · 理解为：{esc(fu.question)}")
    if turn.speaker:
        bits.append(f"只看 {esc(turn.speaker)}")
    if fu.exclude_speaker:
        bits.append(f"不含 {esc(fu.exclude_speaker)}")
    if turn.section:
        bits.append(f"栏目：{esc(turn.section)}")
    if fu.reason == NO_ANTECEDENT:
        bits.append("没有可追问的上文，按新问题回答")
    if not bits:
        return ""
    return f'<div class="qa-note">↳ {"　".join(bits)}</div>'


def reply_pieces(turn: ChatTurn) -> list[str]:
    """The reply as HTML pieces, in the order they stream in; joined, they are the reply.

    A refusal names no topics itself: the chat offers them as clickable chips below it,
    and one list is enough.
    """
    note = render_note(turn)
    pieces = [note] if note else []
    answer = turn.answer
    if turn.exhausted:
        who = esc(turn.speaker or "这位专家")
        pieces.append(
            f'<div class="qa-empty">{who}关于这个话题的发言都已列出。'
            '<span class="qa-en">That is all this speaker said on it.</span></div>'
        )
        return pieces
    if not answer.answerable or not answer.citations:
        pieces.append(
            '<div class="qa-empty">访谈中没有能回答这个问题的专家原话。'
            '<span class="qa-en">The interviews do not answer this question.</span></div>'
        )
        if answer.suggestions:
            pieces.append(
                '<div class="qa-label">相近的话题见下方，点击即可提问 · '
                "Closest topics below: click one to ask</div>"
            )
        return pieces
    pieces.append('<div class="qa-label">专家原话 In their words</div>')
    if answer.confidence == "low":
        pieces.append(
            '<div class="qa-low">把握不大：以下原话可能没有完全回答这个问题。'
            '<span class="qa-en">Low confidence: these passages may not fully answer '
            "the question.</span></div>"
        )
    if answer.blocks:  # one block per expert, as the plain-text answer groups them
        pieces.extend(render_block(b) for b in answer.blocks)
    else:
        pieces.extend(render_quote(c) for c in quoted(answer.citations))
    pieces.append(f'<div class="qa-label">出处 Sources · {len(answer.citations)}</div>')
    pieces.extend(render_citation(c) for c in answer.citations)
    return pieces


def wrap_reply(pieces: Sequence[str], pending: bool = False) -> str:
    body = "".join(pieces)
    if pending:
        body += '<div class="qa-pending">正在查找专家原话… Searching…</div>'
    return f'<div class="qa-reply">{body}</div>'


def render_error(message: str) -> str:
    return wrap_reply([f'<div class="qa-empty">出错了：{esc(message)}</div>'])


def render_user(question: str) -> str:
    """The user's own words, shown literally."""
    return f'<div class="qa-user">{esc(question)}</div>'


def render_status(text: str = "", kind: str = "info") -> str:
    return f'<div class="qa-status qa-status-{kind}">{esc(text)}</div>' if text else ""


def bad_input_message(text: str, exc: BadQuestion, example: str = "") -> str:
    """A gentle, bilingual line for input the engine refused."""
    if not text or not text.strip() or "empty" in str(exc):
        hint = f"，例如：{example}" if example else "。"
        return f"请先输入一个问题{hint} Please type a question."
    if "too long" in str(exc):
        return (
            f"问题太长（{len(text):,} 字），最多 {MAX_QUESTION_CHARS:,} 字，请精简后再问。"
            f" Too long: at most {MAX_QUESTION_CHARS:,} characters."
        )
    return f"无法处理这个问题：{exc}"
