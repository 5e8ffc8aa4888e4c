"""One server for everything a browser or a program needs.

``/api/ask``, ``/api/chat`` and ``/api/health`` (plain JSON, OpenAPI at ``/docs``),
``/widget.js`` (the one-tag embed), the chat at ``/`` and the widget's compact chat at
``/embed/``. One ``Engine`` per process serves every request; its calls run in a small
thread pool so one slow question never blocks the event loop. Bad requests get a 4xx with
a JSON error, never 500. This module turns Gradio's analytics off before importing it.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import orjson  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.middleware.cors import CORSMiddleware  # noqa: E402
from fastapi.openapi.utils import get_openapi  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from .chat import next_turn  # noqa: E402
from .engine import MAX_K, MAX_QUESTION_CHARS, Engine  # noqa: E402
from .errors import BadQuestion, QAError  # noqa: E402
from .feedback import FeedbackLog, default_feedback_path  # noqa: E402
from .followup import MAX_LOOKBACK, Context  # noqa: E402
from .guard import Limits, NoUploads, RateLimit  # noqa: E402
from .guide import corpus_guide  # noqa: E402

MAX_NAME_CHARS = 200  # a speaker name or a section filter
MAX_HISTORY = 50  # turns a client may send back; the last MAX_LOOKBACK are used
MAX_SHOWN = 200  # passage ids one history turn may list

STATIC_DIR = Path(__file__).resolve().parent / "static"
EMBED_PATH = "/embed"
# The widget's panel: compact styling, and Escape inside the frame closes the panel
# (the host page cannot see key presses in a cross-origin frame, so we tell it).
COMPACT_HEAD = """<script>
document.documentElement.classList.add("qa-compact");
document.addEventListener("keydown", function (e) {
  if (e.key === "Escape" && window.parent !== window) {
    window.parent.postMessage({ zhihuiQa: "close" }, "*");
  }
});
</script>"""


def allowed_origins(setting: str | None = None) -> list[str]:
    """Origins allowed to call the API and frame the chat: env QA_ALLOWED_ORIGINS, "*" default."""
    raw = setting if setting is not None else os.environ.get("QA_ALLOWED_ORIGINS", "*")
    origins = [o.strip().rstrip("/") for o in raw.replace(";", ",").split(",") if o.strip()]
    return origins or ["*"]


class AskRequest(BaseModel):
    """What `qa ask` takes, as JSON. Unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    question: StrictStr = Field(
        description=f"The question, Chinese or English (at most {MAX_QUESTION_CHARS} characters).",
    )
    k: Annotated[StrictInt, Field(ge=1, le=MAX_K)] = Field(
        5, description=f"How many citations, 1 to {MAX_K}."
    )
    speaker: StrictStr | None = Field(
        None,
        max_length=MAX_NAME_CHARS,
        description="Only this speaker: one of the names /api/health lists.",
    )
    section: StrictStr | None = Field(
        None,
        max_length=MAX_NAME_CHARS,
        description="Only sections whose 'article › section' path contains this.",
    )


class HistoryTurn(BaseModel):
    """One earlier turn, as the ``context`` of an /api/chat reply gave it."""

    model_config = ConfigDict(extra="forbid")

    question: StrictStr = Field(max_length=MAX_QUESTION_CHARS * 4)
    speaker: StrictStr | None = Field(None, max_length=MAX_NAME_CHARS)
    cited_speaker: StrictStr | None = Field(None, max_length=MAX_NAME_CHARS)
    shown: list[Annotated[StrictStr, Field(max_length=MAX_NAME_CHARS)]] = Field(
        default_factory=list, max_length=MAX_SHOWN
    )


class ChatRequest(AskRequest):
    """A chat turn: the question, and the chat so far so a follow-up can refer back."""

    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description=(
            "Earlier turns, oldest first: the `context` of each earlier /api/chat reply. "
            f"Only the last {MAX_LOOKBACK} are used."
        ),
    )


