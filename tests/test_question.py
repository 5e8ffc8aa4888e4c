"""The question analysed once (qa.question): real corpus, real index, real tokenizer."""

from __future__ import annotations

import pytest

from qa.question import Question, cjk_share, is_english, normalise


def test_full_width_and_traditional_are_folded():
    assert normalise("ＡＢＣ１２３？") == "ABC123?"
    assert normalise("蔡之兵認為智慧名城建設有哪些短板？") == "蔡之兵认为智慧名城建设有哪些短板?"
    assert normalise("What is the 135 framework?") == "What is the 135 framework?"


@pytest.mark.parametrize(
    ("text", "english"),
    [
        ("What did Lu Yangchun say?", True),
        ("What did 卢阳春 say about 老年人?", True),  # mostly English words
        ("卢阳春怎么看老年人？", False),
        ("5G和人工智能", False),
        ("1234567890", False),  # no letters: not English
        ("?", False),
    ],
)
def test_one_definition_of_english(text, english):
    assert is_english(text) is english
    if english:
        assert cjk_share(text) < 0.5


@pytest.fixture(scope="module")
def analyse(engine):
    return engine.retriever.analyse


@pytest.mark.parametrize(
    ("asked", "speaker", "searched"),
    [
        ("卢阳春怎么看老年人？", "卢阳春", "卢阳春怎么看老年人?"),
        ("卢杨春怎么看老年人？", "卢阳春", "卢阳春怎么看老年人?"),  # homophone typo
        ("What did Lu Yangchun say about the elderly?", "卢阳春", None),
        ("What does Cai Zhibing recommend?", "蔡之兵", None),
        ("what did yangchun lu say", "卢阳春", None),  # given name first
        ("蔡之兵認為智慧名城建設有哪些短板？", "蔡之兵", "蔡之兵认为智慧名城建设有哪些短板?"),
        ("Lu Yangchun对老年人怎么看？", "卢阳春", None),  # a pinyin name against Chinese
        ("Professor Cai的观点是什么？", "蔡之兵", None),
    ],
)
def test_speakers_are_found_however_they_are_written(analyse, asked, speaker, searched):
    q = analyse(asked)
    assert isinstance(q, Question)
    assert q.speakers == (speaker,)
    assert speaker in q.text and speaker not in q.topic
    assert q.original == asked  # what the user typed is kept for the answer
    if searched:
        assert q.text == searched


def test_a_homophone_needs_the_rest_of_the_name(analyse):
    """阳春 alone, or a different name that merely sounds alike in part, is not 卢阳春."""
    assert analyse("阳春三月重庆的天气怎么样？").speakers == ()


def test_words_carry_how_often_the_corpus_uses_them(analyse):
    q = analyse("“牛鼻子”指的是什么？")
    by = {w.label: w for w in q.words}
    assert by["牛鼻子"].passages >= 1 and by["牛鼻子"].rare
    q = analyse("孙金华对房地产税怎么看？")
    assert q.speakers == ("孙金华",)
    assert [w.label for w in q.words if w.passages == 0] == ["房地产"]
    assert not any("孙" in w.label or "金华" in w.label for w in q.words)  # the name is not a word


def test_single_characters_jieba_could_not_place_are_joined(analyse):
    """基金定投 → 定, 投 by jieba; as one word 定投 it is a word the corpus never uses."""
    labels = {w.label: w.passages for w in analyse("卢阳春是怎么看待基金定投的？").words}
    assert labels.get("定投") == 0 and "定" not in labels and "投" not in labels


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("孙金华如何评价春节？", ["春节"]),  # 评价 is on the page, but says nothing of 春节
        ("王正攀对生育政策有什么建议？", ["生育", "政策"]),
        ("区域总部一共有多少个？", ["区域", "总部"]),
        ("这篇专访的记者叫什么名字？", ["专访", "记者"]),
    ],
)
def test_how_a_question_asks_is_not_what_it_asks_about(analyse, text, words):
    assert [w.label for w in analyse(text).words] == words


