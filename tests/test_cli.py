"""The `qa` command contract, run as a user runs it (subprocesses, real model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"rank", "speaker", "speaker_title", "article", "section", "asked", "text", "highlight",
        "score", "source", "start", "end"}


def qa(*args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "qa", *args], cwd=ROOT, input=stdin, capture_output=True,
        text=True, timeout=600, env={**os.environ, **(env or {})},
    )


def test_ask_json_contract(engine):  # engine: the project index exists and is fresh
    r = qa("ask", "卢阳春认为老年人使用政务平台有什么困难？", "--json", "--k", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"question", "answerable", "answer", "citations"} <= set(out)
    assert out["answerable"] is True and len(out["citations"]) == 3
    c = out["citations"][0]
    assert KEYS <= set(c)
    assert c["speaker"] == "卢阳春" and c["section"] == "因“智”而乐 › 让智能化为生活添彩"
    assert c["highlight"] in c["text"] and len(c["text"]) <= 800


def test_batch_keeps_order_and_reads_jsonl(engine, tmp_path):
    batch = tmp_path / "q.txt"
    batch.write_text(
        "朱旭森怎么看绿色发展？\n"
        '{"question": "智博会门票多少钱？"}\n'
        "\n"
        "What did Cai Zhibing say about Chongqing's strengths?\n",
        encoding="utf-8",
    )
    r = qa("ask", "--json", "--batch", str(batch))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["question"] for row in rows] == [
        "朱旭森怎么看绿色发展？", "智博会门票多少钱？",
        "What did Cai Zhibing say about Chongqing's strengths?",
    ]
    assert rows[0]["citations"][0]["speaker"] == "朱旭森"
    assert rows[1]["answerable"] is False and rows[1]["citations"] == []
    assert rows[2]["citations"][0]["speaker"] == "蔡之兵"


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", ""], "empty"),
        (["ask", "   "], "empty"),
        (["ask", "问" * 10_000], "too long"),
        (["ask", "\x01\x02\x1b"], "empty"),
        (["ask", "智慧城市", "--corpus", "/nonexistent/corpus"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, message):
    r = qa(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_unreadable_corpus_file_is_named(tmp_path):
    (tmp_path / "ok.txt").write_text("记者：好吗？\n王五：好。\n", encoding="utf-8")
    (tmp_path / "broken.txt").write_bytes(b"\xff\xfe\x00bad")
    r = qa("ask", "好吗", "--corpus", str(tmp_path), "--index", str(tmp_path / "ix"))
    assert r.returncode != 0 and "broken.txt" in r.stderr and "Traceback" not in r.stderr


def test_index_counts_then_rebuilds_when_corpus_changes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / "cqrb-smart-city-interview.txt", corpus)
    index = tmp_path / "index"
    r = qa("index", "--corpus", str(corpus), "--index", str(index))
    assert r.returncode == 0, r.stderr
    assert "files: 1" in r.stdout and "speakers: 6" in r.stdout
    assert json.loads((index / "manifest.json").read_text())["model"]
    # a second interview, as a clean transcript, is picked up by `ask`
    (corpus / "second.md").write_text(
        "# 城市更新访谈\n\n## 老旧小区\n\n记者：老旧小区改造最难的是什么？\n\n"
        "王建国（同济大学教授）：最难的是协调居民意见，要把工作做在前面。\n",
        encoding="utf-8",
    )
    r = qa("ask", "王建国认为老旧小区改造最难的是什么？", "--json",
           "--corpus", str(corpus), "--index", str(index))
    assert r.returncode == 0, r.stderr
    assert "corpus changed: second.md added" in r.stderr
    top = json.loads(r.stdout)["citations"][0]
    assert top["speaker"] == "王建国" and top["speaker_title"] == "同济大学教授"
    assert top["source"] == "second.md" and top["asked"] == "老旧小区改造最难的是什么？"


def test_a_corrupt_index_is_rebuilt_not_trusted(engine, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(ROOT / "index", index)
    passages = index / "passages.json"
    data = bytearray(passages.read_bytes())
    data[10:14] = b"XXXX"  # same size: only the checksum can tell
    passages.write_bytes(bytes(data))
    r = qa("ask", "朱旭森怎么看绿色发展？", "--json", "--index", str(index))
    assert r.returncode == 0, r.stderr
    assert "corrupt" in r.stderr and "passages.json" in r.stderr
    assert json.loads(r.stdout)["citations"][0]["speaker"] == "朱旭森"


@pytest.mark.parametrize(
    "option, value, valid",
    [("--speaker", "张三", "卢阳春"), ("--section", "不存在的栏目", "让智能化为生活添彩")],
)
def test_an_unknown_filter_is_refused_listing_the_valid_values(engine, option, value, valid):
    r = qa("ask", "老年人", option, value)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown"), r.stderr
    assert value in lines[0] and valid in lines[0]
    assert r.stdout == ""


def test_engine_refuses_an_unknown_speaker_or_section(engine):
    from qa.errors import BadQuestion

    with pytest.raises(BadQuestion, match="unknown speaker '张三': use one of .*卢阳春"):
        engine.ask("老年人", speaker="张三")
    with pytest.raises(BadQuestion, match="unknown section"):
        engine.ask("老年人", section="不存在的栏目")
    assert engine.ask("老年人", section="让智能化为生活添彩").citations  # part of a path
