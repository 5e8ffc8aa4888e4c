"""Writes the evaluation's report.json, report.md and bar chart (kept apart from the metrics)."""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import (
    MULTI_SPEAKER_DEPTH,
    TABLE_COLUMNS,
    TARGETS,
    describe_returned,
    fmt,
    format_markdown_table,
    format_table,
    meets,
)

CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)
CHART_METRICS = [key for key, _ in TABLE_COLUMNS]


def failure_lines(questions: list[dict]) -> list[str]:
    """One block per failed question: what was expected and what came back instead."""
    lines = []
    for q in questions:
        if not q["failures"]:
            continue
        lines.append(f"{q['id']} {q['question']}")
        lines.append(f"    why: {'; '.join(q['failures'])}")
        if q.get("expected"):
            lines.append(f"    expected: {q['expected']}")
        got = describe_returned(q["returned"])
        if q["answered"] is False:
            lines.append("    got: abstained" + (" (with citations below)" if got else ""))
        lines.extend(f"    got {g}" for g in got)
        if not got and q["answered"] is not False:
            lines.append("    got: no citations")
    return lines


def write_json(report: dict, out_dir: Path) -> Path:
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def _split_results(report: dict, split: str) -> dict[str, dict]:
    return {name: c[split] for name, c in report["configs"].items() if c.get(split)}


def _generated_line(report: dict) -> list[str]:
    lines = []
    for name, c in report["configs"].items():
        gen = c.get("generated")
        if not gen:
            continue
        parts = [
            f"{split} {gen[split]['unanswerable_abstained_n']}/{gen[split]['n_unanswerable']}"
            for split in ("dev", "test")
            if gen.get(split) and gen[split]["n_unanswerable"]
        ]
        rate = fmt(gen["all"]["unanswerable_abstained"])
        lines.append(f"{name}: refused {rate} ({', '.join(parts)})")
    return lines


def _target_lines(report: dict) -> list[str]:
    figures = report["targets"]["figures"]
    lines = []
    for key, (op, goal) in TARGETS.items():
        value = figures.get(key)
        status = {None: "not measured", True: "met", False: "MISSED"}[meets(key, value)]
        lines.append(f"{key} {fmt(value)} (target {op} {goal:.2f}): {status}")
    return lines


def _kind_lines(report: dict) -> list[str]:
    c = report["configs"][report["default"]]
    lines = []
    for kind, v in c["by_kind"].items():
        if "hit@1" in v:
            lines.append(f"{kind:<20} n={v['n']:<4} hit@1 {fmt(v['hit@1'])}")
        else:
            lines.append(f"{kind:<20} n={v['n']:<4} refused {fmt(v['refused'])}")
    return lines


def summary_lines(report: dict) -> list[str]:
    """What run_eval prints: tables per split, gap, generated negatives, targets, failures."""
    default = report["default"]
    c = report["configs"][default]
    out = []
    for split in ("test", "dev"):
        n = report["n_split"][split]
        table = format_table(_split_results(report, split))
        out += [f"{split.upper()} split ({n} questions)", table, ""]
    out.append(f"dev − test hit@1 ({default}): {fmt(c['gap_hit@1'])}")
    folds = ", ".join(fmt(v) for v in c["folds_hit@1"])
    out.append(f"hit@1 on {len(c['folds_hit@1'])} hash folds of all questions ({default}): {folds}")
    gen = _generated_line(report)
    if gen:
        out += ["", f"generated unanswerable questions ({report['n_generated']}):", *gen]
    out += ["", f"by kind ({default}, all questions):", *_kind_lines(report)]
    out += ["", "targets (issue #13, test split):", *_target_lines(report)]
    for split in ("test", "dev"):
        fails = failure_lines([q for q in c["questions"] if q["split"] == split])
        out += ["", f"failed questions, {split} split ({default}): {'none' if not fails else ''}"]
        out += fails
    gen_failed = c.get("generated_failed") or []
    if gen_failed:
        out += ["", f"generated questions answered ({default}): {len(gen_failed)}"]
        out += [f"  {q['id']} {q['question']}" for q in gen_failed[:40]]
        if len(gen_failed) > 40:
            out.append(f"  … and {len(gen_failed) - 40} more (report.json)")
    for name, other in report["configs"].items():
        if name != default:
            ids = [q["id"] for q in other["questions"] if q["failures"]]
            out.append(f"{name}: {len(ids)} failed" + (f": {' '.join(ids)}" if ids else ""))
    if report.get("gold_problems"):
        out += ["", f"skipped {len(report['gold_problems'])} gold line(s):"]
        out += [f"  {p}" for p in report["gold_problems"]]
    return out


