"""After the corpus watcher swaps in a rebuilt index, the front ends list what it has now.

A new interview with a new expert must be askable by name from the API schema and pickable
in the chat page's speaker list without restarting the server.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from fastapi.testclient import TestClient

from qa.engine import Engine
from qa.ui import build_ui
from qa.web import create_app

FIRST = """# 城市物流怎样更聪明
## 垃圾清运
主持人：城市垃圾清运有哪些新办法？
张明远（物流研究员）：垃圾清运要靠数据调度。我们给每辆清运车装上定位设备，按照小区垃圾桶的满溢情况安排路线，空跑的车次少了一半。
"""

SECOND = """# 公交怎样更准点
## 公交调度
主持人：公交车为什么越来越准点了？
李慧（交通研究员）：公交调度中心接入了实时客流数据，高峰时段加密班次，平峰时段拉长间隔，乘客候车时间平均缩短了三分钟。
"""


@pytest.fixture()
def engine(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "logistics.md").write_text(FIRST, encoding="utf-8")
    return Engine.open(tmp_path / "corpus", tmp_path / "index", progress=lambda _m: None)


def _speaker_enum(client: TestClient) -> list[str]:
    schema = client.get("/openapi.json").json()
    options = schema["components"]["schemas"]["AskRequest"]["properties"]["speaker"]["anyOf"]
    return next(o["enum"] for o in options if o.get("type") == "string")


def _load_handler(demo, name: str):
    return next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name)


def test_the_api_schema_lists_a_speaker_added_by_a_rebuild(engine, tmp_path):
    client = TestClient(create_app(engine, feedback=tmp_path / "fb.jsonl", chat="later"))
    assert "张明远" in _speaker_enum(client) and "李慧" not in _speaker_enum(client)
    (tmp_path / "corpus" / "bus.md").write_text(SECOND, encoding="utf-8")
    assert engine.refresh(progress=lambda _m: None)
    assert {"张明远", "李慧"} <= set(_speaker_enum(client))
    r = client.post("/api/ask", json={"question": "李慧怎么看公交调度？", "speaker": "李慧"})
    assert r.status_code == 200 and r.json()["citations"][0]["speaker"] == "李慧"


def test_a_new_chat_page_lists_a_speaker_added_by_a_rebuild(engine, tmp_path):
    demo = build_ui(engine)
    current_filters = _load_handler(demo, "current_filters")
    speakers, _sections = current_filters()
    assert [v for _, v in speakers["choices"]] == ["", "张明远"]
    (tmp_path / "corpus" / "bus.md").write_text(SECOND, encoding="utf-8")
    assert engine.refresh(progress=lambda _m: None)
    speakers, sections = current_filters()
    assert {v for _, v in speakers["choices"]} == {"", "张明远", "李慧"}
    assert any("公交" in label for label, _ in sections["choices"])
