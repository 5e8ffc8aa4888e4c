"""Answerability from evidence (qa.evidence): the signals on the real corpus and model,
the fitted weights and what they were fitted on, the three outcomes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa import evidence
from qa.answer import LOW_NOTE_EN, LOW_NOTE_ZH, compose
from qa.evidence import FEATURES, LOW, MODEL_FILE, Model, Verdict, decide, fit_logistic, signals


def _signals(engine, text):
    q = engine.retriever.analyse(text)
    r = engine.retriever.search(q)
    return r, signals(r, len(engine.store)).as_dict()


@pytest.mark.parametrize("question", ["后天重庆会下雪吗？", "重庆火锅哪家好吃？"])
def test_a_close_cosine_is_not_enough_when_the_topic_is_nowhere(engine, question):
    """重庆 is on every page: the cosine is high, but 下雪 or 火锅 is never used."""
    _, s = _signals(engine, question)
    assert s["dense"] > 0.8 and s["unknown"] > 0.5
    assert engine.ask(question).answerable is False


@pytest.mark.parametrize(
    "question", ["Will it rain in Chongqing tomorrow?", "Who is the mayor of Chongqing?"]
)
def test_an_english_question_is_checked_through_its_chinese_senses(engine, question):
    """rain → 下雨, mayor → 市长: dictionary words the corpus never uses."""
    _, s = _signals(engine, question)
    assert s["english"] == 1 and s["unknown"] > 0
    assert engine.ask(question).answerable is False


def test_an_english_question_finds_its_words_in_the_chinese_answer(engine):
    _, s = _signals(engine, "How can traffic lights be made smarter?")  # → 红绿灯
    assert s["cover"] > 0 and s["rarest_found"] > 0
    ans = engine.ask("How can traffic lights be made smarter?")
    assert ans.answerable and "红绿灯" in ans.citations[0].text


def test_a_quoted_phrase_of_the_page_is_strong_evidence(engine):
    _, s = _signals(engine, "“牛鼻子”指的是什么？")
    assert s["verbatim"] >= 3 / 8 and s["rarest_found"] == 1


def test_an_abstention_names_the_words_the_interviews_never_use(engine):
    ans = engine.ask("后天重庆会下雪吗？")
    assert "没有提到" in ans.answer and "“下雪”" in ans.answer and "“重庆”" not in ans.answer
    r, _ = _signals(engine, "后天重庆会下雪吗？")
    for word in signals(r, len(engine.store)).unfound:
        assert engine.store.passages_with(word) == 0  # "never mention" is literally true
    ans = engine.ask("Who is the mayor of Chongqing?")
    assert 'never mention "mayor"' in ans.answer


def test_a_paraphrase_without_shared_words_is_still_answered(engine):
    # 作用 and 起到 are nowhere on the page; the sentence matches on meaning
    assert engine.ask("智博会对重庆打造“智慧名城”起到了什么作用？").answerable


@pytest.mark.parametrize(
    ("question", "found"),
    [
        ("重庆有多少家大数据智能化企业？", True),  # 3000多家大数据智能化企业
        ("重庆改造了多少户农村危房？", True),  # 改造农村危房3.9万户
        ("智博会有多少人参观？", False),  # the page has figures, none of visitors
        ("重庆已经建成了多少个数据中心？", False),  # figures with 个, none of data centres
        ("今年是第几届智博会？", False),  # 本届 is not a number
        ("How many people visited the Smart China Expo?", False),  # 一方面 is not a figure
        # the thing counted before 多少: 区域总部 is on the page, never with a figure
        ("区域总部一共有多少个？", False),
        ("2019年重庆人均地区生产总值突破了多少？", True),  # 突破1万美元: a sum is a figure
    ],
)
def test_a_count_question_needs_its_figure_in_a_matched_sentence(engine, question, found):
    q = engine.retriever.analyse(question)
    r = engine.retriever.search(q)
    assert evidence.figure_found(q, r.hits) is found
    if not found:
        assert engine.ask(question).answerable is False


@pytest.mark.parametrize(
    ("text", "unit", "matches"),
    [
        ("分拣准确率提高到百分之八十五", None, True),
        ("2019年，全市人均地区生产总值突破1万美元", None, False),  # a year, a sum of money
        ("改造农村危房3.9万户", "户", True),
        ("一方面，有益于展示", None, False),
        ("占比达到0.12%", None, True),
        ("乘客候车时间平均缩短了三分钟", None, True),  # one Chinese numeral before a span
        ("一个都不能少", None, False),  # 一 before a measure word is a word, not a figure
    ],
)
def test_what_counts_as_a_figure(text, unit, matches):
    assert bool(evidence._quantity(unit).search(text)) is matches


def test_nothing_to_match_is_refused_before_the_model(engine):
    for text in ("hello", "?", "1234567890", "朱旭森毕业于哪所大学？"):
        assert evidence.nothing_to_match(engine.retriever.analyse(text)), text
    for text in ("卢阳春说了什么？", "智慧城市是什么？"):
        assert not evidence.nothing_to_match(engine.retriever.analyse(text)), text


def test_the_weights_say_what_they_were_fitted_on():
    data = json.loads(MODEL_FILE.read_text("utf-8"))
    assert tuple(data["features"]) == FEATURES
    assert len(data["weights"]) == len(FEATURES)
    fitted = data["fitted_on"]
    assert fitted["split"] == "dev"  # never the test split
    assert all(len(h) == 64 for h in fitted["gold"].values())
    assert fitted["answerable"] > 0 and fitted["unanswerable"] > 0 and fitted["date"]
    assert 0 < data["refuse_below"] <= data["high_from"] < 1
    assert data["kfold"]["folds"] >= 2
    model = Model.load()
    # the best sentence's cosine counts for an answer, words the corpus never uses against
    w = dict(zip(FEATURES, model.weights, strict=True))
    assert w["sentence"] > 0 and w["unknown"] < 0


def test_logistic_regression_finds_the_separating_direction():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(float)
    w, b = fit_logistic(x, y, l2=0.01)
    assert w[0] > 0 > w[1] and abs(w[1] / w[0] + 0.5) < 0.15 and abs(b) < 1


def test_a_low_confidence_answer_says_so(engine):
    for text, note in (
        ("卢阳春怎么看老年人？", LOW_NOTE_ZH),
        ("What did Lu Yangchun say?", LOW_NOTE_EN),
    ):
        q = engine.retriever.analyse(text)
        r = engine.retriever.search(q)
        verdict = decide(r, len(engine.store), engine.evidence)
        low = compose(r, Verdict(LOW, verdict.probability, verdict.signals), 5)
        assert low.answerable and low.confidence == "low"
        assert low.answer.startswith(note) and low.to_dict()["confidence"] == "low"


def test_keyword_mode_is_judged_on_words_alone(engine):
    assert engine.ask("卢阳春 老年人", mode="keyword").answerable
    assert not engine.ask("重庆 火锅", mode="keyword").answerable


@pytest.mark.parametrize(
    ("question", "kind", "found"),
    [
        # a date must be in the sentence that matched, near the thing asked about
        ("重庆人均地区生产总值是哪一年突破1万美元的？", "date", True),  # 2019年，…突破1万美元
        ("重庆什么时候获批建设国家数字经济创新发展试验区？", "date", False),  # no date given
        ("智博会是什么时候举办的？", "date", False),  # 刚刚闭幕, 本届: not dates
        # a place
        ("两江智慧体验园在哪个城市？", "place", True),
        # a name: the speaker of the matched turn (a bio line) is the name
        ("来自成都师范学院的专家是哪位？", "name", True),
        ("谁提出了“三长三短”的说法？", "name", True),
        # an approximate figure is a figure
        ("本届智博会有多少项黑科技亮相？", "figure", True),  # 上百项
    ],
)
def test_a_date_place_or_name_question_needs_one_in_a_matched_sentence(
    engine, question, kind, found
):
    q = engine.retriever.analyse(question)
    r = engine.retriever.search(q)
    assert evidence.asks_type(q).kind == kind
    assert evidence.figure_found(q, r.hits) is found
    if not found:
        assert engine.ask(question).answerable is False


@pytest.mark.parametrize(
    "question",
    [
        "重庆智慧名城建设的短板在哪里？",  # 在哪里 alone: shortcomings, not a place
        "How can an intelligent medical system help when hospitals are crowded?",  # when: a clause
        "这次专访请了哪几位专家？",  # several experts: one block each, not a name or a count
        "本报专访了几位专家？",
        "How many experts did the paper interview?",
    ],
)
def test_questions_that_are_not_date_place_name_or_count_questions(engine, question):
    assert evidence.asks_type(engine.retriever.analyse(question)) is None


@pytest.mark.parametrize(
    ("text", "unit", "matches"),
    [
        ("本届智博会有上百项“黑科技”闪亮登场", "项", True),
        ("建成数十个数据中心", None, True),
        ("近千家企业入驻", "家", True),
        ("惠及几十万户家庭", "户", True),
        ("几个方面", None, False),
    ],
)
def test_approximate_figures_count(text, unit, matches):
    assert bool(evidence._quantity(unit).search(text)) is matches


def test_an_english_word_found_only_through_its_senses_is_marked(engine):
    q = engine.retriever.analyse("What does Sun Jinhua think about housing prices?")
    assert any(w.sense for w in q.words)
    q = engine.retriever.analyse("What did Cai Zhibing say about the Yukuaiban platform?")
    assert not next(w for w in q.words if "渝快办" in w.forms).sense  # read as pinyin
    _, s = _signals(engine, "How can traffic lights be made smarter?")
    assert s["sense_part"] > 0 and s["sense_only"] == 1
    _, s = _signals(engine, "重庆有多少家大数据智能化企业？")
    assert s["sense_part"] == 0 and s["sense_only"] == 0 and s["typed"] == 1
