"""One chat turn, the same for every front end (web chat, widget, `qa chat`, /api/chat).

A turn resolves a follow-up against the chat so far ("他还说了什么？" → the previous
question of the same speaker), asks the engine, and leaves out what the follow-up
excludes: passages already quoted ("what else"), or the speaker just heard ("其他专家").
The front ends only render the ``ChatTurn`` it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .answer import answer_text, citation_blocks
from .followup import MORE, Context, FollowUp, resolve_followup
from .types import Answer, Citation

if TYPE_CHECKING:  # the engine loads a model: not needed to describe a turn
    from .engine import Engine

QUOTED = 3  # citations quoted in a reply; the rest are listed as sources only
SPOKEN = ("answer", "commentary", "paragraph")  # kinds of turn that are someone's words
EXHAUSTED = "这位专家关于这个话题的发言都已列出。That is all this speaker said on it."


def citation_id(c: Citation) -> str:
    """A stable id for a cited passage: its turn id, else source and offsets."""
    return c.turn_id or f"{c.source}:{c.start}-{c.end}"


def quoted(citations: Sequence[Citation]) -> list[Citation]:
    """The citations a reply quotes: someone's words (a bio or an intro is a source, not a
    quote), at most ``QUOTED``; the first citation when none is spoken."""
    return [c for c in citations if c.kind in SPOKEN][:QUOTED] or list(citations[:1])


@dataclass(frozen=True)
class ChatTurn:
    """One question and its reply, as every front end shows it."""

    asked: str  # the question as the user typed it
    followup: FollowUp  # how it was understood: the question retrieved for, and why
    speaker: str | None  # the speaker filter it ran with (chosen, or from the follow-up)
    section: str | None  # the section filter it ran with
    answer: Answer  # what was found, after the follow-up's exclusions, ranks 1..n
    shown: tuple[str, ...]  # ids of passages quoted so far in this thread of "else" turns
    exhausted: bool = False  # "what else" found only what was already shown

    @property
    def question(self) -> str:
        """What was retrieved for."""
        return self.followup.question

    @property
    def context(self) -> Context:
        """What a later follow-up may refer back to."""
        cited = next((c.speaker for c in self.answer.citations if c.speaker), None)
        return Context(self.question, self.speaker, cited, self.shown)

    def to_dict(self) -> dict:
        return {
            "asked": self.asked,
            "question": self.question,
            "followup": self.followup.reason,
            "speaker": self.speaker,
            "section": self.section,
            "exclude_speaker": self.followup.exclude_speaker,
            "exhausted": self.exhausted,
            "answer": self.answer.to_dict(),
            # what a stateless client sends back in ``history`` for the next turn
            "context": {
                "question": self.question,
                "speaker": self.speaker,
                "cited_speaker": self.context.cited_speaker,
                "shown": list(self.shown),
            },
        }


def next_turn(
    engine: Engine,
    history: Sequence[ChatTurn | Context],
    question: str,
    k: int = 5,
    speaker: str | None = None,
    section: str | None = None,
) -> ChatTurn:
    """The next turn of a chat: resolve, ask, drop what the follow-up excludes.

    ``history`` is the chat so far, oldest first (turns, or the contexts a stateless
    client sends back). ``speaker``/``section`` are filters the user chose; a follow-up's
    speaker applies when none is chosen. Raises what ``Engine.ask`` raises.
    """
    from .engine import MAX_K, clean_question

    asked = clean_question(question)
    contexts = [h.context if isinstance(h, ChatTurn) else h for h in history]
    names = [name for name, _ in engine.speakers]
    fu = resolve_followup(contexts, asked, names)
    spk = speaker or fu.speaker
    exclude = set(fu.exclude)
    # ask for more than k so k remain after the exclusions
    ask_k = min(MAX_K, k + len(exclude) + (k if fu.exclude_speaker else 0))
    found = engine.ask(fu.question, k=ask_k, speaker=spk, section=section)
    kept = [
        c
        for c in found.citations
        if citation_id(c) not in exclude
        and not (fu.exclude_speaker and c.speaker == fu.exclude_speaker)
        # "what else did he say" wants his words, not his bio
        and (fu.reason != MORE or c.kind in SPOKEN)
    ][:k]
    exhausted = bool(found.answerable and found.citations and not kept)
    kept = [replace(c, rank=i + 1) for i, c in enumerate(kept)]
    answer = found if kept == list(found.citations) else replace(
        found,
        citations=tuple(kept),
        answerable=found.answerable and not exhausted,
        answer=EXHAUSTED if exhausted else answer_text(tuple(kept), found.question),
        blocks=() if exhausted else citation_blocks(tuple(kept)),
    )
    carried = sorted(exclude) if fu.reason == MORE else []
    ids = [citation_id(c) for c in quoted(kept)] if answer.answerable else []
    shown = tuple(carried + [i for i in ids if i not in carried])
    return ChatTurn(asked, fu, spk, section, answer, shown, exhausted)

