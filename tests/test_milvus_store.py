"""The Milvus store against the FAISS folder, on the real corpus and the real model.

Runs on Milvus Lite (a .db file in a temp folder). The same suite runs against a real
Milvus when QA_MILVUS_URI is set (token from QA_MILVUS_TOKEN); it is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus not installed: pip install -e '.[milvus]'")

from conftest import free_port  # noqa: E402

from qa import store as faiss_store  # noqa: E402
from qa.corpus import corpus_fingerprint, read_corpus  # noqa: E402
from qa.embed import Embedder, load_embedder  # noqa: E402
from qa.engine import default_corpus, index_pieces, passage_settings  # noqa: E402
from qa.errors import IndexProblem  # noqa: E402
from qa.milvus_store import (  # noqa: E402
    MilvusStore,
    corpus_changes,
    is_milvus,
    quote,
    rebuild_reason,
    store_setting,
)
from qa.retrieve import RetrieveConfig, Retriever  # noqa: E402
from qa.store import SentenceIndex, tokenize  # noqa: E402
from qa.types import Passage, Turn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"] for line in (ROOT / "eval" / "gold.jsonl").read_text().splitlines()
][:12]
SERVER_URI = os.environ.get("QA_MILVUS_URI")


@dataclass
class Pieces:
    """What qa.engine.build hands the store: records, vectors, keyword texts, sentences."""

    turns: list[Turn]
    passages: list[Passage]
    vectors: np.ndarray
    keyword_texts: list[str]
    hashes: dict[str, str]
    sentences: SentenceIndex


def pieces(files: list[tuple[str, str]], embedder: Embedder) -> Pieces:
    """qa.engine.build's steps: parse → chunk → embed (nothing mocked)."""
    made = index_pieces(files, embedder, None)
    return Pieces(made.turns, made.passages, made.vectors, made.keyword_texts,
                  corpus_fingerprint(files), made.sentences)  # fmt: skip


def file_pieces(source: str, text: str, embedder: Embedder) -> Pieces:
    return pieces([(source, text)], embedder)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder(progress=None)


@pytest.fixture(scope="module")
def corpus(embedder) -> Pieces:
    return pieces(read_corpus(default_corpus()), embedder)


@pytest.fixture(scope="module")
def reference(corpus, embedder, tmp_path_factory) -> faiss_store.IndexStore:
    """The default store (the FAISS folder) built from the same pieces."""
    folder = tmp_path_factory.mktemp("faiss") / "index"
    c = corpus
    faiss_store.build_index(
        folder, c.turns, c.passages, c.vectors, embedder.name, c.hashes, None,
        c.keyword_texts, passage_settings(), c.sentences,
    )  # fmt: skip
    return faiss_store.load_index(folder)


def _location(kind: str, tmp_path_factory) -> str:
    if kind == "server":
        if not SERVER_URI:
            pytest.skip("QA_MILVUS_URI not set: the contract test needs a real Milvus server")
        return SERVER_URI
    return str(tmp_path_factory.mktemp("milvus") / "qa.db")


def _build(uri: str, corpus: Pieces, embedder: Embedder, name: str) -> MilvusStore:
    store = MilvusStore(uri, name)
    c = corpus
    lines: list[str] = []
    store.build(
        c.turns, c.passages, c.vectors, embedder.name, c.hashes, lines.append,
        c.keyword_texts, passage_settings(), c.sentences,
    )  # fmt: skip
    assert "ready" in lines[-1]  # progress is reported
    return store


@pytest.fixture(scope="module", params=["lite", "server"])
def milvus(request, corpus, embedder, tmp_path_factory):
    """The Milvus store built from the real corpus: Milvus Lite, and a real Milvus when
    QA_MILVUS_URI is set (its test collection dropped afterwards)."""
    uri = _location(request.param, tmp_path_factory)
    name = f"qa_test_{uuid.uuid4().hex[:8]}"
    store = _build(uri, corpus, embedder, name)
    yield store
    store.drop()
    assert not _ours(store.client, store.name)


# -- the same index as the FAISS folder ----------------------------------------------------


def test_same_records_as_the_faiss_folder(milvus, reference):
    assert milvus.passages == reference.passages  # same rows in the same order
    assert milvus.turns == reference.turns
    assert len(milvus) == len(reference) > 50
    assert milvus.dimension == reference.dimension
    assert milvus.manifest["model"] == reference.manifest["model"] == milvus.model_name
    assert milvus.manifest["corpus"] == reference.manifest["corpus"]
    assert milvus.manifest["settings"] == reference.manifest["settings"]


