"""The engine, the CLI and the app on a Milvus store (issue #11), on the real corpus and
model: one setting (--store / QA_STORE) chooses the store; a writer applies changed files
one by one; stateless reader replicas on one `milvus-lite server` answer alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("pymilvus", reason="pymilvus not installed: pip install -e '.[milvus]'")

from conftest import free_port, start_app  # noqa: E402

from qa.corpus import read_corpus  # noqa: E402
from qa.engine import Engine, default_corpus  # noqa: E402
from qa.errors import IndexProblem  # noqa: E402
from qa.feedback import FeedbackLog, replica_path  # noqa: E402
from qa.milvus_store import quote  # noqa: E402
from qa.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"] for line in (ROOT / "eval" / "gold.jsonl").read_text().splitlines()
][:8] + ["What did Lu Yangchun say about the elderly?", "明天重庆会下雨吗？"]


def quiet(_message: str) -> None:  # a progress sink that drops everything
    pass


def _answer(engine: Engine, question: str) -> dict:
    d = engine.ask(question).to_dict()
    d.pop("timings_ms")
    return d


def _same(a: dict, b: dict) -> None:
    """The same answer, with scores equal to float32 noise (two engines' float sums)."""
    assert a.keys() == b.keys()
    for key in a:
        if key == "citations":
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key], strict=True):
                assert {**x, "score": 0} == {**y, "score": 0}
                assert x["score"] == pytest.approx(y["score"], abs=1e-4)
        elif isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
        else:
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for source, text in read_corpus(default_corpus()):
        (folder / source).parent.mkdir(parents=True, exist_ok=True)
        (folder / source).write_text(text, "utf-8")
    return folder


