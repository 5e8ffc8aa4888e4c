"""The chat and the widget in a real browser: Debian's chromium driven by playwright.

The app runs for real (``python app.py`` on a free port, see conftest.py); the host page
for the widget is served from a second port, i.e. another origin. Every request the
browser makes to anything but those two servers is blocked and recorded, so a test also
proves nothing loads from a CDN. Screenshots of each step go to build/screenshots/.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium; "
        ".ci/run does this)",
        allow_module_level=True,
    )

from conftest import ROOT, free_port  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

SHOTS = ROOT / "build" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
Q_ELDERLY = "卢阳春认为老年人使用政务平台有什么困难？"
XSS = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


class Watch:
    """What a page did that it should not: dialogs opened, requests to other hosts."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.outside: list[str] = []


def _page(browser: Browser, allowed_ports: set[int]) -> tuple[Page, Watch]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch()

    def guard(route) -> None:
        url = urlparse(route.request.url)
        local = url.hostname in ("127.0.0.1", "localhost") and url.port in allowed_ports
        if local or url.scheme in ("data", "blob"):
            route.continue_()
        else:
            watch.outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)

    def on_dialog(d) -> None:
        watch.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    return page, watch


def _shot(page: Page, name: str, show=None) -> None:
    """Save a screenshot; ``show`` is scrolled to the top of the chat first."""
    if show is not None:
        page.wait_for_timeout(300)  # let the chat's own autoscroll settle first
        show.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(200)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def ask_in(scope, question: str):
    """Type a question, send it, and wait until its whole reply has streamed in."""
    replies = scope.locator("#qa-chat .qa-reply")
    before = replies.count()
    box = scope.locator("#qa-input textarea")
    box.fill(question)
    for _ in range(10):  # a submit right after the previous event closes can be ignored
        box.press("Enter")
        try:
            expect(replies).to_have_count(before + 1, timeout=3000)
            break
        except AssertionError:
            continue
    expect(replies).to_have_count(before + 1, timeout=TIMEOUT_MS)
    reply = replies.nth(before)
    expect(reply.locator(".qa-pending")).to_have_count(0, timeout=TIMEOUT_MS)
    return reply


READ_FROM_TOP = """() => {
  const users = document.querySelectorAll("#qa-chat .qa-user");
  const user = users[users.length - 1];
  let box = user.parentElement;
  while (box && !(["auto", "scroll"].includes(getComputedStyle(box).overflowY)
                  && box.scrollHeight > box.clientHeight)) box = box.parentElement;
  if (!box) return null;
  return {offset: user.getBoundingClientRect().top - box.getBoundingClientRect().top,
          below: box.scrollHeight - box.scrollTop - box.clientHeight};
}"""


def assert_read_from_top(scope) -> None:
    """The new reply is shown from its question down, not scrolled to its last card."""
    scope.locator("#qa-chat .qa-user").last.page.wait_for_timeout(300)
    where = scope.locator("#qa-chat").evaluate(f"(_e) => ({READ_FROM_TOP})()")
    assert where is not None, "the chat does not scroll: ask more"
    assert 0 <= where["offset"] < 80, where  # the question at the top of the chat box
    assert where["below"] > 50, where  # the rest of the reply waits below


@pytest.fixture(scope="module")
def chat(browser, app_server) -> Iterator[tuple[Page, Watch]]:
    page, watch = _page(browser, {app_server.port})
    page.goto(app_server.url + "/")
    expect(page.locator("#qa-input textarea")).to_be_visible()
    yield page, watch
    page.context.close()


def test_1_ask_shows_cited_expert(chat, app_server) -> None:
    page, watch = chat
    # the header and the examples come from the index: who was interviewed, what was asked
    expect(page.locator("#qa-header")).to_contain_text("专访")
    expect(page.locator("#qa-header")).to_contain_text("卢阳春")
    expect(page.locator("#qa-examples")).to_contain_text("What did")
    reply = ask_in(page, Q_ELDERLY)
    cites = reply.locator("details.qa-cite")
    expect(cites.first).to_be_visible()
    expect(cites.first.locator(".qa-speaker")).to_have_text("卢阳春")
    expect(cites.first.locator(".qa-title")).not_to_be_empty()
    expect(cites.first.locator(".qa-where")).to_contain_text("›")
    expect(cites.first.locator(".qa-asked")).not_to_be_empty()
    # the citation opens to the whole answer with the supporting sentence highlighted
    cites.first.locator("summary").click()
    mark = cites.first.locator(".qa-full mark")
    expect(mark).to_be_visible()
    assert mark.inner_text() in cites.first.locator(".qa-full").inner_text()
    _shot(page, "1-ask.png", show=reply)
    assert watch.outside == [], f"requests left the machine: {watch.outside}"


def test_2_followup_keeps_speaker(chat, app_server) -> None:
    page, watch = chat
    reply = ask_in(page, "他还说了什么？")
    expect(reply.locator(".qa-note")).to_contain_text("卢阳春")
    expect(reply.locator("details.qa-cite .qa-speaker").first).to_have_text("卢阳春")
    _shot(page, "2-followup.png", show=page.locator("#qa-chat .qa-user").last)


def test_new_reply_is_read_from_its_top(browser, app_server) -> None:
    """A long reply opens at its question and quotes, not at its last source card."""
    page, _ = _page(browser, {app_server.port})
    try:
        page.set_viewport_size({"width": 1000, "height": 600})
        page.goto(app_server.url + "/")
        ask_in(page, "蔡之兵怎么看智博会上的“黑科技”？")
        ask_in(page, Q_ELDERLY)
        assert_read_from_top(page)
    finally:
        page.context.close()