def test_dense_search_finds_the_same_passages(milvus, reference, embedder):
    for question in QUESTIONS:
        vec = embedder.embed_query(question)
        want = reference.dense_search(vec, 10)
        got = milvus.dense_search(vec, 10)
        assert [r for r, _ in got[:5]] == [r for r, _ in want[:5]], question
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-4), question


def test_keyword_search_ranks_as_our_bm25(milvus, reference):
    for question in [*QUESTIONS, "智慧城市", "5G基站 物联网"]:
        want = reference.keyword_search(question, 10)
        got = milvus.keyword_search(question, 10)
        assert want, question
        assert [r for r, _ in got] == [r for r, _ in want], question
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-5), question


def test_keyword_search_finds_nothing_for_stop_words_or_unknown_words(milvus, reference):
    for query in ["你好", "的了吗", "xyzzyq", ""]:
        assert milvus.keyword_search(query, 10) == reference.keyword_search(query, 10) == []


def test_milvus_bm25_function_overlaps_our_bm25(milvus, reference):
    """Milvus's own BM25 (its jieba analyzer) splits text unlike ours: the top hits
    overlap but are not identical (the figure is in docs/deploy.md)."""
    overlaps = []
    for question in QUESTIONS:
        want = {r for r, _ in reference.keyword_search(question, 5)}
        got = {r for r, _ in milvus.bm25_search(question, 5)}
        assert got, question
        overlaps.append(len(want & got) / len(want))
    assert np.mean(overlaps) >= 0.6, overlaps


def test_document_frequencies_match(milvus, reference):
    terms = {t for q in QUESTIONS for t in tokenize(q)} | {"重庆", "智慧", "明天", "下雨"}
    for term in terms:
        assert milvus.passages_with(term) == reference.passages_with(term), term


# -- filters ---------------------------------------------------------------------------------


def test_speaker_filter_runs_in_milvus(milvus, reference, embedder):
    speakers = sorted({t.speaker for t in milvus.turns.values() if t.speaker})
    assert len(speakers) >= 3
    vec = embedder.embed_query("智慧城市建设的本质是什么？")
    for speaker in speakers:
        mask = np.array([milvus.turns[p.turn_id].speaker == speaker for p in milvus.passages])
        want = reference.dense_search(vec, 8, mask)
        got = milvus.dense_search(vec, 8, speakers=[speaker])
        assert [r for r, _ in got] == [r for r, _ in want], speaker
        assert all(milvus.turns[milvus.passages[r].turn_id].speaker == speaker for r, _ in got)
        # the same filter given as a row mask (as retrieve.py builds it today)
        assert [r for r, _ in milvus.dense_search(vec, 8, mask)] == [r for r, _ in want]
        kw_want = reference.keyword_search("智慧城市", 8, mask)
        kw_got = milvus.keyword_search("智慧城市", 8, speakers=[speaker])
        assert [r for r, _ in kw_got] == [r for r, _ in kw_want], speaker


def test_section_filter_and_masks(milvus, reference, embedder):
    retriever = Retriever(reference, embedder, RetrieveConfig())
    vec = embedder.embed_query("数字经济")
    sections = {t.section[-1] for t in milvus.turns.values() if t.section}
    assert sections
    for section in sorted(sections):
        mask = retriever._mask([], section)
        want = reference.dense_search(vec, 6, mask)
        assert [r for r, _ in milvus.dense_search(vec, 6, section=section)] == [
            r for r, _ in want
        ], section
    wide = np.ones(len(milvus), dtype=bool)
    wide[:3] = False  # most rows allowed: sent as `pk not in [...]`
    assert [r for r, _ in milvus.dense_search(vec, 10, wide)] == [
        r for r, _ in reference.dense_search(vec, 10, wide)
    ]
    nothing = np.zeros(len(milvus), dtype=bool)
    assert milvus.dense_search(vec, 5, nothing) == milvus.keyword_search("数字", 5, nothing) == []
    assert milvus.dense_search(vec, 5, section="no such section") == []
    with pytest.raises(ValueError, match="boolean mask"):
        milvus.dense_search(vec, 5, np.ones(3, dtype=bool))


