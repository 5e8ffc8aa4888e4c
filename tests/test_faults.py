"""Faults in the index folder and the corpus: each ends in a rebuild, the old index served
(with a warning), or a one-line error naming the fix — never a traceback.

Runs the real code on the real corpus and model. One index is built once (the project's
``index/``, via the ``engine`` fixture) and copied into each test's temp folder; only the
tests whose outcome *is* a rebuild pay for one. Read-only and full disks are real mounts
(a read-only bind mount, a small tmpfs): chmod does not stop root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa import atomic, store
from qa.errors import IndexProblem

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "corpus" / "cqrb-smart-city-interview.txt"
OLD_PHRASE = "要加快开发语音"
NEW_WORDS = "方言识别和大字版界面"
NEW_PHRASE = f"要推广{NEW_WORDS}，加快开发语音"
QUESTION = "卢阳春认为老年人使用政务平台有什么困难？"


def qa(*args: str, env: dict | None = None, timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-m", "qa", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


def embedded_anything(stderr: str) -> bool:
    return "embedded " in stderr or "parsed " in stderr or "loading the sentence model" in stderr


@pytest.fixture(scope="module")
def built(engine) -> Path:
    """The project's index, built (or found fresh) by the shared engine fixture."""
    return Path(engine.index_dir)