def test_one_setting_chooses_the_store_and_answers_match(tmp_path, corpus_copy):
    """QA_STORE=<file.db> serves the same answers, evidence and verdicts as the folder;
    then a file added, changed and removed is written alone (per-file, not a rebuild)."""
    db = str(tmp_path / "qa.db")
    os.environ["QA_STORE"] = db
    try:
        on_milvus = Engine.open(corpus_copy, tmp_path / "unused", progress=quiet)
    finally:
        del os.environ["QA_STORE"]
    assert not (tmp_path / "unused").exists()  # no folder was built
    on_faiss = Engine.open(corpus_copy, tmp_path / "index", progress=quiet, store="faiss")
    assert on_milvus.health()["store"] == "milvus" and on_milvus.health()["index"] == db
    assert on_faiss.health()["store"] == "faiss"
    assert on_milvus.health()["passages"] == on_faiss.health()["passages"] > 50
    for question in QUESTIONS:
        _same(_answer(on_milvus, question), _answer(on_faiss, question))
    assert on_milvus.speakers == on_faiss.speakers and on_milvus.sections == on_faiss.sections

    # -- a file added: only its rows are written, the served index is swapped whole
    store = on_milvus.store
    (original,) = store.manifest["corpus"]
    keys_before = _keys(store, original)
    text = (corpus_copy / original).read_text("utf-8")
    (corpus_copy / "2027" / "new.txt").parent.mkdir()
    (corpus_copy / "2027" / "new.txt").write_text(text[: len(text) // 5], "utf-8")
    lines: list[str] = []
    t0 = time.perf_counter()
    assert on_milvus.refresh(lines.append)
    seconds = time.perf_counter() - t0
    assert any(line.startswith("milvus: added: 2027/new.txt") for line in lines), lines
    assert not any("building" in line for line in lines), lines  # no full rebuild
    assert on_milvus.store is not store and len(store.manifest["corpus"]) == 1  # swapped
    assert _keys(on_milvus.store, original) == keys_before
    assert set(on_milvus.store.manifest["corpus"]) == {original, "2027/new.txt"}
    assert on_milvus.health()["status"] == "ok"
    added = [p for p in on_milvus.store.passages if p.source == "2027/new.txt"]
    assert added and seconds < 120
    assert not on_milvus.refresh(lines.append)  # nothing changed since

    # -- changed, then removed: back to the folder's answers
    (corpus_copy / "2027" / "new.txt").write_text(text[: len(text) // 8], "utf-8")
    assert on_milvus.refresh(lines.append)
    assert any(line.startswith("milvus: changed: 2027/new.txt") for line in lines), lines
    fewer = [p for p in on_milvus.store.passages if p.source == "2027/new.txt"]
    assert 0 < len(fewer) < len(added)
    shutil.rmtree(corpus_copy / "2027")
    assert on_milvus.refresh(lines.append)
    assert any(line.startswith("milvus: removed: 2027/new.txt") for line in lines), lines
    assert on_milvus.store.passages == on_faiss.store.passages
    for question in QUESTIONS[:4]:
        _same(_answer(on_milvus, question), _answer(on_faiss, question))


def _keys(store, source: str) -> dict:
    rows = store.client.query(
        store.name, filter=f"source == {quote(source)}", output_fields=["pk", "text"]
    )
    return {r["pk"]: r["text"] for r in rows}


def test_a_wrong_store_is_one_line_before_the_model(tmp_path):
    with pytest.raises(IndexProblem, match="not a Milvus location"):
        Engine.open(store="elasticsearch", progress=quiet)
    with pytest.raises(IndexProblem, match="does not exist"):
        Engine.open(store=str(tmp_path / "no" / "such.db"), progress=quiet)
    cli = subprocess.run(
        [sys.executable, "-m", "qa", "ask", "智慧城市", "--store", "ftp://x"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert "not a Milvus location" in cli.stderr


def test_settings_and_per_replica_feedback():
    s = Settings.from_env({"QA_STORE": "http://milvus:19530", "QA_MILVUS_READER": "1"})
    assert s.store == "http://milvus:19530" and s.milvus_reader
    assert not Settings.from_env({}).milvus_reader and Settings.from_env({}).store == "faiss"
    path = replica_path("/shared/feedback-{host}-{pid}.jsonl")
    assert str(os.getpid()) in path.name and "{" not in str(path)
    assert replica_path("plain.jsonl") == Path("plain.jsonl")
    log = FeedbackLog("/shared/{host}/{pid}.jsonl")  # what a replica writes to
    assert log.path.name == f"{os.getpid()}.jsonl" and "{host}" not in str(log.path)


# -- many readers: two app processes on one milvus-lite server -------------------------------


def _ask(url: str, question: str) -> dict:
    r = httpx.post(url + "/api/ask", json={"question": question}, timeout=60)
    assert r.status_code == 200, r.text
    d = r.json()
    d.pop("timings_ms")
    return d


def _qa(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qa", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip


def test_two_stateless_replicas_answer_alike_while_one_restarts(tmp_path, corpus_copy):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "milvus"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "QA_STORE": uri, "QA_CORPUS": str(corpus_copy), "QA_EMBED_WORKERS": "1"}
    try:
        # the writer: `qa index` builds the collection, then says nothing changed
        for _ in range(100):  # the server takes a few seconds to listen
            first = _qa("index", env=env)
            if "cannot open Milvus" not in first.stderr:
                break
            time.sleep(0.3)
        assert first.returncode == 0 and first.stdout.startswith("built: 1 file(s)"), first.stderr
        again = _qa("index", env=env)
        assert again.stdout.startswith("unchanged"), again.stdout

        readers = {**env, "QA_MILVUS_READER": "1", "QA_WATCH_SECONDS": "1",
                   "QA_CORPUS": str(tmp_path / "no-corpus")}  # fmt: skip
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with start_app(tmp_path / "b", wait_for_chat=False, **readers) as b:
            with start_app(tmp_path / "a", wait_for_chat=False, **readers) as a:
                want = {q: _ask(b.url, q) for q in QUESTIONS}
                for q in QUESTIONS:
                    assert _ask(a.url, q) == want[q], q
                assert httpx.get(a.url + "/api/health").json()["store"] == "milvus"
            # a is stopped: b answers alone, unchanged; then a comes back, a new process
            for q in QUESTIONS[:3]:
                assert _ask(b.url, q) == want[q], q
            with start_app(tmp_path / "a", wait_for_chat=False, **readers) as a2:
                for q in QUESTIONS:
                    assert _ask(a2.url, q) == want[q], q
                    assert _ask(b.url, q) == want[q], q

                # the writer adds a file; both readers follow within seconds
                text = read_corpus(corpus_copy)[0][1]
                (corpus_copy / "later.txt").write_text(text[: len(text) // 6], "utf-8")
                try:
                    added = _qa("index", env=env)
                finally:
                    (corpus_copy / "later.txt").unlink()
                assert added.stdout.startswith("added: later.txt"), added.stdout + added.stderr
                n = int(added.stdout.split("passages: ")[1].split()[0])
                for replica in (a2, b):
                    deadline = time.monotonic() + 30
                    while httpx.get(replica.url + "/api/health").json()["passages"] != n:
                        assert time.monotonic() < deadline, "a reader did not follow the writer"
                        time.sleep(0.3)
                for q in QUESTIONS[:4]:
                    assert _ask(a2.url, q) == _ask(b.url, q), q
        removed = _qa("index", env=env)
        assert removed.stdout.startswith("removed: later.txt"), removed.stdout
    finally:
        server.terminate()
        server.wait(30)
