"""Gold-set parsing and retrieval metrics, as pure functions so they can be unit-tested.

The corpus wraps lines mid-word, so every text comparison here ignores whitespace.

Definitions (one place; the report and the README quote them):

* hit@k / MRR: rank of the first citation whose text holds one of ``answer_contains``;
  an abstention on an answerable question is a miss.
* highlight@1: the first citation's ``highlight`` (the sentence the UI marks) holds one of
  ``answer_contains``.
* speaker@1: for an ordinary item, 1 when the first citation's speaker is one of the gold
  ``speakers`` (any of them is acceptable), else 0. For a several-expert item
  (``expect_all_speakers``) it is the share of the gold speakers found among the first
  ``MULTI_SPEAKER_DEPTH`` citations ("三位专家怎么看" wants each of them quoted near the top).
* section@1: the gold section is a part of the first citation's section path.
* unanswerable refused / answerable wrongly refused: shares of ``answered is False``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_SPACE = re.compile(r"\s+")
KS = (1, 3, 5)
SPLITS = ("dev", "test")
LANGS = ("zh", "en", "mixed")
#: how many top citations a several-expert question's speakers are looked for in
MULTI_SPEAKER_DEPTH = 5
METRIC_KEYS = (
    "hit@1",
    "hit@3",
    "hit@5",
    "mrr",
    "speaker@1",
    "section@1",
    "highlight@1",
    "hit@1_zh",
    "hit@1_en",
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
    kind: str = ""
    #: "zh", "en" or "mixed"; from the question's script when the gold line does not say
    lang: str = ""
    #: "dev" (tune on it), "test" (report only) or "" (not split)
    split: str = ""
    #: for a follow-up: the question asked just before it in the same chat
    previous: str = ""
    #: a several-expert question: every gold speaker is expected near the top
    expect_all_speakers: bool = False

    @property
    def language(self) -> str:
        """The gold line's "lang", else zh/en by the question's script."""
        return self.lang or ("zh" if has_cjk(self.question) else "en")

    def to_dict(self) -> dict:
        d: dict = {"id": self.id, "question": self.question}
        for key in ("kind", "lang", "split", "previous"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.unanswerable:
            d["unanswerable"] = True
        else:
            d.update(
                speakers=list(self.speakers),
                section=self.section,
                answer_contains=list(self.answer_contains),
            )
            if self.expect_all_speakers:
                d["expect_all_speakers"] = True
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
    text = {}
    for key in ("kind", "lang", "split", "previous"):
        value = obj.get(key) or ""
        if not isinstance(value, str):
            raise ValueError(f"'{key}' must be a string")
        text[key] = value.strip()
    if text["split"] and text["split"] not in SPLITS:
        raise ValueError(f"'split' must be one of {', '.join(SPLITS)}")
    if text["lang"] and text["lang"] not in LANGS:
        raise ValueError(f"'lang' must be one of {', '.join(LANGS)}")
    every = obj.get("expect_all_speakers", False)
    if not isinstance(every, bool):
        raise ValueError("'expect_all_speakers' must be true or false")
    if every and len(speakers) < 2:
        raise ValueError("'expect_all_speakers' needs at least two 'speakers'")
    return GoldItem(
        id=str(qid).strip(),
        question=question.strip(),
        speakers=speakers,
        section=section.strip(),
        answer_contains=phrases,
        unanswerable=unanswerable,
        line=lineno,
        kind=text["kind"],
        lang=text["lang"],
        split=text["split"],
        previous=text["previous"],
        expect_all_speakers=every,
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


def speaker_share(speakers: Iterable[str | None], expected: Sequence[str]) -> float:
    """Share of the expected speakers that appear among the given (top) citations' speakers."""
    found = {_name(s) for s in speakers if s}
    wanted = {_name(e) for e in expected}
    return len(wanted & found) / len(wanted) if wanted else 1.0


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
    #: 0..1; equals speaker_ok for ordinary items, the share for several-expert ones
    speaker_score: float | None = None
    highlight_ok: bool | None = None
    #: how the follow-up was read (question and speaker asked), for the report
    resolved: str = ""

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
        if self.item.expect_all_speakers and self.speaker_score is not None:
            if self.speaker_score < 1:
                why.append(f"only {self.speaker_score:.0%} of the experts in the top citations")
        elif self.speaker_ok is False:
            why.append("wrong speaker at rank 1")
        if self.section_ok is False:
            why.append("wrong section at rank 1")
        if self.highlight_ok is False and self.rank == 1:
            why.append("highlight misses the phrase")
        return why

    def expected(self) -> str:
        """The gold expectation in one line, for the failure listing."""
        if self.item.unanswerable:
            return "abstain"
        joiner = " + " if self.item.expect_all_speakers else "/"
        who = joiner.join(self.item.speakers) or "any speaker"
        return f"{who} | {self.item.section or 'any section'} | " + " / ".join(
            self.item.answer_contains
        )

    def to_dict(self) -> dict:
        return {
            "id": self.item.id,
            "question": self.item.question,
            "kind": self.item.kind,
            "lang": self.item.language,
            "split": self.item.split,
            "unanswerable": self.item.unanswerable,
            "answered": self.answered,
            "rank": self.rank,
            "speaker_ok": self.speaker_ok,
            "speaker_score": self.speaker_score,
            "section_ok": self.section_ok,
            "highlight_ok": self.highlight_ok,
            "latency_ms": round(self.latency_ms, 1),
            "expected": self.expected(),
            "failures": self.failures(),
            "returned": self.returned,
            **self._followup(),
        }

    def _followup(self) -> dict:
        if not self.item.previous:
            return {}
        return {"previous": self.item.previous, "resolved": self.resolved}


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
        out.highlight_ok = contains_any([first.get("highlight")], item.answer_contains)
        if item.speakers:
            out.speaker_ok = speaker_matches(first.get("speaker"), item.speakers)
            out.speaker_score = float(out.speaker_ok)
            if item.expect_all_speakers:
                top = [c.get("speaker") for c in citations[:MULTI_SPEAKER_DEPTH]]
                out.speaker_score = speaker_share(top, item.speakers)
                out.speaker_ok = out.speaker_score == 1.0
        if item.section:
            out.section_ok = section_matches(first.get("section"), item.section)
    return out


