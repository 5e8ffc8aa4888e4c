"""Issue #13's list of what a new user saw, each one asserted on the real corpus and model
(and on a small transcript written to a temporary folder)."""

from __future__ import annotations

import re

import pytest

from qa.engine import Engine


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


# -- refused although the words are in the text -------------------------------------------


@pytest.mark.parametrize(
    ("question", "speaker", "phrase"),
    [
        ("“牛鼻子”指的是什么？", "孙金华", "抓住就业这个“牛鼻子”"),
        ("What is the 135 framework?", "卢阳春", "“135”架构体系"),
    ],
)
def test_a_phrase_of_the_page_is_answered(engine, question, speaker, phrase):
    ans = engine.ask(question)
    assert ans.answerable, ans.answer
    top = ans.citations[0]
    assert top.speaker == speaker and phrase in top.highlight


def test_a_question_that_is_a_phrase_of_the_page_finds_it_first(engine):
    """云联数算用 is 朱旭森's; dense search alone puts 孙金华's 云计算 passage first."""
    ans = engine.ask("云联数算用")
    assert ans.answerable and ans.citations[0].speaker == "朱旭森"
    assert "云联数算用" in ans.citations[0].highlight


@pytest.mark.parametrize(
    ("question", "speaker", "quoted"),
    [
        ("王正攀的affiliation是哪里？", "王正攀", "中共重庆市委党校分中心"),  # not 本文系…项目
        ("Where does Wang Zhengpan work?", "王正攀", "中共重庆市委党校分中心"),
        ("朱旭森的job是什么？", "朱旭森", "城市与区域经济研究所副所长"),
    ],
)
def test_who_someone_is_quotes_the_bio_or_author_note(engine, question, speaker, quoted):
    ans = engine.ask(question)
    assert ans.answerable, ans.answer
    assert ans.citations[0].speaker == speaker and quoted in squash(ans.citations[0].highlight)
    # the answer quotes the bio alone, not what the expert said about other things
    assert len(ans.blocks) == 1 and [q.rank for q in ans.blocks[0].quotes] == [1]


@pytest.mark.parametrize(
    ("question", "speakers", "written"),
    [
        ("年轻人找工作难，专家怎么说？", {"孙金华"}, ("就业",)),
        ("老人家不会用手机办事怎么办？", {"卢阳春"}, ("老年人",)),
        ("去政府办手续总要跑几趟，咋整？", {"卢阳春", "蔡之兵"}, ("跑腿", "一次办事难")),
    ],
)
def test_everyday_words_find_the_pages_written_ones(engine, question, speakers, written):
    """找工作 / 老人家 / 跑几趟 are never on the page; 就业 / 老年人 / 跑腿 are."""
    ans = engine.ask(question)
    assert ans.answerable, ans.answer
    top = ans.citations[0]
    assert top.speaker in speakers and any(w in squash(top.text) for w in written)


def test_an_everyday_word_inside_a_narrower_one_is_not_swapped(engine):
    """工资 alone is not the page's 收入, and 最低工资 asks more than either."""
    assert not engine.ask("孙金华怎么看最低工资？").answerable


def test_one_chinese_numeral_before_a_measure_word_is_a_count(engine):
    """四个自信 answers a how-many question (one numeral before 个, 项, 类, 方面)."""
    ans = engine.ask("How many 'confidences' does Sun say people should be guided to hold firmer?")
    assert ans.answerable and "四个自信" in squash(ans.citations[0].text)


# -- answered although the page has no answer ---------------------------------------------


@pytest.mark.parametrize(
    ("question", "answered"),
    [
        ("蔡之兵对自动驾驶有什么看法？", False),  # 自动 is on the page (自动调整红绿灯), 驾驶 not
        ("孙金华对高考改革有什么建议？", False),  # 改革 is on the page, 高考 not
        ("卢阳春对户籍改革怎么看？", False),
        ("蔡之兵如何评价红绿灯自动调整？", True),  # 自动 and 调整 are both on the page
        ("孙金华怎么看收入分配制度改革？", True),
    ],
)
def test_a_rare_word_written_together_with_one_the_page_never_uses_is_no_evidence(
    engine, question, answered
):
    assert engine.ask(question).answerable is answered


@pytest.mark.parametrize(
    ("question", "never"),
    [("孙金华对房地产税怎么看？", "房地产"), ("朱旭森毕业于哪所大学？", "毕业")],
)
def test_a_topic_the_page_never_mentions_is_refused(engine, question, never):
    ans = engine.ask(question)
    assert not ans.answerable and ans.citations == () and ans.confidence == "none"
    assert f"“{never}”" in ans.answer  # says what the interviews never mention
    assert engine.store.passages_with(never) == 0


@pytest.mark.parametrize(
    "question",
    ["hello", "?", "1234567890", "asdkjh qwpoeiru", "SELECT * FROM turns", "😀🎉👍"],
)
def test_nonsense_is_refused(engine, question):
    ans = engine.ask(question)
    assert ans.answerable is False and ans.citations == ()
    assert ans.suggestions  # the closest topics are offered instead


