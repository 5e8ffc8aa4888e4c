"""Rendering, feedback, the chat handlers and configuration, without a browser.

A stub engine stands in where only the web layer is under test (origins, errors,
streaming); the chat turns themselves run on the real engine (the ``engine`` fixture),
as do test_web.py and test_browser.py.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from qa.chat import ChatTurn, next_turn
from qa.errors import BadQuestion, IndexProblem
from qa.feedback import FeedbackLog, FeedbackRefused, vote_of
from qa.followup import NEW, FollowUp
from qa.render import esc, highlight_html, render_citation, render_user, reply_pieces, wrap_reply
from qa.types import Answer, Citation

CITE = Citation(
    rank=1,
    speaker="卢阳春",
    speaker_title="成都师范学院经济与管理学院副院长",
    article="如何用智博会成果倾力打造“智慧名城”？",
    section="因“智”而乐 › 让智能化为生活添彩",
    asked="您认为该如何加快推进重庆市域社会治理智能化？",
    text="对于老年人使用不太方便，要加快开发语音交互功能。",
    highlight="要加快开发语音交互功能。",
    score=0.9,
    source="a.txt",
    start=10,
    end=60,
    turn_id="a.txt#10",
    kind="answer",
    full_text="社会治理智能化……对于老年人使用不太方便，要加快开发语音交互功能。此外……",
)


def _chat_turn(answer: Answer, asked: str = "q") -> ChatTurn:
    return ChatTurn(asked, FollowUp(asked, None, NEW), None, None, answer, ())


@pytest.mark.parametrize(
    "text",
    [
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "**bold** _it_ `code` [link](javascript:alert(1)) ![i](x)",
        "$x^2$ $$y$$ \\(z\\)",
        '" onmouseover="alert(1)',
        "| a | b |\n|---|---|",
    ],
)
def test_esc_leaves_nothing_active(text: str) -> None:
    out = esc(text).replace("<br>", "")  # the one tag esc adds: line breaks
    for ch in "<>\"'*_`[]()$|!\\":
        assert ch not in out, (ch, out)
    assert "\n" not in out


def test_highlight_is_marked_and_escaped() -> None:
    out = highlight_html("前文<b>。要点*重点*。后文", "要点*重点*。")
    assert out.count("<mark>") == 1
    assert "<b>" not in out and "&lt;b&gt;" in out
    assert "<mark>要点&#42;重点&#42;。</mark>" in out
    assert "<mark>" not in highlight_html("全文", "不在其中")


def test_citation_card_names_who_where_and_question() -> None:
    card = render_citation(CITE)
    assert card.startswith("<details") and "<summary>" in card
    assert "卢阳春" in card and "成都师范学院" in card
    assert "因“智”而乐 › 让智能化为生活添彩" in card
    assert "您认为该如何加快推进重庆市域社会治理智能化？" in card
    assert "<mark>要加快开发语音交互功能。</mark>" in card
    assert "\n" not in card  # one line: Markdown never gets inside


def test_reply_quotes_then_sources() -> None:
    ans = Answer("q", True, "…", (CITE, replace(CITE, rank=2, turn_id="b")))
    html = wrap_reply(reply_pieces(_chat_turn(ans)))
    assert html.index("qa-quote") < html.index("qa-cite")
    assert html.count("<details") == 2
    assert "\n" not in html


def test_unanswerable_reply_points_to_topics_without_listing_them() -> None:
    """The topics are offered once, as clickable chips under the chat, not twice."""
    ans = Answer("q", False, "…", (), ("<b>社会治理</b>智能化",))
    html = wrap_reply(reply_pieces(_chat_turn(ans)))
    assert "没有能回答" in html and "Closest topics below" in html
    assert "社会治理" not in html and "<details" not in html


def test_user_text_is_literal() -> None:
    assert render_user("<img src=x onerror=alert(1)>") == (
        '<div class="qa-user">&lt;img src=x onerror=alert&#40;1&#41;&gt;</div>'
    )


def test_feedback_lines_stay_whole_under_concurrency(tmp_path) -> None:
    log = FeedbackLog(tmp_path / "sub" / "fb.jsonl")
    ans = Answer("q", True, "a", (CITE,))

    def vote(i: int) -> None:
        log.record(_chat_turn(ans, f"问题{i}"), "like" if i % 2 else "dislike", f"10.0.0.{i}")

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [json.loads(line) for line in log.path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40
    assert {"time", "vote", "question", "answer", "citation_ids"} <= set(rows[0])
    assert rows[0]["citation_ids"] == ["a.txt#10"]


# --- the web layer with a stub engine ---------------------------------------------------


def _citation(rank: int, speaker: str, turn: str) -> Citation:
    return Citation(
        rank,
        speaker,
        "教授",
        "文章",
        "一 › 二",
        "问？",
        f"{speaker}的话。",
        f"{speaker}的话。",
        1.0,
        "a.txt",
        0,
        5,
        turn,
        "answer",
        f"{speaker}的话。",
    )


class StubEngine:
    """Just enough of Engine for the web layer: fixed answers, scripted failures."""

    speakers = [("卢阳春", "教授"), ("朱旭森", "研究员")]
    sections = ["文章 › 一 › 二"]

    def ask(self, question, k=5, speaker=None, section=None, mode="hybrid") -> Answer:
        from qa.engine import clean_question

        question = clean_question(question)
        if question == "index gone":
            raise IndexProblem("no index yet: run `qa index`")
        pool = [_citation(i + 1, s, f"t#{i}") for i, s in enumerate(["卢阳春"] * 4 + ["朱旭森"])]
        if speaker:
            pool = [c for c in pool if c.speaker == speaker]
        return Answer(question, True, "…", tuple(pool[:k]))

    def health(self) -> dict:
        return {
            "status": "ok",
            "index": "stub",
            "model": "stub",
            "passages": 1,
            "turns": 1,
            "speakers": ["卢阳春", "朱旭森"],
        }


@pytest.fixture(scope="module")
def restricted_client():
    from fastapi.testclient import TestClient

    from qa.web import create_app

    app = create_app(StubEngine(), feedback=None, origins=["https://news.example.test"])
    with TestClient(app) as client:
        yield client


def test_allowed_origins_are_honoured(restricted_client) -> None:
    ok = restricted_client.get("/widget.js", headers={"Origin": "https://news.example.test"})
    assert ok.headers["access-control-allow-origin"] == "https://news.example.test"
    other = restricted_client.get("/widget.js", headers={"Origin": "https://evil.example.test"})
    assert "access-control-allow-origin" not in other.headers
    page = restricted_client.get("/embed/")
    assert (
        "frame-ancestors 'self' https://news.example.test"
        in page.headers["content-security-policy"]
    )


def test_engine_problems_are_503_json(restricted_client) -> None:
    r = restricted_client.post("/api/ask", json={"question": "index gone"})
    assert r.status_code == 503 and "qa index" in r.json()["error"]


def test_allowed_origins_setting() -> None:
    from qa.web import allowed_origins

    assert allowed_origins("") == ["*"]
    assert allowed_origins("https://a.test/, http://b.test:8000") == [
        "https://a.test",
        "http://b.test:8000",
    ]


def test_more_followup_moves_on_and_then_says_so(engine) -> None:
    """他还说了什么 shows what was not yet quoted; when nothing is left it says so."""
    turns: list[ChatTurn] = []
    first = next_turn(engine, turns, "卢阳春怎么看老年人？", k=5, speaker="卢阳春")
    turns.append(first)
    assert {c.speaker for c in first.answer.citations} == {"卢阳春"}
    seen = set(first.shown)
    assert len(seen) == 3
    for _ in range(20):
        turn = next_turn(engine, turns, "他还说了什么？", k=5)
        assert turn.speaker == "卢阳春"
        ids = {c.turn_id for c in turn.answer.citations}
        assert not ids & seen, "a passage already quoted came back"
        assert [c.rank for c in turn.answer.citations] == list(range(1, len(ids) + 1))
        turns.append(turn)
        if turn.exhausted:
            break
        seen |= set(turn.shown)
    assert turn.exhausted and turn.answer.citations == () and not turn.answer.answerable


def test_others_leave_out_the_speaker_just_heard(engine) -> None:
    first = next_turn(engine, [], "卢阳春怎么看老年人？")
    assert first.answer.citations[0].speaker == "卢阳春"
    others = next_turn(engine, [first], "其他专家怎么看？")
    assert others.followup.exclude_speaker == "卢阳春"
    assert others.answer.citations
    assert "卢阳春" not in {c.speaker for c in others.answer.citations}


def test_bad_question_is_refused_by_engine_contract() -> None:
    with pytest.raises(BadQuestion):
        StubEngine().ask("   ")


def test_reply_streams_in_pieces(tmp_path) -> None:
    """The chat handler yields a pending reply first, then grows it piece by piece."""
    from qa.ui import make_handlers

    h = make_handlers(StubEngine(), FeedbackLog(tmp_path / "fb.jsonl"))
    steps = list(h["respond"]("卢阳春怎么看老年人？", [], "", "", 3))
    assert len(steps) >= 4
    first_messages = steps[0][0]
    assert "qa-pending" in first_messages[-1]["content"]
    sizes = [len(s[0][-1]["content"]) for s in steps[1:-1]]
    assert sizes == sorted(sizes)  # each piece adds to the last
    messages, turns, *_ = steps[-1]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert "qa-pending" not in messages[-1]["content"]
    assert turns[0].answer.citations[0].speaker == "卢阳春"


@pytest.mark.parametrize(
    ("text", "expect"),
    [("", "请先输入"), (" \t\n", "请先输入"), ("\x00\x07", "请先输入"), ("问" * 2001, "2,000")],
)
def test_bad_input_gets_one_gentle_line(tmp_path, text: str, expect: str) -> None:
    from qa.ui import make_handlers

    h = make_handlers(StubEngine(), FeedbackLog(tmp_path / "fb.jsonl"))
    steps = list(h["respond"](text, [], "", "", 3))
    assert len(steps) == 1
    messages, turns, _, status, _ = steps[0]
    assert messages == [] and turns == []
    assert expect in status and "Traceback" not in status


def _like(data: dict):
    import gradio as gr

    return gr.LikeData(None, data)


def test_like_appends_feedback(tmp_path) -> None:
    from qa.ui import make_handlers

    log = FeedbackLog(tmp_path / "fb.jsonl")
    h = make_handlers(StubEngine(), log)
    *_, (messages, turns, *_rest) = h["respond"]("卢阳春怎么看老年人？", [], "", "", 2)
    status = h["on_like"](turns, _like({"index": 1, "value": "", "liked": "Dislike"}))
    assert "感谢反馈" in status
    row = json.loads(log.path.read_text("utf-8"))
    assert row["vote"] == "dislike" and row["question"] == "卢阳春怎么看老年人？"
    assert row["citation_ids"] == ["t#0", "t#1"]


@pytest.mark.parametrize(
    "data",
    [
        {"index": 1, "value": "", "liked": "x" * 2_000_000},  # any string as the vote
        {"index": 1, "value": "", "liked": "love"},
        {"index": 1, "value": "", "liked": None},
        {"index": "abc", "value": "", "liked": True},  # was a ValueError traceback
        {"index": [None], "value": "", "liked": True},
        {"index": 0, "value": "", "liked": True},  # the user's own message
        {"index": 99, "value": "", "liked": True},
        {"index": -1, "value": "", "liked": True},
        {"index": True, "value": "", "liked": True},
    ],
)
def test_bad_votes_are_refused_in_one_line(tmp_path, data) -> None:
    from qa.ui import make_handlers

    log = FeedbackLog(tmp_path / "fb.jsonl")
    h = make_handlers(StubEngine(), log)
    *_, (_m, turns, *_rest) = h["respond"]("卢阳春怎么看老年人？", [], "", "", 2)
    status = h["on_like"](turns, _like(data))
    assert "qa-status-warn" in status and len(status) < 300
    assert "Error" not in status and "Traceback" not in status
    assert not log.path.exists()


def test_votes_are_capped_per_client_and_by_size(tmp_path) -> None:
    turn = _chat_turn(Answer("q", True, "a" * 10_000, (CITE,)))
    log = FeedbackLog(tmp_path / "fb.jsonl", per_client_per_hour=3, max_bytes=100_000)
    for _ in range(3):
        log.record(turn, "like", "10.0.0.1")
    with pytest.raises(FeedbackRefused, match="too many"):
        log.record(turn, "like", "10.0.0.1")
    log.record(turn, "like", "10.0.0.2")  # another client still may
    assert log.path.stat().st_size < 30_000  # the answer text is cut
    big = FeedbackLog(tmp_path / "fb.jsonl", max_bytes=1)
    with pytest.raises(FeedbackRefused, match="full"):
        big.record(turn, "like", "10.0.0.3")
    assert vote_of(True) == "like" and vote_of(" Dislike ") == "dislike"
    with pytest.raises(FeedbackRefused):
        vote_of("x" * 100)


def test_app_host_and_port_follow_gradio_env(monkeypatch) -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "app", Path(__file__).resolve().parent.parent / "app.py"
    )
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = app.parser().parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9000")
    args = app.parser().parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 9000)
    args = app.parser().parse_args(["--host", "::1", "--port", "8123"])
    assert (args.host, args.port) == ("::1", 8123)


def _turn(n: int, speaker, kind: str, text: str = "……", asked=None, section=(), article="访谈"):
    from qa.types import Turn

    return Turn(
        f"a.txt#{n}", "a.txt", article, tuple(section), speaker, None, asked, kind, text, 0, 1
    )


def _engine(turns, speakers=None):
    """An engine-shaped object over these turns: speakers in order of first turn."""
    from types import SimpleNamespace

    names = speakers or list(dict.fromkeys(t.speaker for t in turns if t.speaker))
    return SimpleNamespace(
        speakers=[(n, None) for n in names],
        store=SimpleNamespace(turns={t.id: t for t in turns}),
    )


INTERVIEW = [
    _turn(0, "江城晚报", "intro", "本报记者专访了张明远、李慧。"),
    _turn(1, "江城晚报", "question", "城市更新难在哪里？"),
    _turn(2, "张明远", "answer", asked="城市更新难在哪里？", section=("数字赋能", "老城更新")),
    _turn(3, "李慧", "answer", asked="城市更新难在哪里？", section=("数字赋能", "老城更新")),
    _turn(4, "李慧", "answer", asked="您认为社区养老该怎么做？", section=("惠及民生",)),
    _turn(
        5,
        "李慧",
        "answer",
        asked="数据共享是热点。政务数据应该如何开放共享？",
        section=("惠及民生",),
    ),
    _turn(
        6, "陈立", "commentary", section=("守住数据安全底线，提升治理水平",), article="陈立署名文章"
    ),
    _turn(7, "陈立", "bio", "某某大学教授"),
]


def test_guide_is_derived_from_the_index() -> None:
    from qa.guide import corpus_guide

    g = corpus_guide(_engine(INTERVIEW))
    assert g.subtitle == "江城晚报专访张明远、李慧，以及陈立的评论。"
    assert [n for n, _ in g.experts] == ["张明远", "李慧", "陈立"]  # not the paper
    assert g.examples_zh == (
        "李慧认为社区养老该怎么做？",  # 您认为… put to the one who answered it
        "城市更新难在哪里？",
        "政务数据应该如何开放共享？",  # the question itself, not its lead-in
        "陈立怎么看守住数据安全底线？",  # a section title of theirs, cut at the comma
    )
    assert g.examples_en == (
        "What did Zhang Mingyuan say?",
        "What are the biggest challenges, according to the experts?",
    )
    assert g.followups == ("他还说了什么？", "那张明远呢？", "其他专家怎么看？")
    assert "What about Li Hui?" in g.placeholder(english=True)
    assert "例如：李慧认为社区养老该怎么做？" in g.placeholder()
    assert "江城晚报专访张明远" in g.header_html()
    assert corpus_guide(_engine(INTERVIEW)) == g  # deterministic


def test_guide_without_an_interviewer_still_has_examples() -> None:
    from qa.guide import corpus_guide

    turns = [
        _turn(1, "陈立", "commentary", section=("守住数据安全底线",)),
        _turn(2, "赵敏", "commentary", article="持续增强人民群众的获得感"),
        _turn(3, None, "paragraph", "正文。"),
    ]
    g = corpus_guide(_engine(turns))
    assert g.subtitle == "陈立、赵敏的评论文章。"
    assert g.examples_zh == ("陈立怎么看守住数据安全底线？", "赵敏怎么看持续增强人民群众的获得感？")
    assert g.examples_en[0] == "What did Chen Li write?"
    assert g.followups[1] == "那赵敏呢？"


def test_guide_caps_a_long_list_of_names() -> None:
    from qa.guide import MAX_NAMES, corpus_guide

    names = ["甲一", "乙二", "丙三", "丁四", "戊五", "己六", "庚七"]
    turns = [_turn(i, n, "answer", asked="怎么看？") for i, n in enumerate(names)]
    turns += [_turn(10 + i, p, "question") for i, p in enumerate(["甲报", "乙报", "丙报"])]
    g = corpus_guide(_engine(turns))
    listed = "、".join(names[:MAX_NAMES])
    assert g.subtitle == f"甲报、乙报等3家专访{listed}等7位专家。"
    assert g.examples_zh  # even with no usable question or topic


def test_speaker_filter_lists_experts_not_the_paper() -> None:
    """The paper only asks questions and writes the intro: no point filtering by it."""
    from qa.guide import corpus_guide

    engine = _engine(INTERVIEW, speakers=["江城晚报", "张明远", "李慧", "陈立"])
    assert [n for n, _ in corpus_guide(engine).experts] == ["张明远", "李慧", "陈立"]
    assert list(corpus_guide(StubEngine()).experts) == StubEngine.speakers  # no store: all


def test_bad_input_names_a_derived_example(tmp_path) -> None:
    from qa.ui import make_handlers

    h = make_handlers(_engine(INTERVIEW), FeedbackLog(tmp_path / "fb.jsonl"))
    *_, status, _ = next(h["respond"]("", [], "", "", 3))
    assert "例如：李慧认为社区养老该怎么做？" in status


def _final(steps) -> tuple:
    *_, last = steps
    return last


def test_web_chat_followups_move_on(tmp_path, engine) -> None:
    """Issue #12 in the web chat: 她还说了什么 moves on, 其他专家 leaves 卢阳春 out."""
    from qa.ui import make_handlers

    h = make_handlers(engine, FeedbackLog(tmp_path / "fb.jsonl"))
    _, turns, *_ = _final(h["respond"]("卢阳春怎么看老年人？", [], "", "", 3))
    _, turns, *_ = _final(h["respond"]("她还说了什么？", turns, "", "", 3))
    first, more = turns
    assert more.speaker == "卢阳春"
    assert not {c.turn_id for c in more.answer.citations} & set(first.shown)
    messages, turns, *_ = _final(h["respond"]("其他专家怎么看？", turns, "", "", 3))
    assert turns[-1].answer.citations[0].speaker != "卢阳春"
    assert "不含 卢阳春" in messages[-1]["content"]


def test_refusal_offers_topics_once(tmp_path, engine) -> None:
    from qa.ui import make_handlers

    h = make_handlers(engine, FeedbackLog(tmp_path / "fb.jsonl"))
    messages, turns, _, _, sugg = _final(h["respond"]("今天天气怎么样？", [], "", "", 3))
    topics = turns[0].answer.suggestions
    assert topics and not turns[0].answer.answerable
    assert sugg["visible"] is True and sugg["samples"] == [[t] for t in topics]
    reply = messages[-1]["content"]
    assert not any(esc(t) in reply for t in topics)  # listed once: in the chips, not the reply
