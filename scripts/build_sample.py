"""Build the small, licence-cleared chest X-ray sample shipped in ``dinosearch/sample``.

    .venv/bin/python scripts/build_sample.py                  # 320 films, seed 0
    .venv/bin/python scripts/build_sample.py --count 200 --seed 1 --out /tmp/sample

Reads the dev part of the shared CXR set (``../shared/data/cxr``), keeps only sources whose
licence allows redistribution with attribution, picks whole patient groups (stratified by label,
and by source within covid19) with ``numpy.random.default_rng(seed)``, copies the JPEG bytes
unchanged and writes ``images/``, ``manifest.csv`` and ``README.md``. The output is
byte-identical for the same source, count and seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dinosearch.core.storage import replace_dir

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = (REPO / ".." / "shared" / "data" / "cxr").resolve()
DEFAULT_OUT = REPO / "dinosearch" / "sample"

MAX_FILMS = 400
MAX_BYTES = 8_000_000  # 8 MB, decimal
MAX_SIDE = 256  # shorter side, px
LABELS = ("covid19", "normal", "pneumonia_bacterial", "pneumonia_viral")
COLUMNS = [
    "file",
    "image_id",
    "label",
    "label_raw",
    "patient_id",
    "view",
    "source_repo",
    "source_commit",
    "source_path",
    "licence",
    "attribution_url",
]


@dataclass(frozen=True)
class Source:
    """A redistributable source: short name, licence and the DOI to attribute."""

    short: str
    licence: str
    licence_url: str
    attribution_url: str


KERMANY = Source(
    "kermany",
    "CC BY 4.0",
    "https://creativecommons.org/licenses/by/4.0/",
    "https://doi.org/10.17632/rscbjbr9sj",
)
SOURCES: dict[str, Source] = {
    "armiro/COVID-CXNet": Source(
        "cxnet",
        "CC BY 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
        "https://doi.org/10.6084/m9.figshare.12580328",
    ),
    "ml-workgroup/covid-19-image-repository": Source(
        "hannover",
        "CC BY 3.0",
        "https://creativecommons.org/licenses/by/3.0/",
        "https://doi.org/10.6084/m9.figshare.12275009",
    ),
    "lecuong1502/BTL_Machine_Learning": KERMANY,
    "suyash091/covid-chestxray-dataset": KERMANY,
}
COVID_SOURCES = ("armiro/COVID-CXNet", "ml-workgroup/covid-19-image-repository")


class BuildError(RuntimeError):
    """A problem that stops the build; its message says what to do."""


def bucket(label: str, source_repo: str) -> str:
    """Stratum of one film: its label, split by source for covid19."""
    return f"covid19/{SOURCES[source_repo].short}" if label == "covid19" else label


def quotas(count: int) -> dict[str, int]:
    """Films per stratum: ``count`` split evenly over the labels, covid19 evenly over its sources."""
    per_label = {
        lab: count // len(LABELS) + (i < count % len(LABELS)) for i, lab in enumerate(LABELS)
    }
    covid = per_label.pop("covid19")
    out = {
        bucket("covid19", repo): covid // len(COVID_SOURCES) + (i < covid % len(COVID_SOURCES))
        for i, repo in enumerate(COVID_SOURCES)
    }
    return out | per_label


def load_manifest(source: Path) -> pd.DataFrame:
    """The source manifest; raises ``BuildError`` naming the path when the set is missing."""
    path = source / "manifest.parquet"
    if not path.is_file():
        raise BuildError(
            f"source CXR set not found: {path} does not exist. Put the dev part of the shared "
            f"chest X-ray set there (manifest.parquet + images/), or pass --source DIR."
        )
    return pd.read_parquet(path)


def eligible_groups(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of patient groups drawn wholly from one allowed source, with labels in ``LABELS``.

    A group that also holds films from another source (another licence, or a disallowed one)
    is left out whole rather than split. Returns the rows and counts of left-out groups.
    """
    g = df.groupby("patient_id")
    n_src = g["source_repo"].transform("nunique")
    all_allowed = g["source_repo"].transform(lambda s: s.isin(SOURCES).all())
    all_labels = g["label"].transform(lambda s: s.isin(LABELS).all())
    touches = g["source_repo"].transform(lambda s: s.isin(SOURCES).any())
    keep = all_allowed & all_labels & (n_src == 1)
    dropped = {
        "groups_mixing_allowed_and_other_sources": df.loc[
            touches & ~all_allowed, "patient_id"
        ].nunique(),
        "groups_across_two_allowed_sources": df.loc[
            all_allowed & (n_src > 1), "patient_id"
        ].nunique(),
        "groups_with_other_labels": df.loc[
            touches & all_allowed & ~all_labels, "patient_id"
        ].nunique(),
    }
    return df[keep].copy(), dropped