DEFINITIONS = (
    "hit@k / MRR: rank of the first citation containing an expected phrase "
    "(whitespace-insensitive; an abstention counts as a miss). spk@1: the first citation's "
    "speaker is one of the gold speakers; for several-expert questions, the share of the gold "
    f"speakers among the first {MULTI_SPEAKER_DEPTH} citations. sec@1: the first citation's "
    "section path. hl@1 (highlight@1): the first citation's highlighted sentence holds an "
    "expected phrase. zh@1 / en@1: hit@1 of Chinese / English questions (mixed ones apart). "
    "Abstention: unanswerable questions refused, answerable questions wrongly refused. "
    "The naive pipeline has no speakers, sections, highlight or abstention, so only its "
    "hit/MRR/latency columns count. The dev split is for tuning; the test split is never tuned on."
)


def write_markdown(report: dict, out_dir: Path, chart_name: str | None) -> Path:
    """A human-readable report: tables per split, gap, generated negatives, targets, failures."""
    default = report["default"]
    c = report["configs"][default]
    n_split = report["n_split"]
    md = [
        "# Retrieval evaluation",
        "",
        f"Gold: `{report['gold']}` ({report['n_questions']} questions, "
        f"{report['n_unanswerable']} unanswerable; dev {n_split['dev']}, test {n_split['test']}) · "
        f"generated negatives: {report['n_generated']} · k = {report['k']} · "
        f"model: `{report['model']}` · default configuration: **{default}**",
        "",
    ]
    for split in ("test", "dev"):
        md += [f"## {split} split", "", format_markdown_table(_split_results(report, split)), ""]
    md += [
        f"dev − test hit@1 ({default}): **{fmt(c['gap_hit@1'])}** · hit@1 on hash folds: "
        + ", ".join(fmt(v) for v in c["folds_hit@1"]),
        "",
        DEFINITIONS,
        "",
    ]
    if chart_name:
        md += [f"![evaluation]({chart_name})", ""]
    md += ["## Generated unanswerable questions", ""]
    md += [f"- {line}" for line in _generated_line(report)] or ["- not run"]
    md += ["", "## Targets (issue #13, test split)", ""]
    md += [f"- {line}" for line in _target_lines(report)]
    md += ["", f"## By kind ({default}, all questions)", "", "```", *_kind_lines(report), "```"]
    for split in ("test", "dev"):
        fails = failure_lines([q for q in c["questions"] if q["split"] == split])
        md += ["", f"## Failed questions, {split} split ({default})", ""]
        md += ["```", *fails, "```"] if fails else ["None."]
    gen_failed = c.get("generated_failed") or []
    md += ["", f"## Generated questions answered ({default}): {len(gen_failed)}", ""]
    md += [f"- {q['id']} {q['question']}" for q in gen_failed]
    others = [name for name in report["configs"] if name != default]
    if others:
        md += ["", "## Failed questions (other configurations)", ""]
    for name in others:
        ids = [q["id"] for q in report["configs"][name]["questions"] if q["failures"]]
        md.append(f"- {name}: {len(ids)} failed" + (f": {' '.join(ids)}" if ids else ""))
    if report.get("gold_problems"):
        md += ["", "## Skipped gold lines", ""]
        md += [f"- {p}" for p in report["gold_problems"]]
    path = out_dir / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def _register_cjk_font() -> str | None:
    """Use a CJK font when one is installed so Chinese labels render instead of boxes."""
    from matplotlib import font_manager, rcParams

    for font in CJK_FONTS:
        if Path(font).exists():
            font_manager.fontManager.addfont(font)
            name = font_manager.FontProperties(fname=font).get_name()
            rcParams["font.sans-serif"] = [name, *rcParams["font.sans-serif"]]
            rcParams["font.family"] = "sans-serif"
            rcParams["axes.unicode_minus"] = False
            return name
    return None


