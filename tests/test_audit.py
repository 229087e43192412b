"""The audit on planted copies: sample films re-encoded, resized, cropped, brightened, rotated and
written as 16-bit PNG and DICOM, mixed into distinct sample films, must be found (recall ≥ 0.95)
and nothing else flagged (precision ≥ 0.95); leaks, conflicts, the cleaned manifest and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_CLI, write_dicom
from PIL import Image

from dinosearch.audit import plant
from dinosearch.cli import main
from dinosearch.inputs import SAMPLE_DIR

FAMILIES = 8  # sample films that get copies
LONERS = 10  # further distinct sample films without copies
EDITS = {
    "jpeg": lambda im: plant.jpeg(im, 30),
    "resize": lambda im: plant.resize(im, 0.55),
    "crop": lambda im: plant.crop(im, 0.03),
    "brighten": lambda im: plant.brighten(im, 1.1),
    "darken": lambda im: plant.brighten(im, 0.9),
    "rotate": lambda im: plant.rotate(im, 3.0),
}


def _distinct_sample() -> pd.DataFrame:
    """Sample films of distinct patients (one film each)."""
    manifest = pd.read_csv(SAMPLE_DIR / "manifest.csv")
    return manifest.drop_duplicates("patient_id").iloc[: FAMILIES + LONERS].reset_index(drop=True)


def _plant(root: Path) -> pd.DataFrame:
    """Write originals + copies; → manifest with path, id, label, patient_id, split, family, edit."""
    rows = []
    for f, film in _distinct_sample().iterrows():
        original = Image.open(SAMPLE_DIR / film["file"]).convert("L")
        base = {"label": film["label"], "patient_id": film["patient_id"], "family": f}
        path = root / f"{film['image_id']}.png"
        original.save(path)
        rows.append({**base, "id": film["image_id"], "path": str(path), "split": "train", "edit": ""})
        if f >= FAMILIES:
            continue
        for edit, apply in EDITS.items():
            path = root / f"{film['image_id']}-{edit}.png"
            apply(original).save(path)
            rows.append({**base, "id": path.stem, "path": str(path), "split": "train", "edit": edit})
        wide = np.asarray(original, dtype=np.uint16) * 257
        Image.fromarray(wide).save(root / f"{film['image_id']}-png16.png")
        write_dicom(root / f"{film['image_id']}-dicom.dcm", wide)
        for edit, suffix in (("png16", "png"), ("dicom", "dcm")):
            path = root / f"{film['image_id']}-{edit}.{suffix}"
            rows.append({**base, "id": path.stem, "path": str(path), "split": "train", "edit": edit})
    table = pd.DataFrame(rows)
    table.loc[table["edit"] == "jpeg", "split"] = "test"  # a duplicate leak in every family
    table.loc[(table["edit"] == "resize") & (table["family"] == 0), "label"] = "other"  # a conflict
    return table


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, str]:
    root = tmp_path_factory.mktemp("audit")
    (root / "films").mkdir()
    table = _plant(root / "films")
    table.drop(columns=["family", "edit"]).to_csv(root / "films.csv", index=False)
    embed = ["embed", "--images", str(root / "films.csv"), "--out", str(root / "features")]
    assert main([*embed, *TINY_CLI, "--workers", "0", "--no-progress"]) == 0
    assert main(["index", "--features", str(root / "features"), "--out", str(root / "index")]) == 0
    return root, table, str(root / "index")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["audit", *argv]) == 0
    return capsys.readouterr().out


def _components(pairs: pd.DataFrame) -> dict[str, str]:
    """Film id → a representative of its connected component (a plain union-find)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in zip(pairs["id_a"], pairs["id_b"], strict=True):
        parent[root(a)] = root(b)
    return {x: root(x) for x in list(parent)}


def test_planted_copies_found_and_nothing_else(audited, capsys, tmp_path: Path) -> None:
    _, table, index = audited
    out = _run(capsys, "--index", index, "--out", str(tmp_path / "r"), "--write-manifest")
    assert "pixel threshold: 0.9" in out  # printed, calibrated on planted copies
    dups = pd.read_csv(tmp_path / "r" / "duplicates.csv")
    flagged = dups[dups["kind"].isin(["exact", "near"])]
    family = dict(zip(table["id"], table["family"], strict=True))
    same = np.asarray([family[a] == family[b] for a, b in zip(flagged["id_a"], flagged["id_b"], strict=True)])
    assert len(flagged) and same.mean() >= 0.95, flagged[~same]  # precision
    comp = _components(flagged)
    originals = table[table["edit"] == ""].set_index("family")["id"]
    copies = table[table["edit"] != ""]
    found = np.asarray([
        i in comp and comp[i] == comp.get(originals[f]) for i, f in zip(copies["id"], copies["family"], strict=True)
    ])  # fmt: skip
    assert found.mean() >= 0.95, copies[~found]  # recall of the planted pairs
    kind = {(a, b): k for a, b, k in zip(flagged["id_a"], flagged["id_b"], flagged["kind"], strict=True)}
    first = originals[0]
    for edit in ("png16", "dicom"):  # the same pixels in another file: an exact match
        assert kind.get(tuple(sorted((first, f"{first}-{edit}")))) == "exact" or kind.get((first, f"{first}-{edit}")) == "exact"
    leaks = pd.read_csv(tmp_path / "r" / "leaks.csv")
    leaking = set(leaks["id_a"]) | set(leaks["id_b"])
    assert set(copies.loc[copies["edit"] == "jpeg", "id"]) <= leaking
    conflicts = pd.read_csv(tmp_path / "r" / "conflicts.csv")
    assert f"{first}-resize" in set(conflicts["id_a"]) | set(conflicts["id_b"])
    clean = pd.read_csv(tmp_path / "r" / "manifest.csv")
    assert len(clean) == FAMILIES + LONERS  # one film per planted family
    assert set(clean["split"]) == {"train"}  # each leaking group moved to its majority split
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["config"]["index"] == index and report["counts"]["films_removable"] == len(copies)
    assert (tmp_path / "r" / "clusters.png").is_file() and "leaks.png" in report["sheets"]
