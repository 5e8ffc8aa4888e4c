"""Gold-set parsing and retrieval metrics, as pure functions so they can be unit-tested.

The corpus wraps lines mid-word, so every text comparison here ignores whitespace.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_SPACE = re.compile(r"\s+")
KS = (1, 3, 5)
METRIC_KEYS = (
    "hit@1",
    "hit@3",
    "hit@5",
    "mrr",
    "speaker@1",
    "section@1",
    "unanswerable_abstained",
    "answerable_abstained",
    "latency_p50_ms",
    "latency_p95_ms",
)


def squash(text: str | None) -> str:
    """Drop all whitespace: a phrase must match across the page's line wraps."""
    return _SPACE.sub("", text or "")


def has_cjk(text: str) -> bool:
    """True when the text has a CJK ideograph (used to tell English questions apart)."""
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@dataclass(frozen=True)
class GoldItem:
    """One gold question: what counts as a correct first citation, or that none exists."""

    id: str
    question: str
    speakers: tuple[str, ...] = ()
    section: str = ""
    answer_contains: tuple[str, ...] = ()
    unanswerable: bool = False
    line: int = 0

    def to_dict(self) -> dict:
        d: dict = {"id": self.id, "question": self.question}
        if self.unanswerable:
            d["unanswerable"] = True
        else:
            d.update(
                speakers=list(self.speakers),
                section=self.section,
                answer_contains=list(self.answer_contains),
            )
        return d


