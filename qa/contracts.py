"""Write docs/CONTRACTS.md from the code itself, so the contracts cannot drift.

    python -m qa.contracts            # rewrite docs/CONTRACTS.md
    python -m qa.contracts --check    # exit 1 when the file is stale (a test runs this)

It reads, without running anything expensive: each module's public functions and classes
(signature and the first line of the docstring), the `qa` command's help, the JSON schema
of an answer (from the dataclasses in ``qa.types``) and the HTTP API's request schema.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import os
import sys
import types
import typing
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "CONTRACTS.md"

# The pipeline in reading order; every other module of qa/ follows, by name.
PIPELINE = (
    "corpus", "chunk", "offline_model", "embed", "embed_worker", "atomic", "store",
    "question", "retrieve", "lexicon", "evidence", "answer", "followup", "chat", "engine",
    "settings", "errors", "types",
)
NOT_DOCUMENTED = {"__init__", "__main__", "contracts"}


def modules() -> list[str]:
    """Every module of the package: the pipeline's first, then the rest by name."""
    present = {p.stem for p in Path(__file__).parent.glob("*.py")} - NOT_DOCUMENTED
    return [m for m in PIPELINE if m in present] + sorted(present - set(PIPELINE))


HEADER = """\
# Contracts (generated: do not edit)

Written by `python -m qa.contracts` from the code; `tests/test_contracts.py` fails when this
file is stale. Each stage is one module; data flows one way (see docs/ARCHITECTURE.md).
"""


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class _Plain:
    """An annotation written as a string, shown without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _plain(annotation: object) -> object:
    return _Plain(annotation) if isinstance(annotation, str) else annotation


def _signature(obj: object) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(…)"
    params = [p.replace(annotation=_plain(p.annotation)) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=_plain(sig.return_annotation)))


def _public_members(module: types.ModuleType) -> list[tuple[str, object]]:
    """Public functions and classes defined in the module itself, in source order."""
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            try:
                line = inspect.getsourcelines(obj)[1]
            except (OSError, TypeError):
                line = 0
            found.append((line, name, obj))
    return [(name, obj) for _, name, obj in sorted(found, key=lambda t: (t[0], t[1]))]


def _type_name(tp: object) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))


def _class_lines(name: str, cls: type) -> list[str]:
    lines = []
    if dataclasses.is_dataclass(cls):
        fields = ", ".join(f"{f.name}: {_type_name(f.type)}" for f in dataclasses.fields(cls))
        lines.append(f"@dataclass class {name}({fields})")
    else:
        bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
        lines.append(f"class {name}({bases})" if bases else f"class {name}")
    doc = _first_line(cls)
    if doc and not doc.startswith(f"{name}("):  # skip the docstring dataclass writes itself
        lines.append(f"    # {doc}")
    for attr, member in vars(cls).items():
        if attr.startswith("_") and attr != "__init__":
            continue
        if isinstance(member, classmethod | staticmethod):
            func = member.__func__
            kind = "@classmethod " if isinstance(member, classmethod) else "@staticmethod "
        elif isinstance(member, property):
            func, kind = member.fget, "@property "
        elif inspect.isfunction(member):
            func, kind = member, ""
        else:
            continue
        if attr == "__init__" and dataclasses.is_dataclass(cls):
            continue
        lines.append(f"    {kind}def {attr}{_signature(func)}")
        doc = _first_line(func)
        if doc and attr != "__init__":
            lines.append(f"        # {doc}")
    return lines


def module_section(short: str) -> str | None:
    try:
        module = importlib.import_module(f"qa.{short}")
    except ImportError:
        return None
    lines = [f"## qa/{short}.py", ""]
    doc = _first_line(module)
    if doc:
        lines += [doc, ""]
    body: list[str] = []
    for name, obj in _public_members(module):
        if inspect.isclass(obj):
            body += _class_lines(name, obj)
        else:
            body.append(f"def {name}{_signature(obj)}")
            first = _first_line(obj)
            if first:
                body.append(f"    # {first}")
    if not body:
        return None
    return "\n".join([*lines, "```python", *body, "```", ""])


def cli_section() -> str:
    from qa import cli

    top = cli.parser()
    parts = ["## The `qa` command", "", "```text", top.format_help().rstrip(), "```", ""]
    for action in top._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += [f"### `qa {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def _json_type(tp: object) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is type(None):
        return {"type": "null"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_json_type(a) for a in args]}
    if origin in (tuple, list):
        item = args[0] if args else object
        return {"type": "array", "items": _json_type(item)}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(tp):
        return {"$ref": f"#/$defs/{tp.__name__}"}
    return {}


def answer_schema() -> dict:
    """The JSON of ``qa ask --json`` / POST /api/ask, from the dataclasses behind it."""
    from qa import types as qa_types

    defs: dict[str, dict] = {}

    def add(cls: type) -> None:
        hints = typing.get_type_hints(cls)
        props = {}
        for f in dataclasses.fields(cls):
            props[f.name] = _json_type(hints[f.name])
            for inner in _dataclasses_in(hints[f.name]):
                if inner.__name__ not in defs:
                    defs[inner.__name__] = {}
                    add(inner)
        defs[cls.__name__] = {"type": "object", "properties": props}

    add(qa_types.Answer)
    root = defs.pop("Answer")
    return {"title": "Answer", **root, "$defs": dict(sorted(defs.items()))}


def _dataclasses_in(tp: object) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]  # type: ignore[list-item]
    return [c for a in typing.get_args(tp) for c in _dataclasses_in(a)]


def api_section() -> str:
    from qa import web

    lines = ["## HTTP API", ""]
    for name in ("AskRequest",):
        model = getattr(web, name, None)
        if model is not None:
            schema = model.model_json_schema()
            lines += [f"`POST /api/ask` body ({name}):", "", "```json",
                      json.dumps(schema, ensure_ascii=False, indent=2), "```", ""]
    lines += [
        "The response is the answer JSON below; errors are `{\"error\": \"…\"}` with a 4xx status.",
        "`GET /api/health` reports the index, the model and their state.",
        "",
    ]
    return "\n".join(lines)


def render() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: fix the width
    sections = [HEADER]
    sections += [s for s in (module_section(m) for m in modules()) if s]
    sections.append(cli_section())
    sections.append(api_section())
    sections += [
        "## Answer JSON (`qa ask --json`, `POST /api/ask`)",
        "",
        "```json",
        json.dumps(answer_schema(), ensure_ascii=False, indent=2),
        "```",
        "",
    ]
    # defaults that are paths inside the checkout must not depend on where it lies
    return "\n".join(sections).replace(str(DOC.parent.parent), "<project>")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qa.contracts", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/CONTRACTS.md is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run `python -m qa.contracts` and commit it", file=sys.stderr)
            return 1
        print(f"{DOC} is up to date")
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
