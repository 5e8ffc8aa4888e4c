"""Ranked turns → an extractive ``Answer``: the experts' own words, each one cited.

No generation: the answer quotes the best-supporting sentence of each cited turn, and
every citation carries who said it, where, the question it answers and the passage with
that sentence marked. When retrieval found no real evidence the answer says so and
offers the closest topics instead of passages that do not answer.
"""

from __future__ import annotations

import re

from .chunk import split_sentences
from .retrieve import Hit, Retrieval
from .types import SECTION_SEP, Answer, Citation

MAX_CITED_CHARS = 800
QUOTED_IN_ANSWER = 3  # citations quoted in the answer text; the rest are listed only


def _is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) > 0.5


def _grams(text: str) -> set[str]:
    text = re.sub(r"[\W_]+", "", text.lower())
    return {text[i : i + 2] for i in range(len(text) - 1)} | set(text)


def best_sentence(hit: Hit, question: str) -> tuple[int, int]:
    """(start, end) in the turn text of the sentence that best supports the answer.

    Two signals: the sentence shares words with the question (works for Chinese
    questions), and it lies inside the passages that retrieval ranked high for this turn
    (works across languages, where no words are shared).
    """
    text = hit.turn.text
    sentences = split_sentences(text) or [(0, len(text))]
    q = _grams(question)
    window = text.find(hit.passage.text)  # -1 for the question passage of an answer
    window_end = window + len(hit.passage.text)
    scored = []
    for a, b in sentences:
        overlap = len(q & _grams(text[a:b])) / (len(q) or 1)
        in_window = 0 <= window <= a < window_end
        scored.append((overlap + (0.3 if in_window else 0.0), -a, a, b))
    _, _, a, b = max(scored)
    # a very short sentence ("二要…。") reads better with the one after it
    if b - a < 24:
        nxt = [s for s in sentences if s[0] == b]
        if nxt:
            b = nxt[0][1]
    return a, b


def _cut(text: str, a: int, b: int, limit: int = MAX_CITED_CHARS) -> tuple[str, int]:
    """At most ``limit`` characters of ``text`` around [a, b); returns (excerpt, offset)."""
    if len(text) <= limit:
        return text, 0
    sentences = split_sentences(text)
    lo, hi = a, b
    grew = True
    while grew:
        grew = False
        before = [s for s in sentences if s[1] == lo]
        after = [s for s in sentences if s[0] == hi]
        if after and after[0][1] - lo <= limit:
            hi, grew = after[0][1], True
        if before and hi - before[0][0] <= limit:
            lo, grew = before[0][0], True
    if hi - lo > limit:  # one huge sentence
        lo, hi = a, min(b, a + limit)
    return text[lo:hi], lo


def make_citation(rank: int, hit: Hit, question: str) -> Citation:
    turn = hit.turn
    a, b = best_sentence(hit, question)
    excerpt, offset = _cut(turn.text, a, b)
    highlight = turn.text[a:b].strip()
    if highlight not in excerpt:
        highlight = excerpt[: MAX_CITED_CHARS // 4]
    return Citation(
        rank=rank,
        speaker=turn.speaker,
        speaker_title=turn.speaker_title,
        article=turn.article,
        section=SECTION_SEP.join(turn.section),
        asked=turn.asked,
        text=excerpt,
        highlight=highlight,
        score=round(float(hit.score), 6),
        source=turn.source,
        start=turn.start,
        end=turn.end,
        turn_id=turn.id,
        kind=turn.kind,
        full_text=turn.text,
    )


def _who(c: Citation) -> str:
    if not c.speaker:
        return c.article or c.source
    return c.speaker + (f"（{c.speaker_title}）" if c.speaker_title else "")


def _english_list(words: tuple[str, ...]) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def compose(retrieval: Retrieval, question: str | None = None) -> Answer:
    """The answer text quotes the top citations; unanswerable questions get topics."""
    question = question if question is not None else retrieval.question
    english = _is_english(question)
    citations = tuple(
        make_citation(i + 1, h, retrieval.question) for i, h in enumerate(retrieval.hits)
    )
    if not retrieval.supported or not citations:
        topics = suggestions(retrieval)
        unfound = retrieval.unfound
        if english:
            text = "The interviews do not answer this question."
            if unfound:
                text = text[:-1] + f" (they never mention {_english_list(unfound)})."
            if topics:
                text += " Closest topics they cover: " + "; ".join(topics)
        else:
            text = "语料中没有能回答这个问题的内容。"
            if unfound:
                text = text[:-1] + "（访谈里没有提到" + "".join(f"“{w}”" for w in unfound) + "）。"
            if topics:
                text += "相近的话题有：" + "；".join(topics)
        return Answer(question, False, text, (), topics, dict(retrieval.timings_ms))
    text = answer_text(citations, question)
    return Answer(question, True, text, citations, (), dict(retrieval.timings_ms))


def answer_text(citations: tuple[Citation, ...], question: str) -> str:
    """The plain-text answer: the top citations' supporting words, each with its [n] mark
    (also used when a chat follow-up leaves some citations out and renumbers the rest)."""
    english = _is_english(question)
    lines = []
    for c in citations[:QUOTED_IN_ANSWER]:
        where = SECTION_SEP.join(p for p in (c.article, c.section) if p)
        if english:
            lines.append(f"{_who(c)} — {where}: “{c.highlight}” [{c.rank}]")
        else:
            lines.append(f"{_who(c)}在「{where}」中说：“{c.highlight}” [{c.rank}]")
    return "\n".join(lines)


def suggestions(retrieval: Retrieval, limit: int = 3) -> tuple[str, ...]:
    """The closest topics: the interviewer's questions or section names near the query."""
    out: list[str] = []
    for h in retrieval.hits:
        t = h.turn
        if t.kind in ("bio", "intro"):
            continue  # a bio is not a topic
        topic = t.asked or SECTION_SEP.join(p for p in (t.article, *t.section) if p)
        if topic and topic not in out:
            out.append(topic)
        if len(out) >= limit:
            break
    return tuple(out)
