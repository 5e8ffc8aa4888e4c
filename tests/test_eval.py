"""The gold set is honest and covers the page; the metrics are right; run_eval runs end to end;
the default configuration is held to issue #13's targets on the test split."""

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

from eval.generate_negatives import generate, mentioned_without_number  # noqa: E402
from eval.metrics import (  # noqa: E402
    TARGETS,
    GoldItem,
    by_kind,
    contains_any,
    first_hit_rank,
    fold_hit1,
    format_table,
    has_cjk,
    judge,
    load_gold,
    meets,
    missed_targets,
    parse_gold,
    percentile,
    section_matches,
    speaker_matches,
    speaker_share,
    squash,
    summarize,
    target_figures,
)
from eval.split import assign_splits  # noqa: E402

GOLD = ROOT / "eval" / "gold.jsonl"
NEGATIVES = ROOT / "eval" / "generated_negatives.jsonl"
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
    "highlight@1",
    "hit@1_zh",
    "hit@1_en",
    "unanswerable_abstained",
    "answerable_abstained",
    "latency_p50_ms",
    "latency_p95_ms",
}
#: the kinds of question issue #13 asks the hand-written set to have
KINDS = {
    "paraphrase", "verbatim", "traditional", "typo_name", "romanized_name", "colloquial",
    "mixed", "figure", "bio", "intro", "multi_speaker", "followup", "english",
    "off_topic", "unans_speaker_topic", "unans_expo", "unans_count", "unans_personal", "nonsense",
}  # fmt: skip


@pytest.fixture(scope="module")
def gold() -> list[GoldItem]:
    items, problems = load_gold(GOLD)
    assert problems == []
    return items


@pytest.fixture(scope="module")
def page() -> str:
    return squash(PAGE.read_text(encoding="utf-8"))


# ---- the gold set -------------------------------------------------------------------------