def test_filter_values_are_quoted(milvus, embedder):
    vec = embedder.embed_query("智慧")
    for name in ['a" or pk >= 0 or speaker == "', "\\", '卢阳春"', "x' or '1'=='1", "%"]:
        assert milvus.dense_search(vec, 5, speakers=[name]) == []
        assert milvus.keyword_search("智慧", 5, speakers=[name]) == []
    assert quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'


def test_retriever_works_unchanged_on_the_milvus_store(milvus, reference, embedder):
    on_faiss = Retriever(reference, embedder, RetrieveConfig())
    on_milvus = Retriever(milvus, embedder, RetrieveConfig())
    english = "What did Lu Yangchun say about the elderly?"
    for question in [*QUESTIONS[:6], "明天重庆会下雨吗？", english]:
        a, b = on_faiss.search(question), on_milvus.search(question)
        assert [h.turn.id for h in b.hits] == [h.turn.id for h in a.hits], question
        assert b.speakers == a.speakers, question
        assert b.best_dense == pytest.approx(a.best_dense, abs=1e-4), question
        assert b.dense_peak == pytest.approx(a.dense_peak, abs=1e-4), question
        for x, y in zip(a.hits, b.hits, strict=True):  # the same sentence evidence
            assert [(s.start, s.end) for s in y.sentences] == [
                (s.start, s.end) for s in x.sentences
            ], question
            assert [s.score for s in y.sentences] == pytest.approx(
                [s.score for s in x.sentences], abs=1e-4
            )
            assert y.sentences, question


def test_retriever_filters_by_field_in_milvus(milvus, reference, embedder, monkeypatch):
    """Speaker and section filters reach Milvus as fields, never as a list of rows (which
    would not scale: no row list is allowed here), with the folder's results."""
    import qa.milvus_store

    monkeypatch.setattr(qa.milvus_store, "FILTER_IN_LIMIT", 0)
    on_faiss = Retriever(reference, embedder, RetrieveConfig())
    on_milvus = Retriever(milvus, embedder, RetrieveConfig())
    section = next(t.section[-1] for t in milvus.turns.values() if t.section)
    cases = [("智慧城市建设的本质是什么？", "朱旭森", None), ("数字经济", None, section),
             ("朱旭森怎么看智慧城市？", None, None), ("老年人", "卢阳春", section),
             ("智慧城市", "卢阳春", "no such section")]  # fmt: skip
    for question, speaker, where in cases:
        for mode in ("hybrid", "keyword", "dense"):
            a = on_faiss.search(question, speaker=speaker, section=where, mode=mode)
            b = on_milvus.search(question, speaker=speaker, section=where, mode=mode)
            assert [h.turn.id for h in b.hits] == [h.turn.id for h in a.hits], (question, mode)
    with pytest.raises(IndexProblem, match="too long"):  # a row list is refused here
        milvus.dense_search(embedder.embed_query("x"), 3, np.ones(len(milvus), dtype=bool) & (
            np.arange(len(milvus)) > 0))  # fmt: skip


def test_sentences_are_the_folders(milvus, reference):
    """The sentence-level evidence lives in Milvus (a sentences collection) and reads
    back as the folder's sentences.npz, fetched by turn id."""
    assert reference.sentences is not None and milvus.sentences is not None
    assert len(milvus.sentences) == len(reference.sentences) > len(milvus)
    turn_ids = [*milvus.turns, "no such turn"]
    got, want = milvus.sentences.of_turns(turn_ids), reference.sentences.of_turns(turn_ids)
    assert got.keys() == want.keys() and len(got) > 20
    for tid, (spans, vectors) in want.items():
        assert np.array_equal(got[tid][0], spans), tid
        assert np.allclose(got[tid][1], vectors, atol=1e-6), tid
    assert milvus.sentences.of_turns([]) == {}


def test_hybrid_search_in_milvus(milvus, embedder):
    question = "朱旭森怎么看智慧城市建设的本质？"
    vec = embedder.embed_query(question)
    hits = milvus.hybrid_search(vec, question, 5)
    assert len(hits) == 5
    top_dense = milvus.dense_search(vec, 1)[0][0]
    top_keyword = milvus.keyword_search(question, 1)[0][0]
    assert {top_dense, top_keyword} & {r for r, _ in hits[:2]}
    per_turn = milvus.hybrid_search(vec, question, 5, per_turn=True, speakers=["朱旭森"])
    turns = [milvus.passages[r].turn_id for r, _ in per_turn]
    assert len(turns) == len(set(turns)) > 1  # one passage per turn, merged in Milvus
    assert all(milvus.turns[t].speaker == "朱旭森" for t in turns)


