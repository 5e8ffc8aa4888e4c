"""The like/dislike log: one JSON line per vote, checked and capped before it is written.

A vote comes from the browser, so it is untrusted: only the two known votes are taken,
for a turn that exists; each client may add only so many lines an hour, and the file
stops growing at a size limit, so no one can fill the disk through the thumbs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from .chat import ChatTurn, citation_id
from .settings import settings

VOTES = ("like", "dislike")
PER_CLIENT_PER_HOUR = 120  # votes one client may log in an hour
MAX_FILE_BYTES = 50_000_000  # the log stops growing here
MAX_TEXT_CHARS = 4000  # of the answer text kept in a line


class FeedbackRefused(ValueError):
    """A vote that is not logged; the message is one line fit to show the user."""


def vote_of(liked: object) -> str:
    """'like' or 'dislike' from what the chat sends (a bool, or the button's label)."""
    if isinstance(liked, bool):
        return "like" if liked else "dislike"
    if isinstance(liked, str) and liked.strip().lower() in VOTES:
        return liked.strip().lower()
    raise FeedbackRefused("unknown vote: use like or dislike")


class FeedbackLog:
    """Appends one JSON line per vote; a lock keeps concurrent lines whole."""

    def __init__(
        self,
        path: Path | str,
        per_client_per_hour: int = PER_CLIENT_PER_HOUR,
        max_bytes: int = MAX_FILE_BYTES,
    ):
        self.path = replica_path(path)
        self.per_client = per_client_per_hour
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}

    def _admit(self, client: str) -> None:
        """Refuses a client over its hourly share, or any vote once the file is full."""
        now = time.monotonic()
        recent = self._recent.setdefault(client, deque())
        while recent and now - recent[0] > 3600:
            recent.popleft()
        if len(recent) >= self.per_client:
            raise FeedbackRefused("too many votes from this address: try again later")
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        if size >= self.max_bytes:
            raise FeedbackRefused("the feedback log is full")
        recent.append(now)
        if len(self._recent) > 10_000:  # forget idle clients
            for key in [k for k, q in self._recent.items() if not q or now - q[-1] > 3600]:
                del self._recent[key]

    def record(self, turn: ChatTurn, vote: str, client: str = "local") -> dict:
        """Logs ``vote`` on ``turn``; raises FeedbackRefused for a bad or unwanted vote."""
        if vote not in VOTES:
            raise FeedbackRefused("unknown vote: use like or dislike")
        row = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "vote": vote,
            "question": turn.asked,
            "asked": turn.question,
            "answer": turn.answer.answer[:MAX_TEXT_CHARS],
            "answerable": turn.answer.answerable,
            "citation_ids": [citation_id(c) for c in turn.answer.citations],
        }
        line = json.dumps(row, ensure_ascii=False)
        with self._lock:
            self._admit(client)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        return row


def replica_path(path: Path | str) -> Path:
    """``{host}`` and ``{pid}`` in the path become this machine's name and this process's
    id: replicas writing to one shared folder each keep their own file (no two processes
    append to one file, and a replica keeps no state another one needs)."""
    text = str(path)
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())
    return Path(text.replace("{host}", host or "host").replace("{pid}", str(os.getpid())))


def default_feedback_path() -> Path:
    """QA_FEEDBACK (see qa/settings.py), else ./feedback.jsonl."""
    return settings().feedback
