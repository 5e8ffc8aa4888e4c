"""Start the web app: chat at /, JSON API at /api, widget at /widget.js (`make run`).

    python app.py [--host H] [--port P] [--corpus DIR] [--index DIR] [--store S] [--model NAME]

Host and port default to Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else
127.0.0.1:7860: nothing listens beyond this machine unless asked. The index is built
(with progress) when it is missing or stale; otherwise the app is ready in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path


def _progress(msg: str) -> None:
    print(f"[qa] {msg}", file=sys.stderr, flush=True)


def _warm_up() -> None:
    """Load what opening the engine needs anyway, while it waits for its embedding workers.

    The workers are separate processes starting up (~0.5 s of waiting); jieba's dictionary
    and pypinyin are loaded here meanwhile, and the engine then finds them loaded.
    """
    from qa.store import tokenize

    tokenize("预热")
    import pypinyin  # noqa: F401  (the retriever maps speaker names to pinyin)


def _after_chat(app, t0: float) -> None:
    """Say when the chat pages are up; then load the English–Chinese dictionary (~1 s)
    and read the corpus as pinyin: only an English or pinyin question needs them, and
    that one waits on the dictionary's lock meanwhile."""
    from qa import lexicon

    _progress(f"chat pages {app.state.chat} in {time.perf_counter() - t0:.1f} s")
    lexicon.load()
    app.state.engine.retriever.analyse.pinyin_index()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="智慧名城 QA web app: chat, JSON API and embeddable widget."
    )
    ap.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
        help="address to listen on (env GRADIO_SERVER_NAME; default 127.0.0.1)",
    )
    ap.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
        help="port (env GRADIO_SERVER_PORT; default 7860)",
    )
    ap.add_argument("--corpus", type=Path, default=None, help="corpus folder (env QA_CORPUS)")
    ap.add_argument("--index", type=Path, default=None, help="index folder (env QA_INDEX)")
    ap.add_argument(
        "--store", default=None,
        help="where the index lives (env QA_STORE): faiss (default, the --index folder), "
        "a Milvus Lite file *.db, or a Milvus server http(s)://host:port",
    )  # fmt: skip
    ap.add_argument("--model", default=None, help="sentence model (env QA_EMBED_MODEL)")
    ap.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="where like/dislike lines go (env QA_FEEDBACK; default ./feedback.jsonl)",
    )
    ap.add_argument(
        "--allowed-origins",
        default=None,
        help="comma-separated origins that may embed the chat and call the API "
        "(env QA_ALLOWED_ORIGINS; default *)",
    )
    ap.add_argument("--log-level", default="warning", help="uvicorn log level")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    t0 = time.perf_counter()
    # Ready means /api/health and /api/ask answer: that needs the engine, FastAPI and
    # uvicorn, not Gradio (seconds to import and build), so the chat pages are built in a
    # background thread once the server listens; meanwhile / shows a page that reloads.
    threading.Thread(target=_warm_up, name="qa-warm-up", daemon=True).start()
    from qa.engine import Engine
    from qa.errors import QAError

    try:
        engine = Engine.open(
            args.corpus, args.index, args.model, progress=_progress, store=args.store
        )
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from qa.guard import GuardedH11, Limits
    from qa.web import allowed_origins, create_app

    limits = Limits.from_env(args.host)
    app = create_app(
        engine,
        feedback=args.feedback,
        origins=allowed_origins(args.allowed_origins),
        server_name=args.host,
        server_port=args.port,
        limits=limits,
        chat="later",
        after_chat=lambda: _after_chat(app, t0),
    )
    GuardedH11.limits = limits
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}"
    engine.watch_corpus(progress=_progress)  # env QA_WATCH_SECONDS (default 5; 0: off)
    _progress(f"ready in {time.perf_counter() - t0:.1f} s")
    _progress(f"chat      {url}/   (a few seconds more)")
    _progress(f"JSON API  {url}/api/ask   (docs {url}/docs)")
    _progress(f'widget    <script src="{url}/widget.js" defer></script>')
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=3,
            # slow or greedy clients: see qa.guard
            http=GuardedH11,
            timeout_keep_alive=limits.keep_alive_s,
            h11_max_incomplete_event_size=16 * 1024,
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
