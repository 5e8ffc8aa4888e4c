"""The JSON API fuzzed on a real server subprocess: from its own OpenAPI schema
(schemathesis) and with arbitrary Unicode in every field (hypothesis).

A native crash or a 5xx fails the test; the server must still answer afterwards. The
server is this module's own instance, so a crash cannot take the session's down.
CI runs a bounded campaign (under a minute each); ``make fuzz-api`` a long one (env
QA_API_FUZZ_EXAMPLES, QA_API_FUZZ_SECONDS) and prints what was tried.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import AppServer, start_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_engine import BIDI, COMBINING, EXPANDING, questions

EXAMPLES = int(os.environ.get("QA_API_FUZZ_EXAMPLES", "0") or 0)
SECONDS = int(os.environ.get("QA_API_FUZZ_SECONDS", "0") or 0)
ST = Path(sys.executable).with_name("st")
SPEAKERS = ["蔡之兵", "卢阳春", "朱旭森", "王正攀", "孙金华"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[AppServer]:
    with start_app(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(fuzz_server, tmp_path) -> None:
    """Every documented check except "any schema-valid request is accepted": a question
    that is only spaces or control characters is valid JSON but a documented 400."""
    report = tmp_path / "st.ndjson"
    cmd = [
        str(ST),
        "run",
        f"{fuzz_server.url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(EXAMPLES or 25),
        "--max-time",
        str(SECONDS or 45),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--seed",
        "1" if not EXAMPLES else str(int.from_bytes(os.urandom(4), "big")),
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=(SECONDS or 45) + 120,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its .schemathesis cache stays out of the work tree
    )
    out = proc.stdout + proc.stderr
    generated = re.search(r"(\d+) generated", out)
    print(f"\nschemathesis: {generated.group(0) if generated else '?'}; exit {proc.returncode}")
    assert proc.returncode == 0, out[-4000:]
    assert generated and int(generated.group(1)) > 100
    assert fuzz_server.proc.poll() is None
    assert "500 Internal" not in fuzz_server.log.read_text(errors="replace")


names = st.sampled_from(SPEAKERS + ["", "卢阳", "卢阳春 ", "<b>x</b>"])
texts = st.text(st.sampled_from(EXPANDING[:500] + COMBINING + BIDI + list("智a \x00")), max_size=40)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=6,
)
contexts = st.fixed_dictionaries(
    {"question": questions},
    optional={
        "speaker": st.none() | names | texts,
        "cited_speaker": st.none() | names | texts,
        "shown": st.lists(texts, max_size=5),
    },
)
bodies = st.fixed_dictionaries(
    {"question": questions | anything},
    optional={
        "k": st.integers(-3, 25) | anything,
        "speaker": st.none() | names | texts | anything,
        "section": st.none() | texts | st.sampled_from(["因“智”而乐", "简介", "›"]),
        "history": st.lists(contexts, max_size=3) | anything,
    },
)
TRIED = {"requests": 0, "5xx": 0}


@settings(
    max_examples=EXAMPLES or 60,
    deadline=None,
    derandomize=not EXAMPLES,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(body=bodies, path=st.sampled_from(["/api/ask", "/api/chat"]))
def test_any_unicode_in_any_field_is_never_a_5xx(fuzz_server, body, path) -> None:
    if path == "/api/ask":
        body.pop("history", None)
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as a JSON client may send them
    raw = json.dumps(body, ensure_ascii=True, allow_nan=True).encode()
    r = httpx.post(
        fuzz_server.url + path,
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    TRIED["requests"] += 1
    TRIED["5xx"] += r.status_code >= 500
    assert r.status_code < 500, (r.status_code, r.text[:300], raw[:300])
    data = r.json()
    if r.status_code == 200:
        assert "answer" in data
    else:
        assert isinstance(data["error"], str) and "Traceback" not in data["error"]


def test_server_alive_after_fuzzing(fuzz_server) -> None:
    print(f"\nhypothesis API fuzz: {TRIED['requests']} requests, {TRIED['5xx']} 5xx")
    assert fuzz_server.proc.poll() is None
    assert httpx.get(fuzz_server.url + "/api/health", timeout=30).status_code == 200
    log = fuzz_server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