class EmbeddingHeaders:
    """When origins are listed, only they may frame our pages (CSP frame-ancestors).

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper costs a task and a
    stream per request, which shows at 50 concurrent clients on two cores.
    """

    def __init__(self, app: ASGIApp, frame_ancestors: str | None) -> None:
        self.app = app
        self.header = (
            (b"content-security-policy", f"frame-ancestors {frame_ancestors}".encode())
            if frame_ancestors
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.header is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    headers.append(self.header)
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


def engine_threads() -> int:
    """Worker threads for engine calls: env QA_ENGINE_THREADS, else 2."""
    try:
        return max(1, int(os.environ.get("QA_ENGINE_THREADS", "2")))
    except ValueError:
        return 2


def answer_json(
    engine: Engine, question: str, k: int, speaker: str | None, section: str | None
) -> bytes:
    """Ask and encode in the worker thread, so the event loop only moves bytes.

    orjson (a Gradio dependency) encodes an answer several times faster than json.
    """
    answer = engine.ask(question, k, speaker, section)
    return orjson.dumps(answer.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    """The first problem as one line: 'k: Input should be less than or equal to 20'."""
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        return f"{where}: {err.get('msg', 'invalid')}"
    return "invalid request"


def create_app(
    engine: Engine,
    feedback: FeedbackLog | Path | str | None = None,
    origins: list[str] | None = None,
    server_name: str = "127.0.0.1",
    server_port: int = 7860,
    limits: Limits | None = None,
) -> FastAPI:
    """The FastAPI app with the JSON API, the widget, and both chat pages mounted.

    ``limits`` default to ``Limits.from_env(server_name)``: throttled when public.
    """
    from .ui import CSS, SCROLL_HEAD, build_ui, theme

    limits = limits or Limits.from_env(server_name)
    log = (
        feedback
        if isinstance(feedback, FeedbackLog)
        else FeedbackLog(feedback or default_feedback_path())
    )
    origins = origins or allowed_origins()
    app = FastAPI(
        title="智慧名城 QA API",
        version="1.0",
        description=(
            "Ask what the experts said in the interviews; every answer is the experts' "
            "own words with who said it and where. Same JSON as `qa ask --json`."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.engine = engine
    # The engine is CPU-bound Python: more threads than cores only fight over the GIL and
    # starve the event loop (p95 4 s at 50 clients with 40 threads on two cores). A small
    # pool, fed in arrival order, keeps the loop responsive and the waiting fair.
    engine_pool = ThreadPoolExecutor(max_workers=engine_threads(), thread_name_prefix="qa-engine")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type"],
        max_age=600,
    )

    frame_ancestors = None if "*" in origins else " ".join(["'self'", *origins])
    app.add_middleware(EmbeddingHeaders, frame_ancestors=frame_ancestors)
    if limits.asks_per_minute > 0:
        app.add_middleware(RateLimit, per_minute=limits.asks_per_minute)
    app.add_middleware(NoUploads)  # outermost: refused before anything reads the body

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc), detail=jsonable_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    def speaker_names() -> list[str]:  # read per request: a corpus rebuild may change them
        return [n for n, _ in engine.speakers]

    refusals = {
        400: {"description": "Unusable question (empty, too long) or unknown speaker."},
        422: {"description": "Malformed request: wrong types, k out of range, extra fields."},
        429: {"description": "Too many questions from this address: retry after Retry-After s."},
        503: {"description": "The index or the model cannot be used."},
    }

    def unknown_speaker(speaker: str | None) -> JSONResponse | None:
        names = speaker_names()
        if speaker and speaker not in names:
            shown = speaker if len(speaker) <= 40 else speaker[:40] + "…"
            return _error(
                400, f"unknown speaker {shown!r}: use one of {', '.join(names)}", speakers=names
            )
        return None

    @app.post(
        "/api/ask",
        summary="Ask a question",
        responses={200: {"description": "The answer: the same JSON as `qa ask --json`."}}
        | refusals,
    )
    async def ask(req: AskRequest) -> JSONResponse:
        if refused := unknown_speaker(req.speaker):
            return refused
        try:
            body = await asyncio.get_running_loop().run_in_executor(
                engine_pool,
                answer_json,
                engine,
                req.question,
                req.k,
                req.speaker or None,
                req.section or None,
            )
        except BadQuestion as exc:
            return _error(400, str(exc))
        except QAError as exc:
            return _error(503, str(exc))
        return Response(body, media_type="application/json")

    @app.post(
        "/api/chat",
        summary="Ask in a conversation (follow-ups like 他还说了什么？ work)",
        responses={
            200: {
                "description": "The turn: how the question was understood, the answer (as "
                "/api/ask), and `context` to send back in `history` next time."
            }
        }
        | refusals,
    )
    async def chat(req: ChatRequest) -> JSONResponse:
        if refused := unknown_speaker(req.speaker):
            return refused
        names = speaker_names()
        history = [
            Context(
                h.question,
                h.speaker if h.speaker in names else None,
                h.cited_speaker if h.cited_speaker in names else None,
                tuple(h.shown),
            )
            for h in req.history[-MAX_LOOKBACK:]
        ]

        def turn_json() -> bytes:
            turn = next_turn(engine, history, req.question, req.k, req.speaker, req.section)
            return orjson.dumps(turn.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

        try:
            body = await asyncio.get_running_loop().run_in_executor(engine_pool, turn_json)
        except BadQuestion as exc:
            return _error(400, str(exc))
        except QAError as exc:
            return _error(503, str(exc))
        return Response(body, media_type="application/json")

    @app.get("/api/health", summary="Index and model in use")
    async def health() -> dict:
        return {**engine.health(), "sections": engine.sections}

    known = {"ask": "POST", "chat": "POST", "health": "GET"}

    @app.api_route(
        "/api/{rest:path}",
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY"],
        include_in_schema=False,
    )
    async def api_other(rest: str) -> JSONResponse:
        # without this, unknown /api paths would fall through to the chat page's 404
        allowed = known.get(rest.strip("/"))
        if allowed:
            how = 'with a JSON body: {"question": "…"}' if allowed == "POST" else ""
            response = _error(405, f"use {allowed} /api/{rest.strip('/')} {how}".strip())
            response.headers["Allow"] = allowed
            return response
        return _error(
            404, "no such endpoint: use POST /api/ask, POST /api/chat or GET /api/health"
        )

    guide = corpus_guide(engine)
    example = guide.examples_zh[0] if guide.examples_zh else None

    def openapi() -> dict:
        """FastAPI's schema, its example question taken from this index."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            bodies = schema.get("components", {}).get("schemas", {})
            for body in (bodies.get("AskRequest", {}), bodies.get("ChatRequest", {})):
                props = body.get("properties", {})
                if example and "question" in props:
                    props["question"]["examples"] = [example]
                # the speakers this index has: anything else is a 400
                for option in props.get("speaker", {}).get("anyOf", []):
                    if option.get("type") == "string":
                        option["enum"] = ["", *speaker_names()]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # FastAPI's Swagger page loads from a CDN; this one is drawn from the schema, offline.
        # The example calls the address this page was served from.
        base = str(request.base_url).rstrip("/")
        return HTMLResponse(api_docs_html(app.openapi(), example, base))

    widget_source = (STATIC_DIR / "widget.js").read_text(encoding="utf-8")

    @app.get("/widget.js", include_in_schema=False)
    async def widget() -> Response:
        return Response(
            widget_source,
            media_type="application/javascript; charset=utf-8",
            headers={
                "Cache-Control": "public, max-age=300",
                # a host page with Cross-Origin-Embedder-Policy may still load the widget
                "Cross-Origin-Resource-Policy": "cross-origin",
            },
        )

    mount_opts: dict[str, Any] = {
        "server_name": server_name,
        "server_port": server_port,
        "theme": theme(),
        "css": CSS,
        "footer_links": [],
        "run_history": False,
        "show_error": False,  # an exception's text never reaches the client
        "max_file_size": 0,  # no uploads (NoUploads refuses the routes too)
        "ssr_mode": False,
        "mcp_server": False,
    }
    compact = build_ui(engine, log, compact=True, guide=guide)
    compact.queue(default_concurrency_limit=16)
    gr.mount_gradio_app(
        app,
        compact,
        path=EMBED_PATH,
        **mount_opts,
        head=COMPACT_HEAD + SCROLL_HEAD,
    )
    full = build_ui(engine, log, compact=False, guide=guide)
    full.queue(default_concurrency_limit=16)
    gr.mount_gradio_app(app, full, path="/", **mount_opts, head=SCROLL_HEAD)
    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    """Pydantic's errors as plain JSON: where and what, without echoing the input back."""
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]


def api_docs_html(
    schema: dict, question: str | None = None, base_url: str = "http://127.0.0.1:7860"
) -> str:
    """A small, self-contained API page drawn from the OpenAPI schema (no CDN, no script)."""
    e = html.escape
    rows = []
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            codes = " · ".join(
                f"<b>{e(c)}</b> {e(r.get('description', ''))}"
                for c, r in op.get("responses", {}).items()
            )
            rows.append(
                f"<section><h2><span class=m>{e(method.upper())}</span> {e(path)}</h2>"
                f"<p>{e(op.get('summary', ''))}</p><p class=r>{codes}</p></section>"
            )
    body = json.dumps(
        schema.get("components", {}).get("schemas", {}).get("AskRequest", {}),
        ensure_ascii=False,
        indent=2,
    )
    body_json = json.dumps({"question": question or "…", "k": 3}, ensure_ascii=False)
    quoted = "'" + body_json.replace("'", "'\\''") + "'"  # for a POSIX shell
    example = (
        f"curl -s {base_url}/api/ask -H 'Content-Type: application/json' \\\n"
        f"  -d {quoted}"
    )
    info = schema.get("info", {})
    return (
        "<!doctype html><html lang=zh-CN><head><meta charset=utf-8>"
        f"<title>{e(info.get('title', 'API'))}</title><style>"
        "body{font-family:'Noto Sans CJK SC',system-ui,sans-serif;max-width:860px;margin:24px auto;"
        "padding:0 16px;color:#1f2328;line-height:1.6}h1{color:#b4232a}h2{font-size:1.05rem}"
        ".m{background:#b4232a;color:#fff;border-radius:4px;padding:1px 6px;font-size:.8rem}"
        ".r{color:#57606a;font-size:.9rem}pre{background:#f6f3ef;padding:12px;overflow:auto;"
        "border-radius:8px}</style></head><body>"
        f"<h1>{e(info.get('title', 'API'))}</h1><p>{e(info.get('description', ''))}</p>"
        "<p>Machine-readable schema: <a href=/openapi.json>/openapi.json</a>. "
        "Gradio endpoint for <code>gradio_client</code>: <code>/ask</code>.</p>"
        + "".join(rows)
        + f"<h2>Request body of /api/ask</h2><pre>{e(body)}</pre>"
        + f"<h2>Example</h2><pre>{e(example)}</pre></body></html>"
    )
