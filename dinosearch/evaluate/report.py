"""Evaluation result → REPORT_DIR/{report.json, report.md, report.png}, the terminal summary, app tables."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from dinosearch.core.lock import writing
from dinosearch.core.metrics import headline_k
from dinosearch.core.storage import remove_dir, replace_dir, write_json
from dinosearch.core.text import plot_text, table_cell

TABLE_METRICS = ("precision", "recall", "hit_rate", "map", "knn_accuracy")
METRIC_NAMES = {
    "precision": "precision",
    "recall": "recall (fraction of relevant)",
    "hit_rate": "hit rate (≥1 relevant)",
    "map": "mAP",
    "knn_accuracy": "kNN accuracy",
}
UNTRAINED_NOTE = (
    "**The backbone is randomly initialised (untrained)**: these numbers test the pipeline, not "
    "what DINOv2 features can do. Re-run with pretrained weights for meaningful results."
)


def write_report(
    result: dict[str, Any],
    meta: dict[str, Any],
    out_dir: str | Path,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write report.json (``meta`` + ``result`` + the job's ``config``), report.md and report.png
    as the folder ``out_dir``.

    The three are written in ``.OUT.tmp-PID`` and swapped in whole (``replace_dir``), under the
    folder's writer lock: a kill, a failing plot or a full disk leaves the previous report whole.
    """
    out = Path(out_dir)
    staged = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    record = {"meta": meta, "result": result, **({"config": config} if config else {})}
    with writing(out, "eval"):
        remove_dir(staged)
        staged.mkdir(parents=True)
        try:
            write_json(staged / "report.json", _no_nan(record))
            _write_text(staged / "report.md", markdown(result, meta))
            plot(result, meta, staged / "report.png")
            replace_dir(staged, out)
        finally:
            remove_dir(staged)  # gone already when swapped in
    return out


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _no_nan(x: Any) -> Any:
    """NaN → None, so report.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def _ci(s: dict[str, Any], signed: bool = False) -> str:
    if s.get("mean") is None or math.isnan(s["mean"]):  # None: read back from report.json
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(s['mean'])} [{fmt.format(s['lo'])}, {fmt.format(s['hi'])}]"


def _header(meta: dict[str, Any]) -> list[str]:
    lines = [
        f"# Retrieval report: {table_cell(meta.get('raw_name', 'raw'))} vs "
        f"{table_cell(meta.get('adapted_name', 'adapted'))}",
        "",
    ]
    if meta.get("random_init"):
        lines += [f"> {UNTRAINED_NOTE}", ""]
    for key in ("raw_index", "adapted_index"):
        if meta.get(key):
            v = meta[key]
            lines.append(f"- {key.replace('_', ' ')}: `{v.get('path')}` version {v.get('version')}")
    if meta.get("backbone"):
        b = meta["backbone"]
        lines.append(
            f"- backbone: `{b.get('fingerprint')}`"
            + (" (untrained)" if b.get("random_init") else "")
        )
    if meta.get("adapter"):
        lines.append(
            f"- adapter: `{meta['adapter'].get('fingerprint')}` from `{meta['adapter'].get('path')}`"
        )
    if meta.get("columns"):
        cols = ", ".join(f"{k} = {v}" for k, v in meta["columns"].items() if v)
        lines.append(f"- columns: {cols}")
    return lines + [""]


def _summary_table(overall: dict[str, Any], methods: list[str], ks: list[int]) -> list[str]:
    diffs = [m for m in overall if "-" in m]
    head = methods + [f"Δ {d.replace('-', ' − ')}" for d in diffs]
    lines = ["| metric | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for metric in TABLE_METRICS:
        for k in ks:
            key = f"{metric}@{k}"
            cells = [_ci(overall[m][key]) for m in methods] + [
                _ci(overall[d][key], True) for d in diffs
            ]
            lines.append(f"| {METRIC_NAMES[metric]}@{k} | " + " | ".join(cells) + " |")
    return lines


def verdict(s: dict[str, Any]) -> str:
    """A difference's interval → "better" (above 0), "worse" (below 0) or "not distinguishable"."""
    return "better" if s["lo"] > 0 else "worse" if s["hi"] < 0 else "not distinguishable"


