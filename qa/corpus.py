"""Parse interview files into attributed ``Turn``s.

Two input forms are understood:

* raw newspaper text extracted from print layout (lines wrap mid-word, headings and
  quotation marks float on their own lines, blank lines fall mid-sentence);
* a clean transcript: ``# title``, ``## section``, turns written ``Speaker：text``
  (optionally ``Speaker（title）：text``).

Nothing here knows a particular page: speakers, headings, titles and bios are found
from the layout's own conventions (a name and a colon at a line start, a byline marked
``□``, a short heading block before a question, a bio line ``Name  title``, an
``（作者单位：…）`` note). Text the parser cannot place still becomes unattributed
paragraphs, so an unknown layout indexes rather than fails.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorpusProblem
from .types import Turn

TEXT_SUFFIXES = {".txt", ".md", ".text"}
SENTENCE_END = "。！？!?"
CLOSERS = "”’」』）)】"
CJK = r"\u4e00-\u9fff"

# "蔡之兵：…" or "蔡之兵（中央党校副教授）：…" at a line start. Names are 2–8 CJK characters
# (a newspaper can be a speaker too); "·" joins transliterated names.
TURN_START = re.compile(
    rf"^(?P<name>[{CJK}·]{{2,8}})(?:[（(](?P<title>[^（()）\n]{{2,60}})[）)])?\s*[：:](?P<rest>.*)$"
)
# A byline such as "□王正攀" / "■ 王正攀" / "◎王正攀" on a line of its own.
BYLINE = re.compile(rf"^[□■◎●◆]\s*(?P<name>[{CJK}·]{{2,6}})\s*$")
# An author note: "（作者单位：…）", "（作者系…）"; it closes a signed article.
AUTHOR_NOTE = re.compile(r"^[（(]\s*作者(?:单位|系|为|是)[：:]?(?P<rest>.*)$")
HEADING_MAX = 24  # characters in one heading line
TITLE_MAX = 40  # characters in a floating article title
LEAD_MAX = 30  # characters in a commentary sub-heading sentence


@dataclass
class _Line:
    text: str  # stripped content ("" for a blank line)
    start: int  # offset of text[0] in the file


@dataclass
class _Span:
    """Text assembled from wrapped lines, with the file offset of every character."""

    chars: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    def add(self, text: str, start: int) -> None:
        if self.chars and text and _is_latin(self.chars[-1]) and _is_latin(text[0]):
            self.chars.append(" ")
            self.offsets.append(start - 1)
        self.chars.extend(text)
        self.offsets.extend(range(start, start + len(text)))

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def slice(self, i: int, j: int) -> _Span:
        return _Span(self.chars[i:j], self.offsets[i:j])

    def strip(self) -> _Span:
        i, j = 0, len(self.chars)
        while i < j and self.chars[i].isspace():
            i += 1
        while j > i and self.chars[j - 1].isspace():
            j -= 1
        return self.slice(i, j)


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _ends_sentence(text: str) -> bool:
    text = text.rstrip().rstrip(CLOSERS)
    return bool(text) and text[-1] in SENTENCE_END


def _lines(raw: str) -> list[_Line]:
    out, pos = [], 0
    for line in raw.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        stripped = body.strip()
        lead = len(body) - len(body.lstrip())
        out.append(_Line(stripped, pos + lead))
        pos += len(line)
    return out


def _blocks(lines: list[_Line], lo: int, hi: int) -> list[tuple[int, int]]:
    """(first, last+1) line ranges of non-blank runs within lines[lo:hi]."""
    blocks, i = [], lo
    while i < hi:
        if not lines[i].text:
            i += 1
            continue
        j = i
        while j < hi and lines[j].text:
            j += 1
        blocks.append((i, j))
        i = j
    return blocks


# ---------------------------------------------------------------------------------------
# public API


def _text_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def corpus_stat(corpus_dir: Path | str) -> tuple[tuple[str, int, int], ...]:
    """(relative path, mtime in ns, size) of every corpus file: a cheap look for edits
    (a watcher hashes the texts only when this changes). Empty when the folder is gone."""
    root = Path(corpus_dir)
    out = []
    try:
        for path in _text_files(root):
            st = path.stat()
            out.append((path.relative_to(root).as_posix(), st.st_mtime_ns, st.st_size))
    except OSError:  # a file removed while listing: the next look sees the settled state
        return ()
    return tuple(out)


def read_corpus(corpus_dir: Path | str) -> list[tuple[str, str]]:
    """(relative path, text) of every text file under the corpus folder, sorted."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusProblem(f"corpus folder {root} not found: pass --corpus DIR or set QA_CORPUS")
    files = _text_files(root)
    if not files:
        raise CorpusProblem(f"corpus folder {root} has no .txt or .md files: drop an interview in")
    out = []
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusProblem(
                f"cannot read {path} ({exc.__class__.__name__}): save it as UTF-8 text or remove it"
            ) from None
        out.append((path.relative_to(root).as_posix(), text))
    return out