def select(df: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """Whole patient groups in seeded random order, each taken if it fits every stratum quota."""
    quota = quotas(count)
    df = df.assign(
        bucket=[bucket(lab, repo) for lab, repo in zip(df["label"], df["source_repo"], strict=True)]
    )
    need = {pid: Counter(rows["bucket"]) for pid, rows in df.groupby("patient_id", sort=True)}
    order = sorted(need)
    rng = np.random.default_rng(seed)
    filled: Counter[str] = Counter()
    chosen: list[str] = []
    for i in rng.permutation(len(order)):
        pid = order[i]
        if all(filled[b] + n <= quota[b] for b, n in need[pid].items()):
            filled.update(need[pid])
            chosen.append(pid)
            if sum(filled.values()) == count:
                break
    short = {b: (filled[b], q) for b, q in quota.items() if filled[b] < q}
    if short:
        print(f"warning: strata below quota (got, wanted): {short}", file=sys.stderr)
    empty = [b for b in quota if filled[b] == 0]
    if empty:
        raise BuildError(f"no films for strata {empty}; lower --count or check the source set")
    out = df[df["patient_id"].isin(chosen)].drop(columns="bucket")
    return out.sort_values("image_id", kind="stable").reset_index(drop=True)


def read_checked(source: Path, rows: pd.DataFrame) -> dict[str, bytes]:
    """JPEG bytes per image_id, after checking mode L, shorter side and the size budget."""
    sizes = {r.image_id: (source / r.file).stat().st_size for r in rows.itertuples()}
    total = sum(sizes.values())
    if total > MAX_BYTES:
        raise BuildError(
            f"sample would be {total / 1e6:.2f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit; "
            "lower --count"
        )
    data: dict[str, bytes] = {}
    for r in rows.itertuples():
        raw = (source / r.file).read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            if im.format != "JPEG" or im.mode != "L" or min(im.size) > MAX_SIDE:
                raise BuildError(
                    f"{source / r.file}: {im.format} mode {im.mode} size {im.size}; expected "
                    f"8-bit grayscale JPEG with shorter side <= {MAX_SIDE}"
                )
        data[r.image_id] = raw
    return data


def manifest(rows: pd.DataFrame) -> pd.DataFrame:
    """The shipped manifest: relative file, provenance, licence and attribution URL per film."""
    src = rows["source_repo"].map(SOURCES)
    return pd.DataFrame(
        {
            "file": "images/" + rows["image_id"] + ".jpg",
            "image_id": rows["image_id"],
            "label": rows["label"],
            "label_raw": rows["label_raw"],
            "patient_id": rows["patient_id"],
            "view": rows["view"],
            "source_repo": rows["source_repo"],
            "source_commit": rows["source_commit"],
            "source_path": rows["source_path"],
            "licence": [s.licence for s in src],
            "attribution_url": [s.attribution_url for s in src],
        }
    )[COLUMNS]


def _table(counts: pd.DataFrame) -> str:
    """A Markdown table of a small count frame (index and columns as shown)."""
    head = [counts.index.name or "", *map(str, counts.columns)]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(counts.columns)]
    lines += [
        "| " + " | ".join([f"`{idx}`", *(str(int(v)) for v in row)]) + " |"
        for idx, row in zip(counts.index, counts.to_numpy(), strict=True)
    ]
    return "\n".join(lines)