def verdicts(overall: dict[str, Any], key: str) -> list[str]:
    """'adapted vs raw: precision@10 +0.048 [+0.026, +0.067] → **better**', one per comparison.

    The one wording of a verdict: the terminal, report.md and the app all show these lines.
    """
    lines = []
    for diff in (d for d in overall if d.startswith("adapted-")):
        s = overall[diff][key]
        if s.get("mean") is not None:
            lines.append(
                f"adapted vs {diff.split('-', 1)[1]}: {key} {_ci(s, True)} → **{verdict(s)}**"
            )
    return lines


def _verdict(overall: dict[str, Any], key: str) -> list[str]:
    return [f"- {line}" for line in verdicts(overall, key)]


def summary(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """What the terminal shows: header, verdicts, the main table and the confound warning."""
    lines = _main(result, meta)
    if "strata" in result:
        st, k = result["strata"], result["strata"]["k"]
        lines += ["", *_confound(result)]
        lines += [
            f"Within-stratum ({result.get('stratify_column')}) retrieval:",
            *_verdict(st["within"]["overall"], f"precision@{k}"),
        ]
    return "\n".join(lines)


def _main(result: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    ks, methods = result["ks"], result["methods"]
    k = headline_k(ks)
    groups = f", {result['query_groups']} groups" if result.get("query_groups") else ""
    return _header(meta) + [
        f"Protocol: **{result['protocol']}**, {result['queries']} queries{groups}, gallery "
        f"{result['gallery']}; {meta.get('exclusion', 'the query itself is excluded')}. "
        f"95% intervals: paired bootstrap over {meta.get('resample_unit', 'queries')}. "
        f"Chance precision: {result['chance_precision']:.3f}.",
        "",
        *_verdict(result["overall"], f"precision@{k}"),
        "",
        *_summary_table(result["overall"], methods, ks),
    ]


def markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """The human-readable report: header, verdict, main table, per-label and per-stratum tables."""
    methods = result["methods"]
    k = headline_k(result["ks"])
    lines = _main(result, meta) + [
        "",
        f"## Per label (precision@{k}, queries)",
        "",
        "| label | queries | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 2) + "|",
    ]
    first = result["per_label"][methods[0]]
    for label, entry in first.items():
        cells = [f"{result['per_label'][m][label][f'precision@{k}']:.3f}" for m in methods]
        lines.append(f"| {table_cell(label)} | {entry['queries']} | " + " | ".join(cells) + " |")
    if "strata" in result:
        lines += ["", *_strata_section(result, methods)]
    return "\n".join(lines) + "\n"


def _strata_section(result: dict[str, Any], methods: list[str]) -> list[str]:
    st = result["strata"]
    k = st["k"]
    lines = [
        f"## Per stratum ({result.get('stratify_column') or 'stratum'})",
        "",
        *_confound(result),
    ]
    lines += [
        "| stratum | queries | labels | chance | stratum-only | "
        + " | ".join(f"{m} P@{k} (same-stratum, within)" for m in methods)
        + " |",
        "|---" * (5 + len(methods)) + "|",
    ]
    for row in st["per_stratum"]:
        labels = ", ".join(f"{table_cell(a)} {b}" for a, b in row["label_queries"].items())
        cells = [
            f"{v[f'precision@{k}']:.2f} ({v[f'same_stratum@{k}']:.2f}, "
            f"{v[f'within_precision@{k}']:.2f})"
            for v in (row["methods"][m] for m in methods)
        ]
        lines.append(
            f"| {table_cell(row['stratum'])} | {row['queries']} | {labels} | {row['chance_precision']:.2f} | "
            f"{row['source_only_chance']:.2f} | " + " | ".join(cells) + " |"
        )
    within = st["within"]["overall"]
    lines += [
        "",
        f"Within-stratum retrieval (gallery restricted to the query's stratum; "
        f"{st['within']['queries_without_relevant']} queries have no relevant item there):",
        "",
        *_verdict(within, f"precision@{k}"),
        "",
        *_summary_table(within, methods, [k]),
    ]
    return lines


def _confound(result: dict[str, Any]) -> list[str]:
    st = result["strata"]
    if st["source_only_chance"] <= 1.5 * result["chance_precision"]:
        return []
    return [
        f"> **Labels are confounded with {result.get('stratify_column') or 'the strata'}.** "
        f"Picking at random among the query's own stratum already gives precision "
        f"{st['source_only_chance']:.3f} (chance {result['chance_precision']:.3f}). A model can "
        "score well by recognising the stratum; read the within-stratum numbers, where the gallery "
        "is the query's own stratum.",
        "",
    ]


def report_table(result: dict[str, Any]) -> pd.DataFrame:
    """Rows metric@k, columns methods then 'Δ adapted − X', cells 'mean [lo, hi]'."""
    overall, methods = result["overall"], result["methods"]
    diffs = [f"adapted-{m}" for m in methods if f"adapted-{m}" in overall]
    names = {**{m: m for m in methods}, **{d: "Δ " + d.replace("-", " − ") for d in diffs}}
    rows = {
        f"{METRIC_NAMES[metric]}@{k}": {
            names[m]: _ci(overall[m][f"{metric}@{k}"], m in diffs) for m in methods + diffs
        }
        for metric in TABLE_METRICS
        for k in result["ks"]
        if f"{metric}@{k}" in overall[methods[0]]
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def report_curve(result: dict[str, Any], metric: str = "precision") -> pd.DataFrame:
    """(ks, methods) means of ``metric``@k, for a line chart."""
    overall = result["overall"]
    return pd.DataFrame(
        {m: [overall[m][f"{metric}@{k}"]["mean"] for k in result["ks"]] for m in result["methods"]},
        index=pd.Index(result["ks"], name="k"),
    )


def plot(result: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    """Recall@k and precision@k curves with 95% bands, and per-label precision bars, in one PNG.

    Labels and names are drawn as typed (no mathtext) and cut to ``MAX_SHOWN`` characters first.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.usetex": False, "text.parse_math": False}):  # as typed
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.5]})
        try:
            _plot_curves(axes[:2], result)
            _plot_per_label(axes[2], result)
            title = (
                f"{plot_text(meta.get('raw_name', 'raw'))} vs "
                f"{plot_text(meta.get('adapted_name', 'adapted'))}: "
                f"{result['protocol']}, {result['queries']} queries"
            )
            if meta.get("random_init"):
                title += "  —  UNTRAINED (randomly initialised) backbone"
            fig.suptitle(title, color="darkred" if meta.get("random_init") else "black")
            fig.tight_layout()
            fig.savefig(path, format="png", dpi=110)
        finally:
            plt.close(fig)


def _plot_curves(axes: Any, result: dict[str, Any]) -> None:
    ks, methods, overall = result["ks"], result["methods"], result["overall"]
    for ax, metric in zip(axes, ("recall", "precision"), strict=True):
        for m in methods:
            s = [overall[m][f"{metric}@{k}"] for k in ks]
            line = ax.plot(ks, [x["mean"] for x in s], marker="o", label=m)[0]
            ax.fill_between(
                ks, [x["lo"] for x in s], [x["hi"] for x in s], alpha=0.2, color=line.get_color()
            )
        if metric == "precision":
            ax.axhline(result["chance_precision"], color="grey", ls=":", label="chance")
        ax.set(xlabel="k", ylabel=f"{metric}@k", title=f"{METRIC_NAMES[metric]}@k (95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def _plot_per_label(ax: Any, result: dict[str, Any]) -> None:
    """Per-label precision bars; each label cut before matplotlib measures it."""
    methods, k = result["methods"], headline_k(result["ks"])
    labels = list(result["per_label"][methods[0]])
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        values = [result["per_label"][m][lab][f"precision@{k}"] for lab in labels]
        ax.bar([j + i * width for j in range(len(labels))], values, width, label=m)
    ax.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(labels))],
        [plot_text(lab) for lab in labels],
        rotation=20,
        ha="right",
        fontsize=8,
    )
    ax.set(ylabel=f"precision@{k}", title=f"per label, precision@{k}")
    ax.legend(fontsize=8)