def corpus_fingerprint(files: list[tuple[str, str]]) -> dict[str, str]:
    """sha256 of each file's text: what the index manifest compares to detect a changed corpus."""
    return {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in files}


def parse_text(text: str, source: str) -> list[Turn]:
    """Turns of one file, in reading order."""
    if re.search(r"^#{1,3}\s+\S", text, flags=re.M):
        return _Transcript(text, source).parse()
    return _Newspaper(text, source).parse()


# ---------------------------------------------------------------------------------------
# shared helpers


@dataclass
class _Draft:
    """A turn before the article title and speaker titles are known."""

    kind: str
    span: _Span
    speaker: str | None = None
    section: tuple[str, ...] = ()
    asked: str | None = None
    article_key: int = 0  # which article of the file it belongs to
    inline_title: str | None = None


def _find_interviewer(drafts: list[_Draft]) -> str | None:
    """The speaker whose turns are mostly questions."""
    asks: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for d in drafts:
        if d.kind == "turn" and d.speaker:
            total[d.speaker] += 1
            if d.span.text.rstrip().rstrip(CLOSERS)[-1:] in "？?":
                asks[d.speaker] += 1
    best = [(asks[s] / total[s], total[s], s) for s in total if asks[s] * 2 > total[s]]
    return max(best)[2] if best else None


def _mark_questions(drafts: list[_Draft]) -> str | None:
    """Split turns into the interviewer's questions and answers; returns the interviewer."""
    interviewer = _find_interviewer(drafts)
    asked: str | None = None
    for d in drafts:
        if d.kind != "turn":
            continue
        if d.speaker == interviewer:
            d.kind = "question"
            asked = d.span.text.strip()
        else:
            d.kind = "answer"
            d.asked = asked
    return interviewer


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"\W", "", text)
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _finish(
    drafts: list[_Draft],
    source: str,
    article_titles: dict[int, str],
    speaker_titles: dict[str, str],
) -> list[Turn]:
    turns = []
    for n, d in enumerate(drafts):
        span = d.span.strip()
        if not span.chars:
            continue
        title = d.inline_title or speaker_titles.get(d.speaker or "")
        turns.append(
            Turn(
                id=f"{source}#{n}",
                source=source,
                article=article_titles.get(d.article_key, ""),
                section=d.section,
                speaker=d.speaker,
                speaker_title=title,
                asked=d.asked,
                kind=d.kind,
                text=span.text,
                start=span.offsets[0],
                end=span.offsets[-1] + 1,
                offsets=tuple(span.offsets),
            )
        )
    return turns


# ---------------------------------------------------------------------------------------
# raw newspaper layout