def readme(
    man: pd.DataFrame, total_bytes: int, args: argparse.Namespace, info: dict[str, object]
) -> str:
    """README.md text for the sample: contents, licences, selection, caveats, rebuild command."""
    by_source = pd.crosstab(man["source_repo"], man["label"], margins=True, margins_name="total")
    by_source.index.name = "source"
    patients = man.groupby("source_repo")["patient_id"].nunique()
    n_ped_covid = int(man["label_raw"].str.contains("[pediatric]", regex=False).sum())
    n_noabn = int(man["label_raw"].str.contains("without abnormality", regex=False).sum())
    cmd = ".venv/bin/python scripts/build_sample.py"
    if (args.count, args.seed) != (320, 0):
        cmd += f" --count {args.count} --seed {args.seed}"
    dropped = info["dropped"]
    assert isinstance(dropped, dict)
    q = ", ".join(f"{b} {n}" for b, n in quotas(args.count).items())
    return f"""# Chest X-ray sample (shipped with dinosearch)

{len(man)} real frontal chest radiographs from {man["patient_id"].nunique()} patient groups,
{total_bytes / 1e6:.2f} MB in all, for demos, smoke tests and examples that must run without the
full data set. Only sources whose licence allows redistribution with attribution are used.

**Research data only. Not for diagnosis or any clinical use.** The labels come from the
publishing sources and were not re-read by a radiologist.

## Contents

- `images/<image_id>.jpg`: 8-bit grayscale JPEG, shorter side 256 px, aspect ratio kept.
- `manifest.csv`: one row per film. `file` (relative to this folder), `image_id`, `label`,
  `label_raw` (as given by the source), `patient_id` (patient group key; use it for
  patient-level splits), `view` (`PA`, `AP` or `unknown`), `source_repo` (GitHub repository the
  file came from), `source_commit`, `source_path` (original file in that commit), `licence`,
  `attribution_url`.

Films per source and label:

{_table(by_source)}

Patient groups per source: {", ".join(f"`{s}` {n}" for s, n in patients.items())}.
No patient group spans two sources.

COVID-CXNet marks some covid19 films itself; `label_raw` keeps the marks. Here:
radiograph without abnormality (COVID-19 proven by CT/PCR) {n_noabn}, pediatric patient
{n_ped_covid}.

## Licences and attribution

The images have been modified from the originals: decoded, converted to 8-bit grayscale,
resized to a shorter side of 256 px and re-encoded as JPEG (quality 90); duplicates and
images with drawn-on boxes or score grids were removed upstream. If you use them, give
these attributions.

- **COVID-CXNet** (`armiro/COVID-CXNet`, commit
  `3ade488b3828705706fc5f58c0667421d8b04a01`, `chest_xray_images/covid19/`): licensed
  [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/).
  Haghanifar A. et al., *COVID-19 Chest X-Ray Image Repository*,
  figshare, 2020, https://doi.org/10.6084/m9.figshare.12580328 ; associated paper:
  Haghanifar A. et al., "COVID-CXNet: Detecting COVID-19 in frontal chest X-ray images using
  deep learning", *Multimedia Tools and Applications* (2022),
  https://doi.org/10.1007/s11042-022-12156-z (preprint arXiv:2006.13807).
  The repository's MIT licence covers its code only.
- **COVID-19 Image Repository, Hannover Medical School** (`ml-workgroup/covid-19-image-repository`,
  commit `ad7ab099b425f16e06bba22322336b7d6a732965`, `png/`): image data from the Institute for
  Diagnostic and Interventional Radiology, Hannover Medical School, Hannover, Germany, licensed
  [CC BY 3.0 Unported](https://creativecommons.org/licenses/by/3.0/).
  Winther H. B. et al., *COVID-19 Image Repository*, figshare, 2020,
  https://doi.org/10.6084/m9.figshare.12275009 .
- **Kermany et al. paediatric chest X-rays** (Guangzhou Women and Children's Medical Center),
  taken from the copies in `lecuong1502/BTL_Machine_Learning` (commit
  `19a2d6171e2b9678617eba9ad207ef416196d08f`, `train/NORMAL`, `train/PNEUMONIA`) and
  `suyash091/covid-chestxray-dataset` (commit `e8c6bcd6b3ad9a564689e166f3f7aa8deac56aa2`,
  `images/`). Those repositories state no licence; the authors published the set under
  [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/):
  Kermany D., Zhang K., Goldbaum M., *Labeled Optical Coherence Tomography (OCT) and Chest
  X-Ray Images for Classification*, Mendeley Data, 2018, https://doi.org/10.17632/rscbjbr9sj ;
  Kermany D. S., Goldbaum M., Cai W. et al., "Identifying Medical Diagnoses and Treatable
  Diseases by Image-Based Deep Learning", *Cell* 172(5):1122-1131.e9 (2018),
  https://doi.org/10.1016/j.cell.2018.02.010 .

Each row of `manifest.csv` carries its `licence` and `attribution_url`. No other source of the
full set is included (they state no licence, or non-commercial / no-derivatives terms).

## How it was selected

From the dev part of the project's shared CXR set (`../shared/data/cxr`, `manifest.parquet`
sha256 `{info["source_sha256"]}`):

1. Keep patient groups (`patient_id`) whose films all come from one of the four repositories
   above and carry one of the labels `covid19`, `normal`, `pneumonia_bacterial`,
   `pneumonia_viral`. A group is never split: groups that also hold films from another
   source were left out whole ({dropped["groups_mixing_allowed_and_other_sources"]} groups with films from
   non-redistributable sources, {dropped["groups_across_two_allowed_sources"]} Kermany groups with copies in both
   Kermany repositories).
2. Quotas of films per stratum, even over the four labels and, within covid19, even over the two
   COVID-19 sources: {q}.
3. Sort the groups by `patient_id`, shuffle them with `numpy.random.default_rng({args.seed})`,
   and take each group in turn if all its films fit the remaining quotas, until {args.count}
   films are chosen.
4. Copy the JPEG bytes unchanged (checked: grayscale mode L, shorter side <= 256 px; total
   <= 8 MB, <= 400 films).

## Known confound: label tracks source

All `normal`, `pneumonia_bacterial` and `pneumonia_viral` films here are paediatric (Kermany set,
one hospital in Guangzhou); the `covid19` films are adult (apart from {n_ped_covid} marked
`[pediatric]` by COVID-CXNet) and come from publications, websites (COVID-CXNet) and one German hospital
(Hannover). Age, scanner, crop, compression and burned-in text therefore predict the label
here. Do not read label-level retrieval scores on this sample as clinical signal; evaluate
within source (Kermany: normal vs bacterial vs viral) and split by `patient_id`.

In the Kermany set the same `personN` number appears on both bacteria and virus files; such
files share one `patient_id`. Many COVID-19 images are crops of published figures and may
carry arrows, markers or short captions.

## Rebuild

```bash
{cmd}
```

Needs `../shared/data/cxr` beside the repository. The output is byte-identical for the same
source set, `--count` and `--seed`; `tests/test_sample.py` checks the shipped copy.
"""