def _str_list(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def parse_gold_line(line: str, lineno: int = 0) -> GoldItem:
    """Parse one JSONL line; the ValueError says what is wrong, so the line is reported."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    qid = obj.get("id")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
        raise ValueError("missing 'id'")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("missing or empty 'question'")
    unanswerable = obj.get("unanswerable", False)
    if not isinstance(unanswerable, bool):
        raise ValueError("'unanswerable' must be true or false")
    section = obj.get("section") or ""
    if not isinstance(section, str):
        raise ValueError("'section' must be a string")
    speakers = _str_list(obj.get("speakers"), "speakers")
    phrases = _str_list(obj.get("answer_contains"), "answer_contains")
    if not unanswerable and not phrases:
        raise ValueError("needs a non-empty 'answer_contains' list or \"unanswerable\": true")
    if unanswerable and phrases:
        raise ValueError("an unanswerable question cannot have 'answer_contains'")
    return GoldItem(
        id=str(qid).strip(),
        question=question.strip(),
        speakers=speakers,
        section=section.strip(),
        answer_contains=phrases,
        unanswerable=unanswerable,
        line=lineno,
    )


def parse_gold(lines: Iterable[str]) -> tuple[list[GoldItem], list[str]]:
    """Parse gold lines; return the good items and one 'line N: why' per skipped line."""
    items: list[GoldItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        try:
            item = parse_gold_line(line, lineno)
        except ValueError as exc:
            problems.append(f"line {lineno}: {exc}; skipped")
            continue
        if item.id in seen:
            problems.append(
                f"line {lineno}: id {item.id!r} already used on line {seen[item.id]}; skipped"
            )
            continue
        seen[item.id] = lineno
        items.append(item)
    return items, problems


def load_gold(path: Path | str) -> tuple[list[GoldItem], list[str]]:
    """Read a gold JSONL file (see parse_gold)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return parse_gold(fh)


def contains_any(texts: Iterable[str | None], phrases: Iterable[str]) -> bool:
    """Whether any phrase occurs in any of the texts, whitespace-insensitively."""
    hay = [squash(t) for t in texts if t]
    needles = [squash(p) for p in phrases if squash(p)]
    return any(n in h for n in needles for h in hay)


def first_hit_rank(ranked: Sequence[Iterable[str | None]], phrases: Iterable[str]) -> int | None:
    """1-based rank of the first result whose texts contain a phrase, or None."""
    phrases = list(phrases)
    for rank, texts in enumerate(ranked, 1):
        if contains_any(texts, phrases):
            return rank
    return None


def _name(text: str | None) -> str:
    return squash(text).strip("□■")


def speaker_matches(speaker: str | None, allowed: Iterable[str]) -> bool:
    """A first citation's speaker is right when it is one of the acceptable names."""
    allowed = [_name(a) for a in allowed]
    return bool(speaker) and _name(speaker) in allowed


def section_matches(section: str | None, expected: str) -> bool:
    """The expected section is given as a part of the path ("因“智”而乐" matches its subsection)."""
    return squash(expected) in squash(section)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Outcome:
    """What one configuration did with one gold question.

    ``answered`` is None for a pipeline that cannot abstain; ``rank`` is None when no
    citation held a phrase (or the pipeline abstained); speaker/section checks are None
    when the gold item does not ask for them or the pipeline has no such field.
    """

    item: GoldItem
    answered: bool | None
    rank: int | None = None
    speaker_ok: bool | None = None
    section_ok: bool | None = None
    latency_ms: float = 0.0
    returned: list[dict] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Why this question counts as failed (empty when it passed)."""
        if self.item.unanswerable:  # a pipeline that cannot abstain (None) is not judged here
            return ["answered an unanswerable question"] if self.answered else []
        if self.answered is False:
            return ["abstained on an answerable question"]
        why = []
        if self.rank is None:
            why.append(f"no phrase in the top {len(self.returned) or 'k'}")
        elif self.rank > 1:
            why.append(f"first hit at rank {self.rank}")
        if self.speaker_ok is False:
            why.append("wrong speaker at rank 1")
        if self.section_ok is False:
            why.append("wrong section at rank 1")
        return why

    def expected(self) -> str:
        """The gold expectation in one line, for the failure listing."""
        if self.item.unanswerable:
            return "abstain"
        who = "/".join(self.item.speakers) or "any speaker"
        return f"{who} | {self.item.section or 'any section'} | " + " / ".join(
            self.item.answer_contains
        )

    def to_dict(self) -> dict:
        return {
            "id": self.item.id,
            "question": self.item.question,
            "unanswerable": self.item.unanswerable,
            "answered": self.answered,
            "rank": self.rank,
            "speaker_ok": self.speaker_ok,
            "section_ok": self.section_ok,
            "latency_ms": round(self.latency_ms, 1),
            "expected": self.expected(),
            "failures": self.failures(),
            "returned": self.returned,
        }


def slim(citation: dict, width: int = 160) -> dict:
    """What the report keeps of a citation: who, where, score, and the start of the evidence."""
    text = squash(citation.get("highlight") or citation.get("text") or "")
    out = {
        key: citation.get(key)
        for key in ("rank", "speaker", "section", "score", "turn_id")
        if citation.get(key) is not None
    }
    out["highlight"] = text[:width] + ("…" if len(text) > width else "")
    return out


def judge(
    item: GoldItem,
    answered: bool | None,
    citations: Sequence[dict],
    latency_ms: float,
    has_fields: bool = True,
) -> Outcome:
    """Score one response. ``citations``: ranked dicts with text/full_text/speaker/section.

    An abstention is what the user sees, so it scores as a miss even if citations came back.
    """
    out = Outcome(
        item=item, answered=answered, latency_ms=latency_ms, returned=[slim(c) for c in citations]
    )
    if item.unanswerable or answered is False:
        return out
    out.rank = first_hit_rank(
        [(c.get("text"), c.get("full_text")) for c in citations], item.answer_contains
    )
    if has_fields:
        first = citations[0] if citations else {}
        if item.speakers:
            out.speaker_ok = speaker_matches(first.get("speaker"), item.speakers)
        if item.section:
            out.section_ok = section_matches(first.get("section"), item.section)
    return out


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def summarize(outcomes: Sequence[Outcome], ks: Sequence[int] = KS) -> dict:
    """Aggregate one configuration's outcomes into the report's metrics (None: not measurable)."""
    answerable = [o for o in outcomes if not o.item.unanswerable]
    unanswerable = [o for o in outcomes if o.item.unanswerable]
    m: dict = {
        "n_questions": len(outcomes),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
    }
    for k in ks:
        m[f"hit@{k}"] = _rate([o.rank is not None and o.rank <= k for o in answerable])
    m["mrr"] = (
        round(sum(1.0 / o.rank for o in answerable if o.rank) / len(answerable), 4)
        if answerable
        else None
    )
    m["speaker@1"] = _rate([o.speaker_ok for o in answerable if o.speaker_ok is not None])
    m["section@1"] = _rate([o.section_ok for o in answerable if o.section_ok is not None])
    can_abstain = any(o.answered is not None for o in outcomes)
    if can_abstain:
        m["unanswerable_abstained"] = _rate([o.answered is False for o in unanswerable])
        m["answerable_abstained"] = _rate([o.answered is False for o in answerable])
        m["unanswerable_abstained_n"] = sum(o.answered is False for o in unanswerable)
        m["answerable_abstained_n"] = sum(o.answered is False for o in answerable)
    else:
        m["unanswerable_abstained"] = m["answerable_abstained"] = None
        m["unanswerable_abstained_n"] = m["answerable_abstained_n"] = None
    latencies = [o.latency_ms for o in outcomes]
    for q in (50, 95):
        p = percentile(latencies, q)
        m[f"latency_p{q}_ms"] = None if p is None else round(p, 1)
    return m


TARGETS = {
    "hit@1": (">=", 0.90),
    "hit@5": (">=", 1.00),
    "mrr": (">=", 0.93),
    "speaker@1": (">=", 0.95),
    "unanswerable_abstained": (">=", 1.00),
    "answerable_abstained": ("<=", 0.0),
}


def missed_targets(metrics: dict) -> list[str]:
    """The issue's targets this configuration misses, as 'metric value (target)' strings."""
    missed = []
    for key, (op, goal) in TARGETS.items():
        value = metrics.get(key)
        if value is None:
            continue
        ok = value >= goal if op == ">=" else value <= goal
        if not ok:
            missed.append(f"{key} {value:.3f} (target {op} {goal:.2f})")
    return missed


def fmt(value: float | int | None, digits: int = 3) -> str:
    """Table cell: '—' for not measurable."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _abst_cell(m: dict, which: str) -> str:
    n = m.get(f"{which}_abstained_n")
    total = m.get("n_unanswerable" if which == "unanswerable" else "n_answerable")
    return "—" if n is None else f"{n}/{total}"


TABLE_COLUMNS = (
    ("hit@1", "hit@1"),
    ("hit@3", "hit@3"),
    ("hit@5", "hit@5"),
    ("mrr", "MRR"),
    ("speaker@1", "spk@1"),
    ("section@1", "sec@1"),
)


def table_rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, one row per configuration."""
    header = ["config", *(label for _, label in TABLE_COLUMNS)]
    header += ["unans. abst.", "ans. abst.", "p50 ms", "p95 ms"]
    rows = []
    for name, m in results.items():
        row = [name, *(fmt(m.get(key)) for key, _ in TABLE_COLUMNS)]
        row += [_abst_cell(m, "unanswerable"), _abst_cell(m, "answerable")]
        row += [fmt(m.get("latency_p50_ms"), 1), fmt(m.get("latency_p95_ms"), 1)]
        rows.append(row)
    return header, rows


def format_table(results: dict[str, dict]) -> str:
    """Plain-text table for the terminal (ASCII column content, so widths line up)."""
    header, rows = table_rows(results)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown_table(results: dict[str, dict]) -> str:
    """The same table as Markdown."""
    header, rows = table_rows(results)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def describe_returned(citations: Sequence[dict], limit: int = 3, width: int = 48) -> list[str]:
    """Short lines saying what came back instead (speaker, section, start of the passage)."""
    lines = []
    for c in citations[:limit]:
        who = c.get("speaker") or "-"
        where = c.get("section") or "-"
        text = squash(c.get("highlight") or c.get("text") or "")
        snippet = text[:width] + ("…" if len(text) > width else "")
        lines.append(f"#{c.get('rank', '?')} {who} | {where} | {snippet}")
    return lines
