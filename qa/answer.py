"""Ranked turns + a verdict → an extractive ``Answer``: the experts' own words, each cited.

No generation: the answer quotes the best-supporting sentences, grouped by expert — one
short header (name, short title) and one to three sentences in reading order, each with
its [n] mark. Who said it in full, the section path and the interviewer's question stay
in the citation cards. A question about several experts (各位专家) gets one block per
expert who answered, in the page's order. When qa.evidence refuses, the answer says so
and offers the closest topics instead of passages that do not answer.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .evidence import LOW, Verdict
from .question import is_english
from .retrieve import Hit, Retrieval, is_bio
from .types import Answer, Citation, Quote, SpeakerBlock, section_path

MAX_CITED_CHARS = 800
QUOTED_IN_ANSWER = 3  # citations quoted in the answer text; the rest are listed only
MAX_QUOTES_PER_SPEAKER = 3
SHORT_SENTENCE = 24  # a sentence this short ("二要…。") is quoted with the one after it
# a further turn is quoted when its best sentence scores within this of the best one's
# (sentence score: cosine + keyword share, see qa.retrieve); for a question about several
# experts, each expert's best turn within the wider margin
QUOTE_MARGIN = 0.03
MANY_MARGIN = 0.06
SECOND_SENTENCE_MARGIN = 0.01
_RANK = re.compile(
    r"(副?(?:教授|研究员|院长|所长|主任|理事长|理事|处长|部长|书记|主编|记者|局长|博士))$"
)


def short_title(title: str | None) -> str | None:
    """'…研究所副所长、研究员' → '研究员'; '…经济学教研部副教授' → '副教授'; a short
    title without a rank as it is (市委办公厅秘书二处); a long one is left to the card."""
    if not title:
        return None
    last = re.split(r"[、，,；;]", title)[-1].strip()
    rank = _RANK.search(last)
    if rank:
        return rank.group(1)
    return last if len(last) <= 12 else None  # a long unit name: the card shows it


def _span(hit: Hit, about_person: bool = False) -> tuple[int, int]:
    """(start, end) in the turn text of the sentence that best supports the answer; for a
    question about who someone is or where they work, a bio's or author note's first
    sentence (作者单位 comes before 本文系…项目)."""
    text = hit.turn.text
    best = hit.best_sentence
    if best is None:  # an index without sentences: the passage that matched
        a = max(0, text.find(hit.passage.text))
        return a, a + len(hit.passage.text)
    if about_person and is_bio(hit.turn):
        best = min(hit.sentences, key=lambda s: s.start)
    a, b = best.start, best.end
    if b - a < SHORT_SENTENCE:
        after = [s for s in hit.sentences if s.start >= b]
        if after:
            b = min(after, key=lambda s: s.start).end
    return a, b


def _cut(text: str, a: int, b: int, limit: int = MAX_CITED_CHARS) -> tuple[str, int]:
    """At most ``limit`` characters of ``text`` around [a, b); returns (excerpt, offset)."""
    if len(text) <= limit:
        return text, 0
    from .chunk import split_sentences

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


def make_citation(rank: int, hit: Hit, about_person: bool = False) -> Citation:
    turn = hit.turn
    a, b = _span(hit, about_person)
    excerpt, _ = _cut(turn.text, a, b)
    highlight = turn.text[a:b].strip()
    if highlight not in excerpt:
        highlight = excerpt[: MAX_CITED_CHARS // 4]
    return Citation(
        rank=rank,
        speaker=turn.speaker,
        speaker_title=turn.speaker_title,
        article=turn.article,
        section=section_path(*turn.section),
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


def _english_list(words: tuple[str, ...]) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _best(h: Hit) -> float:
    return h.sentences[0].score if h.sentences else h.dense


def _quoted(retrieval: Retrieval) -> list[int]:
    """Indexes of the hits the answer quotes. The best one always; up to two more when
    they match nearly as well (their best sentence within QUOTE_MARGIN of the best, not a
    bio line). For a question about several experts: each expert's best turn that does."""
    hits = retrieval.hits
    if not hits:
        return []
    if retrieval.question.about_person and is_bio(hits[0].turn):
        return [0]  # who someone is / where they work: the bio says it, nothing else does
    top = _best(hits[0])
    many = retrieval.question.many_speakers and not retrieval.speakers
    margin = MANY_MARGIN if many else QUOTE_MARGIN
    seen: set[str | None] = set()
    out = []
    for i, h in enumerate(hits):
        if i and (h.turn.kind in ("bio", "intro") or _best(h) < top - margin):
            continue
        if many and h.turn.speaker in seen:
            continue
        seen.add(h.turn.speaker)
        out.append(i)
        if not many and len(out) >= QUOTED_IN_ANSWER:
            break
    return out


def _quotes(hit: Hit, citation: Citation, first: bool) -> list[tuple[int, Quote]]:
    """(offset in the turn, quote): the highlight; for the best hit also a second sentence
    of the same turn that matches nearly as well (the answer often spans two)."""
    a = citation.full_text.find(citation.highlight)
    out = [(a, Quote(citation.highlight, citation.rank))]
    if first and len(hit.sentences) > 1:
        second = hit.sentences[1]
        text = hit.turn.text[second.start : second.end].strip()
        close = second.score >= hit.sentences[0].score - SECOND_SENTENCE_MARGIN
        if close and text and text not in citation.highlight:
            out.append((second.start, Quote(text, citation.rank)))
    return out


