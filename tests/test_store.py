"""The index folder: round trip, atomic rebuilds, corruption and staleness, filters, BM25.

Store-level tests use hand-written Chinese passages and seeded random vectors: the sentence
model is tested elsewhere, and what matters here is that rows, scores and files line up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import faiss
import numpy as np
import pytest

from qa import store
from qa.errors import IndexProblem
from qa.store import (
    build_index,
    load_index,
    stale_reason,
    tokenize,
)
from qa.types import Passage, Turn

MODEL = "test-model"
HASHES = {"interview.txt": "a" * 64}
DIM = 16

# (speaker, text): every passage is its own turn
TEXTS = [
    ("蔡之兵", "在本届智博会亮相的黑科技之多、参展的企业之多，对重庆加快建设智慧名城意义重大。"),
    ("朱旭森", "由人工智能引领的新一轮科技革命方兴未艾，智慧城市建设是一个必然趋势。"),
    ("朱旭森", "数字经济是重庆高质量发展的新引擎，要推动大数据与实体经济深度融合。"),
    ("卢阳春", "城市治理要用好数字孪生技术，让交通、医疗、教育等公共服务更加精准。"),
    ("卢阳春", "5G基站和物联网是新型基础设施，为智能网联汽车提供支撑。"),
    ("蔡之兵", "人才是建设智慧名城的第一资源，要吸引高校毕业生留在重庆创新创业。"),
    (None, "本报记者就智慧名城建设采访了多位专家。"),
    ("卢阳春", "我们要警惕数据安全风险，完善个人信息保护制度。"),
]


def make_records(texts=TEXTS) -> tuple[list[Turn], list[Passage]]:
    turns, passages = [], []
    for i, (speaker, text) in enumerate(texts):
        turn = Turn(
            id=f"interview.txt#{i}",
            source="interview.txt",
            article="用智慧成果赋能城市建设",
            section=("智博会", f"第{i // 3}问"),
            speaker=speaker,
            speaker_title="研究员" if speaker else None,
            asked="您怎么看？" if speaker else None,
            kind="answer" if speaker else "intro",
            text=text,
            start=i * 100,
            end=i * 100 + len(text),
            offsets=tuple(range(i * 100, i * 100 + len(text))),
        )
        turns.append(turn)
        passages.append(Passage(i, turn.id, text, turn.source, turn.start, turn.end))
    return turns, passages


def random_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(index_dir: Path, texts=TEXTS, seed: int = 0, **kwargs) -> np.ndarray:
    turns, passages = make_records(texts)
    vectors = random_vectors(len(passages), seed=seed)
    lines: list[str] = []
    build_index(index_dir, turns, passages, vectors, MODEL, HASHES, lines.append, **kwargs)
    assert lines and "ready" in lines[-1]  # progress is reported
    return vectors


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture
def built(index_dir: Path) -> tuple[Path, np.ndarray]:
    return index_dir, build(index_dir)


def one_line_with_fix(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert "qa index" in message
    return message


# ---------------------------------------------------------------------------------------
# round trip


def test_round_trip_keeps_records_and_finds_each_vector(built):
    index_dir, vectors = built
    loaded = load_index(index_dir)
    turns, passages = make_records()

    assert loaded.passages == passages
    assert loaded.turns == {t.id: t for t in turns}  # offsets are not stored (compare=False)
    assert all(t.offsets == () for t in loaded.turns.values())
    assert isinstance(loaded.turns["interview.txt#0"].section, tuple)
    assert len(loaded) == len(passages)
    assert loaded.dimension == DIM and loaded.manifest["model"] == MODEL

    m = loaded.manifest
    assert m["format_version"] == store.FORMAT_VERSION
    assert m["model"] == MODEL and m["dimension"] == DIM and m["corpus"] == HASHES
    assert m["counts"]["passages"] == len(passages) and m["counts"]["turns"] == len(turns)
    assert m["dense"]["type"] == "IndexFlatIP"
    assert set(m["files"]) == {
        "vectors.faiss", "bm25.npz", "passages.json", "turns.json", "reuse.npz"
    }
    assert m["created"]

    for row, vec in enumerate(vectors):
        hits = loaded.dense_search(vec, 3)
        assert len(hits) == 3
        assert hits[0][0] == row and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_vectors_are_normalised_so_scores_are_cosines(index_dir):
    turns, passages = make_records()
    vectors = random_vectors(len(passages)) * 7.5  # not unit length
    build_index(index_dir, turns, passages, vectors, MODEL, HASHES, None)
    hits = load_index(index_dir).dense_search(vectors[2], 1)
    assert hits[0] == (2, pytest.approx(1.0, abs=1e-5))


def test_rebuild_replaces_the_index_and_leaves_no_temp_folders(built):
    index_dir, _ = built
    shorter = TEXTS[:5]
    build(index_dir, shorter, seed=1)
    assert len(load_index(index_dir).passages) == 5
    assert sorted(p.name for p in index_dir.parent.iterdir()) == ["index"]


def test_k_larger_than_the_index_returns_every_row(built):
    index_dir, vectors = built
    loaded = load_index(index_dir)
    assert len(loaded.dense_search(vectors[0], 100)) == len(TEXTS)
    assert loaded.dense_search(vectors[0], 0) == []


def test_query_of_the_wrong_dimension_names_the_fix(built):
    index_dir, _ = built
    with pytest.raises(IndexProblem) as exc:
        load_index(index_dir).dense_search(np.ones(DIM + 1, dtype=np.float32), 3)
    one_line_with_fix(exc)


# ---------------------------------------------------------------------------------------
# atomic build


def test_failed_build_keeps_the_previous_index(built, monkeypatch):
    index_dir, _ = built
    before = (index_dir / "manifest.json").read_text("utf-8")

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_build_bm25", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(index_dir, TEXTS[:3], seed=5)

    assert (index_dir / "manifest.json").read_text("utf-8") == before
    assert len(load_index(index_dir).passages) == len(TEXTS)
    assert sorted(p.name for p in index_dir.parent.iterdir()) == ["index"]


def test_failed_first_build_leaves_nothing(index_dir, monkeypatch):
    monkeypatch.setattr(store, "_build_bm25", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build(index_dir)
    assert not index_dir.exists()
    assert list(index_dir.parent.iterdir()) == []


def test_build_clears_what_a_killed_build_left_behind(index_dir):
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait()
    leftover = index_dir.parent / f".index.building-{probe.pid}-x1y2"
    (leftover / "sub").mkdir(parents=True)
    build(index_dir)
    assert not leftover.exists()
    assert sorted(p.name for p in index_dir.parent.iterdir()) == ["index"]


def test_build_refuses_to_replace_a_folder_that_is_not_an_index(index_dir):
    index_dir.mkdir()
    (index_dir / "thesis.docx").write_text("precious")
    with pytest.raises(IndexProblem, match="did not make .it holds thesis.docx"):
        build(index_dir)
    assert (index_dir / "thesis.docx").read_text() == "precious"


def test_build_checks_its_inputs(index_dir):
    turns, passages = make_records()
    with pytest.raises(ValueError, match="one vector per passage"):
        build_index(index_dir, turns, passages, random_vectors(3), MODEL, HASHES, None)
    with pytest.raises(ValueError, match="turns not given"):
        build_index(
            index_dir, turns[1:], passages, random_vectors(len(passages)), MODEL, HASHES, None
        )
    assert not index_dir.exists()


# ---------------------------------------------------------------------------------------
# corruption


def test_missing_folder(index_dir):
    with pytest.raises(IndexProblem, match="no index") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)


def test_truncated_vectors_file(built):
    index_dir, _ = built
    path = index_dir / "vectors.faiss"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(IndexProblem, match=r"corrupt \(vectors.faiss checksum mismatch\)") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)
    assert "damaged: vectors.faiss" in stale_reason(index_dir, HASHES, MODEL)


def test_edited_passages_file(built):
    index_dir, _ = built
    path = index_dir / "passages.json"
    path.write_text(path.read_text("utf-8").replace("黑科技", "白科技"), "utf-8")
    with pytest.raises(IndexProblem, match="passages.json checksum mismatch") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)


@pytest.mark.parametrize("name", ["bm25.npz", "turns.json", "vectors.faiss"])
def test_missing_file(built, name):
    index_dir, _ = built
    (index_dir / name).unlink()
    with pytest.raises(IndexProblem, match=f"{name} missing") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)


def test_manifest_that_is_not_json(built):
    index_dir, _ = built
    (index_dir / "manifest.json").write_text("{half a manifest", "utf-8")
    with pytest.raises(IndexProblem, match="not valid JSON") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)
    reason = stale_reason(index_dir, HASHES, MODEL)
    assert reason == "the index is unusable: manifest.json is not valid JSON"


def rewrite_manifest(index_dir: Path, change) -> None:
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text("utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), "utf-8")


def test_other_format_version(built):
    index_dir, _ = built
    rewrite_manifest(index_dir, lambda m: m.update(format_version=store.FORMAT_VERSION + 1))
    with pytest.raises(IndexProblem, match="format") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)
    assert "format" in stale_reason(index_dir, HASHES, MODEL)


def test_vector_count_must_match_passages(built):
    """Files that are each intact but disagree (e.g. copied from two builds)."""
    index_dir, _ = built
    fewer = faiss.IndexFlatIP(DIM)
    fewer.add(random_vectors(3))
    faiss.write_index(fewer, str(index_dir / "vectors.faiss"))
    digest = store._sha256_file(index_dir / "vectors.faiss")
    rewrite_manifest(index_dir, lambda m: m["files"]["vectors.faiss"].update(sha256=digest))
    with pytest.raises(IndexProblem, match="3 vectors for 8 passages") as exc:
        load_index(index_dir)
    one_line_with_fix(exc)


# ---------------------------------------------------------------------------------------
# staleness


def test_fresh_index_is_not_stale(built):
    index_dir, _ = built
    assert stale_reason(index_dir, HASHES, MODEL) is None


def test_no_index_yet(index_dir):
    assert stale_reason(index_dir, HASHES, MODEL) == "no index yet"


def test_corpus_changes_are_named(built):
    index_dir, _ = built
    added = {**HASHES, "new-interview.txt": "b" * 64}
    assert stale_reason(index_dir, added, MODEL) == "corpus changed: new-interview.txt added"
    changed = {"interview.txt": "c" * 64}
    assert stale_reason(index_dir, changed, MODEL) == "corpus changed: interview.txt changed"
    assert stale_reason(index_dir, {}, MODEL) == "corpus changed: interview.txt removed"


def test_model_change_is_named(built):
    index_dir, _ = built
    reason = stale_reason(index_dir, HASHES, "other-model")
    assert reason is not None and MODEL in reason and "other-model" in reason


def test_corpus_fingerprint_hashes_each_text_file(tmp_path):
    from qa.corpus import corpus_fingerprint, read_corpus

    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("蔡之兵：智慧名城。", "utf-8")
    (corpus / "sub" / "b.txt").write_text("朱旭森：数字经济。", "utf-8")
    first = corpus_fingerprint(read_corpus(corpus))
    assert set(first) == {"a.txt", "sub/b.txt"}
    assert all(len(h) == 64 for h in first.values())
    (corpus / "a.txt").write_text("蔡之兵：智慧名城！", "utf-8")
    second = corpus_fingerprint(read_corpus(corpus))
    assert second["a.txt"] != first["a.txt"] and second["sub/b.txt"] == first["sub/b.txt"]


# ---------------------------------------------------------------------------------------
# filters


def test_dense_search_only_returns_allowed_rows(built):
    index_dir, vectors = built
    loaded = load_index(index_dir)
    allowed = np.array([t[0] == "卢阳春" for t in TEXTS])  # rows 3, 4, 7
    hits = loaded.dense_search(vectors[0], 2, allowed)
    assert len(hits) == 2 and all(allowed[row] for row, _ in hits)
    hits = loaded.dense_search(vectors[0], 10, allowed)  # fewer allowed rows than k
    assert sorted(row for row, _ in hits) == [3, 4, 7]
    assert loaded.dense_search(vectors[0], 5, np.zeros(len(TEXTS), dtype=bool)) == []


def test_allowed_mask_of_the_wrong_length_is_an_error(built):
    index_dir, vectors = built
    with pytest.raises(ValueError, match="mask"):
        load_index(index_dir).dense_search(vectors[0], 2, np.ones(3, dtype=bool))


def test_approximate_index_above_the_limit(index_dir, monkeypatch):
    """Past EXACT_SEARCH_LIMIT the index is an HNSW graph: near-exact, still filtered to k."""
    monkeypatch.setattr(store, "EXACT_SEARCH_LIMIT", 500)
    n = 2000
    rng = np.random.default_rng(3)
    centres = random_vectors(40, seed=4)
    vectors = centres[rng.integers(0, 40, n)] + 0.15 * random_vectors(n, seed=5)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [("卢阳春" if i % 50 == 0 else "蔡之兵", f"第{i}段：智慧名城建设。") for i in range(n)]
    turns, passages = make_records(texts)
    build_index(index_dir, turns, passages, vectors, MODEL, HASHES, None)
    loaded = load_index(index_dir)
    assert loaded.manifest["dense"]["type"] == "IndexHNSWFlat"
    assert loaded.manifest["dense"]["ef_search"] >= 10

    queries = random_vectors(30, seed=6)

    def recall(allowed: np.ndarray | None) -> float:
        rows = np.arange(n) if allowed is None else np.flatnonzero(allowed)
        exact = rows[np.argsort(-(queries @ vectors[rows].T), axis=1)[:, :10]]
        found = [loaded.dense_search(q, 10, allowed) for q in queries]
        assert all(len(f) == 10 for f in found)
        assert allowed is None or all(allowed[row] for f in found for row, _ in f)
        hits = [{row for row, _ in f} for f in found]
        return float(np.mean([len(h & set(e)) / 10 for h, e in zip(hits, exact, strict=True)]))

    assert recall(None) >= 0.95
    assert recall(np.array([t[0] == "卢阳春" for t in texts])) == 1.0  # 40 rows: exact
    assert recall(np.arange(n) % 2 == 0) >= 0.95  # 1000 rows: the graph, walked further


# ---------------------------------------------------------------------------------------
# keyword search


def test_keyword_search_finds_a_passage_by_a_chinese_word(built):
    index_dir, _ = built
    loaded = load_index(index_dir)
    hits = loaded.keyword_search("智博会上有哪些黑科技？", 3)
    assert hits and hits[0][0] == 0 and hits[0][1] > 0
    assert loaded.keyword_search("数字孪生", 5)[0][0] == 3
    assert [row for row, _ in loaded.keyword_search("数据安全", 1)] == [7]


def test_keyword_search_ignores_stop_words_and_unknown_words(built):
    index_dir, _ = built
    loaded = load_index(index_dir)
    assert loaded.keyword_search("你好", 5) == []
    assert loaded.keyword_search("什么是？", 5) == []
    assert loaded.keyword_search("您认为如何？", 5) == []
    assert loaded.keyword_search("量子纠缠", 5) == []
    assert loaded.keyword_search("", 5) == []


def test_passages_with_counts_the_passages_holding_a_term(built):
    index_dir, _ = built
    loaded = load_index(index_dir)
    assert loaded.passages_with("重庆") == sum("重庆" in text for _, text in TEXTS) == 3
    assert loaded.passages_with("孪生") == 1  # a term as tokenize() makes it: 数字 + 孪生
    assert loaded.passages_with("量子纠缠") == 0


def test_keyword_search_respects_allowed_and_k(built):
    index_dir, _ = built
    loaded = load_index(index_dir)
    everyone = loaded.keyword_search("智慧名城", 10)
    assert {row for row, _ in everyone} >= {0, 5, 6}
    assert len(loaded.keyword_search("智慧名城", 2)) == 2
    allowed = np.zeros(len(TEXTS), dtype=bool)
    allowed[5] = True
    assert [row for row, _ in loaded.keyword_search("智慧名城", 10, allowed)] == [5]
    scores = [s for _, s in everyone]
    assert scores == sorted(scores, reverse=True)


def test_keyword_texts_replace_what_bm25_sees(index_dir):
    extra = [f"{speaker or ''} {text}" for speaker, text in TEXTS]
    build(index_dir, keyword_texts=extra)
    hits = load_index(index_dir).keyword_search("卢阳春", 10)
    assert sorted(row for row, _ in hits) == [3, 4, 7]


def test_tokenize():
    tokens = tokenize("您认为，“智慧名城”建设有什么意义？ＡＩ and Big Data！")
    assert "智慧" in tokens and "名城" in tokens and "意义" in tokens
    assert {"ai", "big", "data"} <= set(tokens)  # NFKC + lower-case
    for dropped in ("您", "认为", "，", "“", "什么", "？", "and", " ", "的"):
        assert dropped not in tokens
    assert tokenize("你好") == [] and tokenize("什么是") == []
    assert tokenize("必然趋势") == ["必然", "趋势", "必然趋势"]  # search mode: parts too


# ---------------------------------------------------------------------------------------
# file formats


def test_no_file_in_the_index_is_a_pickle(built):
    index_dir, _ = built
    names = sorted(p.name for p in index_dir.iterdir())
    assert names == [
        "bm25.npz", "manifest.json", "passages.json", "reuse.npz", "turns.json", "vectors.faiss"
    ]
    for path in index_dir.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"
    for name in ("manifest.json", "passages.json", "turns.json"):
        json.loads((index_dir / name).read_text("utf-8"))
    with zipfile.ZipFile(index_dir / "bm25.npz") as zf:
        for member in zf.namelist():
            assert not zf.read(member).startswith(b"\x80")
    with np.load(index_dir / "bm25.npz", allow_pickle=False) as npz:  # would raise on objects
        for key in npz.files:
            assert npz[key].dtype != object
        vocabulary = json.loads(npz["vocabulary_json"].tobytes().decode("utf-8"))
    assert "智博会" in vocabulary or "博会" in vocabulary


def _edited(fn, old: str, new: str):
    """``fn`` recompiled from its source with one edit, as if someone changed the code."""
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(fn))
    assert old in source
    namespace = dict(fn.__globals__)
    exec(compile(source.replace(old, new), inspect.getsourcefile(fn), "exec"), namespace)
    return namespace[fn.__name__]


@pytest.mark.parametrize(
    "module, name, old, new",
    [
        ("qa.chunk", "context_line", '"｜".join(parts)', '" / ".join(parts)'),  # keyword template
        ("qa.chunk", "embedding_text", 'f"{turn.speaker}\\n', 'f"{turn.speaker}：'),
        ("qa.engine", "keyword_text", "(turn)} {passage.text}", "(turn)}\\n{passage.text}"),
    ],
)
def test_editing_a_passage_text_template_makes_the_index_stale(
    index_dir, monkeypatch, module, name, old, new
):
    import importlib

    from qa.engine import passage_settings

    build(index_dir, settings=passage_settings())
    assert stale_reason(index_dir, HASHES, MODEL, passage_settings()) is None
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, name, _edited(getattr(mod, name), old, new))
    reason = stale_reason(index_dir, HASHES, MODEL, passage_settings())
    assert reason == "the index was built with other passage settings (chunking or embedded text)"


def test_a_changed_tokenizer_dictionary_makes_the_index_stale(built, monkeypatch, tmp_path):
    import jieba

    index_dir, _ = built
    other = tmp_path / "dict.txt"
    with jieba.Tokenizer().get_dict_file() as fh:
        other.write_bytes(fh.read() + "智慧名城 5 n\n".encode())
    monkeypatch.setattr(jieba.Tokenizer, "get_dict_file", lambda self: other.open("rb"))
    monkeypatch.setattr(store, "tokenizer_signature", store.tokenizer_signature.__wrapped__)
    assert stale_reason(index_dir, HASHES, MODEL) == (
        "the keyword tokenizer changed since the index was built"
    )


def test_atomic_refusal_knows_its_own_folders(tmp_path):
    from qa import atomic

    folder = tmp_path / "model"
    assert atomic.refusal(folder, store.KNOWN_FILES) is None  # nothing there yet
    folder.mkdir()
    assert atomic.refusal(folder, store.KNOWN_FILES) is None  # empty
    (folder / "weights.bin").write_bytes(b"x")
    assert "did not make (it holds weights.bin)" in atomic.refusal(folder, store.KNOWN_FILES)
    (folder / ".prepared").write_text("ok")
    assert atomic.refusal(folder, marker=".prepared") is None
    assert "is a file" in atomic.refusal(folder / "weights.bin", store.KNOWN_FILES)


def test_atomic_building_swaps_in_only_on_success(tmp_path):
    from qa import atomic

    target = tmp_path / "out"
    with atomic.building(target) as work:
        (work / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic.building(target) as work:
        (work / "a.txt").write_text("two")
        raise RuntimeError("half way")
    assert (target / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