def test_feedback_is_recorded(chat, app_server) -> None:
    page, _ = chat
    # Gradio labels the button in the page's language: "Like", or 赞 in zh-CN
    like = page.locator("#qa-chat").get_by_role("button", name=re.compile("^(Like|赞)$")).last
    like.click()
    expect(page.locator("#qa-status")).to_contain_text("感谢反馈")
    rows = [json.loads(x) for x in app_server.feedback.read_text("utf-8").splitlines()]
    assert rows[-1]["vote"] == "like"
    assert rows[-1]["question"] == "他还说了什么？"
    assert rows[-1]["citation_ids"]


def test_4_html_in_question_is_shown_as_text(chat, app_server) -> None:
    page, watch = chat
    reply = ask_in(page, XSS)
    users = page.locator("#qa-chat .qa-user")
    expect(users.last).to_have_text(XSS)
    assert page.locator("#qa-chat img[src='x']").count() == 0
    assert reply.is_visible()
    page.wait_for_timeout(500)  # give an injected handler every chance to fire
    assert watch.dialogs == [], f"a dialog fired: {watch.dialogs}"
    _shot(page, "4-xss.png", show=users.last)


def test_bad_input_gets_a_gentle_line(chat, app_server) -> None:
    page, _ = chat
    replies = page.locator("#qa-chat .qa-reply").count()
    box = page.locator("#qa-input textarea")
    box.fill("   ")
    box.press("Enter")
    expect(page.locator("#qa-status")).to_contain_text("请先输入一个问题")
    box.fill("长" * 2001)
    # Gradio ignores a new submit while the previous event is still closing ("once")
    status = page.locator("#qa-status")
    for _ in range(40):
        box.press("Enter")
        page.wait_for_timeout(250)
        if "2,000" in status.inner_text():
            break
    expect(status).to_contain_text("最多 2,000 字")
    assert page.locator("#qa-chat .qa-reply").count() == replies
    _shot(page, "5-bad-input.png")


def test_clear_empties_the_chat(chat, app_server) -> None:
    page, _ = chat
    page.locator("#qa-clear").click()
    expect(page.locator("#qa-chat .qa-reply")).to_have_count(0)


@pytest.fixture(scope="module")
def host_page(app_server) -> Iterator[str]:
    """examples/embed.html served from a second port: another origin than the app."""
    html = (ROOT / "examples" / "embed.html").read_text("utf-8")
    html = html.replace("http://127.0.0.1:7860/", app_server.url + "/")
    # the same page with the other options: left, English, a title that tries markup
    variant = html.replace('data-position="bottom-right"', 'data-position="top-left"')
    variant = variant.replace('data-lang="zh"', 'data-lang="en"')
    variant = variant.replace('data-title="智慧名城 · 问专家"', 'data-title="<b>Q&amp;A</b>"')
    pages = {"/embed.html": html.encode("utf-8"), "/variant.html": variant.encode("utf-8")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages.get(self.path.split("?")[0], b"not here")
            self.send_response(200 if self.path.split("?")[0] in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{port}/embed.html"
    server.shutdown()
    server.server_close()


def test_3_widget_on_another_origin(browser, app_server, host_page) -> None:
    host_port = urlparse(host_page).port
    page, watch = _page(browser, {app_server.port, host_port})
    try:
        page.goto(host_page)
        button = page.locator("#zhihui-qa-widget .btn")
        expect(button).to_be_visible()
        expect(button).to_have_attribute("aria-expanded", "false")
        _shot(page, "3a-widget-closed.png")
        button.click()
        expect(button).to_have_attribute("aria-expanded", "true")
        expect(page.locator("#zhihui-qa-widget .bar .t")).to_have_text("智慧名城 · 问专家")
        frame = page.frame_locator("#zhihui-qa-widget iframe")
        expect(frame.locator("#qa-input textarea")).to_be_visible()
        ask_in(frame, Q_ELDERLY)
        reply = ask_in(frame, "蔡之兵怎么看智博会上的“黑科技”？")
        assert_read_from_top(frame)
        expect(reply.locator("details.qa-cite").first).to_be_visible()
        expect(reply.locator("details.qa-cite .qa-speaker").first).to_have_text("蔡之兵")
        _shot(page, "3b-widget-answer.png")
        page.keyboard.press("Escape")
        expect(button).to_have_attribute("aria-expanded", "false")
        assert watch.outside == [], f"requests left the machine: {watch.outside}"
        assert watch.dialogs == []
    finally:
        page.context.close()


def test_widget_options(browser, app_server, host_page) -> None:
    """data-position, data-lang and data-title change the widget; the title stays text."""
    url = host_page.replace("/embed.html", "/variant.html")
    page, watch = _page(browser, {app_server.port, urlparse(url).port})
    try:
        page.goto(url)
        button = page.locator("#zhihui-qa-widget .btn")
        expect(button).to_have_text("Ask the experts")
        box = button.bounding_box()
        assert box is not None and box["x"] < 100 and box["y"] < 100  # top-left
        button.click()
        expect(page.locator("#zhihui-qa-widget .bar .t")).to_have_text("<b>Q&A</b>")
        assert page.locator("#zhihui-qa-widget .bar b").count() == 0
        frame = page.frame_locator("#zhihui-qa-widget iframe")
        expect(frame.locator("#qa-input textarea")).to_have_attribute(
            "placeholder", "Ask a question, press Enter…"
        )
        page.locator("#zhihui-qa-widget .x").click()
        expect(button).to_have_attribute("aria-expanded", "false")
        assert watch.outside == [] and watch.dialogs == []
    finally:
        page.context.close()