@pytest.fixture
def index(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "work" / "index"
    shutil.copytree(built, target)
    return target


@pytest.fixture
def edited_corpus(tmp_path: Path) -> Path:
    """The corpus with one phrase rewritten: any index of the real corpus is stale for it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = PAGE.read_text("utf-8")
    assert text.count(OLD_PHRASE) == 1
    (corpus / PAGE.name).write_text(text.replace(OLD_PHRASE, NEW_PHRASE), "utf-8")
    return corpus


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}: {r.stderr.strip()}); "
                    "read-only and full-disk faults need root with CAP_SYS_ADMIN")


@pytest.fixture
def read_only(tmp_path: Path):
    """mount(src) → a read-only bind mount of ``src``; unmounted after the test."""
    mounted: list[Path] = []

    def mount(src: Path) -> Path:
        dst = tmp_path / f"ro{len(mounted)}"
        dst.mkdir()
        _mount("--bind", str(src), str(dst))
        mounted.append(dst)
        _mount("-o", "remount,bind,ro", str(dst))
        try:
            (dst / "probe").mkdir()
        except OSError:
            return dst
        pytest.skip("a read-only bind mount is still writable here")

    yield mount
    for dst in reversed(mounted):
        subprocess.run(["umount", str(dst)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path):
    """small_disk(kb) → a tmpfs of that size; unmounted after the test."""
    mounted: list[Path] = []

    def mount(kb: int) -> Path:
        dst = tmp_path / f"tmpfs{len(mounted)}"
        dst.mkdir()
        _mount("-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(dst))
        mounted.append(dst)
        return dst

    yield mount
    for dst in reversed(mounted):
        subprocess.run(["umount", str(dst)], check=False)


# ---------------------------------------------------------------------------------------
# every index file: truncated, corrupted, wrong-typed, deleted → corrupt, rebuilt


def _rewrite(index: Path, name: str, data: bytes) -> None:
    """Replace a file and fix its checksum in the manifest, so only the shape check can
    tell (a wrong-typed file written by some other tool, not a damaged one)."""
    (index / name).write_bytes(data)
    if name == store.MANIFEST:
        return  # the manifest has no checksum of its own
    manifest = json.loads((index / store.MANIFEST).read_text("utf-8"))
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (index / store.MANIFEST).write_text(json.dumps(manifest), "utf-8")


def _json_with(index: Path, name: str, change) -> bytes:
    value = json.loads((index / name).read_text("utf-8"))
    return json.dumps(change(value), ensure_ascii=False).encode()


def _npz_with(index: Path, **arrays) -> bytes:
    with np.load(index / store.BM25, allow_pickle=False) as npz:
        current = {k: npz[k] for k in npz.files}
    out = index.parent / "rewritten.npz"
    np.savez(out, **{**current, **arrays})
    data = out.read_bytes()
    out.unlink()
    return data


def _faiss_bytes(index_obj: faiss.Index) -> bytes:
    return faiss.serialize_index(index_obj).tobytes()


def _flat_l2(index: Path) -> faiss.Index:
    ip = faiss.read_index(str(index / store.VECTORS))
    l2 = faiss.IndexFlatL2(ip.d)
    l2.add(ip.reconstruct_n(0, ip.ntotal))
    return l2


WRONG_TYPED = {
    "manifest is a list": (store.MANIFEST, lambda ix: b"[1, 2, 3]"),
    "manifest files is a list": (
        store.MANIFEST,
        lambda ix: _json_with(ix, store.MANIFEST, lambda m: {**m, "files": []}),
    ),
    "manifest dimension is text": (
        store.MANIFEST,
        lambda ix: _json_with(ix, store.MANIFEST, lambda m: {**m, "dimension": "384"}),
    ),
    "manifest corpus hashes are numbers": (
        store.MANIFEST,
        lambda ix: _json_with(ix, store.MANIFEST, lambda m: {**m, "corpus": {"a.txt": 1}}),
    ),
    "passages are lists": (
        store.PASSAGES, lambda ix: _json_with(ix, store.PASSAGES, lambda ps: [[1, 2]] * len(ps))
    ),
    "passage id is text": (
        store.PASSAGES,
        lambda ix: _json_with(
            ix, store.PASSAGES, lambda ps: [{**p, "id": str(p["id"])} for p in ps]
        ),
    ),
    "passages is an object": (store.PASSAGES, lambda ix: b'{"id": 0}'),
    "turn section is text": (
        store.TURNS,
        lambda ix: _json_with(ix, store.TURNS, lambda ts: [{**t, "section": "x"} for t in ts]),
    ),
    "bm25 weights are text": (
        store.BM25, lambda ix: _npz_with(ix, data=np.array(["a", "b"]))
    ),
    "bm25 indptr too short": (
        store.BM25, lambda ix: _npz_with(ix, indptr=np.zeros(3, dtype=np.int32))
    ),
    "bm25 rows out of range": (
        store.BM25,
        lambda ix: _npz_with(ix, indices=np.full(len(np.load(ix / store.BM25)["indices"]),
                                                 10**6, dtype=np.int32)),
    ),
    "bm25 vocabulary not JSON": (
        store.BM25, lambda ix: _npz_with(ix, vocabulary_json=np.frombuffer(b"\xff[", np.uint8))
    ),
    "bm25 shape 2-D": (store.BM25, lambda ix: _npz_with(ix, shape=np.zeros((2, 2), np.int64))),
    "vectors use L2, not inner product": (store.VECTORS, lambda ix: _faiss_bytes(_flat_l2(ix))),
    "vectors of another dimension": (
        store.VECTORS, lambda ix: _faiss_bytes(faiss.IndexFlatIP(8))
    ),
}


@pytest.mark.parametrize("fault", sorted(WRONG_TYPED))
def test_a_wrong_typed_file_is_a_corrupt_index(index, fault):
    name, content = WRONG_TYPED[fault]
    _rewrite(index, name, content(index))
    with pytest.raises(IndexProblem) as exc:
        store.load_index(index)
    message = str(exc.value)
    assert "\n" not in message and "qa index" in message, message
    assert "corrupt" in message or "format" in message


@pytest.mark.parametrize("name", store.KNOWN_FILES)
@pytest.mark.parametrize("fault", ["truncated", "corrupted", "deleted"])
def test_a_damaged_file_is_never_trusted(built, index, name, fault):
    from qa.engine import passage_settings

    built_with = json.loads((built / store.MANIFEST).read_text("utf-8"))
    path = index / name
    data = path.read_bytes()
    if fault == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif fault == "corrupted":  # same size: only the checksum (or the parser) can tell
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 8])
                         + data[middle + 8 :])
    else:
        path.unlink()
    stale = store.stale_reason(index, built_with["corpus"], built_with["model"], passage_settings())
    with pytest.raises(IndexProblem) as exc:
        store.load_index(index)
    assert "\n" not in str(exc.value) and "qa index" in str(exc.value)
    assert stale is not None or "checksum" in str(exc.value)
    # the folder is still recognisably ours: it is rebuilt, not refused
    assert atomic.refusal(index, store.KNOWN_FILES) is None


def test_a_wrong_shaped_manifest_is_rebuilt_saying_why(index):
    """Issue #9.5: was `unexpected AttributeError: 'list' object has no attribute 'get'`."""
    (index / store.MANIFEST).write_text('[{"files": []}]', "utf-8")
    r = qa("ask", QUESTION, "--json", "--index", str(index))
    assert r.returncode == 0, r.stderr
    assert "manifest.json malformed" in r.stderr and "building the index" in r.stderr
    assert json.loads(r.stdout)["citations"][0]["speaker"] == "卢阳春"
    assert store.load_index(index).manifest["files"]


def test_a_deleted_manifest_is_rebuilt(index):
    """Issue #9.6: was 'is a non-empty folder that is not an index' after embedding it all."""
    (index / store.MANIFEST).unlink()
    r = qa("ask", QUESTION, "--json", "--index", str(index))
    assert r.returncode == 0, r.stderr
    assert "manifest.json missing" in r.stderr
    assert json.loads(r.stdout)["citations"][0]["speaker"] == "卢阳春"


def test_a_foreign_folder_is_refused_before_any_embedding(tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.docx").write_text("precious")
    (folder / "passages.json").write_text("[]")
    r = qa("ask", QUESTION, "--index", str(folder))
    line = one_error_line(r)
    assert "did not make" in line and "chapter1.docx" in line and "--index" in line
    assert not embedded_anything(r.stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.docx", "passages.json"]


@pytest.mark.parametrize("command", ["ask", "index"])
def test_an_index_path_that_is_a_file_is_refused_first(tmp_path, command):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    args = [command, QUESTION] if command == "ask" else [command]
    r = qa(*args, "--index", str(target))
    line = one_error_line(r)
    assert "is a file" in line and "--index" in line
    assert not embedded_anything(r.stderr)
    assert target.read_text() == "keep me"


# ---------------------------------------------------------------------------------------
# read-only and full disks


def test_read_only_fresh_index_is_served(index, read_only):
    ro = read_only(index.parent) / "index"
    r = qa("ask", QUESTION, "--json", "--index", str(ro))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    assert json.loads(r.stdout)["citations"][0]["speaker"] == "卢阳春"


def test_read_only_stale_index_is_served_with_a_warning(index, edited_corpus, read_only):
    """Issue #9.4: was `unexpected OSError: [Errno 30] Read-only file system` after
    embedding everything."""
    ro = read_only(index.parent) / "index"
    r = qa("ask", QUESTION, "--json", "--corpus", str(edited_corpus), "--index", str(ro))
    assert r.returncode == 0, r.stderr
    assert "warning: serving an out-of-date index (corpus changed" in r.stderr
    assert "read-only" in r.stderr and "Traceback" not in r.stderr
    assert "embedded " not in r.stderr  # decided before the work
    top = json.loads(r.stdout)["citations"][0]
    assert top["speaker"] == "卢阳春" and NEW_WORDS not in top["text"]


def test_read_only_stale_index_health_says_stale(engine, index, edited_corpus, read_only):
    from qa.engine import Engine

    ro = read_only(index.parent) / "index"
    served = Engine.open(edited_corpus, ro, progress=lambda _m: None)
    h = served.health()
    assert h["status"] == "stale"
    assert len(h["warnings"]) == 1 and "read-only" in h["warnings"][0]
    assert served.ask(QUESTION).citations  # still answering
    assert served.refresh(progress=lambda _m: None) is False  # a retry cannot write either
    assert served.health()["status"] == "stale"


def test_read_only_without_an_index_is_one_line_naming_the_fix(tmp_path, read_only):
    empty = tmp_path / "empty"
    empty.mkdir()
    ro = read_only(empty) / "index"
    r = qa("ask", QUESTION, "--index", str(ro))
    line = one_error_line(r)
    assert "read-only" in line and "writable --index" in line
    assert not embedded_anything(r.stderr)


def test_full_disk_keeps_the_old_index_and_serves_it(index, edited_corpus, small_disk):
    size = sum(p.stat().st_size for p in index.iterdir())
    disk = small_disk(size * 3 // 2 // 1024 + 64)  # room for the old index, not a second one
    target = disk / "index"
    shutil.copytree(index, target)
    before = (target / store.MANIFEST).read_bytes()
    r = qa("ask", QUESTION, "--json", "--corpus", str(edited_corpus), "--index", str(target))
    assert r.returncode == 0, r.stderr
    assert "warning: serving an out-of-date index" in r.stderr
    assert "No space left on device" in r.stderr and "free some space" in r.stderr
    assert (target / store.MANIFEST).read_bytes() == before
    store.load_index(target)  # intact
    assert sorted(p.name for p in disk.iterdir()) == ["index"]  # no half-written leftovers


# ---------------------------------------------------------------------------------------
# a build killed mid-way


def test_sigkill_mid_build_leaves_the_old_index_intact(index, edited_corpus):
    before = (index / store.MANIFEST).read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa", "index", "--corpus", str(edited_corpus),
         "--index", str(index)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    killed_while_building = False
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(".index.building-") for p in index.parent.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                killed_while_building = True
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if not killed_while_building:
        pytest.skip("the build finished before it could be killed")
    assert (index / store.MANIFEST).read_bytes() == before
    store.load_index(index)
    leftovers = [p for p in index.parent.iterdir() if p.name != "index"]
    assert leftovers  # the dead build's temp folder …
    atomic.recover(index)  # … is what the next build clears first
    assert [p.name for p in index.parent.iterdir()] == ["index"]
    assert (index / store.MANIFEST).read_bytes() == before


def test_a_swap_cut_between_its_renames_is_undone(index):
    """Killed after moving the old index aside, before moving the new one in."""
    before = (index / store.MANIFEST).read_bytes()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.rename(index, index.parent / f".index.old-{dead.pid}-abcd1234")
    (index.parent / f".index.building-{dead.pid}-x").mkdir()
    atomic.recover(index)
    assert [p.name for p in index.parent.iterdir()] == ["index"]
    assert (index / store.MANIFEST).read_bytes() == before


# ---------------------------------------------------------------------------------------
# the corpus edited while a server runs


def _squash(text: str) -> str:
    return "".join(text.split())


def test_corpus_edited_while_serving_is_rebuilt_and_swapped_in(built, tmp_path):
    """Issue #9.3: the server kept quoting text no longer in the file, health said ok."""
    import httpx
    from conftest import free_port

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    page = corpus / PAGE.name
    shutil.copy(PAGE, page)
    index = tmp_path / "index"
    shutil.copytree(built, index)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "QA_WATCH_SECONDS": "0.5"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--corpus", str(corpus),
             "--index", str(index), "--feedback", str(tmp_path / "feedback.jsonl")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )

    def health() -> dict:
        return httpx.get(url + "/api/health", timeout=10).json()

    def top_citation() -> dict:
        r = httpx.post(url + "/api/ask", json={"question": QUESTION, "k": 1}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["citations"][0]

    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                first = health()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
        assert first["status"] == "ok" and first["warnings"] == []
        before = top_citation()
        assert before["speaker"] == "卢阳春" and NEW_WORDS not in before["text"]

        page.write_text(PAGE.read_text("utf-8").replace(OLD_PHRASE, NEW_PHRASE), "utf-8")
        seen, answered_meanwhile = [], False
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            h = health()
            if not seen or seen[-1] != h["status"]:
                seen.append(h["status"])
            if h["status"] == "rebuilding" and not answered_meanwhile:
                assert NEW_WORDS not in top_citation()["text"]  # the old index answers
                answered_meanwhile = True
            if h["status"] == "ok" and h["built"] != first["built"]:
                break
            time.sleep(0.1)
        # ok (the edit not yet seen, < 0.5 s) → rebuilding (old index answering) → ok (new)
        assert seen[-2:] == ["rebuilding", "ok"] and answered_meanwhile, seen

        after = top_citation()
        assert after["speaker"] == "卢阳春" and NEW_WORDS in after["text"]
        quoted = page.read_text("utf-8")[after["start"] : after["end"]]
        assert _squash(after["text"]) == _squash(quoted)  # offsets point into the new file
        assert store.load_index(index).manifest["corpus"] != json.loads(
            (built / store.MANIFEST).read_text("utf-8"))["corpus"]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------------------------
# any manifest at all: a reason to rebuild, never a crash

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_MANIFEST_PATHS = [
    (), ("files",), ("files", "passages.json"), ("files", "passages.json", "bytes"),
    ("files", "vectors.faiss", "sha256"), ("corpus",), ("dense",), ("dense", "type"),
    ("dense", "ef_search"), ("keyword",), ("keyword", "tokenizer"), ("dimension",),
    ("model",), ("settings",), ("counts",), ("format_version",),
]


@pytest.fixture(scope="module")
def fuzz_index(built, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(built, target)
    return target


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(_MANIFEST_PATHS), value=_JSON)
def test_any_manifest_is_a_reason_to_rebuild_or_a_usable_index(built, fuzz_index, path, value):
    manifest = json.loads((built / store.MANIFEST).read_text("utf-8"))
    if path:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    else:
        manifest = value
    (fuzz_index / store.MANIFEST).write_text(json.dumps(manifest), "utf-8")
    reason = store.stale_reason(fuzz_index, manifest_corpus(built), manifest_model(built))
    assert reason is None or isinstance(reason, str)
    try:
        store.load_index(fuzz_index)
    except IndexProblem as exc:
        assert "\n" not in str(exc) and "qa index" in str(exc)


def manifest_corpus(index: Path) -> dict:
    return json.loads((index / store.MANIFEST).read_text("utf-8"))["corpus"]


def manifest_model(index: Path) -> str:
    return json.loads((index / store.MANIFEST).read_text("utf-8"))["model"]