class _Newspaper:
    def __init__(self, raw: str, source: str) -> None:
        self.raw = raw
        self.source = source
        self.lines = _lines(raw)

    # -- line classes -------------------------------------------------------------------

    def _turn_match(self, i: int) -> re.Match[str] | None:
        """A turn start: name and colon at a line start, after a finished sentence."""
        m = TURN_START.match(self.lines[i].text)
        if not m:
            return None
        prev = next((ln.text for ln in reversed(self.lines[:i]) if ln.text), "")
        if prev and not _ends_sentence(prev) and not self._is_heading_line(prev):
            return None
        return m

    @staticmethod
    def _is_heading_line(text: str) -> bool:
        return 0 < len(text) <= HEADING_MAX and text[-1] not in "。；，、：:;,"

    def _heading_at(self, first: int, last: int) -> bool:
        """A block of 1–3 short lines whose next non-blank line starts a turn."""
        if not 1 <= last - first <= 3:
            return False
        prev = next((ln.text for ln in reversed(self.lines[:first]) if ln.text), "")
        if prev and not _ends_sentence(prev):
            return False  # a wrapped line mid-sentence, not a heading
        if not all(self._is_heading_line(ln.text) for ln in self.lines[first:last]):
            return False
        if any(TURN_START.match(ln.text) or BYLINE.match(ln.text) for ln in self.lines[first:last]):
            return False
        nxt = next((k for k in range(last, len(self.lines)) if self.lines[k].text), None)
        return nxt is not None and TURN_START.match(self.lines[nxt].text) is not None

    # -- segmentation -------------------------------------------------------------------

    def parse(self) -> list[Turn]:
        lines = self.lines
        n = len(lines)
        turn_at = {i: m for i in range(n) if lines[i].text and (m := self._turn_match(i))}
        speakers = Counter(m["name"] for m in turn_at.values())
        heading_blocks = {
            a: b for a, b in _blocks(lines, 0, n) if a not in turn_at and self._heading_at(a, b)
        }
        bylines = {i: m["name"] for i in range(n) if (m := BYLINE.match(lines[i].text))}

        drafts: list[_Draft] = []
        leftovers: list[int] = []  # line numbers no structure claimed
        notes: dict[int, str] = {}  # article key -> author note
        section: tuple[str, ...] = ()
        n_articles = 1
        current: _Draft | None = None
        i = 0
        while i < n:
            line = lines[i]
            if i in heading_blocks:
                end = heading_blocks[i]
                section = tuple(ln.text for ln in lines[i:end])
                current = None
                i = end
                continue
            if i in turn_at:
                m = turn_at[i]
                span = _Span()
                rest_start = line.start + m.start("rest")
                span.add(m["rest"], rest_start)
                current = _Draft("turn", span, m["name"], section, article_key=0)
                if m["title"]:
                    current.inline_title = m["title"].strip()
                drafts.append(current)
                i += 1
                continue
            if i in bylines:
                i = self._commentary(i, bylines[i], n_articles, drafts, notes, turn_at, bylines)
                n_articles += 1
                current = None
                continue
            if line.text:
                if current is not None and not self._is_bio(line.text, speakers):
                    current.span.add(line.text, line.start)
                else:
                    current = None
                    leftovers.append(i)
            i += 1

        interviewer = _mark_questions(drafts)
        bios, titles_found, loose = self._leftovers(leftovers, speakers)
        drafts.extend(bios)
        drafts.extend(loose)
        # intro paragraphs that name the interviewees belong to the interview
        for d in loose:
            if interviewer and any(s in d.span.text for s in speakers if s != interviewer):
                d.kind, d.speaker, d.section = "intro", interviewer, ("导语",)

        speaker_titles = {d.speaker: d.span.strip().text for d in bios if d.speaker}
        for key, note in notes.items():
            author = next((d.speaker for d in drafts if d.article_key == key and d.speaker), None)
            if author:
                speaker_titles.setdefault(author, note)
        article_titles = self._assign_titles(drafts, titles_found, n_articles)
        # keep reading order by source offset
        drafts.sort(key=lambda d: d.span.strip().offsets[0] if d.span.strip().chars else 0)
        return _finish(drafts, self.source, article_titles, speaker_titles)

    def _is_bio(self, text: str, speakers: Counter[str]) -> bool:
        """'Name  title…' at a line start: a bio, which ends any running turn."""
        return any(
            text.startswith(s) and len(text) > len(s) and text[len(s)] in " \u3000\t"
            for s in speakers
        )

    def _commentary(
        self,
        i: int,
        author: str,
        key: int,
        drafts: list[_Draft],
        notes: dict[int, str],
        turn_at: dict,
        bylines: dict,
    ) -> int:
        """Read a signed article from its byline to its author note; return the next line."""
        lines = self.lines
        j = i + 1
        paragraphs: list[_Span] = []
        span: _Span | None = None
        blank_before = True
        while j < len(lines):
            text = lines[j].text
            if j in bylines or j in turn_at:
                break
            note = AUTHOR_NOTE.match(text)
            if note:
                note_span = _Span()
                while j < len(lines) and lines[j].text:
                    note_span.add(lines[j].text, lines[j].start)
                    j += 1
                    if note_span.text.rstrip().endswith(("）", ")")):
                        break
                body = AUTHOR_NOTE.match(note_span.text)
                rest = body["rest"] if body else note_span.text
                notes[key] = re.split(r"[；;]", rest.rstrip("）)"))[0].strip()
                # the note is the only place the author's affiliation is printed: keep
                # it as the author's bio so "where does X work?" finds it
                drafts.append(_Draft("bio", note_span, author, ("简介",), article_key=key))
                break
            if not text:
                blank_before = True
                j += 1
                continue
            if span is None or (blank_before and _ends_sentence(span.text)):
                span = _Span()
                paragraphs.append(span)
            span.add(text, lines[j].start)
            blank_before = False
            j += 1

        heads = _subheadings(paragraphs)
        section: tuple[str, ...] = ()
        for p in paragraphs:
            if id(p) in heads:
                section = (heads[id(p)],)
            if drafts and drafts[-1].article_key == key and drafts[-1].section == section:
                # one turn per section: later paragraphs of the same section join it
                prev = drafts[-1].span
                prev.chars.extend(p.chars)
                prev.offsets.extend(p.offsets)
                continue
            drafts.append(_Draft("commentary", p, author, section, article_key=key))
        return j

    def _leftovers(
        self, idx: list[int], speakers: Counter[str]
    ) -> tuple[list[_Draft], list[tuple[str, int]], list[_Draft]]:
        """Split unclaimed lines into bios, floating titles and loose paragraphs."""
        bios: list[_Draft] = []
        titles: list[tuple[str, int]] = []  # (text, line number)
        loose: list[_Draft] = []
        lines = self.lines
        # group consecutive unclaimed lines into blocks separated by blank lines
        blocks: list[list[int]] = []
        for k in idx:
            if blocks and all(not lines[x].text for x in range(blocks[-1][-1] + 1, k)) and (
                k == blocks[-1][-1] + 1
            ):
                blocks[-1].append(k)
            else:
                blocks.append([k])
        para: _Span | None = None
        queue = list(blocks)
        while queue:
            block = queue.pop(0)
            first = lines[block[0]].text
            bio_name = next(
                (s for s in speakers if first.startswith(s) and self._is_bio(first, Counter([s]))),
                None,
            )
            if bio_name:
                span = _Span()
                span.add(first[len(bio_name) :].lstrip(), lines[block[0]].start + len(bio_name))
                for k in block[1:]:
                    span.add(lines[k].text, lines[k].start)
                bios.append(_Draft("bio", span.strip(), bio_name, ("简介",)))
                para = None
                continue
            if para is not None and not _ends_sentence(para.text):
                # a paragraph broken by the layout goes on; once it ends a sentence,
                # the rest of the block is read afresh (it may be a label or a title)
                self._fill(para, block, queue)
                continue
            text = "".join(lines[k].text for k in block)
            short = len(block) <= 2 and all(
                not _ends_sentence(lines[k].text.rstrip("？?")) for k in block
            )
            if short and len(text) <= TITLE_MAX:
                titles.extend((lines[k].text, k) for k in block)
                para = None
                continue
            para = _Span()
            self._fill(para, block, queue)
            loose.append(_Draft("paragraph", para))
        return bios, titles, loose

    def _fill(self, para: _Span, block: list[int], queue: list[list[int]]) -> None:
        """Add a block's lines to a paragraph; label-like lines after its last sentence
        (a column name printed right under it) are put back to be read on their own."""
        lines = self.lines
        for n, k in enumerate(block):
            para.add(lines[k].text, lines[k].start)
            rest = block[n + 1 :]
            if rest and _ends_sentence(para.text) and all(
                self._is_heading_line(lines[x].text) and not _ends_sentence(lines[x].text)
                for x in rest
            ):
                queue.insert(0, rest)
                return

    def _assign_titles(
        self, drafts: list[_Draft], titles: list[tuple[str, int]], n_articles: int
    ) -> dict[int, str]:
        """Give each article the floating title that best matches its text.

        Print layout separates titles from their articles; a title shares words with its
        own article far more than with its neighbours. Short labels (column names) are
        not titles.
        """
        bodies = {
            key: "".join(d.span.text for d in drafts if d.article_key == key)
            for key in range(n_articles)
        }
        body_grams = {key: _bigrams(b) for key, b in bodies.items()}
        scored = []
        for text, _ in titles:
            grams = _bigrams(text)
            if len(grams) < 4:  # column labels like "对话"
                continue
            flat = re.sub(r"\s", "", text)
            for key, bg in body_grams.items():
                exact = flat.rstrip("？?") in re.sub(r"\s", "", bodies[key])
                score = 1.0 if exact else len(grams & bg) / len(grams)
                scored.append((score, -len(bodies[key]), key, text))
        out: dict[int, str] = {}
        used: set[str] = set()
        for score, _, key, text in sorted(scored, reverse=True):
            if score < 0.5 or key in out or text in used:
                continue
            out[key] = text
            used.add(text)
        for key in range(n_articles):
            if key not in out:
                author = next((d.speaker for d in drafts if d.article_key == key and d.speaker), "")
                if key > 0 and author:
                    out[key] = f"{author}署名文章"
                else:
                    out[key] = Path(self.source).stem
        return out


