"""Refining a search: SQL filters (applied before ranking, hostile text refused), one case per
patient, relevance feedback (Rocchio), MMR, region queries (tiny untrained backbone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import clustered_vectors, unit, write_features_folder
from PIL import Image

from dinosearch.adapt.vectors import to_vectors
from dinosearch.backbones.transforms import eval_transform
from dinosearch.features.folder import embed_to_folder
from dinosearch.index import build_index
from dinosearch.search import Searcher
from dinosearch.search.refine import Rocchio, mmr, rocchio
from dinosearch.search.region import box_patches, region_features, token_features

N = 240
HOSTILE = [
    "1; DROP TABLE metadata",
    "read_csv('/etc/passwd') IS NOT NULL",
    "view IN (SELECT view FROM metadata)",
    "patient_id = (SELECT 1)",
    "nosuch >= 3",
    "patient_age >= ",
    "view = 'PA') UNION (SELECT 1",
    "getenv('HOME') = 'x'",
    "1=1 --",
]


@pytest.fixture(scope="module")
def meta_index(tiny_backbone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 clustered 32-d vectors with age/view/date/patient metadata, as a Flat index."""
    rng = np.random.default_rng(3)
    meta = pd.DataFrame(
        {
            "id": [f"r{i:03d}" for i in range(N)],
            "path": [f"/nowhere/{i}.png" for i in range(N)],
            "label": rng.choice(["normal", "effusion", "pneumonia"], N),
            "view": rng.choice(["PA", "AP", "LL"], N, p=[0.5, 0.4, 0.1]),
            "patient_id": [f"p{i // 4}" for i in range(N)],  # four films per patient
            "patient_age": rng.integers(20, 90, N),
            "study_date": pd.date_range("2023-06-01", periods=N, freq="3D").strftime("%Y-%m-%d"),
        }
    )
    root = tmp_path_factory.mktemp("refine")
    feats = clustered_vectors(N, 32, clusters=8, seed=3)
    write_features_folder(root / "f", feats, meta, tiny_backbone.info())
    build_index(root / "f", root / "flat", index_type="flat")
    build_index(root / "f", root / "hnsw", index_type="hnsw")
    return root


def _brute(searcher: Searcher, q: np.ndarray, rows: np.ndarray, k: int) -> set[int]:
    scores = searcher.handle.vectors()[rows] @ q
    return set(rows[np.argsort(-scores, kind="stable")[:k]].tolist())


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_sql_filter_before_ranking(meta_index: Path, tiny_backbone, kind: str) -> None:
    searcher = Searcher(meta_index / kind, backbone=tiny_backbone)
    meta = searcher.metadata
    where = "patient_age >= 60 AND view IN ('PA','AP') AND study_date >= '2024-01-01'"
    passing = np.flatnonzero(
        (meta["patient_age"] >= 60)
        & meta["view"].isin(["PA", "AP"])
        & (meta["study_date"] >= "2024-01-01")
    )
    assert 12 <= len(passing) < N // 2
    q = searcher.handle.vectors()[[0, 5, 77]]
    for query, res in zip(q, searcher.search_vectors(q, 10, filters=where), strict=True):
        assert len(res) == 10
        assert set(res.ids) <= set(passing.tolist())
        assert (res.rows["patient_age"] >= 60).all() and res.rows["view"].isin(["PA", "AP"]).all()
        if kind == "flat":  # exact: ranks only the passing rows
            assert set(res.ids.tolist()) == _brute(searcher, query, passing, 10)
    # a rare filter: k results whenever k rows pass, also on HNSW (searched deeper)
    rare = meta.index[meta["view"] == "LL"][:7]
    ids = ", ".join(f"'{meta['id'][i]}'" for i in rare)
    res = searcher.search_vectors(q[:1], 5, filters=f"id IN ({ids})")[0]
    assert len(res) == 5 and set(res.ids) <= set(rare.tolist())
    res = searcher.search_vectors(q[:1], 20, filters=f"id IN ({ids})")[0]
    assert len(res) == 7
    res = searcher.search_vectors(q[:1], 5, filters="lower(view) = 'll' OR patient_age < 25")[0]
    assert ((res.rows["view"] == "LL") | (res.rows["patient_age"] < 25)).all() and len(res) == 5


def test_old_filter_syntax_still_works(meta_index: Path, tiny_backbone) -> None:
    searcher = Searcher(meta_index / "flat", backbone=tiny_backbone)
    q = searcher.handle.vectors()[:2]
    for f in ('view == "LL"', "view == LL", "view = 'LL'", {"view": "LL"}):
        for res in searcher.search_vectors(q, 5, filters=f):
            assert (res.rows["view"] == "LL").all() and len(res) == 5
    res = searcher.search_vectors(q, 8, filters="view != PA and label == normal")
    assert all(((r.rows["view"] != "PA") & (r.rows["label"] == "normal")).all() for r in res)
    res = searcher.search_vectors(q, 8, filters="patient_age == 45")
    assert all((r.rows["patient_age"] == 45).all() for r in res)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_filters_give_one_clear_line(meta_index: Path, tiny_backbone, text: str) -> None:
    searcher = Searcher(meta_index / "flat", backbone=tiny_backbone)
    with pytest.raises(ValueError) as err:
        searcher.search_vectors(searcher.handle.vectors()[:1], 5, filters=text)
    message = str(err.value)
    assert "\n" not in message and "filter" in message and len(message) < 400
    if "nosuch" in text:
        assert "no metadata column 'nosuch'" in message