def blocks(retrieval: Retrieval, citations: tuple[Citation, ...]) -> tuple[SpeakerBlock, ...]:
    """The answer's structure: one block per expert, each with 1–3 quotes in reading order.
    Experts come in the order of their best citation; for a several-experts question, in
    the page's order."""
    groups: dict[str | None, list[tuple[tuple, Quote]]] = {}
    for n, i in enumerate(_quoted(retrieval)):
        c = citations[i]
        for offset, quote in _quotes(retrieval.hits[i], c, n == 0):
            groups.setdefault(c.speaker, []).append(((c.source, c.start, offset), quote))
    order = list(groups)
    if retrieval.question.many_speakers:
        order.sort(key=lambda who: min(place for place, _ in groups[who]))
    out = []
    for who in order:
        quotes = [q for _, q in sorted(groups[who], key=lambda pq: pq[0])]
        first = next(c for c in citations if c.rank == quotes[0].rank)
        out.append(
            SpeakerBlock(
                speaker=who,
                title=first.speaker_title,
                short_title=short_title(first.speaker_title),
                quotes=tuple(quotes[:MAX_QUOTES_PER_SPEAKER]),
            )
        )
    return tuple(out)


def _header(block: SpeakerBlock, citation: Citation, english: bool) -> str:
    name = block.speaker or citation.article or citation.source
    if block.short_title:
        return f"{name} ({block.short_title}):" if english else f"{name}（{block.short_title}）："
    return f"{name}:" if english else f"{name}："


def render(
    blocks_: tuple[SpeakerBlock, ...], citations: tuple[Citation, ...], english: bool
) -> str:
    """The plain-text answer: a header line per expert, then their quotes."""
    by_rank = {c.rank: c for c in citations}
    lines = []
    for b in blocks_:
        lines.append(_header(b, by_rank[b.quotes[0].rank], english))
        lines.extend(f"“{q.text}” [{q.rank}]" for q in b.quotes)
    return "\n".join(lines)


def citation_blocks(citations: tuple[Citation, ...]) -> tuple[SpeakerBlock, ...]:
    """Blocks from citations alone (a chat follow-up that leaves some out and renumbers
    the rest): the top ones' highlights, grouped by expert in rank order."""
    groups: dict[str | None, list[Citation]] = {}
    for c in citations[:QUOTED_IN_ANSWER]:
        groups.setdefault(c.speaker, []).append(c)
    return tuple(
        SpeakerBlock(
            who,
            cs[0].speaker_title,
            short_title(cs[0].speaker_title),
            tuple(Quote(c.highlight, c.rank) for c in cs),
        )
        for who, cs in groups.items()
    )


def answer_text(citations: tuple[Citation, ...], question: str) -> str:
    """The plain-text answer from citations alone (see ``citation_blocks``)."""
    return render(citation_blocks(citations), citations, is_english(question))


LOW_NOTE_ZH = "（把握不大：以下原话可能没有完全回答这个问题。）"
LOW_NOTE_EN = "(Low confidence: these passages may not fully answer the question.)"


def compose(retrieval: Retrieval, verdict: Verdict, k: int | None = None) -> Answer:
    """The answer text quotes the experts grouped by speaker; refusals get topics.

    ``k`` citations at most — more only when a several-experts question quotes more."""
    q = retrieval.question
    english = q.english
    timings = dict(retrieval.timings_ms)
    if not verdict.answerable or not retrieval.hits:
        topics = suggestions(retrieval)
        unfound = verdict.signals.unfound
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
        return Answer(q.original, False, text, (), topics, timings, confidence="none")
    hits = retrieval.hits
    if k is not None and len(hits) > k:
        keep = set(range(k))
        if q.many_speakers:  # each answering expert's best turn, then the best others
            quoted = set(_quoted(retrieval))
            keep = set(sorted(quoted | keep)[: max(k, len(quoted))]) | quoted
        hits = tuple(h for i, h in enumerate(hits) if i in keep)
        retrieval = replace(retrieval, hits=hits)
    citations = tuple(make_citation(i + 1, h, q.about_person) for i, h in enumerate(hits))
    structure = blocks(retrieval, citations)
    text = render(structure, citations, english)
    confidence = "low" if verdict.outcome == LOW else "high"
    if confidence == "low":
        text = (LOW_NOTE_EN if english else LOW_NOTE_ZH) + "\n" + text
    return Answer(
        q.original, True, text, citations, (), timings, confidence=confidence, blocks=structure
    )


def suggestions(retrieval: Retrieval, limit: int = 3) -> tuple[str, ...]:
    """The closest topics: the interviewer's questions or section names near the query."""
    out: list[str] = []
    for h in retrieval.hits:
        t = h.turn
        if t.kind in ("bio", "intro"):
            continue  # a bio is not a topic
        topic = t.asked or section_path(t.article, *t.section)
        if topic and topic not in out:
            out.append(topic)
        if len(out) >= limit:
            break
    return tuple(out)
