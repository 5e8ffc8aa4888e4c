"""Writes the evaluation's report.json, report.md and bar chart (kept apart from the metrics)."""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import TABLE_COLUMNS, describe_returned, fmt, format_markdown_table, missed_targets

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


def write_markdown(report: dict, out_dir: Path, chart_name: str | None) -> Path:
    """A human-readable report: table, targets, failures, skipped gold lines."""
    default = report["default"]
    results = {name: c["metrics"] for name, c in report["configs"].items()}
    md = [
        "# Retrieval evaluation",
        "",
        f"Gold: `{report['gold']}` ({report['n_questions']} questions, "
        f"{report['n_unanswerable']} unanswerable) · k = {report['k']} · "
        f"model: `{report['model']}` · default configuration: **{default}**",
        "",
        format_markdown_table(results),
        "",
        "hit@k / MRR: rank of the first citation containing an expected phrase "
        "(whitespace-insensitive; an abstention counts as a miss). spk@1 / sec@1: the first "
        "citation's speaker / section path. Abstention: unanswerable questions abstained, "
        "answerable questions wrongly abstained. The naive pipeline has no speakers, sections "
        "or abstention, so only its hit/MRR/latency columns count.",
        "",
    ]
    if chart_name:
        md += [f"![configurations]({chart_name})", ""]
    missed = missed_targets(results[default]) if default in results else []
    md += ["## Targets (default configuration)", ""]
    md += [f"- missed: {m}" for m in missed] or ["- all met"]
    md += ["", f"## Failed questions ({default})", ""]
    fails = failure_lines(report["configs"][default]["questions"]) if default in results else []
    md += ["```", *fails, "```"] if fails else ["None."]
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


def write_chart(report: dict, out_dir: Path) -> Path:
    """Grouped bars of the quality metrics per configuration, plus latency on the side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _register_cjk_font()
    results = {name: c["metrics"] for name, c in report["configs"].items()}
    names = list(results)
    fig, (ax, lat) = plt.subplots(
        1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3.2, 1]}, layout="constrained"
    )
    width = 0.8 / max(len(names), 1)
    colors = ["#2b6cb0", "#dd6b20", "#38a169", "#718096", "#805ad5", "#d53f8c"]
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, key in enumerate(CHART_METRICS):
            value = results[name].get(key)
            if value is not None:
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(value)
        bars = ax.bar(xs, ys, width, label=name, color=colors[i % len(colors)])
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=6.5, padding=1)
    ax.set_xticks(range(len(CHART_METRICS)), [label for _, label in TABLE_COLUMNS])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.axhline(0.9, color="#a0aec0", linewidth=0.8, linestyle="--")
    ax.set_title(f"智慧名城 QA 检索评测 · {report['n_questions']} questions, k={report['k']}")
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.07), fontsize=8, ncols=len(names), frameon=False
    )
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
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def metrics_line(metrics: dict) -> dict:
    """The final stdout JSON: the default configuration's metrics, rounded."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


__all__ = ["failure_lines", "fmt", "metrics_line", "write_chart", "write_json", "write_markdown"]
