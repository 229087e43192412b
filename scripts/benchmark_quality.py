"""Raw vs whitened vs adapted retrieval for several backbones and adapter settings, in one table.

Each ``--features`` folder (a ``dinosearch embed`` output, one per backbone) is evaluated against an
adapter trained with every ``--setting``; view features are cached (``--cache``), so settings that
share K, preset and seed extract views once. Example::

    python scripts/benchmark_quality.py --features runs/cxr/features \\
        --setting views=2 --setting views=2,bottleneck=256 --setting views=2,temperature=0.05 \\
        --setting views=4 --setting views=2,preset=natural --train-images 1000 --out reports/bench
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dinosearch.adapt.config import TrainConfig
from dinosearch.adapt.train import train_adapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.backbones import backbone_from_info
from dinosearch.demo import training_subset
from dinosearch.evaluate.ab import evaluate
from dinosearch.features.folder import load_features


def parse_setting(text: str) -> dict[str, Any]:
    """``"views=2,bottleneck=256"`` → TrainConfig overrides, values typed like the defaults."""
    defaults = TrainConfig().to_dict()
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in defaults:
            raise ValueError(
                f"--setting {text!r}: {key!r} is not a TrainConfig field ({sorted(defaults)})"
            )
        kind = type(defaults[key]) if defaults[key] is not None else str
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--features", action="append", required=True, help="features folder (repeatable)"
    )
    p.add_argument(
        "--setting", action="append", default=None, help="TrainConfig overrides (repeatable)"
    )
    p.add_argument("--train-images", type=int, default=1000, help="0 = all")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--label-column", default="label")
    p.add_argument("--group-column", default="patient_id")
    p.add_argument("--stratify-column", default="source_repo")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--bootstrap", type=int, default=500)
    p.add_argument("--cache", default="runs/bench/cache")
    p.add_argument("--out", default="reports/bench")
    args = p.parse_args(argv)
    settings = [parse_setting(s) for s in (args.setting or ["views=2"])]
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for folder in args.features:
        fs = load_features(folder)
        backbone = backbone_from_info(fs.manifest["backbone"])
        md = fs.metadata
        col = {
            c: (getattr(args, f"{c}_column") if getattr(args, f"{c}_column") in md else None)
            for c in ("label", "group", "stratify")
        }
        records = training_subset(md, args.train_images or None, col["group"], seed=0)
        for setting in settings:
            name = ",".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
            config = TrainConfig.from_dict(
                {
                    "epochs": args.epochs,
                    **setting,
                    "group_column": col["group"],
                    "label_column": col["label"],
                }
            )
            start = time.perf_counter()
            result = train_adapter(
                records,
                backbone,
                out / backbone.name / name / "adapter",
                config,
                clean_features=fs,
                cache_dir=Path(args.cache),
                progress=False,
            )
            seconds = time.perf_counter() - start
            adapted = to_vectors(np.asarray(fs.features), result.adapter)
            r = evaluate(
                np.asarray(fs.features),
                adapted,
                md[col["label"]].tolist(),
                ids=md["id"].astype(str).to_numpy(),
                groups=None if col["group"] is None else md[col["group"]].to_numpy(object),
                strata=None if col["stratify"] is None else md[col["stratify"]].to_numpy(object),
                ks=(args.k,),
                n_boot=args.bootstrap,
            )
            rows.append(_row(backbone, name, seconds, r, args.k))
            print(_format([rows[-1]], header=len(rows) == 1), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(rows, indent=2))
    (out / "benchmark.md").write_text(_format(rows, header=True) + "\n")
    print(f"\n{_format(rows, header=True)}\n→ {out}/benchmark.md")
    return 0


def _row(backbone: Any, name: str, seconds: float, r: dict[str, Any], k: int) -> dict[str, Any]:
    key = f"precision@{k}"
    ov = r["overall"]
    row = {
        "backbone": backbone.fingerprint,
        "random_init": backbone.random_init,
        "setting": name,
        "train_s": round(seconds, 1),
        "chance": r["chance_precision"],
        "queries": r["queries"],
        **{m: ov[m][key] for m in ("raw", "centred", "whitened", "adapted")},
        "adapted-raw": ov["adapted-raw"][key],
        "adapted-whitened": ov["adapted-whitened"][key],
    }
    if "strata" in r:
        w = r["strata"]["within"]["overall"]
        row["within_raw"], row["within_adapted"] = w["raw"][key]["mean"], w["adapted"][key]["mean"]
    return row


def _format(rows: list[dict[str, Any]], header: bool) -> str:
    def ci(s: dict[str, float], signed: bool = False) -> str:
        f = "{:+.3f}" if signed else "{:.3f}"
        return f"{f.format(s['mean'])} [{f.format(s['lo'])}, {f.format(s['hi'])}]"

    lines = (
        [
            "| backbone | setting | train s | raw | whitened | adapted | Δ raw | Δ whitened | within raw → adapted |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        if header
        else []
    )
    for r in rows:
        note = " (untrained)" if r["random_init"] else ""
        within = f"{r['within_raw']:.3f} → {r['within_adapted']:.3f}" if "within_raw" in r else "—"
        lines.append(
            f"| {r['backbone']}{note} | {r['setting']} | {r['train_s']:.0f} | {ci(r['raw'])} | "
            f"{ci(r['whitened'])} | {ci(r['adapted'])} | {ci(r['adapted-raw'], True)} | "
            f"{ci(r['adapted-whitened'], True)} | {within} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