def test_an_english_possessive_is_not_a_word(analyse):
    labels = [w.label for w in analyse("What are Chongqing's strengths?").words]
    assert "s" not in labels and "strengths" in labels


def test_english_words_come_with_their_chinese_senses(analyse):
    q = analyse("How can traffic lights be made smarter?")
    assert q.english
    by = {w.label: w for w in q.words}
    assert "红绿灯" in by["traffic lights"].forms and by["traffic lights"].passages >= 1
    assert all(len(f) > 1 for w in q.words for f in w.forms)  # no one-character senses


def test_a_word_the_page_uses_only_inside_a_compound_finds_it(analyse):
    """The page never writes 链条 or 链子 for a chain, but 产业链; a word none of whose
    senses the page uses is looked for in the compounds named after it."""
    by = {w.label: w for w in analyse("Which full industrial chain is taking shape?").words}
    assert by["chain"].forms == ("产业链",) and by["chain"].passages >= 1
    # a word whose own senses the page uses keeps them alone
    assert "产业链" not in {f for w in analyse("What about industry?").words for f in w.forms}


@pytest.mark.parametrize(
    ("text", "many"),
    [
        ("各位专家对绿色智慧城市有什么建议？", True),
        ("三位专家怎么看智博会？", True),
        ("What do all the experts say about the elderly?", True),
        ("卢阳春怎么看老年人？", False),
        ("What did Lu Yangchun say about the experts' views?", False),  # one expert named
    ],
)
def test_questions_about_several_experts(analyse, text, many):
    assert analyse(text).many_speakers is many


@pytest.mark.parametrize(
    ("text", "about"),
    [
        ("朱旭森的job是什么？", True),  # an English word against Chinese characters
        ("王正攀的affiliation是哪里？", True),
        ("What is Cai Zhibing's position?", True),
        ("蔡之兵在哪里工作？", True),
        ("蔡之兵怎么看智慧交通？", False),
        ("卢阳春的jobless人口看法？", False),  # "job" only as a whole word
    ],
)
def test_questions_about_who_someone_is(analyse, text, about):
    assert analyse(text).about_person is about


def test_the_question_is_tokenized_once(analyse):
    from qa.store import tokenize

    q = analyse("智慧城市建设的本质是什么？")
    assert list(q.tokens) == tokenize(q.text)


def test_an_english_number_word_finds_digits_and_numerals(analyse):
    """The page writes 5类 and 三长三短; five and three are one-character senses kept."""
    by = {w.label: w for w in analyse("What are the five kinds of applications?").words}
    assert set(by["five"].forms) == {"5", "五"} and by["five"].passages >= 1


@pytest.mark.parametrize(
    ("text", "speakers"),
    [
        ("What does Sun say about jobs?", ("孙金华",)),
        ("How can trust be won, according to Wang?", ("王正攀",)),
        ("What should planning give the system, in Cai's view?", ("蔡之兵",)),
        ("Does the sun shine on the expo?", ()),  # the word, lower case
        ("Sun and wind power: what does the page say?", ()),  # first word: not a name
    ],
)
def test_a_bare_capitalised_surname_names_its_one_speaker(analyse, text, speakers):
    assert analyse(text).speakers == speakers


def test_a_dictionary_word_the_page_never_uses_is_read_as_pinyin(analyse):
    """CC-CEDICT's Sichuan is 巴蜀 / 蜀国; the page writes 四川."""
    forms = {f for w in analyse("Which Sichuan society is Lu Yangchun in?").words for f in w.forms}
    assert "四川" in forms


def test_a_misspelt_english_word_finds_its_senses(analyse):
    forms = {f for w in analyse("What about the phsyical city?").words for f in w.forms}
    assert "现实城市" in forms  # physical city
    # a word the corpus reads as pinyin is a name, not a typo
    assert "渝快办" in {f for w in analyse("What is Yukuaiban?").words for f in w.forms}
