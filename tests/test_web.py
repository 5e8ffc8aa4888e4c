"""The HTTP side against a real server (``python app.py`` on a free port, real index).

JSON API shape and its 4xx answers, health, OpenAPI, the widget with its CORS headers,
and the Gradio named endpoint through a real ``gradio_client.Client``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
Q = "卢阳春认为老年人使用政务平台有什么困难？"
CITATION_KEYS = {
    "rank",
    "speaker",
    "speaker_title",
    "article",
    "section",
    "asked",
    "text",
    "highlight",
    "score",
    "source",
    "start",
    "end",
    "turn_id",
    "kind",
    "full_text",
}


def ask(server, body, **kw) -> httpx.Response:
    return httpx.post(server.url + "/api/ask", json=body, timeout=60, **kw)


def test_ask_returns_cited_answer(app_server) -> None:
    r = ask(app_server, {"question": Q, "k": 3})
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) >= {"question", "answerable", "answer", "citations", "suggestions", "timings_ms"}
    assert d["answerable"] is True
    assert 1 <= len(d["citations"]) <= 3
    for c in d["citations"]:
        assert set(c) >= CITATION_KEYS
        assert c["highlight"] in c["text"]
        assert c["text"] in c["full_text"]
    assert d["citations"][0]["speaker"] == "卢阳春"
    assert d["citations"][0]["speaker_title"]
    assert "老年人" in d["citations"][0]["full_text"]


def test_same_json_as_cli(app_server) -> None:
    """`POST /api/ask` and `qa ask --json` give the same answer (timings aside)."""
    out = subprocess.run(
        [sys.executable, "-m", "qa", "ask", "--json", "--k", "3", Q],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    api = ask(app_server, {"question": Q, "k": 3}).json()
    cli.pop("timings_ms")
    api.pop("timings_ms")
    assert api == cli


def test_filters_and_control_characters(app_server) -> None:
    r = ask(
        app_server,
        {
            "question": "卢阳春\x00认为\x07老年人\u200b使用政务平台有什么困难？",
            "k": 2,
            "speaker": "朱旭森",
        },
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert "\x00" not in d["question"] and "\x07" not in d["question"]
    assert all(c["speaker"] == "朱旭森" for c in d["citations"])


def test_unanswerable_offers_topics(app_server) -> None:
    d = ask(app_server, {"question": "红烧肉怎么做？"}).json()
    assert d["answerable"] is False
    assert d["citations"] == []
    assert d["suggestions"]


TOO_LONG = "长" * 2001
BAD = [
    ("empty", {"question": ""}, 400),
    ("blank", {"question": " \n\t\u3000 "}, 400),
    ("control-only", {"question": "\x00\x01\x1b"}, 400),
    ("too-long", {"question": TOO_LONG}, 400),
    ("huge", {"question": "长" * 200_000}, 400),
    ("missing", {}, 422),
    ("question-number", {"question": 5}, 422),
    ("question-null", {"question": None}, 422),
    ("question-list", {"question": [Q]}, 422),
    ("k-zero", {"question": Q, "k": 0}, 422),
    ("k-too-big", {"question": Q, "k": 21}, 422),
    ("k-negative", {"question": Q, "k": -1}, 422),
    ("k-string", {"question": Q, "k": "5"}, 422),
    ("k-bool", {"question": Q, "k": True}, 422),
    ("k-float", {"question": Q, "k": 2.5}, 422),
    ("speaker-number", {"question": Q, "speaker": 1}, 422),
    ("section-object", {"question": Q, "section": {}}, 422),
    ("unknown-speaker", {"question": Q, "speaker": "张三"}, 400),
    ("extra-field", {"question": Q, "top_k": 3}, 422),
    ("array-body", [Q], 422),
    ("string-body", Q, 422),
]


@pytest.mark.parametrize(("body", "status"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_json(app_server, body, status) -> None:
    r = ask(app_server, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert isinstance(err, str) and err and "Traceback" not in err
    if body is not None and body in ({"question": TOO_LONG},):
        assert "2000" in err


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"not json", {"Content-Type": "application/json"}),
        (b'{"question": ', {"Content-Type": "application/json"}),
        (b"\xff\xfe\x00", {"Content-Type": "application/json"}),
        (b"question=hi", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"", {}),
    ],
    ids=["not-json", "truncated", "binary", "form", "no-body"],
)
def test_malformed_bodies_get_4xx_json(app_server, content, headers) -> None:
    r = httpx.post(app_server.url + "/api/ask", content=content, headers=headers, timeout=30)
    assert 400 <= r.status_code < 500, r.text
    assert "error" in r.json()


def test_wrong_method_and_path_are_json_4xx(app_server) -> None:
    r = httpx.get(app_server.url + "/api/ask", timeout=30)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "POST" in r.json()["error"]
    r = httpx.post(app_server.url + "/api/nope", json={}, timeout=30)
    assert r.status_code == 404 and "/api/ask" in r.json()["error"]


def test_health_reports_index_and_model(app_server) -> None:
    r = httpx.get(app_server.url + "/api/health", timeout=30)
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["model"] and h["index"]
    assert h["passages"] > 0 and h["turns"] > 0
    assert {"蔡之兵", "卢阳春", "朱旭森"} <= set(h["speakers"])
    assert h["sections"]


def test_openapi_and_docs_served_offline(app_server) -> None:
    schema = httpx.get(app_server.url + "/openapi.json", timeout=30).json()
    assert "post" in schema["paths"]["/api/ask"]
    assert "/api/health" in schema["paths"]
    props = schema["components"]["schemas"]["AskRequest"]["properties"]
    assert {"question", "k", "speaker", "section"} <= set(props)
    [example] = props["question"]["examples"]  # derived from the index, not typed in
    assert ask(app_server, {"question": example, "k": 1}).json()["answerable"] is True
    docs = httpx.get(app_server.url + "/docs", timeout=30)
    assert docs.status_code == 200 and "/api/ask" in docs.text
    assert example in docs.text  # the curl example asks it too
    # ... of this server, not a hard-coded 127.0.0.1:7860
    assert f"curl -s http://127.0.0.1:{app_server.port}/api/ask" in docs.text
    assert "/api/chat" in docs.text
    assert "cdn" not in docs.text.lower() and "<script" not in docs.text.lower()


def test_widget_served_cross_origin(app_server) -> None:
    origin = {"Origin": "http://news.example.test"}
    r = httpx.get(app_server.url + "/widget.js", headers=origin, timeout=30)
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    assert r.headers["access-control-allow-origin"] in ("*", origin["Origin"])
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    code = r.text.split("*/", 1)[1]  # past the header comment
    assert "attachShadow" in code
    assert "http" not in code and "cdn" not in code.lower()  # nothing fetched from elsewhere
    pre = httpx.options(
        app_server.url + "/api/ask",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] in ("*", origin["Origin"])
    r = ask(app_server, {"question": Q, "k": 1}, headers=origin)
    assert r.headers["access-control-allow-origin"] in ("*", origin["Origin"])


def test_chat_pages_can_be_framed(app_server) -> None:
    for path in ("/", "/embed/"):
        r = httpx.get(app_server.url + path, timeout=30, follow_redirects=True)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "x-frame-options" not in r.headers


def test_gradio_client_named_endpoint(app_server) -> None:
    from gradio_client import Client

    client = Client(app_server.url + "/", verbose=False, download_files=False)
    assert "/ask" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    d = client.predict(question=Q, k=2, speaker="", section="", api_name="/ask")
    assert d["answerable"] is True
    assert d["citations"][0]["speaker"] == "卢阳春"
    with pytest.raises(Exception, match="empty"):
        client.predict(question="   ", k=2, speaker="", section="", api_name="/ask")


def _gradio_event(server, trigger: str, data: list, session: str, event_data=None) -> dict:
    """Runs the chat page's ``trigger`` event (e.g. "like") through Gradio's queue, as the
    browser does; returns the completion message."""
    config = httpx.get(server.url + "/config", timeout=30).json()
    fn = next(d["id"] for d in config["dependencies"] if any(t[1] == trigger for t in d["targets"]))
    body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": event_data}
    joined = httpx.post(server.url + "/gradio_api/queue/join", json=body, timeout=60)
    assert joined.status_code == 200, joined.text
    with httpx.stream(
        "GET", server.url + "/gradio_api/queue/data", params={"session_hash": session}, timeout=120
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("the event never completed")


def test_bad_votes_through_the_chat_queue(app_server) -> None:
    """Issue #9.7 on the real server: a vote is only like/dislike, on a reply that exists;
    anything else gets a one-line status, never an exception's text, and is not logged."""
    session = "votes-" + str(app_server.port)
    done = _gradio_event(app_server, "submit", [Q, None, "", "", 2], session)
    assert done["success"], done
    before = app_server.feedback.read_text("utf-8") if app_server.feedback.exists() else ""
    for bad in (
        {"index": "abc", "value": "", "liked": True},
        {"index": 1, "value": "", "liked": "x" * 2_000_000},
        {"index": [1, "zz"], "value": "", "liked": "love"},
    ):
        done = _gradio_event(app_server, "like", [None], session, bad)
        status = done["output"]["data"][0]
        assert done["success"] and "qa-status-warn" in status and len(status) < 300, done
        assert "Error" not in status and "Traceback" not in status
    after = app_server.feedback.read_text("utf-8") if app_server.feedback.exists() else ""
    assert after == before
    good = {"index": 1, "value": "", "liked": True}
    done = _gradio_event(app_server, "like", [None], session, good)
    assert "感谢反馈" in done["output"]["data"][0]
    row = json.loads(app_server.feedback.read_text("utf-8").splitlines()[-1])
    assert row["vote"] == "like" and row["question"] == Q