def _bars(ax, groups: dict[str, dict], keys: list[str], colors: list[str]) -> None:
    """Grouped bars: one group per metric key, one bar per entry of ``groups``."""
    width = 0.8 / max(len(groups), 1)
    for i, (name, metrics) in enumerate(groups.items()):
        xs, ys = [], []
        for j, key in enumerate(keys):
            value = metrics.get(key)
            if value is not None:
                xs.append(j + (i - (len(groups) - 1) / 2) * width)
                ys.append(value)
        bars = ax.bar(xs, ys, width, label=name, color=colors[i % len(colors)])
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=6, padding=1, rotation=90)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("score")
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, ncols=len(groups), frameon=False
    )


def write_chart(report: dict, out_dir: Path) -> Path:
    """Test split per configuration (top); the default's dev vs test, with the refusals of
    hand-written and generated unanswerables (bottom left); latency (bottom right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _register_cjk_font()
    default = report["default"]
    names = list(report["configs"])
    fig = plt.figure(figsize=(13, 9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1])
    ax = top.subplots()
    colors = ["#2b6cb0", "#dd6b20", "#38a169", "#718096", "#805ad5", "#d53f8c"]
    keys = [*CHART_METRICS, "unanswerable_abstained"]
    labels = [*(label for _, label in TABLE_COLUMNS), "refused"]
    _bars(ax, _split_results(report, "test"), keys, colors)
    ax.set_xticks(range(len(keys)), labels)
    ax.axhline(0.9, color="#a0aec0", linewidth=0.8, linestyle="--")
    n_test = report["n_split"]["test"]
    ax.set_title(f"智慧名城 QA 检索评测 · test split ({n_test} questions), k={report['k']}")
    split_ax, lat = bottom.subplots(1, 2, gridspec_kw={"width_ratios": [3.2, 1]})
    c = report["configs"][default]
    gen = c.get("generated") or {}
    groups = {}
    for split in ("dev", "test"):
        refused = (gen.get(split) or {}).get("unanswerable_abstained")
        groups[split] = {**c[split], "generated": refused}
    keys2 = [*keys, "generated"]
    _bars(split_ax, groups, keys2, ["#4299e1", "#c05621"])
    split_ax.set_xticks(range(len(keys2)), [*labels, "gen. refused"], fontsize=8)
    split_ax.set_title(f"{default}: dev vs test (gap hit@1 {fmt(c['gap_hit@1'])})")
    results = {name: c2["metrics"] for name, c2 in report["configs"].items()}
    p50 = [results[n].get("latency_p50_ms") or 0 for n in names]
    p95 = [results[n].get("latency_p95_ms") or 0 for n in names]
    pos = range(len(names))
    lat.bar([p - 0.2 for p in pos], p50, 0.4, label="p50", color="#4a5568")
    lat.bar([p + 0.2 for p in pos], p95, 0.4, label="p95", color="#a0aec0")
    lat.set_xticks(list(pos), names, rotation=30, ha="right")
    lat.set_ylabel("ms")
    lat.set_title("延迟 latency")
    lat.set_ylim(0, max([*p95, 1.0]) * 1.25)
    lat.legend(fontsize=8, loc="upper left", ncols=2)
    path = out_dir / "eval.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metrics_line(metrics: dict) -> dict:
    """The final stdout JSON: the default configuration's metrics, rounded."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


__all__ = ["failure_lines", "fmt", "metrics_line", "write_chart", "write_json", "write_markdown"]
