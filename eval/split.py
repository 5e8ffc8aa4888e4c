"""The fixed dev/test split of the gold questions, recorded in the data itself.

    python eval/split.py [FILE ...]     # give a "split" to every item that has none (in place)

Thresholds and models may be tuned on ``dev`` only; ``test`` is reported and never tuned
on. The rule is stable: an item that already has a split keeps it, so adding questions
never moves old ones. New items are taken kind by kind in the order of the SHA-1 of their
id and each goes to whichever split is further below its share of that kind (dev first on
a tie), so both splits hold every kind and the assignment does not depend on file order.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

SPLITS = ("dev", "test")
DEV_SHARE = 0.5


def id_hash(qid: str) -> str:
    """The order in which new items of one kind are assigned."""
    return hashlib.sha1(str(qid).encode("utf-8")).hexdigest()


def assign_splits(items: Iterable[dict], dev_share: float = DEV_SHARE) -> list[dict]:
    """Return the items (same order) with a "split" on each; existing splits are kept."""
    items = [dict(i) for i in items]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"dev": 0, "test": 0})
    new: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        kind = str(item.get("kind") or "")
        if item.get("split") in SPLITS:
            counts[kind][item["split"]] += 1
        else:
            new[kind].append(item)
    for kind, group in new.items():
        c = counts[kind]
        for item in sorted(group, key=lambda i: id_hash(i["id"])):
            total = c["dev"] + c["test"] + 1
            split = "dev" if c["dev"] < dev_share * total else "test"
            item["split"] = split
            c[split] += 1
    return items


def split_file(path: Path) -> int:
    """Give every item of a JSONL file a split; returns how many were new. Comments kept."""
    lines = path.read_text(encoding="utf-8").splitlines()
    objs = {n: json.loads(line) for n, line in enumerate(lines) if line.strip().startswith("{")}
    before = sum(o.get("split") in SPLITS for o in objs.values())
    done = assign_splits(objs.values())
    for n, obj in zip(objs, done, strict=True):
        lines[n] = json.dumps(obj, ensure_ascii=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return len(done) - before


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or [Path(__file__).resolve().parent / "gold.jsonl"]
    for path in paths:
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
        print(f"{path}: {split_file(path)} item(s) given a split")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
