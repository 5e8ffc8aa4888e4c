"""Incremental updates of the default index folder (issue #11): adding, changing or removing
a file embeds only that file, and the result equals a full build of the same corpus.

Real corpus, real default model; the only wrapper counts what reaches the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import store
from qa.embed import load_embedder
from qa.engine import Engine, build

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "corpus" / "cqrb-smart-city-interview.txt"

FIRST = """# 城市物流怎样更聪明
## 垃圾清运
主持人：城市垃圾清运有哪些新办法？
张明远（物流研究员）：垃圾清运要靠数据调度。我们给每辆清运车装上定位设备，按照小区垃圾桶的满溢情况安排路线，空跑的车次少了一半。
"""

SECOND = """# 公交怎样更准点
## 公交调度
主持人：公交车为什么越来越准点了？
李慧（交通研究员）：公交调度中心接入了实时客流数据，高峰时段加密班次，平峰时段拉长间隔，乘客候车时间平均缩短了三分钟。
主持人：智慧公交还要做什么？
李慧（交通研究员）：下一步是让公交和地铁的时刻表联动，换乘的乘客不用再等，智慧城市建设要从这些小事做起。
"""

QUESTIONS = [
    "卢阳春怎么看老年人？",
    "智慧城市建设有什么意义？",
    "李慧怎么看公交调度？",
    "垃圾清运有哪些新办法？",
    "智博会的黑科技有什么作用？",
    "大数据怎样用于城市治理？",
    "今天天气怎么样？",
]


class Counting:
    """The real embedder, counting the texts it is given."""

    def __init__(self, inner):
        self.inner = inner
        self.texts: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_passages(self, texts, progress=None):
        self.texts += list(texts)
        return self.inner.embed_passages(texts, progress=progress)


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(progress=quiet)


@pytest.fixture(scope="module")
def base(tmp_path_factory, embedder):
    """A corpus (the real interview + a small one) and its full build."""
    root = tmp_path_factory.mktemp("base")
    (root / "corpus").mkdir()
    shutil.copy(REAL, root / "corpus" / REAL.name)
    (root / "corpus" / "logistics.md").write_text(FIRST, encoding="utf-8")
    build(root / "corpus", root / "index", embedder, progress=quiet)
    return root


@pytest.fixture()
def work(base, tmp_path):
    shutil.copytree(base / "corpus", tmp_path / "corpus")
    shutil.copytree(base / "index", tmp_path / "index")
    return tmp_path


def answers(index: store.IndexStore, embedder, folder: Path) -> list[dict]:
    engine = Engine(index, embedder, folder, None)
    out = []
    for q in QUESTIONS:
        a = engine.ask(q).to_dict()
        a.pop("timings_ms")
        # vectors agree to 2e-6 (batching changes the last float bits): compare scores to 4 places
        for c in a["citations"]:
            c["score"] = round(c["score"], 4)
        out.append(a)
    return out


def assert_same_as_full_build(updated: store.IndexStore, work: Path, embedder) -> None:
    full = build(work / "corpus", work / "full", embedder, progress=quiet)
    assert [p.to_dict() for p in updated.passages] == [p.to_dict() for p in full.passages]
    assert [t.to_dict() for t in updated.turns.values()] == [
        t.to_dict() for t in full.turns.values()
    ]
    assert updated.manifest["corpus"] == full.manifest["corpus"]
    assert updated.manifest["counts"] == full.manifest["counts"]
    # keyword statistics: same vocabulary, document frequencies and weights
    assert list(updated._term_id) == list(full._term_id)
    assert (updated._weights != full._weights).nnz == 0
    np.testing.assert_allclose(updated.unit_vectors(), full.unit_vectors(), atol=2e-6)
    assert updated.sentences.turn_ids == full.sentences.turn_ids
    np.testing.assert_allclose(updated.sentences.vectors, full.sentences.vectors, atol=2e-6)
    assert answers(updated, embedder, work / "index") == answers(full, embedder, work / "full")
    # and the folder on disk reads back as what was returned
    reread = store.load_index(work / "index")
    assert [p.to_dict() for p in reread.passages] == [p.to_dict() for p in updated.passages]
    assert store.stale_reason(
        work / "index", updated.manifest["corpus"], embedder.name, updated.manifest["settings"]
    ) is None


def test_corpus_change_by_hash():
    change = store.corpus_change({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (change.added, change.changed, change.removed, change.unchanged) == (
        ["d"], ["b"], ["c"], ["a"]
    )
    assert change.to_index == ["b", "d"] and change.any
    assert not store.corpus_change({"a": "1"}, {"a": "1"}).any


def test_adding_a_file_embeds_only_it_and_equals_a_full_build(work, embedder):
    (work / "corpus" / "bus.md").write_text(SECOND, encoding="utf-8")
    counting = Counting(embedder)
    updated = build(work / "corpus", work / "index", counting, progress=quiet)
    new = [p for p in updated.passages if p.source == "bus.md"]
    new_sentences = [t for t in updated.sentences.turn_ids if t.startswith("bus.md#")]
    assert new and len(counting.texts) == len(new) + len(new_sentences)
    assert all(("公交" in t or "地铁" in t or "李慧" in t or "换乘" in t or "乘客" in t)
               for t in counting.texts)
    assert updated.changes[0].startswith(f"added: bus.md ({len(new)} passages, ")
    assert updated.changes[-1] == "unchanged: 2 files"
    assert_same_as_full_build(updated, work, embedder)


def test_changing_a_file_embeds_only_it(work, embedder):
    changed = FIRST + "张明远（物流研究员）：夜间清运也改成了按需派车。\n"
    (work / "corpus" / "logistics.md").write_text(changed, encoding="utf-8")
    counting = Counting(embedder)
    updated = build(work / "corpus", work / "index", counting, progress=quiet)
    rows = [p for p in updated.passages if p.source == "logistics.md"]
    sentences = [t for t in updated.sentences.turn_ids if t.startswith("logistics.md#")]
    assert len(counting.texts) == len(rows) + len(sentences)
    assert any("按需派车" in p.text for p in rows)
    assert updated.changes[0].startswith("changed: logistics.md")


def test_removing_a_file_embeds_nothing_and_equals_a_full_build(work, embedder):
    (work / "corpus" / "logistics.md").unlink()
    counting = Counting(embedder)
    updated = build(work / "corpus", work / "index", counting, progress=quiet)
    assert counting.texts == []
    assert not any(p.source == "logistics.md" for p in updated.passages)
    assert "清运" not in updated._term_id  # its words left the vocabulary
    assert updated.changes[0].startswith("removed: logistics.md (")
    assert_same_as_full_build(updated, work, embedder)


def test_an_interrupted_update_leaves_the_old_index_usable(work, embedder):
    before = json.loads((work / "index" / store.MANIFEST).read_text("utf-8"))
    (work / "corpus" / "bus.md").write_text(SECOND, encoding="utf-8")

    def stop_while_writing(message: str) -> None:
        if message.startswith("index: dense search"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(work / "corpus", work / "index", embedder, progress=stop_while_writing)
    old = store.load_index(work / "index")  # intact: checksums verified
    assert old.manifest == before and not any(p.source == "bus.md" for p in old.passages)
    assert sorted(p.name for p in work.iterdir()) == ["corpus", "index"]  # no leftovers
    counting = Counting(embedder)  # and the next run updates from it
    updated = build(work / "corpus", work / "index", counting, progress=quiet)
    assert any(p.source == "bus.md" for p in updated.passages)
    assert counting.texts and all("李慧" in t or "公交" in t or "乘客" in t or "换乘" in t
                                  or "地铁" in t for t in counting.texts)


def test_another_model_forces_a_full_build(work, embedder):
    path = work / "index" / store.MANIFEST
    manifest = json.loads(path.read_text("utf-8"))
    manifest["model"] = "some-other-model"
    path.write_text(json.dumps(manifest), "utf-8")
    counting = Counting(embedder)
    built = build(work / "corpus", work / "index", counting, progress=quiet)
    assert len(counting.texts) == len(built.passages) + len(built.sentences)
    assert built.changes[0].startswith("built: 2 file(s)")
    assert "some-other-model" in built.changes[0]


def test_a_server_refresh_uses_the_index_it_holds(work, embedder):
    engine = Engine.open(work / "corpus", work / "index", progress=quiet)
    (work / "corpus" / "bus.md").write_text(SECOND, encoding="utf-8")
    lines: list[str] = []
    assert engine.refresh(progress=lines.append)
    assert any(line.startswith("index: added: bus.md") for line in lines)
    assert engine.ask("李慧怎么看公交调度？").citations[0].speaker == "李慧"
    assert engine.health()["status"] == "ok"


def test_a_second_builder_waits_for_the_first(work):
    """`qa index` while another build of the same folder runs (here: this test holds the
    lock) waits, saying so, and then brings the index up to date: no lost update."""
    import subprocess
    import sys
    import time

    from qa import atomic

    (work / "corpus" / "bus.md").write_text(SECOND, encoding="utf-8")
    cmd = [sys.executable, "-m", "qa", "index", "--corpus", str(work / "corpus"),
           "--index", str(work / "index")]
    with atomic.exclusive(work / "index"):
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        seen = ""
        deadline = time.monotonic() + 120
        while "waiting for another build" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "waiting for another build" in seen, seen
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting while the lock is held
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, seen + rest
    assert "added: bus.md" in rest
    assert any(p.source == "bus.md" for p in store.load_index(work / "index").passages)
