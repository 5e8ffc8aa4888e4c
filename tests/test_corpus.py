"""The parser on the real page, on the same layout with other names, and on transcripts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qa.chunk import ChunkConfig, chunk_turns, split_sentences
from qa.corpus import parse_text, read_corpus
from qa.errors import CorpusProblem

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
PAGE = CORPUS / "cqrb-smart-city-interview.txt"
EXPERTS = ["蔡之兵", "卢阳春", "朱旭森"]


def parse_files(folder):
    return [t for source, text in read_corpus(folder) for t in parse_text(text, source)]


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.fixture(scope="module")
def turns():
    return parse_text(PAGE.read_text(encoding="utf-8"), PAGE.name)


def test_three_sections_with_titles_and_subtitles(turns):
    sections = list(dict.fromkeys(t.section for t in turns if t.kind == "answer"))
    assert sections == [
        ("因“智”而兴", "用智慧成果赋能城市建设"),
        ("因“智”而乐", "让智能化为生活添彩"),
        ("“智”在必胜", "提速“智慧名城”建设"),
    ]


def test_six_questions_by_the_newspaper(turns):
    questions = [t for t in turns if t.kind == "question"]
    assert len(questions) == 6
    assert {t.speaker for t in questions} == {"重庆日报"}
    assert all(t.text.endswith("？") for t in questions)
    # a question wrapped across a blank line is joined, not read as a heading
    assert any(t.text.startswith("围绕“智慧名城”建设，重庆该如何借助") for t in questions)


def test_twelve_answers_four_per_expert_each_linked_to_its_question(turns):
    answers = [t for t in turns if t.kind == "answer"]
    assert len(answers) == 12
    for name in EXPERTS:
        assert sum(t.speaker == name for t in answers) == 4
    questions = [t.text for t in turns if t.kind == "question"]
    assert all(t.asked in questions for t in answers)
    lu_elderly = next(t for t in answers if "老年人使用不太方便" in t.text)
    assert lu_elderly.speaker == "卢阳春"
    assert "社会治理智能化" in lu_elderly.asked


def test_expert_titles_come_from_the_page(turns):
    text = squash(PAGE.read_text(encoding="utf-8"))
    titles = {t.speaker: t.speaker_title for t in turns if t.kind == "answer"}
    assert titles["蔡之兵"] == "中央党校（国家行政学院）经济学教研部副教授"
    assert titles["卢阳春"].endswith("成都师范学院经济与管理学院副院长")
    assert titles["朱旭森"] == "重庆社会科学院城市与区域经济研究所副所长、研究员"
    assert all(squash(v) in text for v in titles.values())


def test_commentaries_have_author_and_subheadings(turns):
    by_author: dict[str, list] = {}
    for t in turns:
        if t.kind == "commentary":
            by_author.setdefault(t.speaker, []).append(t)
    assert set(by_author) == {"王正攀", "孙金华"}
    assert [t.section for t in by_author["孙金华"] if t.section] == [
        ("不断改善生产生活环境",), ("不断提高均衡均等水平",), ("不断厚植自信自强底气",)
    ]
    assert [t.section[0][:6] for t in by_author["王正攀"] if t.section] == [
        "强化智慧服务", "完善智能政务", "加快数据保障"
    ]
    assert by_author["孙金华"][0].article == "持续增强人民群众的现实获得感"
    assert by_author["孙金华"][0].speaker_title == "市委办公厅秘书二处"
    assert "党校" in by_author["王正攀"][0].speaker_title


def test_interview_title_intro_and_bios(turns):
    answer = next(t for t in turns if t.kind == "answer")
    assert answer.article == "如何用智博会成果倾力打造“智慧名城”？"
    intro = [t for t in turns if t.kind == "intro"]
    assert len(intro) == 1 and intro[0].text.startswith("在刚刚闭幕的智博会上")
    assert intro[0].text.endswith("朱旭森。")  # column labels after it are not glued on
    bios = {t.speaker: t.text for t in turns if t.kind == "bio"}
    assert set(bios) == {*EXPERTS, "王正攀", "孙金华"}
    assert bios["朱旭森"] == "重庆社会科学院城市与区域经济研究所副所长、研究员"
    assert bios["孙金华"] == "（作者单位：市委办公厅秘书二处）"  # the author note is their bio


def test_wrapped_lines_are_joined_without_stray_spaces(turns):
    for t in turns:
        assert "\n" not in t.text
        assert not re.search(r"[\u4e00-\u9fff“”] [\u4e00-\u9fff“”]", t.text), t.text[:40]
    first = next(t for t in turns if t.kind == "answer")
    assert "向外界展示重庆在建设“智慧名城”领域的优势地位" in first.text


def test_every_passage_maps_back_to_its_file():
    raw = {name: text for name, text in read_corpus(CORPUS)}
    turns = parse_files(CORPUS)
    passages = chunk_turns(turns)
    assert len(passages) >= 30
    for p in passages:
        assert squash(raw[p.source][p.start : p.end]) == squash(p.text), p.id
    for t in turns:
        assert squash(raw[t.source][t.start : t.end]).endswith(squash(t.text)[-10:])


def test_chunks_never_cross_a_turn_and_respect_the_size():
    turns = parse_files(CORPUS)
    cfg = ChunkConfig(max_chars=120)
    passages = chunk_turns(turns, cfg)
    by_id = {t.id: t for t in turns}
    for p in passages:
        turn = by_id[p.turn_id]
        if p.text == turn.asked:
            continue  # the question an answer answers rides with it as its own passage
        assert p.text in turn.text
        sentences = split_sentences(p.text)
        assert len(p.text) <= cfg.max_chars or len(sentences) == 1
    # consecutive windows of one long turn overlap by a sentence
    long_turn = max(turns, key=lambda t: len(t.text))
    windows = [p.text for p in passages if p.turn_id == long_turn.id]
    assert len(windows) > 2
    last_sentence = windows[0][split_sentences(windows[0])[-1][0] :]
    assert windows[1].startswith(last_sentence)


def test_a_second_page_in_the_same_layout_with_other_names(tmp_path):
    text = PAGE.read_text(encoding="utf-8")
    for old, new in {
        "蔡之兵": "张明远", "卢阳春": "李慧", "朱旭森": "欧阳振华", "重庆日报": "江城晚报",
        "王正攀": "陈立", "孙金华": "赵敏", "因“智”而兴": "数字赋能", "因“智”而乐": "惠及民生",
    }.items():
        text = text.replace(old, new)
    (tmp_path / "other.txt").write_text(text, encoding="utf-8")
    turns = parse_files(tmp_path)
    answers = [t for t in turns if t.kind == "answer"]
    assert {t.speaker for t in answers} == {"张明远", "李慧", "欧阳振华"}
    assert sum(t.kind == "question" and t.speaker == "江城晚报" for t in turns) == 6
    assert answers[0].section == ("数字赋能", "用智慧成果赋能城市建设")
    assert {t.speaker for t in turns if t.kind == "commentary"} == {"陈立", "赵敏"}
    assert next(t for t in answers if t.speaker == "李慧").speaker_title.endswith("副院长")


def test_clean_transcript_form():
    text = (
        "# 城市更新访谈\n\n## 第一部分 老旧小区\n\n"
        "记者：老旧小区改造最难的是什么？\n"
        "王建国（同济大学教授）: 最难的是协调居民意见。\n要把工作做在前面。\n\n"
        "刘芳：资金也是难点。\n\n"
        "## 第二部分 交通\n\n记者：交通怎么改？\n王建国：先做微循环。\n"
    )
    turns = parse_text(text, "t.md")
    answers = [t for t in turns if t.kind == "answer"]
    assert [t.speaker for t in answers] == ["王建国", "刘芳", "王建国"]
    assert answers[0].text == "最难的是协调居民意见。要把工作做在前面。"
    assert answers[0].speaker_title == "同济大学教授"
    assert answers[2].speaker_title == "同济大学教授"
    assert answers[0].article == "城市更新访谈"
    assert answers[0].section == ("第一部分 老旧小区",)
    assert answers[2].asked == "交通怎么改？"
    for t in turns:
        assert squash(text[t.start : t.end]).endswith(squash(t.text))


def test_unknown_layout_still_indexes_as_paragraphs():
    text = "这是一段没有说话人的文字。\n它被换行了，\n但仍是一段。\n\n第二段文字在这里。\n"
    turns = parse_text(text, "plain.txt")
    assert [t.kind for t in turns] == ["paragraph", "paragraph"]
    assert turns[0].speaker is None
    assert chunk_turns(turns)


def test_corpus_errors_name_the_fix(tmp_path):
    with pytest.raises(CorpusProblem, match="not found"):
        read_corpus(tmp_path / "missing")
    with pytest.raises(CorpusProblem, match="no .txt"):
        read_corpus(tmp_path)
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa broken")
    with pytest.raises(CorpusProblem, match="UTF-8"):
        read_corpus(tmp_path)