# -- wrong sentence quoted ----------------------------------------------------------------


def test_the_sentence_that_answers_is_quoted(engine):
    ans = engine.ask("What does Cai Zhibing recommend for top-level planning?")
    assert ans.answerable
    top = ans.citations[0]
    assert top.speaker == "蔡之兵" and "顶层" in top.highlight
    assert "底层研发" not in top.highlight


def test_an_experts_words_come_before_the_author_note(engine):
    ans = engine.ask("What does Sun Jinhua say about employment?")
    assert ans.answerable
    top = ans.citations[0]
    assert top.speaker == "孙金华" and top.kind != "bio" and "就业" in top.highlight
    assert "作者单位" not in top.highlight


def test_traditional_characters_find_the_three_weaknesses(engine):
    ans = engine.ask("蔡之兵認為智慧名城建設有哪些短板？")
    assert ans.answerable and ans.question == "蔡之兵認為智慧名城建設有哪些短板？"  # shown as asked
    assert ans.citations[0].speaker == "蔡之兵"
    # the 三短 sentence is quoted in the answer (its turn still ranks second: see the report)
    three = [c for c in ans.citations[:2] if "三短" in c.highlight]
    assert three and f"“{three[0].highlight}” [{three[0].rank}]" in ans.answer


# -- many experts, one list ---------------------------------------------------------------


def test_a_question_to_all_experts_gets_one_block_per_expert(engine):
    ans = engine.ask("各位专家对绿色智慧城市有什么建议？")
    assert ans.answerable
    speakers = [b.speaker for b in ans.blocks]
    assert len(speakers) >= 2 and len(set(speakers)) == len(speakers)
    # in the page's order: by where each expert's quoted words are
    place = {c.rank: (c.source, c.start) for c in ans.citations}
    first = {b.speaker: min(place[q.rank] for q in b.quotes) for b in ans.blocks}
    assert speakers == sorted(speakers, key=first.get)
    # the full title and section path stay in the citation cards
    article = ans.citations[0].article
    assert article not in ans.answer and "›" not in ans.answer
    for b in ans.blocks:
        assert 1 <= len(b.quotes) <= 3
        header = f"{b.speaker}（{b.short_title}）：" if b.short_title else f"{b.speaker}："
        assert header in ans.answer.splitlines()
    assert ans.to_dict()["blocks"][0]["quotes"][0]["rank"] >= 1


def test_one_header_per_expert_and_marks_on_every_quote(engine):
    ans = engine.ask("卢阳春认为老年人使用政务平台有什么困难？")
    lines = ans.answer.splitlines()
    headers = [line for line in lines if line.endswith("：")]
    assert headers and headers[0].startswith("卢阳春（副院长）")
    assert all(re.search(r"\[\d+\]$", line) for line in lines if line not in headers)


# -- another corpus: a small transcript ---------------------------------------------------

TRANSCRIPT = """# 城市物流怎样更聪明
## 垃圾清运
主持人：城市垃圾清运有哪些新办法？
张明远（物流研究员）：垃圾清运要靠数据调度。我们给每辆清运车装上定位设备，按照小区垃圾桶的满溢情况安排路线，空跑的车次少了一半。
## 智能分拣
主持人：分拣中心用了哪些新技术？
张明远（物流研究员）：分拣中心引入了视觉识别系统，包裹条码和面单都能自动读取。经过一年的调试，分拣准确率提高到百分之八十五，人工复核的工作量明显下降。
## 公交调度
主持人：公交调度有什么变化？
张明远（物流研究员）：公交调度中心接入了实时客流数据，高峰时段加密班次，乘客候车时间平均缩短了三分钟。
"""


@pytest.fixture(scope="module")
def transcript_engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("transcript")
    (root / "corpus").mkdir()
    (root / "corpus" / "logistics.md").write_text(TRANSCRIPT, encoding="utf-8")
    return Engine.open(root / "corpus", root / "index", progress=lambda _m: None)


def test_a_speaker_question_on_another_corpus_is_answered(transcript_engine):
    ans = transcript_engine.ask("张明远怎么看垃圾清运？")
    assert ans.answerable, ans.answer
    assert "“看”" not in ans.answer
    top = ans.citations[0]
    assert top.speaker == "张明远" and top.speaker_title == "物流研究员"
    assert "清运" in top.highlight


def test_a_figure_in_chinese_numerals_answers_a_how_much_question(transcript_engine):
    ans = transcript_engine.ask("分拣准确率提高到多少？")
    assert ans.answerable, ans.answer
    assert "百分之八十五" in ans.citations[0].highlight


def test_a_span_of_time_in_chinese_numerals_answers_a_how_long_question(transcript_engine):
    ans = transcript_engine.ask("乘客候车时间缩短了多少分钟？")
    assert ans.answerable, ans.answer
    assert "缩短了三分钟" in ans.citations[0].highlight
    # the figure must be in the sentence that matched: the page gives no count of buses
    assert not transcript_engine.ask("公交调度中心有多少辆公交车？").answerable