def write_atomic(out: Path, man: pd.DataFrame, data: dict[str, bytes], text: str) -> None:
    """Write the sample to a temporary folder beside ``out``, then swap it in (``replace_dir``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"  # clean_leftovers' name for a staged copy
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "images").mkdir(parents=True)
        for image_id, raw in data.items():
            (tmp / "images" / f"{image_id}.jpg").write_bytes(raw)
        man.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
        (tmp / "README.md").write_text(text, encoding="utf-8")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="shared CXR set (manifest.parquet + images/); default ../shared/data/cxr from the repo root",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder; default dinosearch/sample"
    )
    p.add_argument("--count", type=int, default=320, help=f"films to select (<= {MAX_FILMS})")
    p.add_argument("--seed", type=int, default=0, help="seed for numpy.random.default_rng")
    args = p.parse_args(argv)
    if not 0 < args.count <= MAX_FILMS:
        p.error(f"--count must be between 1 and {MAX_FILMS}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the sample; print a summary; return a process exit code."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        df = load_manifest(args.source)
        rows, dropped = eligible_groups(df)
        chosen = select(rows, args.count, args.seed)
        data = read_checked(args.source, chosen)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    man = manifest(chosen)
    total = sum(map(len, data.values()))
    info: dict[str, object] = {
        "dropped": dropped,
        "source_sha256": hashlib.sha256(
            (args.source / "manifest.parquet").read_bytes()
        ).hexdigest(),
    }
    write_atomic(args.out, man, data, readme(man, total, args, info))
    print(
        pd.crosstab(
            man["source_repo"], man["label"], margins=True, margins_name="total"
        ).to_string()
    )
    print(
        f"{len(man)} films, {man['patient_id'].nunique()} patient groups, {total / 1e6:.2f} MB "
        f"-> {args.out}  (left out whole: {dropped}; {time.perf_counter() - start:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
