"""The Gradio chat: layout and event handlers; the turn itself is ``qa.chat.next_turn``.

Rendering is ``qa.render``, the vote log ``qa.feedback``, the page's who's-who and
examples ``qa.guide``. This module only wires them to Gradio components.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from .chat import ChatTurn, next_turn
from .engine import MAX_K, Engine, clean_question
from .errors import BadQuestion, QAError
from .feedback import FeedbackLog, FeedbackRefused, default_feedback_path, vote_of
from .guide import APP_TITLE, CorpusGuide, corpus_guide
from .render import (
    bad_input_message,
    esc,
    render_error,
    render_status,
    render_user,
    reply_pieces,
    wrap_reply,
)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio is imported
import gradio as gr  # noqa: E402  (seconds to import: qa.web loads this module late)

log = logging.getLogger(__name__)
STREAM_PAUSE_S = 0.04  # between streamed pieces: long enough to see, short enough not to wait
UNEXPECTED = "出了点问题，请再试一次。Something went wrong; please try again."


def _messages(turns: list[ChatTurn]) -> list[dict]:
    out: list[dict] = []
    for t in turns:
        out.append({"role": "user", "content": render_user(t.asked)})
        out.append({"role": "assistant", "content": wrap_reply(reply_pieces(t))})
    return out


def _client(request: gr.Request | None) -> str:
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "local")


def like_turn(turns: list[ChatTurn], index: object) -> ChatTurn | None:
    """The turn whose reply was voted on; None unless ``index`` is a reply of this chat.

    The chat sends the message's position (an int, or [row, column]); odd rows are replies.
    """
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    if isinstance(index, bool) or not isinstance(index, int):
        return None
    turn, role = divmod(index, 2)
    if role != 1 or not 0 <= turn < len(turns):
        return None
    return turns[turn]


def make_handlers(
    engine: Engine, feedback: FeedbackLog, guide: CorpusGuide | None = None
) -> dict[str, Any]:
    """The event functions, closed over the one shared engine."""
    guide = guide or corpus_guide(engine)
    example = guide.examples_zh[0] if guide.examples_zh else ""

    def respond(
        message: str | None,
        turns: list[ChatTurn] | None,
        speaker: str | None = None,
        section: str | None = None,
        k: float | int | None = 5,
    ) -> Iterator[tuple[list[dict], list[ChatTurn], Any, str, Any]]:
        turns = list(turns or [])
        raw = message if isinstance(message, str) else ""
        try:
            question = clean_question(raw)
        except BadQuestion as exc:
            status = render_status(bad_input_message(raw, exc, example), "warn")
            yield _messages(turns), turns, gr.update(), status, gr.update()
            return
        try:
            k_int = max(1, min(MAX_K, int(k or 5)))
        except (TypeError, ValueError, OverflowError):
            k_int = 5
        pending = _messages(turns) + [
            {"role": "user", "content": render_user(question)},
            {"role": "assistant", "content": wrap_reply([], pending=True)},
        ]
        yield pending, turns, "", render_status(), gr.update()
        try:
            turn = next_turn(
                engine,
                turns,
                question,
                k_int,
                speaker if isinstance(speaker, str) and speaker else None,
                section if isinstance(section, str) and section else None,
            )
        except QAError as exc:
            pending[-1]["content"] = render_error(str(exc))
            yield pending, turns, gr.update(), render_status(), gr.update()
            return
        except Exception:  # a bug of ours: logged here, never shown to the client
            log.exception("chat turn failed")
            pending[-1]["content"] = render_error(UNEXPECTED)
            yield pending, turns, gr.update(), render_status(), gr.update()
            return
        pieces = reply_pieces(turn)
        for i in range(1, len(pieces)):
            pending[-1]["content"] = wrap_reply(pieces[:i], pending=True)
            yield pending, turns, gr.update(), render_status(), gr.update()
            time.sleep(STREAM_PAUSE_S)
        turns.append(turn)
        topics = turn.answer.suggestions
        if not turn.answer.answerable and topics:
            sugg = gr.update(samples=[[t] for t in topics], visible=True)
        else:
            sugg = gr.update(visible=False)
        yield _messages(turns), turns, gr.update(), render_status(), sugg

    def on_like(
        turns: list[ChatTurn] | None, data: gr.LikeData, request: gr.Request = None
    ) -> str:
        turn = like_turn(list(turns or []), getattr(data, "index", None))
        if turn is None:
            return render_status("无法记录：没有这条回答。Nothing to vote on.", "warn")
        try:
            feedback.record(turn, vote_of(getattr(data, "liked", None)), _client(request))
        except FeedbackRefused as exc:
            return render_status(f"未记录 Not recorded: {exc}", "warn")
        except OSError:
            log.exception("feedback not written")
            return render_status("未记录 Not recorded.", "warn")
        return render_status("感谢反馈 Thanks for the feedback.", "ok")

    def clear() -> tuple[list, list, str, str, Any]:
        return [], [], "", render_status(), gr.update(visible=False)

    def ask_api(question: str, k: int = 5, speaker: str = "", section: str = "") -> dict:
        """Ask the interviews; returns the same JSON as `qa ask --json`."""
        try:
            return engine.ask(
                question, k=int(k), speaker=speaker or None, section=section or None
            ).to_dict()
        except QAError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except (TypeError, ValueError, OverflowError):
            raise gr.Error("k must be a whole number", print_exception=False) from None

    return {"respond": respond, "on_like": on_like, "clear": clear, "ask_api": ask_api}


# --- layout ---------------------------------------------------------------------------

# A new reply is read from its top (the question, then the quotes), not from its last
# source card: while it streams in, the chat's own box keeps the question at its top,
# until the reply is complete or the reader scrolls. The page itself never moves.
SCROLL_HEAD = """<script>
(function () {
  var seen = 0, pinned = false;
  function box(el) {
    for (var p = el.parentElement; p; p = p.parentElement) {
      var o = getComputedStyle(p).overflowY;
      if ((o === "auto" || o === "scroll") && p.scrollHeight > p.clientHeight) return p;
    }
    return null;
  }
  function check() {
    var replies = document.querySelectorAll("#qa-chat .qa-reply");
    if (replies.length < seen) { seen = replies.length; pinned = false; }
    if (replies.length > seen) { seen = replies.length; pinned = true; }
    if (!pinned || !replies.length) return;
    var users = document.querySelectorAll("#qa-chat .qa-user");
    var top = users.length ? users[users.length - 1] : replies[replies.length - 1];
    var b = box(top);
    if (b) b.scrollTop += top.getBoundingClientRect().top - b.getBoundingClientRect().top - 8;
    if (!replies[replies.length - 1].querySelector(".qa-pending")) pinned = false;
  }
  function unpin() { pinned = false; }
  new MutationObserver(check).observe(document.documentElement, {childList: true, subtree: true});
  window.addEventListener("wheel", unpin, {passive: true});
  window.addEventListener("touchmove", unpin, {passive: true});
})();
</script>"""

CSS = """
:root { --qa-accent: #b4232a; --qa-ink: #1f2328; --qa-muted: #6a737d; --qa-line: #e6e1dc; }
.gradio-container { max-width: 1200px !important; }
#qa-header { padding: 10px 4px 2px; }
#qa-header h1 { font-size: 1.45rem; margin: 0; color: var(--qa-ink); letter-spacing: .02em; }
#qa-header h1 .qa-brand { color: var(--qa-accent); }
#qa-header p { margin: 4px 0 0; color: var(--qa-muted); font-size: .9rem; }
#qa-header p.qa-en { margin-top: 0; font-size: .82rem; }
.qa-reply { font-size: .95rem; line-height: 1.65; color: var(--qa-ink); }
.qa-user { white-space: pre-wrap; word-break: break-word; }
.qa-label { font-size: .78rem; font-weight: 600; color: var(--qa-muted); letter-spacing: .04em;
  margin: 10px 0 6px; text-transform: uppercase; }
.qa-label:first-child { margin-top: 0; }
.qa-note { font-size: .82rem; color: var(--qa-muted); background: #f6f3ef; border-radius: 6px;
  padding: 4px 8px; margin-bottom: 8px; }
.qa-quote { border-left: 3px solid var(--qa-accent); padding: 2px 0 2px 12px; margin: 6px 0 10px; }
.qa-quote-text { color: var(--qa-ink); }
.qa-quote-by { font-size: .85rem; color: var(--qa-muted); margin-top: 2px; }
.qa-block-head { font-weight: 600; margin-bottom: 2px; }
.qa-block-title { font-weight: 400; font-size: .85rem; color: var(--qa-muted); margin-left: 6px; }
.qa-low { font-size: .85rem; color: #8a5a00; background: #fff6e0; padding: 4px 8px;
          border-radius: 4px; margin: 4px 0 8px; }
.qa-ref { color: var(--qa-accent) !important; font-weight: 600; margin-left: 4px;
  text-decoration: none !important; font-size: .8rem; vertical-align: super; }
details.qa-cite { border: 1px solid var(--qa-line); border-radius: 10px; margin: 8px 0;
  background: #fffdfb; overflow: hidden; }
details.qa-cite > summary { list-style: none; cursor: pointer; display: flex; gap: 10px;
  align-items: flex-start; padding: 10px 12px; }
details.qa-cite > summary::-webkit-details-marker { display: none; }
details.qa-cite[open] > summary { border-bottom: 1px solid var(--qa-line); background: #faf6f1; }
.qa-num { flex: none; width: 22px; height: 22px; border-radius: 50%; background: var(--qa-accent);
  color: #fff; font-size: .75rem; font-weight: 700; display: inline-flex; align-items: center;
  justify-content: center; margin-top: 2px; }
.qa-cite-head { flex: 1; display: flex; flex-wrap: wrap; gap: 2px 8px; align-items: baseline;
  min-width: 0; }
.qa-speaker { font-weight: 700; color: var(--qa-ink); }
.qa-title { font-size: .8rem; color: var(--qa-muted); }
.qa-kind { font-size: .7rem; color: var(--qa-accent); border: 1px solid #e7c4c6;
  border-radius: 4px; padding: 0 4px; }
.qa-where { flex-basis: 100%; font-size: .82rem; color: #44505c; }
.qa-asked { flex-basis: 100%; font-size: .82rem; color: var(--qa-muted); }
.qa-asked b { color: var(--qa-accent); margin-right: 4px; }
.qa-open { flex: none; font-size: .75rem; color: var(--qa-accent); white-space: nowrap;
  margin-top: 3px; }
details.qa-cite[open] .qa-open { visibility: hidden; }
.qa-full { padding: 10px 14px 4px; white-space: normal; color: #333; }
.qa-full mark { background: #fde9a8; color: inherit; padding: 0 1px; border-radius: 2px; }
.qa-src { padding: 0 14px 10px; font-size: .72rem; color: #9aa1a8; }
.qa-empty { padding: 6px 0; }
.qa-en { display: block; font-size: .85rem; color: var(--qa-muted); }
.qa-topics ul { margin: 4px 0 0 1.1em; padding: 0; }
.qa-pending { color: var(--qa-muted); font-size: .85rem; animation: qa-pulse 1.2s infinite; }
@keyframes qa-pulse { 50% { opacity: .4; } }
.qa-status { font-size: .85rem; padding: 4px 2px; }
#qa-input-row { align-items: flex-end; }
#qa-send { align-self: flex-end; }
.qa-status-warn { color: #9a3412; }
.qa-status-ok { color: #166534; }
#qa-side .qa-side-title { font-weight: 600; font-size: .9rem; margin: 4px 0; }
#qa-footer { font-size: .78rem; color: var(--qa-muted); text-align: center; }
#qa-footer a { color: var(--qa-muted); }
.qa-compact .main.app { padding: 8px 10px 4px !important; }
.qa-compact .contain > .column { gap: 8px !important; }
.qa-compact #qa-chat .placeholder-content { padding: 8px; }
#qa-chat .user-row { background: transparent !important; }
#qa-chat .user.message { min-height: 0 !important; padding: 2px 6px !important;
  background: #f6f3ef !important; border-color: transparent !important; }
#qa-chat .role:has(> .user.message) .message-buttons { display: none !important; }
.qa-user { font-weight: 600; color: var(--qa-ink); }
"""


def theme() -> gr.themes.Base:
    """System CJK fonts only: nothing is fetched from a font CDN."""
    return gr.themes.Soft(
        primary_hue="red",
        neutral_hue="stone",
        font=["Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"],
        font_mono=["Noto Sans Mono CJK SC", "monospace"],
    )


def build_ui(
    engine: Engine,
    feedback: FeedbackLog | None = None,
    compact: bool = False,
    guide: CorpusGuide | None = None,
) -> gr.Blocks:
    """The chat page; ``compact`` is the widget's panel (chat only, no side column).

    Its header, examples and hints come from ``guide`` (by default derived from the
    engine's index), so nothing on the page is specific to one corpus.
    """
    feedback = feedback or FeedbackLog(default_feedback_path())
    derived = guide is None  # drawn from the index: drawn again after a rebuild
    guide = guide or corpus_guide(engine)
    h = make_handlers(engine, feedback, guide)
    def speaker_choices() -> list[tuple[str, str]]:
        experts = corpus_guide(engine).experts if derived else guide.experts
        return [("全部专家 All speakers", "")] + [
            (f"{name}" + (f" · {title}" if title else ""), name) for name, title in experts
        ]

    def section_choices() -> list[tuple[str, str]]:
        return [("全部栏目 All sections", "")] + [(s, s) for s in engine.sections]

    with gr.Blocks(title=APP_TITLE, fill_height=compact) as demo:
        turns = gr.State([])
        if not compact:
            gr.HTML(guide.header_html())
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=320):
                chatbot = gr.Chatbot(
                    elem_id="qa-chat",
                    label="对话 Chat",
                    show_label=False,
                    height="68vh" if not compact else "calc(100vh - 92px)",
                    min_height=360 if not compact else 240,
                    scale=1,
                    latex_delimiters=[],
                    sanitize_html=True,
                    placeholder=guide.placeholder(),
                    buttons=["copy"],
                    feedback_options=("Like", "Dislike"),
                    layout="panel",
                    autoscroll=False,  # SCROLL_HEAD shows a new reply from its top
                    examples=(
                        [{"text": q} for q in guide.examples_zh[:2] + guide.examples_en[:1]]
                        if compact
                        else None
                    ),
                )
                with gr.Row(equal_height=False, elem_id="qa-input-row"):
                    box = gr.Textbox(
                        elem_id="qa-input",
                        show_label=False,
                        placeholder=(
                            "输入问题，回车发送…"
                            if compact
                            else "输入问题，回车发送 · Type a question, press Enter"
                        ),
                        lines=1,
                        max_lines=6,
                        scale=8,
                        autofocus=not compact,
                        container=False,
                    )
                    send = gr.Button(
                        "提问" if compact else "提问 Ask",
                        variant="primary",
                        scale=1,
                        min_width=64 if compact else 90,
                        elem_id="qa-send",
                    )
                status = gr.HTML("", elem_id="qa-status")
                suggestions = gr.Dataset(
                    components=[gr.Textbox(visible=False, render=False)],
                    samples=[[""]],
                    label="相近的话题 Closest topics",
                    elem_id="qa-suggestions",
                    visible=False,
                    layout="table",
                )
            if not compact:
                with gr.Column(scale=3, min_width=240, elem_id="qa-side"):
                    speaker = gr.Dropdown(
                        speaker_choices(), value="", label="专家 Speaker", elem_id="qa-speaker"
                    )
                    section = gr.Dropdown(
                        section_choices(), value="", label="栏目 Section", elem_id="qa-section"
                    )
                    k = gr.Slider(1, 10, value=5, step=1, label="出处条数 Citations")
                    clear = gr.Button("清空对话 Clear", variant="secondary", elem_id="qa-clear")
                    examples = gr.Dataset(
                        components=[gr.Textbox(visible=False, render=False)],
                        samples=[[q] for q in guide.examples_zh + guide.examples_en],
                        label="示例问题 Examples",
                        elem_id="qa-examples",
                        layout="table",
                    )
                    gr.Markdown(
                        "可以追问 Follow-ups: " + " · ".join(map(esc, guide.followups)),
                        elem_classes=["qa-hint"],
                    )
            else:
                speaker = gr.State("")
                section = gr.State("")
                k = gr.State(3)
                clear = None
        if not compact:
            gr.HTML(
                '<div id="qa-footer">JSON API: <a href="/docs" target="_blank">/docs</a>'
                ' · 嵌入 Embed: <code>&lt;script src="/widget.js" defer&gt;&lt;/script&gt;</code>'
                "</div>"
            )

        inputs = [box, turns, speaker, section, k]
        outputs = [chatbot, turns, box, status, suggestions]
        ask_opts: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
        box.submit(h["respond"], inputs, outputs, **ask_opts)
        send.click(h["respond"], inputs, outputs, **ask_opts)

        def pick(sample: list[str]) -> str:
            return sample[0] if sample else ""

        for ds in (suggestions,) if compact else (examples, suggestions):
            ds.click(pick, ds, box, api_visibility="private", show_progress="hidden").then(
                h["respond"], inputs, outputs, **ask_opts
            )
        if compact:
            chatbot.example_select(
                _example_text, None, box, api_visibility="private", show_progress="hidden"
            ).then(h["respond"], inputs, outputs, **ask_opts)
        chatbot.like(h["on_like"], turns, status, api_visibility="private")
        if clear is not None:
            clear.click(h["clear"], None, outputs, api_visibility="private")
        if not compact:

            def current_filters() -> tuple[Any, Any]:
                """The index may have been rebuilt since the page was laid out (the corpus
                watcher): each new page lists the speakers and sections it has now."""
                return (gr.update(choices=speaker_choices()),
                        gr.update(choices=section_choices()))

            demo.load(current_filters, None, [speaker, section], api_visibility="private")
        if compact:

            def compact_lang(request: gr.Request) -> tuple[Any, Any, Any]:
                """The widget passes ``?lang=en``: English placeholder text in its panel."""
                lang = (request.query_params.get("lang") or "zh") if request else "zh"
                if lang.lower().startswith("en"):
                    return (
                        gr.update(placeholder=guide.placeholder(english=True)),
                        gr.update(placeholder="Ask a question, press Enter…"),
                        gr.update(value="Ask"),
                    )
                return gr.update(), gr.update(), gr.update()

            demo.load(compact_lang, None, [chatbot, box, send], api_visibility="private")
        gr.api(h["ask_api"], api_name="ask")
    return demo


def _example_text(data: gr.SelectData) -> str:
    """The text of the example card clicked in the empty chat."""
    value = data.value
    return str(value.get("text", "")) if isinstance(value, dict) else str(value or "")
