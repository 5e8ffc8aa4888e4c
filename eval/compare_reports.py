"""Do two evaluation reports agree (e.g. the index folder vs Milvus)? Question by question.

    QA_INDEX=/tmp/f python eval/run_eval.py --configs hybrid --out /tmp/eval-faiss
    QA_STORE=/tmp/qa.db python eval/run_eval.py --configs hybrid --out /tmp/eval-milvus
    python eval/compare_reports.py /tmp/eval-faiss/report.json /tmp/eval-milvus/report.json

Every field of report.json is compared except timings and where the index lives: text,
rows, verdicts and counts must be equal, numbers within --tolerance (float32 sums in two
engines differ in the last digits). Prints the differences and the largest numeric gap;
exits 1 when they disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IGNORED = ("index", "created", "store")  # where and when, not what


def differences(a: object, b: object, tolerance: float, path: str = "") -> tuple[list, float]:
    """(differing fields, largest numeric gap among the fields that agree)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out, gap = [], 0.0
        for key in sorted(set(a) | set(b)):
            if key in IGNORED or "latency" in key or key.endswith("_ms"):
                continue
            found, g = differences(a.get(key), b.get(key), tolerance, f"{path}.{key}")
            out += found
            gap = max(gap, g)
        return out, gap
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out, gap = [], 0.0
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found, g = differences(x, y, tolerance, f"{path}[{i}]")
            out += found
            gap = max(gap, g)
        return out, gap
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        gap = abs(float(a) - float(b))
        return ([(path, a, b)] if gap > tolerance else []), (gap if gap <= tolerance else 0.0)
    return ([] if a == b else [(path, a, b)]), 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args(argv)
    a, b = (json.loads(p.read_text("utf-8")) for p in (args.first, args.second))
    found, gap = differences(a, b, args.tolerance)
    for path, x, y in found[:50]:
        print(f"differs {path}: {str(x)[:120]!s} | {str(y)[:120]!s}")
    print(f"{len(found)} difference(s); largest numeric gap within tolerance {gap:.2g}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
