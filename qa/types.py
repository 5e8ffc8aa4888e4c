"""Small frozen records that cross stage boundaries (parse → chunk → index → retrieve → answer).

Each has ``to_dict()`` for JSON; nothing downstream reaches back upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

SECTION_SEP = " › "

Progress = Callable[[str], object] | None  # where long work reports; None: silent


def say(progress: Progress, message: str) -> None:
    """Report a step of long work (index build, model preparation) when someone listens."""
    if progress is not None:
        progress(message)


def section_path(*parts: str | None) -> str:
    """'article › section › subsection', empty parts left out: the one way a place is written."""
    return SECTION_SEP.join(p for p in parts if p)


@dataclass(frozen=True)
class Turn:
    """One speaker turn (or one commentary section, intro paragraph, bio) of one article.

    ``text`` is the turn with wrapped lines joined; ``offsets[i]`` is the character offset
    in the source file of ``text[i]``, so any slice of the text maps back to the file.
    """

    id: str  # "<source>#<n>", stable for a given file content
    source: str  # file path relative to the corpus folder
    article: str  # article title ("" when the page gives none)
    section: tuple[str, ...]  # section path, outermost first; () for none
    speaker: str | None  # None for unattributed text
    speaker_title: str | None  # the speaker's title as printed on the page
    asked: str | None  # the interviewer's question this turn answers
    kind: str  # "answer" | "question" | "commentary" | "intro" | "bio" | "paragraph"
    text: str
    start: int
    end: int
    offsets: tuple[int, ...] = field(default=(), repr=False, compare=False)

    @property
    def section_path(self) -> str:
        return SECTION_SEP.join(self.section)

    def to_dict(self) -> dict:
        # not asdict(): it deep-copies ``offsets`` (one int per character) only to drop it
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "offsets"}
        d["section"] = list(self.section)
        return d


@dataclass(frozen=True)
class Passage:
    """A retrievable window of one turn (never crosses a turn)."""

    id: int  # row in the index
    turn_id: str
    text: str
    source: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return {"id": self.id, "turn_id": self.turn_id, "text": self.text,
                "source": self.source, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Citation:
    """One cited expert answer: who said it, where, and the supporting words."""

    rank: int
    speaker: str | None
    speaker_title: str | None
    article: str
    section: str  # the path as one string, parts joined by " › "
    asked: str | None
    text: str  # the cited passage, at most 800 characters
    highlight: str  # the best-supporting sentence(s), a substring of ``text``
    score: float
    source: str
    start: int
    end: int
    turn_id: str = ""
    kind: str = "answer"
    full_text: str = ""  # the whole turn (for "open the full passage")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Quote:
    """One sentence an expert said, with the citation it comes from."""

    text: str
    rank: int  # the citation's [n]


@dataclass(frozen=True)
class SpeakerBlock:
    """One expert's part of the answer: a short header and 1–3 sentences in reading order."""

    speaker: str | None  # None for unattributed text
    title: str | None  # the title as printed on the page
    short_title: str | None  # what the header shows (副院长, 研究员)
    quotes: tuple[Quote, ...]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    question: str
    answerable: bool
    answer: str  # plain text (never Markdown or HTML): the experts' own words with [n] marks
    citations: tuple[Citation, ...] = ()
    suggestions: tuple[str, ...] = ()  # closest topics, offered when not answerable
    timings_ms: dict = field(default_factory=dict)
    # "high": answered; "low": answered, with a note that the evidence is weak; "none": refused
    confidence: str = "high"
    blocks: tuple[SpeakerBlock, ...] = ()  # the answer's structure, one block per expert

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answerable": self.answerable,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "suggestions": list(self.suggestions),
            "timings_ms": dict(self.timings_ms),
            "confidence": self.confidence,
            "blocks": [b.to_dict() for b in self.blocks],
        }