# -- writing: per-file changes, reopening -----------------------------------------------------


@pytest.fixture(params=["lite", "server"])
def writable(request, corpus, embedder, tmp_path_factory):
    """A fresh index of the real corpus that a test may change (Milvus Lite, and a real
    Milvus when QA_MILVUS_URI is set)."""
    uri = _location(request.param, tmp_path_factory)
    store = _build(uri, corpus, embedder, f"qa_write_{uuid.uuid4().hex[:8]}")
    yield store
    dropper = MilvusStore(uri, store.name)  # the test may have closed the store's client
    dropper.drop()
    dropper.close()


def _ours(client, name: str) -> list[str]:
    """The collections behind a store's two aliases (others may share a server)."""
    return [c for c in client.list_collections() if c.startswith((f"{name}__", f"{name}_meta__"))]


def _rows_of(store: MilvusStore, source: str) -> dict[int, tuple]:
    rows = store.client.query(
        store.name, filter=f"source == {quote(source)}", output_fields=["pk", "text", "dense"]
    )
    return {r["pk"]: (r["text"], np.round(np.asarray(r["dense"]), 6).tobytes()) for r in rows}


def test_upsert_and_delete_touch_only_that_file(writable, corpus, reference, embedder):
    (original,) = corpus.hashes
    before = _rows_of(writable, original)
    text = read_corpus(default_corpus())[0][1]
    extra = file_pieces("extra/second.txt", text[: len(text) // 3], embedder)
    assert extra.passages

    served = writable.snapshot()  # what a server answers from meanwhile
    writable.upsert_file(
        "extra/second.txt", extra.turns, extra.passages, extra.vectors, extra.keyword_texts,
        corpus_hash="b" * 64, sentences=extra.sentences,
    )  # fmt: skip
    assert _rows_of(writable, original) == before  # untouched
    assert len(writable.sentences) == len(corpus.sentences) + len(extra.sentences)
    assert len(served.sentences) == len(corpus.sentences)
    new_ids = [t.id for t in extra.turns]
    assert writable.sentences.of_turns(new_ids).keys() == extra.sentences.of_turns(new_ids).keys()
    assert served.sentences.of_turns(new_ids) == {}  # turns it does not serve
    assert len(writable) == len(corpus.passages) + len(extra.passages)
    assert writable.manifest["corpus"]["extra/second.txt"] == "b" * 64
    added = [p for p in writable.passages if p.source == "extra/second.txt"]
    assert [p.text for p in added] == [p.text for p in extra.passages]
    # document frequencies are those of an index of both files
    both = corpus.keyword_texts + extra.keyword_texts
    for term in ["重庆", "智慧", "老年人", "数字经济"]:
        assert writable.passages_with(term) == sum(term in tokenize(t) for t in both), term
    # the new file's passages are found
    vec = embedder.embed_query(QUESTIONS[0])
    assert any(writable.passages[r].source == "extra/second.txt"
               for r, _ in writable.dense_search(vec, 10))  # fmt: skip

    # the file changes and shrinks: its surplus rows go, the other file stays
    smaller = file_pieces("extra/second.txt", text[: len(text) // 6], embedder)
    assert 0 < len(smaller.passages) < len(extra.passages)
    before_shrink = writable.snapshot()
    writable.upsert_file(
        "extra/second.txt", smaller.turns, smaller.passages, smaller.vectors,
        smaller.keyword_texts, sentences=smaller.sentences,
    )  # fmt: skip
    assert _rows_of(writable, original) == before
    assert len(writable.sentences) == len(corpus.sentences) + len(smaller.sentences)
    got = writable.sentences.of_turns(new_ids)
    assert {t: s.tolist() for t, (s, _) in got.items()} == {
        t: s.tolist() for t, (s, _) in smaller.sentences.of_turns(new_ids).items()
    }
    # a reader still serving the longer text skips rows written for another text of a turn
    cut = [t for t in smaller.turns if t.text != before_shrink.turns[t.id].text]
    assert cut and not set(before_shrink.sentences.of_turns([t.id for t in cut]))
    assert len(_rows_of(writable, "extra/second.txt")) == len(smaller.passages)
    assert set(writable.turns) == {t.id for t in corpus.turns} | {t.id for t in smaller.turns}

    # deleted: back to exactly the original index
    writable.delete_file("extra/second.txt")
    assert writable.sentences.of_turns(new_ids) == {}
    assert len(writable.sentences) == len(reference.sentences)
    assert writable.passages == reference.passages
    assert writable.turns == reference.turns
    assert "extra/second.txt" not in writable.manifest["corpus"]
    for question in QUESTIONS[:6]:
        got, want = writable.keyword_search(question, 10), reference.keyword_search(question, 10)
        assert [r for r, _ in got] == [r for r, _ in want], question
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-5), question
    for term in {t for q in QUESTIONS for t in tokenize(q)}:
        assert writable.passages_with(term) == reference.passages_with(term), term


def test_upsert_refuses_passages_of_another_file(writable, corpus):
    with pytest.raises(ValueError, match="must come from"):
        writable.upsert_file("other.txt", corpus.turns, corpus.passages, corpus.vectors)


def test_reopen_reads_the_same_index(writable, embedder):
    uri, name = writable.uri, writable.name
    vec = embedder.embed_query(QUESTIONS[1])
    dense, keyword = writable.dense_search(vec, 5), writable.keyword_search(QUESTIONS[1], 5)
    passages, turns = writable.passages, writable.turns
    writable.client.release_collection(name)  # as after a restart: not loaded
    writable.close()
    again = MilvusStore.open(uri, name)
    assert again.passages == passages and again.turns == turns
    assert again.dense_search(vec, 5) == dense
    assert again.keyword_search(QUESTIONS[1], 5) == keyword
    again.close()


def test_a_reader_sees_another_writers_change(writable, embedder):
    """Stateless replicas: each reader notices a new revision and re-reads the records."""
    reader = MilvusStore.open(writable.uri, writable.name)
    assert not reader.refresh_if_changed()
    served = writable.snapshot()  # what a server answers from while the file is added
    before = list(served.passages)
    text = read_corpus(default_corpus())[0][1]
    new = file_pieces("new.txt", text[: len(text) // 6], embedder)
    writable.upsert_file("new.txt", new.turns, new.passages, new.vectors, new.keyword_texts)
    assert served.passages == before and "new.txt" not in served.manifest["corpus"]
    assert len(writable) == len(before) + len(new.passages)
    assert reader.changed() and served.changed() and not writable.changed()
    assert reader.refresh_if_changed()
    assert reader.passages == writable.passages and len(reader) > len(new.passages)
    assert not reader.refresh_if_changed()


def test_rebuild_switches_readers_over_and_a_failed_one_changes_nothing(writable, corpus, embedder):
    reader = MilvusStore.open(writable.uri, writable.name)
    before = reader.manifest["store"]["physical"]
    c = corpus
    huge = [*c.passages[:-1], replace(c.passages[-1], text="智" * 30_000)]
    with pytest.raises(IndexProblem, match="longer than Milvus"):
        writable.build(c.turns, huge, c.vectors, embedder.name, c.hashes, None, c.keyword_texts)
    assert not reader.refresh_if_changed()  # the failed build left the index alone
    names = _ours(writable.client, writable.name)
    assert len(names) == 2 and before in names  # the half-written pair was dropped
    writable.build(c.turns, c.passages, c.vectors, embedder.name, c.hashes, None, c.keyword_texts)
    assert reader.refresh_if_changed()
    after = reader.manifest["store"]["physical"]
    assert after != before and reader.passages == writable.passages
    assert after in _ours(writable.client, writable.name)
    assert len(_ours(writable.client, writable.name)) == 2  # the old pair was dropped


def test_clear_messages(tmp_path):
    with pytest.raises(IndexProblem, match="no index collection"):
        MilvusStore.open(str(tmp_path / "empty.db"), "nothing_here")
    with pytest.raises(IndexProblem, match="not a Milvus location"):
        MilvusStore("index-folder")
    with pytest.raises(IndexProblem, match="does not exist"):
        MilvusStore(str(tmp_path / "missing" / "x.db"))


def test_a_stopped_server_is_a_one_line_message(tmp_path):
    """Milvus going away mid-service: searches raise IndexProblem naming the server."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "data"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        uri = f"http://127.0.0.1:{port}"
        store = None
        for _ in range(100):  # the server takes a few seconds to listen
            try:
                store = MilvusStore(uri, "down")
                break
            except IndexProblem:
                time.sleep(0.2)
        assert store is not None, "milvus-lite server did not start"
        turn = Turn("f#0", "f", "a", (), "x", None, None, "answer", "智慧城市", 0, 4)
        store.build([turn], [Passage(0, "f#0", "智慧城市", "f", 0, 4)], np.ones((1, 8)), "m",
                    {"f": "0"}, None)  # fmt: skip
        assert store.dense_search(np.ones(8), 3) == [(0, pytest.approx(2.828, abs=1e-3))]
    finally:
        server.terminate()
        server.wait(30)
    for search in (lambda: store.dense_search(np.ones(8), 3),
                   lambda: store.keyword_search("智慧", 3)):  # fmt: skip
        with pytest.raises(IndexProblem, match=f"Milvus at {uri} failed") as info:
            search()
        assert "\n" not in str(info.value) and "check that it is running" in str(info.value)


def test_dimension_mismatch_is_a_clear_message(milvus):
    with pytest.raises(IndexProblem, match="dimensions"):
        milvus.dense_search(np.ones(7, dtype=np.float32), 5)


def test_what_must_be_rebuilt_or_updated(milvus, corpus, embedder):
    assert rebuild_reason(milvus, embedder.name, passage_settings()) is None
    assert "model" in rebuild_reason(milvus, "another-model", passage_settings())
    assert "settings" in rebuild_reason(milvus, embedder.name, {**passage_settings(), "x": 1})
    (source,) = corpus.hashes
    assert corpus_changes(milvus, corpus.hashes) == ([], [], [])
    assert corpus_changes(milvus, {source: "0" * 64, "b.txt": "1"}) == (["b.txt"], [source], [])
    assert corpus_changes(milvus, {}) == ([], [], [source])


def test_store_setting(monkeypatch):
    monkeypatch.delenv("QA_STORE", raising=False)
    assert store_setting() == "faiss" and not is_milvus("faiss")
    monkeypatch.setenv("QA_STORE", "/data/qa.db")
    assert store_setting() == "/data/qa.db" and is_milvus(store_setting())
    assert store_setting("http://milvus:19530") == "http://milvus:19530"
    assert store_setting(" FAISS ") == "faiss"
    assert is_milvus("https://milvus.example:443")


# -- fuzzing what a client can send (speaker, section, query) ---------------------------------

FUZZ = textwrap.dedent(
    """
    import sys
    import numpy as np
    from hypothesis import HealthCheck, given, settings, strategies as st
    from qa.milvus_store import MilvusStore
    from qa.types import Passage, Turn

    store = MilvusStore(sys.argv[1], "fuzz")
    turns = [Turn(f"f.txt#{i}", "f.txt", "文章", ("节",), s, None, None, "answer", t, 0, len(t))
             for i, (s, t) in enumerate([("卢阳春", "智慧城市建设"), ('引"号', "数字经济 重庆"),
                                         (None, "x" * 3000)])]
    passages = [Passage(i, t.id, t.text, "f.txt", 0, len(t.text)) for i, t in enumerate(turns)]
    rng = np.random.default_rng(0)
    hashes = {"f.txt": "0", **{f"archive/{i:05d}.txt": "a" * 64 for i in range(1500)}}
    store.build(turns, passages, rng.standard_normal((3, 8)), "m", hashes, None)
    assert MilvusStore.open(sys.argv[1], "fuzz").manifest["corpus"] == hashes  # 1,501 files
    assert store.keyword_search("x" * 3000, 5) == []  # too long a term for statistics
    text = st.text(max_size=40)

    names = st.sampled_from(["卢阳春", '引"号'])

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(speaker=st.one_of(text, names), section=text, query=text)
    def run(speaker, section, query):
        vec = np.ones(8, dtype=np.float32)
        if speaker in ("卢阳春", '引"号') and not section:
            assert len(store.dense_search(vec, 5, speakers=[speaker])) == 1
        for hits in (store.dense_search(vec, 5, speakers=[speaker], section=section or None),
                     store.keyword_search(query, 5, speakers=[speaker]),
                     store.bm25_search(query or "x", 5, speakers=[speaker])):
            rows = {r for r, _ in hits}
            assert all((turns[r].speaker or "") == speaker for r in rows), (speaker, rows)

    run()
    print("fuzzed")
    """
)


def test_filters_fuzzed_in_a_subprocess(tmp_path):
    pytest.importorskip("hypothesis")
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ, str(tmp_path / "fuzz.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and "fuzzed" in proc.stdout, proc.stderr[-3000:]
