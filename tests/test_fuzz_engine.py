"""Anything a user can type reaches the native embedding engine: fuzz it in child processes.

A native crash (heap overflow, abort) must fail a test, not kill the test run, so the
real code runs in subprocesses: one long-lived child answering ``Engine.ask`` for
questions sent as JSON lines (JSON can carry lone surrogates), and ``qa ask --batch``.
Every answer must be either an answer or a one-line BadQuestion/QAError message.

CI runs a bounded number of examples; ``make fuzz`` runs a long campaign
(env QA_FUZZ_EXAMPLES) and prints how many inputs were tried and how many crashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.engine import MAX_QUESTION_CHARS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("QA_FUZZ_EXAMPLES", "0") or 0)
CAMPAIGN = EXAMPLES > 0
SETTINGS = settings(
    max_examples=EXAMPLES or 60,
    deadline=None,
    derandomize=not CAMPAIGN,  # CI: the same inputs every run; a campaign explores
    suppress_health_check=list(HealthCheck),
    database=None,
)
TRIED = {"inputs": 0, "crashes": 0}

# Every code point that NFKC turns into more than one (U+FDFA → 18 of them, ...).
EXPANDING = [chr(c) for c in range(0x110000)
             if not 0xD800 <= c <= 0xDFFF and len(unicodedata.normalize("NFKC", chr(c))) > 1]
COMBINING = [chr(c) for c in range(0x300, 0x370)] + ["\u20dd", "\u0e49", "\u302a"]
BIDI = list("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LIMITS = [1, 2, 509, 510, 511, 512, 513, 514, 1000, MAX_QUESTION_CHARS - 1,
          MAX_QUESTION_CHARS, MAX_QUESTION_CHARS + 1, 4 * MAX_QUESTION_CHARS - 1,
          4 * MAX_QUESTION_CHARS, 4 * MAX_QUESTION_CHARS + 1]

any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)  # every plane, surrogates
special = st.sampled_from(EXPANDING + COMBINING + BIDI + ["\x00", "\ud800", "\udfff", " "])
runs = st.builds(lambda c, n: c * n, st.one_of(special, any_char, st.sampled_from("智a ")),
                 st.sampled_from(LIMITS) | st.integers(1, 3 * MAX_QUESTION_CHARS))
mixed = st.text(st.one_of(special, any_char, st.sampled_from("智慧城市重庆 ")), max_size=300)
expanded_runs = st.lists(st.sampled_from(EXPANDING), min_size=1, max_size=60).map("".join).map(
    lambda s: s * (1 + MAX_QUESTION_CHARS // max(1, len(s)))
)
questions = st.one_of(mixed, runs, expanded_runs,
                      st.builds(lambda a, b: a + b, mixed, runs))

CHILD = r"""
import json, sys
from qa.engine import Engine
from qa.errors import QAError
engine = Engine.open(progress=lambda _m: None)
print("ready", flush=True)
for line in sys.stdin:
    question = json.loads(line)
    try:
        answer = engine.ask(question).to_dict()
        reply = {"answer": answer["answer"], "citations": len(answer["citations"])}
    except QAError as exc:
        reply = {"error": str(exc), "kind": type(exc).__name__}
    print(json.dumps(reply), flush=True)
"""


class Child:
    """One ``Engine.ask`` process; ``ask`` fails the test, showing the input, if it dies."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, encoding="utf-8",
        )
        assert self.proc.stdout.readline().strip() == "ready", self._tail()

    def _tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def ask(self, question: str) -> dict:
        TRIED["inputs"] += 1
        if CAMPAIGN and TRIED["inputs"] % 250 == 0:  # a long campaign shows it is alive
            print(f"fuzz: {TRIED['inputs']} inputs tried, {TRIED['crashes']} crashes",
                  flush=True)
        try:
            self.proc.stdin.write(json.dumps(question) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            TRIED["crashes"] += 1
            code = self.proc.wait(10)
            pytest.fail(f"the engine process died (rc {code}) on {question!r:.300}\n"
                        f"{self._tail()}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def child() -> Iterator[Child]:
    proc = Child()
    yield proc
    proc.close()
    print(f"\nfuzz: {TRIED['inputs']} inputs tried, {TRIED['crashes']} crashes")


def _check(reply: dict) -> None:
    if "error" in reply:
        assert reply["kind"] == "BadQuestion", reply
        assert reply["error"] and "\n" not in reply["error"], reply
    else:
        assert isinstance(reply["answer"], str) and reply["citations"] >= 0


@pytest.mark.parametrize("question", [
    "\ufdfa" * 16, "\ufdfa" * MAX_QUESTION_CHARS, "\ufdfb" * 1000, "\u3316" * 2000,
    "a" * (4 * MAX_QUESTION_CHARS), "智" * MAX_QUESTION_CHARS, "智" * (MAX_QUESTION_CHARS + 1),
    "\u0301" * 5000, "\u202e智慧城市\u202c", "\ud800", "x\x00y", "𝕏" * 2000, "\U0010ffff" * 3,
])
def test_known_hard_questions(child: Child, question: str) -> None:
    _check(child.ask(question))


@SETTINGS
@given(question=questions)
def test_engine_ask_never_dies(child: Child, question: str) -> None:
    _check(child.ask(question))


def test_every_nfkc_expanding_character_at_once(child: Child) -> None:
    text = "".join(EXPANDING)
    for start in range(0, len(text), MAX_QUESTION_CHARS):
        _check(child.ask(text[start : start + MAX_QUESTION_CHARS]))


# ------------------------------------------------------------------------- the CLI


def _qa(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", errors="replace", input=stdin,
                          timeout=600)


@pytest.mark.parametrize("question", ["\ufdfa" * 16, "\ufdfa" * MAX_QUESTION_CHARS,
                                      "a" * (MAX_QUESTION_CHARS + 1)])
def test_qa_ask_argument(question: str) -> None:
    run = _qa("ask", question)
    assert run.returncode in (0, 2), (run.returncode, run.stderr[-2000:])
    if run.returncode == 2:
        assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1


@settings(SETTINGS, max_examples=max(3, EXAMPLES // 50))
@given(batch=st.lists(questions, min_size=1, max_size=12))
def test_qa_ask_batch_never_dies(batch: list[str], tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("batch") / "questions.jsonl"
    lines = [json.dumps({"question": q}) for q in batch]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    TRIED["inputs"] += len(batch)
    run = _qa("ask", "--batch", str(path))
    if run.returncode not in (0, 1):
        TRIED["crashes"] += 1
    assert run.returncode in (0, 1), (run.returncode, run.stderr[-2000:], batch)
    replies = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(replies) == len(batch)
    for reply in replies:
        assert "\n" not in reply.get("error", "")