def _raw(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def test_gold_has_at_least_160_parsable_lines(gold):
    lines = [ln for ln in GOLD.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(lines) == len(gold) >= 160
    assert len({i.id for i in gold}) == len(gold)


def test_every_kind_is_in_both_splits_and_the_split_is_fixed(gold):
    assert {i.kind for i in gold} == KINDS
    for kind in KINDS:
        splits = {i.split for i in gold if i.kind == kind}
        assert splits == {"dev", "test"}, f"{kind}: {splits}"
    dev = sum(i.split == "dev" for i in gold)
    assert 0.4 <= dev / len(gold) <= 0.6
    raw = _raw(GOLD)
    # the recorded split is what the rule keeps: re-running eval/split.py changes nothing
    assert assign_splits(raw) == raw
    assert assign_splits(list(reversed(raw))) == list(reversed(raw))


def test_unanswerables_are_many_near_the_topic_and_truly_absent(gold, page):
    unanswerable = [i for i in gold if i.unanswerable]
    assert len(unanswerable) >= 50
    near = [i for i in unanswerable if i.kind.startswith("unans_")]
    assert len(near) > len(unanswerable) / 2
    for item in _raw(GOLD):
        if item.get("unanswerable"):
            for term in item.get("absent", []):
                assert squash(term) not in page, f"{item['id']}: {term!r} is in the page"


def test_enough_english_to_compare_with_chinese(gold):
    english = [i for i in gold if i.language == "en" and not i.unanswerable]
    chinese = [i for i in gold if i.language == "zh" and not i.unanswerable]
    assert len(english) >= 40 and len(chinese) >= 40
    assert all(not has_cjk(i.question) for i in english)
    assert all(has_cjk(i.question) for i in chinese)
    for split in ("dev", "test"):
        assert sum(i.split == split for i in english) >= 20


def test_follow_ups_and_several_expert_questions_are_well_formed(gold):
    followups = [i for i in gold if i.kind == "followup"]
    assert followups and all(i.previous and len(i.speakers) == 1 for i in followups)
    assert all(not i.previous for i in gold if i.kind != "followup")
    several = [i for i in gold if i.kind == "multi_speaker"]
    assert several and all(i.expect_all_speakers and len(i.speakers) >= 2 for i in several)


def test_generated_negatives_are_reproducible_split_and_absent(page):
    items, _ = generate(PAGE.read_text(encoding="utf-8"))
    assert _raw(NEGATIVES) == items, "run eval/generate_negatives.py"
    assert len(items) >= 300
    assert {i["kind"] for i in items} == {"gen_speaker_topic", "gen_count", "gen_when"}
    assert {i["split"] for i in items} == {"dev", "test"}
    assert {i["lang"] for i in items} == {"zh", "en"}
    for item in items:
        assert item["unanswerable"] is True
        for term in item.get("absent", []):
            assert squash(term) not in page, item
    negatives, problems = load_gold(NEGATIVES)
    assert problems == [] and len(negatives) == len(items)


def test_counted_things_rule():
    page = squash("集聚了3000多家大数据智能化企业，建有门户网站。上百项黑科技")
    assert mentioned_without_number("门户网站", page)
    assert not mentioned_without_number("大数据智能化企业", page)
    assert not mentioned_without_number("黑科技", page)
    assert not mentioned_without_number("不在页面上", page)


def test_split_rule_is_stable_and_stratified():
    items = [{"id": f"a{n}", "kind": "x"} for n in range(6)] + [{"id": "b0", "kind": "y"}]
    done = assign_splits(items)
    assert [sum(d["split"] == s for d in done if d["kind"] == "x") for s in ("dev", "test")] == [
        3,
        3,
    ]
    assert assign_splits(reversed(items)) == list(reversed(done))  # order does not matter
    grown = assign_splits([*done, {"id": "a6", "kind": "x"}, {"id": "b1", "kind": "y"}])
    assert grown[: len(done)] == done  # old items keep their split
    assert {d["split"] for d in grown if d["kind"] == "y"} == {"dev", "test"}


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
    assert m["highlight@1"] == 0.5  # b's first citation ("别的") does not hold the phrase
    assert {"hit@5 0.667 (target >= 0.98)"} <= set(missed_targets(m))
    assert "hybrid" in format_table({"hybrid": m})


def test_highlight_is_judged_on_the_first_citations_highlight_only():
    cite = {**_cite(1, "要加快开发语音交互功能。降低使用难度。"), "highlight": "降低使用难度。"}
    out = judge(_item("h"), True, [cite], 1.0)
    assert out.rank == 1 and out.highlight_ok is False
    assert "highlight misses the phrase" in out.failures()
    cite["highlight"] = "要加快开发语音\n交互功能。"
    assert judge(_item("h"), True, [cite], 1.0).highlight_ok is True


def test_several_expert_speaker_share():
    assert speaker_share(["蔡之兵", "□朱旭森", None], ["蔡之兵", "朱旭森"]) == 1.0
    three = ["蔡之兵", "朱旭森", "卢阳春"]
    assert speaker_share(["蔡之兵", "蔡之兵"], three) == pytest.approx(1 / 3)
    item = _item("s", speakers=("蔡之兵", "朱旭森"), expect_all_speakers=True)
    cites = [_cite(r, "语音交互", speaker="蔡之兵") for r in range(1, 6)]
    cites.append(_cite(6, "x", speaker="朱旭森"))  # beyond the depth looked at
    out = judge(item, True, cites, 1.0)
    assert out.speaker_score == 0.5 and out.speaker_ok is False
    assert summarize([out])["speaker@1"] == 0.5
    anyone = judge(_item("o", speakers=("蔡之兵", "朱旭森")), True, cites, 1.0)
    assert anyone.speaker_score == 1.0  # an ordinary item: any listed speaker first is right


def test_language_split_kind_and_fold_figures():
    zh = judge(GoldItem("z", "语音？", answer_contains=("语音交互",), kind="k"), True,
               [_cite(1, "语音交互")], 1.0)  # fmt: skip
    en = judge(GoldItem("e", "voice?", answer_contains=("语音交互",), kind="k"), True,
               [_cite(1, "别的")], 1.0)  # fmt: skip
    assert (zh.item.language, en.item.language) == ("zh", "en")
    m = summarize([zh, en])
    assert (m["hit@1_zh"], m["hit@1_en"], m["hit@1_mixed"]) == (1.0, 0.0, None)
    assert by_kind([zh, en]) == {"k": {"n": 2, "hit@1": 0.5}}
    folds = fold_hit1([zh, en], folds=3)
    assert len(folds) == 3 and sorted(f for f in folds if f is not None) in ([0.0, 1.0], [0.5])


def test_target_figures_gap_and_language_distance():
    test = {"hit@1": 0.90, "hit@1_zh": 0.95, "hit@1_en": 0.85, "hit@5": 1.0}
    figures = target_figures(test, {"hit@1": 0.95}, {"unanswerable_abstained": 0.97})
    assert figures["dev_test_gap_hit@1"] == pytest.approx(0.05)
    assert figures["en_zh_gap_hit@1"] == pytest.approx(0.10)
    assert figures["generated_abstained"] == 0.97
    missed = {m.split()[0] for m in missed_targets(figures)}
    assert missed == {"hit@1", "dev_test_gap_hit@1", "en_zh_gap_hit@1"}
    assert meets("hit@5", 0.98) is True and meets("hit@5", None) is None
    assert meets("answerable_abstained", 0.02) is False
    # better on test than on dev is no excuse either: the distance counts
    assert target_figures({"hit@1": 1.0}, {"hit@1": 0.9})["dev_test_gap_hit@1"] == 0.1


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
        '{"id": "f", "question": "问", "split": "train", "answer_contains": ["x"]}',
        '{"id": "g", "question": "问", "speakers": ["a"], "expect_all_speakers": true, '
        '"answer_contains": ["x"]}',
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
        "line 10",
        "line 11",
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
    pick = {"q18", "q45", "e08", "u03", "u04", "fu01", "s01"}
    lines = [json.dumps(i.to_dict(), ensure_ascii=False) for i in gold if i.id in pick]
    lines.insert(2, '{"id": "broken", "question": ')
    gold_file = tmp_path / "small.jsonl"
    gold_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    negatives = tmp_path / "negatives.jsonl"
    negatives.write_text("".join(NEGATIVES.read_text(encoding="utf-8").splitlines(True)[:3]))
    out = tmp_path / "out"
    # the project's default index (built once, shared with the app tests) unless told otherwise
    index = ["--index", os.environ["QA_TEST_INDEX"]] if os.environ.get("QA_TEST_INDEX") else []
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval" / "run_eval.py"),
            "--gold",
            str(gold_file),
            "--negatives",
            str(negatives),
            "--k",
            "5",
            "--out",
            str(out),
            *index,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "line 3:" in proc.stderr and "skipped" in proc.stderr
    assert "TEST split" in proc.stdout and "dev − test hit@1" in proc.stdout
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert METRIC_KEYS <= set(last) and last["n_questions"] == len(pick)
    assert METRIC_KEYS <= set(last["dev"]) and METRIC_KEYS <= set(last["test"])
    assert last["dev"]["n_questions"] + last["test"]["n_questions"] == len(pick)
    assert last["generated"]["n_unanswerable"] == 3
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["configs"]) == {"hybrid", "dense", "bm25", "naive"}
    assert report["gold_problems"] and report["gold_problems"][0].startswith("line 3:")
    assert set(report["targets"]["figures"]) >= set(TARGETS) - {"en_zh_gap_hit@1"}
    hybrid = report["configs"]["hybrid"]
    followup = next(q for q in hybrid["questions"] if q["id"] == "fu01")
    assert followup["previous"] and followup["resolved"]
    assert next(q for q in hybrid["questions"] if q["id"] == "s01")["speaker_score"] is not None
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# Retrieval evaluation")
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    naive = report["configs"]["naive"]
    assert naive["metrics"]["speaker@1"] is None and naive["metrics"]["hit@5"] is not None
    assert naive["generated"] is None  # it cannot refuse, so it is not asked the negatives


# ---- issue #13's targets on the test split ---------------------------------------------------

#: Targets the system on this branch is known to miss (measured by `eval/run_eval.py
#: --configs hybrid`, see /work/notes/readme-eval.md). Shrink this set as the system improves;
#: when it is empty the strict xfail below turns into an ordinary test.
KNOWN_MISSED = {  # 2026-12-06 (2nd session): 82 English (y, w) and 30 colloquial (z) added
    "hit@1",  # 0.897: 11 colloquial test questions written blind get 4 at rank 1
    "hit@5",  # 0.943
    "highlight@1",  # 0.826
    "unanswerable_abstained",  # 0.897 (35/39)
    "answerable_abstained",  # 0.040 (7/174)
    "dev_test_gap_hit@1",  # 0.047: dev 0.943 (tuned on: the everyday-word map among others)
}  # met: speaker@1 0.952, generated 0.972, English–Chinese gap 0.001 (English 0.894 rose,
#   Chinese 0.893 fell with the colloquial questions: met by that, not by English alone)


@pytest.fixture(scope="module")
def target_figures_now(engine, gold) -> dict:
    """The default configuration on every hand-written question and the generated negatives'
    test split (the gap needs dev too), reduced to the figures TARGETS names."""
    from eval.run_eval import DEFAULT_CONFIG, ENGINE_MODES, run_engine

    negatives, problems = load_gold(NEGATIVES)
    assert problems == []
    mode = ENGINE_MODES[DEFAULT_CONFIG]
    outs = run_engine(engine, mode, DEFAULT_CONFIG, gold, k=5)
    gen = run_engine(engine, mode, "generated", [n for n in negatives if n.split == "test"], k=5)
    dev = summarize([o for o in outs if o.item.split == "dev"])
    test = summarize([o for o in outs if o.item.split == "test"])
    return target_figures(test, dev, summarize(gen))


def test_no_target_is_missed_beyond_the_known_ones(target_figures_now):
    """A change that loses a target the system met shows up here (the table with every
    figure is `make eval`)."""
    missed = {m.split()[0] for m in missed_targets(target_figures_now)}
    assert missed <= KNOWN_MISSED, missed_targets(target_figures_now)


@pytest.mark.xfail(bool(KNOWN_MISSED), reason=f"known misses: {sorted(KNOWN_MISSED)}", strict=True)
def test_the_default_configuration_meets_issue_13_targets_on_the_test_split(target_figures_now):
    assert set(TARGETS) <= set(target_figures_now)
    assert missed_targets(target_figures_now) == []