def test_api_answers_first_then_the_chat_follows(tmp_path) -> None:
    """Issue #10.4: ready = /api/health and /api/ask; the chat pages follow and then work."""
    from conftest import start_app

    with start_app(tmp_path, wait_for_chat=False) as server:
        r = ask(server, {"question": Q, "k": 1})
        assert r.status_code == 200 and r.json()["answerable"] is True
        # Gradio takes seconds to import and build: its pages are not there yet
        assert httpx.get(server.url + "/api/health", timeout=30).json()["chat"] == "starting"
        page = httpx.get(server.url + "/", timeout=30)
        assert page.status_code == 503 and page.headers["retry-after"] == "1"
        assert "http-equiv=refresh" in page.text and "starting" in page.text
        assert httpx.get(server.url + "/embed/", timeout=30).status_code == 503
        inner = httpx.post(server.url + "/gradio_api/queue/join", json={}, timeout=30)
        assert inner.status_code == 503 and "starting" in inner.json()["error"]
        deadline = time.monotonic() + 120
        while httpx.get(server.url + "/api/health", timeout=30).json()["chat"] != "ready":
            assert time.monotonic() < deadline, "the chat pages did not follow in 120 s"
            time.sleep(0.2)
        for path in ("/", "/embed/"):
            page = httpx.get(server.url + path, timeout=30)
            assert page.status_code == 200 and "gradio" in page.text.lower()
        assert ask(server, {"question": Q, "k": 1}).json()["answerable"] is True