def _subheadings(paragraphs: list[_Span]) -> dict[int, str]:
    """Lead sentences that act as sub-headings, keyed by paragraph id.

    Newspaper commentaries open their parts with short parallel lead sentences of equal
    length ("不断改善…。" / "不断提高…。"). We take the largest group of two or more
    paragraphs whose short lead sentences share a length; an opening paragraph with a
    different rhythm stays an introduction.
    """
    leads: dict[int, str] = {}
    for p in paragraphs:
        text = p.text.strip()
        m = re.match(rf"^(.{{4,{LEAD_MAX}}}?[。！？])", text)
        if m and len(text) >= 3 * len(m[1]):
            leads[id(p)] = m[1]
    groups: dict[int, list[int]] = {}
    for pid, lead in leads.items():
        groups.setdefault(len(lead), []).append(pid)
    best = max(groups.values(), key=len, default=[])
    if len(best) < 2:
        return {}
    return {pid: leads[pid].rstrip("。！？") for pid in best}


# ---------------------------------------------------------------------------------------
# clean transcript


class _Transcript:
    def __init__(self, raw: str, source: str) -> None:
        self.raw = raw
        self.source = source

    def parse(self) -> list[Turn]:
        title = Path(self.source).stem
        section: list[str] = []
        drafts: list[_Draft] = []
        current: _Draft | None = None
        titles: dict[str, str] = {}
        for line in _lines(self.raw):
            text = line.text
            if not text:
                continue
            h = re.match(r"^(#{1,3})\s+(.*)$", text)
            if h:
                level, name = len(h[1]), h[2].strip()
                if level == 1:
                    title, section = name, []
                else:
                    section = section[: level - 2] + [name]
                current = None
                continue
            m = TURN_START.match(text)
            if m:
                span = _Span()
                span.add(m["rest"].strip(), line.start + m.start("rest") + _lead(m["rest"]))
                current = _Draft("turn", span, m["name"], tuple(section))
                current.inline_title = title  # article title rides along until _finish
                if m["title"]:
                    titles[m["name"]] = m["title"].strip()
                drafts.append(current)
                continue
            if current is None:
                current = _Draft("paragraph", _Span(), None, tuple(section))
                current.inline_title = title
                drafts.append(current)
            current.span.add(text, line.start)
        _mark_questions(drafts)
        # article titles rode in inline_title; move them into the article map
        article_titles: dict[int, str] = {}
        keys: dict[str, int] = {}
        for d in drafts:
            t = d.inline_title or title
            d.article_key = keys.setdefault(t, len(keys))
            article_titles[d.article_key] = t
            d.inline_title = None
        return _finish(drafts, self.source, article_titles, titles)


def _lead(text: str) -> int:
    return len(text) - len(text.lstrip())
