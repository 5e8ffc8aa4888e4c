"""The gold set is honest and covers the page; the metrics are right; run_eval runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eval.metrics import (  # noqa: E402
    GoldItem,
    contains_any,
    first_hit_rank,
    format_table,
    has_cjk,
    judge,
    load_gold,
    missed_targets,
    parse_gold,
    percentile,
    section_matches,
    speaker_matches,
    squash,
    summarize,
)

GOLD = ROOT / "eval" / "gold.jsonl"
PAGE = ROOT / "corpus" / "cqrb-smart-city-interview.txt"
EXPERTS = ["蔡之兵", "卢阳春", "朱旭森"]
AUTHORS = ["王正攀", "孙金华"]
PINYIN = {
    "蔡之兵": "Cai Zhibing",
    "卢阳春": "Lu Yangchun",
    "朱旭森": "Zhu Xusen",
    "王正攀": "Wang Zhengpan",
    "孙金华": "Sun Jinhua",
}
SECTIONS = [  # each section by any of its names (interview heading or its sub-heading)
    ("因“智”而兴", "用智慧成果赋能城市建设"),
    ("因“智”而乐", "让智能化为生活添彩"),
    ("“智”在必胜", "提速“智慧名城”建设"),
    ("强化智慧服务体系建设，更加彰显以人为本理念",),
    ("完善智能政务体系建设，全面提升政府治理效能",),
    ("加快数据保障体系建设，持续增强协同治理能力",),
    ("不断改善生产生活环境",),
    ("不断提高均衡均等水平",),
    ("不断厚植自信自强底气",),
]
#: section names the corpus parser gives to parts without a printed heading
PARSER_SECTIONS = {"简介", "导语"}  # bios and author notes; the page intro
METRIC_KEYS = {
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
}


@pytest.fixture(scope="module")
def gold() -> list[GoldItem]:
    items, problems = load_gold(GOLD)
    assert problems == []
    return items


@pytest.fixture(scope="module")
def page() -> str:
    return squash(PAGE.read_text(encoding="utf-8"))


# ---- the gold set -------------------------------------------------------------------------


def test_gold_has_at_least_60_parsable_lines(gold):
    lines = [ln for ln in GOLD.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(lines) == len(gold) >= 60
    assert len({i.id for i in gold}) == len(gold)


def test_every_phrase_and_section_is_verbatim_in_the_corpus(gold, page):
    for item in gold:
        for phrase in item.answer_contains:
            assert squash(phrase) in page, f"{item.id}: {phrase!r} is not in the corpus"
        if item.section and item.section not in PARSER_SECTIONS:
            assert squash(item.section) in page, f"{item.id}: section {item.section!r}"


def test_every_expert_and_commentary_author_is_asked_about(gold):
    for name in EXPERTS + AUTHORS:
        expecting = [i for i in gold if i.speakers == (name,)]
        named = [i for i in gold if name in i.question or PINYIN[name] in i.question]
        assert len(expecting) >= 5, name
        assert named, f"no question names {name}"


def test_every_section_is_covered(gold):
    covered = [i.section for i in gold if i.section]
    for names in SECTIONS:
        # a gold section names a part of the path: the heading, the sub-heading, or part of one
        assert any(squash(c) in squash(name) for c in covered for name in names), names


def test_bios_and_page_intro_are_covered(gold, page):
    bios = page[page.index("对话蔡之兵") :]
    intro = page[page.index("在刚刚闭幕的智博会上") : page.index("热点透析")]
    for name in EXPERTS:
        assert any(
            name in i.speakers and any(squash(p) in bios for p in i.answer_contains) for i in gold
        ), f"no bio question for {name}"
    assert any(not i.speakers and any(squash(p) in intro for p in i.answer_contains) for i in gold)


def test_language_and_unanswerable_mix(gold):
    english = [i for i in gold if not has_cjk(i.question)]
    unanswerable = [i for i in gold if i.unanswerable]
    assert len([i for i in english if not i.unanswerable]) >= 12
    assert len(unanswerable) >= 8
    assert any(has_cjk(i.question) for i in unanswerable)
    assert any(not has_cjk(i.question) for i in unanswerable)
    naming = [
        i
        for i in gold
        if any(n in i.question or PINYIN[n] in i.question for n in EXPERTS + AUTHORS)
    ]
    assert len(naming) >= 15


# ---- metrics --------------------------------------------------------------------------------


def test_phrase_matching_ignores_line_wraps():
    assert contains_any(["要加快开发语音\n交互功能"], ["语音交互"])
    assert contains_any([None, "收入28920 元"], ["28920元"])
    assert not contains_any(["语音识别"], ["语音交互"])
    ranked = [("无关",), ("也无关", None), ("语音\n交互", "")]
    assert first_hit_rank(ranked, ["语音交互"]) == 3
    assert first_hit_rank(ranked, ["不在"]) is None


def test_speaker_and_section_matching():
    assert speaker_matches("□王正攀", ["王正攀"])
    assert not speaker_matches(None, ["王正攀"])
    assert section_matches("如何用智博会成果… › 因“智”而乐 › 让智能化为生活添彩", "因“智”而乐")
    assert section_matches(
        "王正攀署名文章 › 强化智慧服务体系建设，更加彰显以人为本理念", "强化智慧服务\n体系建设"
    )
    assert not section_matches(None, "因“智”而乐")


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == 95.0


def _item(qid: str, **kw) -> GoldItem:
    kw.setdefault("answer_contains", () if kw.get("unanswerable") else ("语音交互",))
    return GoldItem(id=qid, question="q", **kw)


def _cite(rank: int, text: str, speaker: str = "卢阳春", section: str = "A › 因“智”而乐") -> dict:
    return {
        "rank": rank,
        "text": text,
        "full_text": text,
        "speaker": speaker,
        "section": section,
        "highlight": text,
    }


def test_judge_and_summarize():
    good = judge(
        _item("a", speakers=("卢阳春",), section="因“智”而乐"), True, [_cite(1, "语音交互")], 10.0
    )
    second = judge(
        _item("b", speakers=("朱旭森",)), True, [_cite(1, "别的"), _cite(2, "语音交\n互")], 20.0
    )
    abstained = judge(_item("c"), False, [_cite(1, "语音交互")], 30.0)
    refused = judge(_item("u", unanswerable=True), False, [], 40.0)
    leaked = judge(_item("v", unanswerable=True), True, [_cite(1, "x")], 50.0)
    assert (good.rank, good.speaker_ok, good.section_ok, good.failures()) == (1, True, True, [])
    assert second.rank == 2 and second.speaker_ok is False and second.section_ok is None
    assert abstained.rank is None and abstained.failures() == [
        "abstained on an answerable question"
    ]
    assert refused.failures() == [] and leaked.failures()
    m = summarize([good, second, abstained, refused, leaked])
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-3)
    assert m["hit@3"] == m["hit@5"] == pytest.approx(2 / 3, abs=1e-3)
    assert m["mrr"] == pytest.approx((1 + 0.5) / 3, abs=1e-3)
    assert m["speaker@1"] == 0.5 and m["section@1"] == 1.0
    assert m["unanswerable_abstained"] == 0.5 and m["answerable_abstained_n"] == 1
    assert m["latency_p50_ms"] == 30.0
    assert {"hit@5 0.667 (target >= 1.00)"} <= set(missed_targets(m))
    assert "hybrid" in format_table({"hybrid": m})


def test_naive_outcomes_have_no_speaker_section_or_abstention():
    naive = [
        judge(
            _item("a", speakers=("卢阳春",), section="x"),
            None,
            [_cite(1, "语音交互")],
            1.0,
            has_fields=False,
        ),
        judge(_item("u", unanswerable=True), None, [_cite(1, "x")], 1.0, has_fields=False),
    ]
    m = summarize(naive)
    assert m["hit@1"] == 1.0
    assert m["speaker@1"] is m["section@1"] is m["unanswerable_abstained"] is None
    assert naive[1].failures() == []  # it cannot abstain, so it is not failed for answering


def test_malformed_gold_lines_are_reported_by_number_and_skipped():
    lines = [
        '{"id": "a", "question": "问", "answer_contains": ["x"]}',
        "",
        '{"id": "b", "question": "问", "answer_contains": ["x"]',  # broken JSON
        '["not", "an", "object"]',
        '{"id": "c", "question": "", "answer_contains": ["x"]}',
        '{"id": "d", "question": "问"}',
        '{"id": "a", "question": "again", "unanswerable": true}',
        '{"id": "e", "question": "问", "speakers": "卢阳春", "answer_contains": ["x"]}',
        '{"id": "u", "question": "远", "unanswerable": true}',
    ]
    items, problems = parse_gold(lines)
    assert [i.id for i in items] == ["a", "u"]
    assert [p.split(":")[0] for p in problems] == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 7",
        "line 8",
    ]
    assert all(p.endswith("skipped") for p in problems)


# ---- end to end ------------------------------------------------------------------------------


def _engine_available() -> bool:
    try:
        import qa.engine  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _engine_available(), reason="qa.engine is not importable yet")
def test_run_eval_end_to_end(tmp_path, gold):
    pick = {"q18", "q45", "e08", "u03", "u04"}
    lines = [json.dumps(i.to_dict(), ensure_ascii=False) for i in gold if i.id in pick]
    lines.insert(2, '{"id": "broken", "question": ')
    gold_file = tmp_path / "small.jsonl"
    gold_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    # the project's default index (built once, shared with the app tests) unless told otherwise
    index = ["--index", os.environ["QA_TEST_INDEX"]] if os.environ.get("QA_TEST_INDEX") else []
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run_eval.py"),
            "--gold",
            str(gold_file),
            "--k",
            "5",
            "--out",
            str(out),
            *index,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "line 3:" in proc.stderr and "skipped" in proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert METRIC_KEYS <= set(last) and last["n_questions"] == 5
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["configs"]) == {"hybrid", "dense", "bm25", "naive"}
    assert report["gold_problems"] and report["gold_problems"][0].startswith("line 3:")
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# Retrieval evaluation")
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    naive = report["configs"]["naive"]["metrics"]
    assert naive["speaker@1"] is None and naive["hit@5"] is not None


def test_the_default_configuration_meets_the_issues_targets_on_our_gold_set(engine, gold):
    """A retrieval change that costs hit@5, speaker@1 or an abstention shows up here; the
    table with every figure is `make eval`."""
    from eval.metrics import summarize
    from eval.run_eval import run_engine

    metrics = summarize(run_engine(engine, "hybrid", "hybrid", gold, k=5))
    assert missed_targets(metrics) == []