def test_cli_hostile_filter_is_one_line(meta_index: Path, image_folder: Path, capsys) -> None:
    from dinosearch.cli import main

    image = str(next(image_folder.rglob("*.png")))
    argv = ["search", "--index", str(meta_index / "flat"), "--image", image]
    for text in HOSTILE[:3]:
        assert main([*argv, "--filter", text]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("dinosearch search: error: filter ")
        assert all(line.startswith(("warning:", "dinosearch search: error:")) for line in lines)


def test_one_case_per_patient(meta_index: Path, tiny_backbone) -> None:
    searcher = Searcher(meta_index / "flat", backbone=tiny_backbone)
    vectors = searcher.handle.vectors()
    patients = searcher.metadata["patient_id"].to_numpy()
    q = vectors[[3, 100]]
    for query, res in zip(q, searcher.search_vectors(q, 10, collapse="patient_id"), strict=True):
        assert len(res) == 10 and res.rows["patient_id"].is_unique
        scores = vectors @ query
        best = pd.Series(scores).groupby(patients).max().sort_values(ascending=False)
        assert list(res.rows["patient_id"]) == list(best.index[:10])  # each patient's best film
        np.testing.assert_allclose(res.scores, best.to_numpy()[:10], rtol=1e-5, atol=1e-6)
        assert (res.rows["more_films"] == 3).all()  # four films per patient
    res = searcher.search_vectors(q[:1], 5, collapse="patient_id", filters="view = 'PA'")[0]
    pa = searcher.metadata[searcher.metadata["view"] == "PA"].groupby("patient_id").size()
    assert res.rows["more_films"].tolist() == [pa[p] - 1 for p in res.rows["patient_id"]]
    plain = searcher.search_vectors(q[:1], 10)[0]
    assert not plain.rows["patient_id"].is_unique  # without collapsing, patients repeat


def test_rocchio_feedback(meta_index: Path, tiny_backbone) -> None:
    q, like, unlike = unit(np.eye(4)[0]), unit(np.eye(4)[1:2]), unit(np.eye(4)[2:3])
    moved = rocchio(q[None], like, unlike)[0]
    np.testing.assert_allclose(moved, unit(np.array([1.0, 0.75, -0.25, 0.0])), atol=1e-6)
    np.testing.assert_allclose(rocchio(q[None])[0], q, atol=1e-6)
    with pytest.raises(ValueError, match="cancel"):
        rocchio(q[None], unlike=q[None], weights=Rocchio(gamma=1.0))
    searcher = Searcher(meta_index / "flat", backbone=tiny_backbone)
    vectors, ids = searcher.handle.vectors(), searcher.metadata["id"].to_numpy()
    first = searcher.search_vectors(vectors[7], 10)[0]
    good, bad = first.rows["id"].iloc[[1, 2]].tolist(), first.rows["id"].iloc[[9]].tolist()
    res = searcher.search_vectors(vectors[7], 10, like=good, unlike=bad)[0]
    at = {v: i for i, v in enumerate(ids)}
    expect = unit(
        vectors[7]
        + 0.75 * vectors[[at[g] for g in good]].mean(0)
        - 0.25 * vectors[[at[b] for b in bad]].mean(0)
    )
    assert set(res.ids.tolist()) == _brute(searcher, expect, np.arange(N), 10)
    with pytest.raises(ValueError, match="no id 'nope'"):
        searcher.search_vectors(vectors[7], 10, like=["nope"])


def test_mmr_diversity() -> None:
    cand = to_vectors(np.array([[1, 0.0], [0.99, 0.1], [0.6, 0.8]], dtype=np.float32))
    q = unit(np.array([1.0, 0.2], dtype=np.float32))
    plain = np.argsort(-(cand @ q)).tolist()
    assert plain == [1, 0, 2] and mmr(q, cand, 3, 1.0).tolist() == plain  # λ = 1: plain ranking
    assert mmr(q, cand, 2, 0.3).tolist() == [1, 2]  # diversity skips the near-duplicate 0


def _films(size: int = 96) -> tuple[Image.Image, Image.Image, Image.Image]:
    """Film A (bright stripes), film B (dark noisy checkerboard), and C = left of A + right of B."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    a = (np.sin(xx / 2.0) * 100 + 150).astype(np.uint8)
    b = ((((xx // 8) + (yy // 8)) % 2) * 60 + rng.normal(0, 5, (size, size))).clip(0, 255)
    c = np.concatenate([a[:, : size // 2], b.astype(np.uint8)[:, size // 2 :]], axis=1)
    return Image.fromarray(a), Image.fromarray(b.astype(np.uint8)), Image.fromarray(c)


@pytest.fixture(scope="module")
def region_index(
    tiny_backbone, image_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("region")
    a, b, _ = _films()
    a.save(root / "A.png")
    b.save(root / "B.png")
    others = sorted(image_folder.rglob("*.png"))[:4]
    paths = [root / "A.png", root / "B.png", *others]
    records = pd.DataFrame(
        {
            "id": [p.stem for p in paths],
            "path": [str(p) for p in paths],
            "label": ["a", "b", *["other"] * len(others)],
        }
    )
    embed_to_folder(records, tiny_backbone, root / "f", num_workers=0, progress=False)
    build_index(root / "f", root / "idx", index_type="flat")
    return root


@pytest.mark.parametrize("method", ["crop", "tokens"])
def test_region_query_finds_each_half(region_index: Path, tiny_backbone, method: str) -> None:
    searcher = Searcher(region_index / "idx", backbone=tiny_backbone)
    _, _, c = _films()
    vectors, labels = searcher.handle.vectors(), searcher.metadata["label"].tolist()
    a, b = labels.index("a"), labels.index("b")
    for box, near, far in (((0, 0, 48, 96), a, b), ((48, 0, 96, 96), b, a)):
        res = searcher.search_image(c, 6, region=box, region_method=method)
        order = res.ids.tolist()
        assert order.index(near) < order.index(far)
        # brute force: the box's features, made by hand, against every stored vector
        feats = region_features(tiny_backbone, searcher.transform, c, box, method)
        query = to_vectors(feats[None])[0]
        assert set(order[:3]) == _brute(searcher, query, np.arange(len(vectors)), 3)
        np.testing.assert_allclose(res.scores, np.sort(vectors @ query)[::-1], atol=1e-5)


def test_region_tokens_of_the_whole_film_equal_the_film(tiny_backbone) -> None:
    _, _, c = _films()
    transform = eval_transform(tiny_backbone.preprocess)
    every = box_patches((0, 0, 96, 96), c.size, tiny_backbone)
    assert len(every) == int(np.prod(tiny_backbone.grid))
    with torch.inference_mode():
        whole = tiny_backbone(transform(c)[None])[0]
    np.testing.assert_allclose(
        token_features(tiny_backbone, transform(c), every), whole, rtol=1e-4, atol=1e-5
    )
    left = box_patches((0, 0, 48, 96), c.size, tiny_backbone)
    assert 0 < len(left) < len(every)
    with pytest.raises(ValueError, match="outside"):
        region_features(tiny_backbone, transform, c, (200, 200, 300, 300))


def test_cli_refine_flags(meta_index: Path, image_folder: Path, capsys) -> None:
    import json

    from dinosearch.cli import main

    image = str(next(image_folder.rglob("*.png")))
    base = ["search", "--index", str(meta_index / "flat"), "--image", image, "--json", "-k", "6"]
    assert (
        main([*base, "--filter", "view != LL", "--filter", "patient_age >= 40 OR view = 'AP'"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == 6 and all(r["view"] != "LL" for r in rows)
    assert all(r["patient_age"] >= 40 or r["view"] == "AP" for r in rows)
    assert main([*base, "--per-patient"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len({r["patient_id"] for r in rows}) == 6 and all(r["more_films"] == 3 for r in rows)
    like, unlike = rows[1]["id"], rows[5]["id"]
    assert main([*base, "--like", like, "--unlike", unlike, "--region", "0,0,30,40"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 6
    assert main([*base, "--region", "0,0,-1,4"]) == 2
    assert "need 0 ≤ x0 < x1" in capsys.readouterr().err


def test_remove_where_takes_the_same_sql(meta_index: Path) -> None:
    from dinosearch.sync.erase import ids_where

    where = "patient_age >= 80 AND view IN ('PA','AP')"
    meta = pd.read_parquet(meta_index / "f" / "metadata.parquet")
    want = meta["id"][(meta["patient_age"] >= 80) & meta["view"].isin(["PA", "AP"])]
    assert sorted(ids_where([meta_index / "flat", meta_index / "hnsw"], where)) == sorted(want)
    with pytest.raises(ValueError, match="filter"):
        ids_where([meta_index / "flat"], "read_csv('/etc/passwd') IS NULL")


def test_cli_refine_flags_refused_in_one_line(meta_index: Path, image_folder: Path, capsys) -> None:
    from dinosearch.cli import main

    image = str(next(image_folder.rglob("*.png")))
    base = ["search", "--index", str(meta_index / "flat"), "--image", image]
    for extra, says in (
        (["--per-patient", "--all-films"], "contradict"),
        (["--region-method", "blur"], "crop or tokens"),
        (["--diversity", "1.5"], "[0, 1]"),
        (["--like", "nope"], "no id 'nope'"),
    ):
        assert main([*base, *extra]) == 2
        assert says in capsys.readouterr().err.strip().splitlines()[-1]
