"""One server for everything a browser or a program needs.

``/api/ask``, ``/api/chat`` and ``/api/health`` (plain JSON, OpenAPI at ``/docs``),
``/widget.js`` (the one-tag embed), the chat at ``/`` and the widget's compact chat at
``/embed/``. One ``Engine`` per process serves every request; its calls run in a small
thread pool so one slow question never blocks the event loop. Bad requests get a 4xx with
a JSON error, never 500.

Gradio (``qa.ui``) takes seconds to import and build, and only the chat pages need it, so
this module does not import it: ``create_app(chat="later")`` answers the API at once and
mounts the chat pages from a background thread when they are built.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .chat import next_turn
from .engine import MAX_K, MAX_QUESTION_CHARS, Engine
from .errors import BadQuestion, QAError
from .feedback import FeedbackLog, default_feedback_path
from .followup import MAX_LOOKBACK, Context
from .guard import Limits, NoUploads, RateLimit
from .guide import APP_TITLE, CorpusGuide, corpus_guide
from .settings import settings

log = logging.getLogger(__name__)

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
    raw = setting if setting is not None else settings().allowed_origins
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
    """Worker threads for engine calls: env QA_ENGINE_THREADS, else 2 (qa/settings.py)."""
    return settings().engine_threads


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
    chat: Literal["now", "later"] = "now",
    after_chat: Callable[[], object] | None = None,
) -> FastAPI:
    """The FastAPI app with the JSON API, the widget, and both chat pages.

    ``chat="now"`` builds the chat pages before returning (Gradio: seconds). ``"later"``
    returns at once: until the server has built them in a background thread, / and /embed/
    answer a page that reloads itself, and /api/health says ``"chat": "starting"``.
    ``after_chat`` then runs in that thread (work nobody needs first, e.g. a dictionary).
    ``limits`` default to ``Limits.from_env(server_name)``: throttled when public.
    """
    limits = limits or Limits.from_env(server_name)
    votes = (
        feedback
        if isinstance(feedback, FeedbackLog)
        else FeedbackLog(feedback or default_feedback_path())
    )
    origins = origins or allowed_origins()
    guide = corpus_guide(engine)
    later = chat == "later"  # (`chat` is also the /api/chat handler's name below)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if later:
                loop = asyncio.get_running_loop()
                threading.Thread(
                    target=_chat_later,
                    args=(app, engine, votes, guide, loop, stack, after_chat),
                    name="qa-chat-pages",
                    daemon=True,
                ).start()
            yield
            app.state.chat = "stopped"  # a build still running does not mount any more

    app = FastAPI(
        lifespan=lifespan,
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
    app.state.chat = "starting"
    app.state.server = (server_name, server_port)  # for Gradio's mount
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
        # "chat": "starting" while the chat pages are built (the API already answers)
        return {**engine.health(), "sections": engine.sections, "chat": app.state.chat}

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

    example = guide.examples_zh[0] if guide.examples_zh else None

    schema_for: list[tuple[str, ...]] = []  # the speaker list the cached schema lists

    def openapi() -> dict:
        """FastAPI's schema, its example question taken from this index; drawn again when
        a corpus rebuild changes the speakers (their names are the schema's enum)."""
        names = tuple(speaker_names())
        if app.openapi_schema is None or schema_for != [names]:
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
                        option["enum"] = ["", *names]
            app.openapi_schema = schema
            schema_for[:] = [names]
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

    if not later:
        mount_chat_pages(app, build_chat_pages(engine, votes, guide))
        app.state.chat = "ready"
        if after_chat is not None:
            after_chat()
    else:
        app.mount("/", StartingPage(app))
    return app


ChatPage = tuple[str, Any, str]  # (mount path, gradio Blocks, extra <head>)


def build_chat_pages(engine: Engine, votes: FeedbackLog, guide: CorpusGuide) -> list[ChatPage]:
    """Both chat pages, the widget's compact one first: the slow part (imports Gradio)."""
    from .ui import SCROLL_HEAD, build_ui

    pages = []
    for path, compact, head in (
        (EMBED_PATH, True, COMPACT_HEAD + SCROLL_HEAD),
        ("/", False, SCROLL_HEAD),
    ):
        blocks = build_ui(engine, votes, compact=compact, guide=guide)
        blocks.queue(default_concurrency_limit=16)
        pages.append((path, blocks, head))
    return pages


def mount_chat_pages(app: FastAPI, pages: list[ChatPage]) -> list[Any]:
    """Mount the pages in ``app`` (before "/" catches all); the Gradio apps mounted."""
    import gradio as gr

    from .ui import CSS, theme

    server = app.state.server
    mounted = []
    for path, blocks, head in pages:
        gr.mount_gradio_app(
            app,
            blocks,
            path=path,
            server_name=server[0],
            server_port=server[1],
            theme=theme(),
            css=CSS,
            head=head,
            footer_links=[],
            run_history=False,
            show_error=False,  # an exception's text never reaches the client
            max_file_size=0,  # no uploads (NoUploads refuses the routes too)
            ssr_mode=False,
            mcp_server=False,
        )
        mounted.append(app.router.routes[-1].app)
    return mounted


async def _start_chat_pages(
    app: FastAPI, pages: list[ChatPage], stack: contextlib.AsyncExitStack
) -> None:
    """In the running server's loop: mount the pages, start them, then retire the stand-in."""
    if app.state.chat != "starting":
        return
    for gradio_app in mount_chat_pages(app, pages):
        # what mount_gradio_app's lifespan does when the pages are mounted before start-up
        await stack.enter_async_context(gradio_app.router.lifespan_context(gradio_app))
        gradio_app.get_blocks().run_startup_events()
        await gradio_app.get_blocks().run_extra_startup_events()
    app.router.routes[:] = [
        r
        for r in app.router.routes
        if not (isinstance(r, Mount) and isinstance(r.app, StartingPage))
    ]
    app.state.chat = "ready"


def _chat_later(
    app: FastAPI,
    engine: Engine,
    votes: FeedbackLog,
    guide: CorpusGuide,
    loop: asyncio.AbstractEventLoop,
    stack: contextlib.AsyncExitStack,
    after_chat: Callable[[], object] | None,
) -> None:
    """Build the chat pages off the event loop (the API keeps answering), then mount them."""
    try:
        pages = build_chat_pages(engine, votes, guide)
        asyncio.run_coroutine_threadsafe(_start_chat_pages(app, pages, stack), loop).result()
    except Exception:  # the API still works; the stand-in page says to look at the log
        log.exception("the chat pages could not be started")
        app.state.chat = "failed"
    if after_chat is not None:
        after_chat()


class StartingPage:
    """Stands in at / and /embed/ while the chat pages are built: a page that reloads itself.

    Other paths under it (Gradio's own API) get a JSON 503 with Retry-After.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        failed = self.app.state.chat == "failed"
        retry = {"Retry-After": "1"} if not failed else {}
        if scope["method"] in ("GET", "HEAD") and scope["path"] in (
            "/",
            EMBED_PATH,
            EMBED_PATH + "/",
        ):
            response: Response = HTMLResponse(
                FAILED_HTML if failed else STARTING_HTML, status_code=503, headers=retry
            )
        else:
            message = (
                "the chat pages failed to start: see the server's log"
                if failed
                else "the chat is starting: retry in a second (the JSON API already answers)"
            )
            response = _error(503, message)
            response.headers.update(retry)
        await response(scope, receive, send)


_PAGE = (
    "<!doctype html><html lang=zh-CN><head><meta charset=utf-8>{refresh}"
    "<title>{title}</title><style>body{{font-family:'Noto Sans CJK SC',"
    "system-ui,sans-serif;color:#1f2328;display:grid;place-items:center;min-height:90vh;"
    "margin:0}}p{{text-align:center;line-height:1.8}}</style></head><body><p>{text}</p>"
    "</body></html>"
)
STARTING_HTML = _PAGE.format(
    title=html.escape(APP_TITLE),
    refresh="<meta http-equiv=refresh content=1>",
    text="正在启动，请稍候……<br>The chat is starting; this page reloads by itself.",
)
FAILED_HTML = _PAGE.format(
    title=html.escape(APP_TITLE),
    refresh="",
    text="聊天页面未能启动。<br>The chat could not start: see the server's log.",
)


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