def _rate(flags: Sequence[bool | float]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def hit1(outcomes: Sequence[Outcome]) -> float | None:
    """hit@1 over the answerable outcomes given."""
    return _rate([o.rank == 1 for o in outcomes if not o.item.unanswerable])


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
    m["speaker@1"] = _rate([o.speaker_score for o in answerable if o.speaker_score is not None])
    m["section@1"] = _rate([o.section_ok for o in answerable if o.section_ok is not None])
    m["highlight@1"] = _rate(
        [bool(o.highlight_ok) for o in answerable if o.highlight_ok is not None]
    )
    for lang in LANGS:
        group = [o for o in answerable if o.item.language == lang]
        m[f"hit@1_{lang}"] = hit1(group)
        m[f"n_{lang}"] = len(group)
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


def by_kind(outcomes: Sequence[Outcome]) -> dict[str, dict]:
    """Per kind of question: how many, and hit@1 (answerable) or the share refused."""
    kinds: dict[str, list[Outcome]] = {}
    for o in outcomes:
        kinds.setdefault(o.item.kind or "-", []).append(o)
    out = {}
    for kind, group in sorted(kinds.items()):
        if all(o.item.unanswerable for o in group):
            out[kind] = {"n": len(group), "refused": _rate([o.answered is False for o in group])}
        else:
            out[kind] = {"n": len(group), "hit@1": hit1(group)}
    return out


def fold_of(qid: str, folds: int) -> int:
    """A question's fold for k-fold figures: a stable hash of its id."""
    return int(hashlib.sha1(qid.encode("utf-8")).hexdigest(), 16) % folds


def fold_hit1(outcomes: Sequence[Outcome], folds: int = 5) -> list[float | None]:
    """hit@1 on each of ``folds`` hash folds of the answerable questions: how much a
    figure moves with which questions happen to be held out."""
    return [hit1([o for o in outcomes if fold_of(o.item.id, folds) == f]) for f in range(folds)]


#: Issue #13's targets, checked on the TEST split (and the generated negatives' test part).
#: The one place they are written; tests/test_eval.py and the report read them from here.
TARGETS = {
    "hit@1": (">=", 0.93),
    "hit@5": (">=", 0.98),
    "speaker@1": (">=", 0.95),
    "highlight@1": (">=", 0.85),
    "unanswerable_abstained": (">=", 0.95),
    "generated_abstained": (">=", 0.95),
    "answerable_abstained": ("<=", 0.01),
    "dev_test_gap_hit@1": ("<=", 0.03),
    "en_zh_gap_hit@1": ("<=", 0.05),
}


def target_figures(test: dict, dev: dict | None = None, generated: dict | None = None) -> dict:
    """The figures TARGETS are checked on: the test split's metrics, plus the dev−test
    distance in hit@1 and the English–Chinese one (both absolute), and the generated
    negatives' share refused."""
    figures = dict(test)
    if dev is not None and dev.get("hit@1") is not None and test.get("hit@1") is not None:
        # either way: a test split far better than dev is as suspect as one far worse
        figures["dev_test_gap_hit@1"] = round(abs(dev["hit@1"] - test["hit@1"]), 4)
    if test.get("hit@1_en") is not None and test.get("hit@1_zh") is not None:
        figures["en_zh_gap_hit@1"] = round(abs(test["hit@1_zh"] - test["hit@1_en"]), 4)
    if generated is not None:
        figures["generated_abstained"] = generated.get("unanswerable_abstained")
    return figures


def meets(key: str, value: float | None) -> bool | None:
    """Whether a figure meets its target (None: not measured)."""
    if value is None:
        return None
    op, goal = TARGETS[key]
    return value >= goal if op == ">=" else value <= goal


def missed_targets(metrics: dict) -> list[str]:
    """The issue's targets these figures miss, as 'metric value (target)' strings."""
    missed = []
    for key, (op, goal) in TARGETS.items():
        value = metrics.get(key)
        if meets(key, value) is False:
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
    ("highlight@1", "hl@1"),
    ("hit@1_zh", "zh@1"),
    ("hit@1_en", "en@1"),
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
