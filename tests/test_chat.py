"""Issue #12: every front end runs the same chat turn, so follow-ups behave the same.

After 卢阳春怎么看老年人？, 她还说了什么？ must bring passages not yet quoted, and
其他专家怎么看？ must leave 卢阳春 out — in `qa chat` (a real subprocess fed on stdin)
and in the JSON API (/api/chat on the real server). The web chat's handlers are tested
the same way in test_ui.py, and in a browser in test_browser.py.
"""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
from conftest import ROOT

FIRST, MORE, OTHERS = "卢阳春怎么看老年人？", "她还说了什么？", "其他专家怎么看？"


def _cli_turns(out: str) -> list[list[tuple[str, str]]]:
    """Per answer printed by `qa chat`: the (speaker line, source:start-end) of each citation."""
    turns = []
    for block in out.split("问> ")[1:]:
        cites = re.findall(r"^\[\d+\] (.+)\n(?:.*\n)*?    (\S+:\d+-\d+)  score", block, re.M)
        turns.append(cites)
    return turns


def test_cli_chat_followups_move_on() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qa", "chat"],
        input=f"{FIRST}\n{MORE}\n{OTHERS}\n\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, more, others = _cli_turns(proc.stdout)[:3]
    assert first and first[0][0].startswith("卢阳春")
    quoted = {src for _, src in first[:3]}
    assert more and all(who.startswith("卢阳春") for who, _ in more)
    assert not {src for _, src in more} & quoted, "她还说了什么 repeated what was shown"
    assert others and not any(who.startswith("卢阳春") for who, _ in others)
    assert "不含：卢阳春" in proc.stdout


def _chat(server, question: str, history: list[dict], **kw) -> dict:
    r = httpx.post(
        server.url + "/api/chat",
        json={"question": question, "history": history, **kw},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_api_chat_followups_move_on(app_server) -> None:
    first = _chat(app_server, FIRST, [], k=3)
    assert first["answer"]["citations"][0]["speaker"] == "卢阳春"
    assert first["followup"] == "new"
    history = [first["context"]]
    more = _chat(app_server, MORE, history, k=3)
    assert more["followup"] == "more" and more["speaker"] == "卢阳春"
    ids = {c["turn_id"] for c in more["answer"]["citations"]}
    assert ids and not ids & set(first["context"]["shown"])
    assert [c["rank"] for c in more["answer"]["citations"]] == list(range(1, len(ids) + 1))
    others = _chat(app_server, OTHERS, history + [more["context"]], k=3)
    assert others["exclude_speaker"] == "卢阳春"
    speakers = [c["speaker"] for c in others["answer"]["citations"]]
    assert speakers and "卢阳春" not in speakers


def test_api_chat_topic_switch_keeps_the_speaker(app_server) -> None:
    """那数字经济呢？ after a question to 卢阳春 asks her about the new topic."""
    first = _chat(app_server, FIRST, [], k=3)
    then = _chat(app_server, "那数字经济呢？", [first["context"]], k=3)
    assert then["followup"] == "topic_switch" and then["speaker"] == "卢阳春"
    assert then["question"] == "卢阳春怎么看数字经济？"
    cited = then["answer"]["citations"]
    assert cited and {c["speaker"] for c in cited} == {"卢阳春"}
    assert "数字" in cited[0]["highlight"] or "经济" in cited[0]["highlight"]


def test_api_chat_refuses_bad_history(app_server) -> None:
    url = app_server.url + "/api/chat"
    bad = [
        {"question": "q", "history": "not a list"},
        {"question": "q", "history": [{"question": 1}]},
        {"question": "q", "history": [{"question": "q", "shown": ["x" * 1000]}]},
        {"question": "q", "history": [{"question": "q"}] * 51},
        {"question": "q", "history": [{"question": "q", "evil": True}]},
    ]
    for body in bad:
        r = httpx.post(url, json=body, timeout=60)
        assert r.status_code == 422, (body, r.text)
        assert "error" in r.json()
    # a speaker we do not know, sent back as history, is simply not used
    ctx = {"question": FIRST, "speaker": "<b>nobody</b>", "cited_speaker": "nobody", "shown": []}
    r = httpx.post(url, json={"question": MORE, "history": [ctx]}, timeout=120)
    assert r.status_code == 200 and r.json()["speaker"] == "卢阳春"
