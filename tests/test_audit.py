"""The audit on planted copies: sample films re-encoded, resized, cropped, brightened, rotated and
written as 16-bit PNG and DICOM, mixed into distinct sample films, must be found (recall ≥ 0.95)
and nothing else flagged (precision ≥ 0.95); leaks, conflicts, the cleaned manifest and the report."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_dicom
from PIL import Image

from dinosearch.audit import plant
from dinosearch.cli import main
from dinosearch.features import embed_images
from dinosearch.index import build_index
from dinosearch.inputs import SAMPLE_DIR

FAMILIES = 6  # sample films that get copies
LONERS = 6  # further distinct sample films without copies
HOSTILE = "=1+1 <b>[x](javascript:1)</b>"  # a film id that is a formula, HTML and a Markdown link
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
        rows.append(
            {**base, "id": film["image_id"], "path": str(path), "split": "train", "edit": ""}
        )
        if f >= FAMILIES:
            continue
        for edit, apply in EDITS.items():
            path = root / f"{film['image_id']}-{edit}.png"
            apply(original).save(path)
            rows.append(
                {**base, "id": path.stem, "path": str(path), "split": "train", "edit": edit}
            )
        wide = np.asarray(original, dtype=np.uint16) * 257
        Image.fromarray(wide).save(root / f"{film['image_id']}-png16.png")
        write_dicom(root / f"{film['image_id']}-dicom.dcm", wide)
        for edit, suffix in (("png16", "png"), ("dicom", "dcm")):
            path = root / f"{film['image_id']}-{edit}.{suffix}"
            rows.append(
                {**base, "id": path.stem, "path": str(path), "split": "train", "edit": edit}
            )
    table = pd.DataFrame(rows)
    table.loc[table["edit"] == "jpeg", "split"] = "test"  # a duplicate leak in every family
    table.loc[(table["edit"] == "resize") & (table["family"] == 0), "label"] = "other"  # a conflict
    table.loc[(table["edit"] == "darken") & (table["family"] == 0), "id"] = HOSTILE
    return table


@pytest.fixture(scope="module")
def audited(
    tmp_path_factory: pytest.TempPathFactory, tiny_backbone
) -> tuple[Path, pd.DataFrame, str]:
    """The planted films embedded with the tiny random backbone into a flat index."""
    root = tmp_path_factory.mktemp("audit")
    (root / "films").mkdir()
    table = _plant(root / "films")
    table.drop(columns=["family", "edit"]).to_csv(root / "films.csv", index=False)
    embed_images(
        root / "films.csv", tiny_backbone, root / "features", num_workers=0, progress=False
    )
    build_index(root / "features", root / "index", index_type="flat")
    return root, table, str(root / "index")


@pytest.fixture(scope="module")
def report(audited, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The audit of the planted films (its CLI output, report folder)."""
    out = tmp_path_factory.mktemp("report") / "r"
    argv = ["audit", "--index", audited[2], "--out", str(out), "--write-manifest", "--plant", "12"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(argv) == 0
    return out, printed.getvalue()


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


def test_planted_copies_found_and_nothing_else(audited, report) -> None:
    _, table, index = audited
    folder, out = report
    assert "pixel threshold: 0.9" in out  # printed, calibrated on planted copies
    dups = pd.read_csv(folder / "duplicates.csv").replace("'" + HOSTILE, HOSTILE)  # CSV-safe form
    flagged = dups[dups["kind"].isin(["exact", "near"])]
    family = dict(zip(table["id"], table["family"], strict=True))
    same = np.asarray(
        [family[a] == family[b] for a, b in zip(flagged["id_a"], flagged["id_b"], strict=True)]
    )
    assert len(flagged) and same.mean() >= 0.95, flagged[~same]  # precision
    comp = _components(flagged)
    originals = table[table["edit"] == ""].set_index("family")["id"]
    copies = table[table["edit"] != ""]
    found = np.asarray([
        i in comp and comp[i] == comp.get(originals[f]) for i, f in zip(copies["id"], copies["family"], strict=True)
    ])  # fmt: skip
    assert found.mean() >= 0.95, copies[~found]  # recall of the planted pairs
    kind = {
        (a, b): k for a, b, k in zip(flagged["id_a"], flagged["id_b"], flagged["kind"], strict=True)
    }
    first = originals[0]
    for edit in ("png16", "dicom"):  # the same pixels in another file: an exact match
        assert (
            kind.get(tuple(sorted((first, f"{first}-{edit}")))) == "exact"
            or kind.get((first, f"{first}-{edit}")) == "exact"
        )
    leaks = pd.read_csv(folder / "leaks.csv")
    leaking = set(leaks["id_a"]) | set(leaks["id_b"])
    assert set(copies.loc[copies["edit"] == "jpeg", "id"]) <= leaking
    conflicts = pd.read_csv(folder / "conflicts.csv")
    assert f"{first}-resize" in set(conflicts["id_a"]) | set(conflicts["id_b"])
    clean = pd.read_csv(folder / "manifest.csv")
    assert len(clean) == FAMILIES + LONERS  # one film per planted family
    assert set(clean["split"]) == {"train"}  # each leaking group moved to its majority split
    report = json.loads((folder / "report.json").read_text())
    assert report["config"]["index"] == index and report["counts"]["films_removable"] == len(copies)
    assert (folder / "clusters.png").is_file() and "leaks.png" in report["sheets"]


def test_film_ids_stay_text_in_csv_report_and_app(report) -> None:
    from streamlit.testing.v1 import AppTest

    folder, _ = report
    raw = (folder / "duplicates.csv").read_text()
    assert "'" + HOSTILE in raw  # a spreadsheet shows the formula as text
    assert "<b>" not in (folder / "report.md").read_text()
    page = AppTest.from_function(_page, args=(str(folder),)).run(timeout=60)
    assert not page.exception
    shown = page.dataframe[0].value
    assert ("'" + HOSTILE) in set(shown["id_a"]) | set(shown["id_b"])
    assert not any("javascript" in m.value for m in page.markdown)


def _page(folder: str) -> None:
    from pathlib import Path

    from dinosearch.app.audit_tab import render_audit

    render_audit(Path(folder))


def test_md_text_escapes_markup() -> None:
    from dinosearch.audit.report import md_text

    assert md_text("[x](javascript:1) <b>\n# h") == r"\[x\]\(javascript\:1\) \<b\> \# h"


def test_embedding_pairs_agree_across_index_types() -> None:
    """range_search (flat, IVF-flat) and rescored k-NN (IVF-PQ + refine, HNSW) find the same pairs."""
    import faiss

    from dinosearch.audit.pairs import embedding_pairs

    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 16)).astype(np.float32)
    x[500:] = x[:100] + 0.05 * rng.standard_normal((100, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(16)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 8, faiss.METRIC_INNER_PRODUCT)
    pq = faiss.IndexRefineFlat(
        faiss.IndexIVFPQ(faiss.IndexFlatIP(16), 16, 8, 4, 4, faiss.METRIC_INNER_PRODUCT)
    )
    hnsw = faiss.IndexHNSWFlat(16, 16, faiss.METRIC_INNER_PRODUCT)
    truth = set(zip(range(100), range(500, 600), strict=True))
    for index in (flat, ivf, pq, hnsw):
        index.train(x)
        index.add(x)
        if index in (ivf, pq):
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", 8)  # every list: exact
        (a, b, s), method = embedding_pairs(index, x, 0.99, k=5, chunk=128)
        found = set(zip(a.tolist(), b.tolist(), strict=True))
        assert found == truth, (method, len(found ^ truth))
        assert (s >= 0.99).all()
