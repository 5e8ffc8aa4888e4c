"""The engine end to end: real corpus, real model, real index."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from qa.engine import MAX_QUESTION_CHARS, clean_question
from qa.errors import BadQuestion

ROOT = Path(__file__).resolve().parent.parent


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def test_answers_with_speaker_title_section_question_and_highlight(engine):
    ans = engine.ask("卢阳春认为老年人使用政务平台有什么困难？", k=3)
    assert ans.answerable
    top = ans.citations[0]
    assert top.speaker == "卢阳春"
    assert top.speaker_title.endswith("副院长")
    assert top.article == "如何用智博会成果倾力打造“智慧名城”？"
    assert top.section == "因“智”而乐 › 让智能化为生活添彩"
    assert "社会治理智能化" in top.asked
    assert "老年人" in top.highlight and top.highlight in top.text
    assert len(top.text) <= 800
    assert "卢阳春" in ans.answer and "老年人" in ans.answer
    # the citation points back into the source file
    raw = (ROOT / "corpus" / top.source).read_text(encoding="utf-8")
    assert squash(top.highlight) in squash(raw[top.start : top.end])


def test_english_question_finds_the_chinese_answer(engine):
    ans = engine.ask("What did Lu Yangchun say about elderly people using government apps?")
    assert ans.answerable
    assert ans.citations[0].speaker == "卢阳春"  # named in pinyin: narrowed to her
    assert "老年人" in ans.citations[0].text
    assert ans.answer.startswith("卢阳春")


def test_speaker_named_in_the_question_narrows_the_search(engine):
    ans = engine.ask("朱旭森怎么看绿色发展？", k=5)
    assert ans.answerable
    assert {c.speaker for c in ans.citations} == {"朱旭森"}


def test_speaker_and_section_filters(engine):
    ans = engine.ask("智慧城市建设", k=5, speaker="蔡之兵")
    assert ans.citations and {c.speaker for c in ans.citations} == {"蔡之兵"}
    ans = engine.ask("智慧城市建设", k=5, section="因“智”而乐")
    assert ans.citations and all("因“智”而乐" in c.section for c in ans.citations)


def test_commentary_cited_to_author_and_subheading(engine):
    ans = engine.ask("孙金华认为衡量全面小康社会是否建成要看什么？", k=3)
    top = ans.citations[0]
    assert top.speaker == "孙金华" and top.speaker_title == "市委办公厅秘书二处"
    assert top.article == "持续增强人民群众的现实获得感"
    assert top.asked is None


@pytest.mark.parametrize("question", ["智博会门票多少钱？", "你好", "怎么做红烧肉？",
                                      "What is the capital of France?"])
def test_abstains_when_the_corpus_has_no_answer(engine, question):
    ans = engine.ask(question)
    assert ans.answerable is False
    assert ans.citations == ()
    assert "没有" in ans.answer or "do not answer" in ans.answer


# How the answerability evidence is weighed (cosines, words the corpus never uses, count
# questions' figures) is tested in tests/test_evidence.py.


def test_the_interviewers_question_counts_less_than_the_experts_words(engine):
    """The same question passage sits under all three experts' answers; a paraphrase
    should find the one answer that speaks to it (王正攀: 引入第三方机构)."""
    ans = engine.ask("谁来评价智慧城市建设的成效？", k=5)
    assert ans.citations[0].speaker == "王正攀"
    assert "第三方机构" in ans.citations[0].text
    assert engine.retriever.config.question_passage_weight < 1


def test_one_citation_per_turn(engine):
    ans = engine.ask("社会治理智能化", k=10)
    ids = [c.turn_id for c in ans.citations]
    assert len(ids) == len(set(ids))


def test_modes_all_work(engine):
    for mode in ("dense", "keyword", "hybrid"):
        ans = engine.ask("“大城智管”包括哪些业务？", mode=mode)
        assert ans.citations and ans.citations[0].speaker == "朱旭森", mode


def test_bad_questions_are_refused_with_a_clear_message(engine):
    with pytest.raises(BadQuestion, match="empty"):
        engine.ask("   \n\t ")
    with pytest.raises(BadQuestion, match=str(MAX_QUESTION_CHARS)):
        engine.ask("问" * (MAX_QUESTION_CHARS + 1))
    with pytest.raises(BadQuestion, match="k must be"):
        engine.ask("智慧城市", k=0)
    assert clean_question("卢阳春\x00怎么\x1b看\u200b？") == "卢阳春怎么看？"


def test_html_in_a_question_is_kept_as_text(engine):
    ans = engine.ask("<img src=x onerror=alert(1)>")
    assert ans.question == "<img src=x onerror=alert(1)>"  # escaping is the renderer's job


def test_health_reports_index_and_model(engine):
    h = engine.health()
    assert h["status"] == "ok" and h["warnings"] == []
    assert h["model"] == engine.embedder.name and h["passages"] > 50
    assert {"蔡之兵", "卢阳春", "朱旭森", "王正攀", "孙金华"} <= set(h["speakers"])


def test_settings_come_from_the_environment_with_documented_defaults(tmp_path):
    from qa.settings import PROJECT_DIR, Settings

    default = Settings.from_env({})
    assert default.corpus == PROJECT_DIR / "corpus" and default.index == PROJECT_DIR / "index"
    assert default.watch_seconds == 5.0 and default.engine_threads == 2
    assert default.allowed_origins == "*" and default.debug is False
    custom = Settings.from_env({
        "QA_INDEX": str(tmp_path), "QA_WATCH_SECONDS": "0", "QA_ENGINE_THREADS": "many",
        "QA_DEBUG": "1", "QA_EMBED_MODEL": " ",
    })
    assert custom.index == tmp_path and custom.watch_seconds == 0.0
    assert custom.engine_threads == 2  # not a number: the default, not a crash at start
    assert custom.debug is True and custom.embed_model is None  # blank counts as unset
    documented = sys.modules[Settings.__module__].__doc__
    for name in ("QA_CORPUS", "QA_INDEX", "QA_WATCH_SECONDS", "QA_DEBUG", "QA_ENGINE_THREADS"):
        assert name in documented
