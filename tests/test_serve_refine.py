"""Issue 25's refinements over issue 24's service (TestClient): region, like/unlike, collapse, MMR,
and one-line 422s for hostile or wrong fields. Each answer must equal the in-process library."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_knn_equal
from PIL import Image
from serving import KEY

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from dinosearch.search import Searcher  # noqa: E402
from dinosearch.serve.app import create_app  # noqa: E402
from dinosearch.serve.config import ServeConfig  # noqa: E402

AUTH = {"Authorization": f"Bearer {KEY}"}
INDEXES = ("demo-raw", "demo-adapted")


@pytest.fixture(scope="module")
def indexes(app_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-refine") / "indexes"
    shutil.copytree(app_root / "indexes", root)
    return root


@pytest.fixture(scope="module")
def api(indexes: Path) -> Iterator[TestClient]:
    config = ServeConfig(indexes=str(indexes), refresh_s=0.0)
    with TestClient(create_app(config, {"DINOSEARCH_API_KEYS": KEY})) as client:
        yield client


@pytest.fixture(scope="module")
def film(image_folder: Path) -> Path:
    return sorted(image_folder.rglob("*.png"))[1]


def search(api: TestClient, path: Path, **params: object) -> dict:
    files = {"file": (path.name, path.read_bytes(), "image/png")}
    response = api.post(
        "/v1/search", files=files, data={"params": json.dumps(params)}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    return response.json()


def refused(api: TestClient, path: Path, **params: object) -> str:
    """The one-line reason of a 422 (never a trace or a server path)."""
    files = {"file": (path.name, path.read_bytes(), "image/png")}
    response = api.post(
        "/v1/search", files=files, data={"params": json.dumps(params)}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"}, body
    reason = body["error"]
    assert "\n" not in reason and "Traceback" not in reason and "/tmp" not in reason, reason
    return str(reason)


def same_as(answer: dict, ref) -> None:
    """The HTTP hits equal the library's result (tie-tolerant)."""
    scores = np.array([[h["score"] for h in answer["hits"]]])
    ids = np.array([[h["row"] for h in answer["hits"]]])
    assert_knn_equal(ref.scores[None], ref.ids[None], scores, ids, tol=1e-4)


def test_region_over_http_equals_search_images_region(
    api: TestClient, indexes: Path, film: Path
) -> None:
    w, h = Image.open(film).size
    box = (0.0, 0.0, w / 2, float(h))
    body = search(api, film, k=5, indexes=list(INDEXES), region=box)
    whole = search(api, film, k=5, indexes=list(INDEXES))
    for answer, plain in zip(body["answers"], whole["answers"], strict=True):
        searcher = Searcher(indexes / answer["index"])
        same_as(answer, searcher.search_images([film], 5, region=box)[0])
        assert not np.allclose(
            [h["score"] for h in answer["hits"]], [h["score"] for h in plain["hits"]], atol=1e-4
        )  # the box, not the whole film, was searched
    assert "outside" in refused(api, film, k=5, region=[w + 10, 0, w + 20, 10])
    assert "region" in refused(api, film, k=5, region=[10, 10, 5, 20])


def test_like_unlike_equal_the_library_rocchio(api: TestClient, indexes: Path, film: Path) -> None:
    meta = Searcher(indexes / "demo-raw").metadata
    like, unlike = [str(meta.loc[3, "id"])], [str(meta.loc[7, "id"])]
    body = search(api, film, k=6, indexes=list(INDEXES), like=like, unlike=unlike)
    plain = search(api, film, k=6, indexes=list(INDEXES))
    for answer, before in zip(body["answers"], plain["answers"], strict=True):
        searcher = Searcher(indexes / answer["index"])
        same_as(answer, searcher.search_image(film, 6, like=like, unlike=unlike))
        assert answer["hits"] != before["hits"]
    # per index: only demo-raw's query moves, demo-adapted answers as without marks
    per_index = search(api, film, k=6, indexes=list(INDEXES), like={"demo-raw": like})
    raw, adapted = per_index["answers"]
    same_as(raw, Searcher(indexes / "demo-raw").search_image(film, 6, like=like))
    same_as(adapted, Searcher(indexes / "demo-adapted").search_image(film, 6))
    reason = refused(api, film, k=6, indexes=["demo-raw"], like={"elsewhere": like})
    assert "elsewhere" in reason
    assert "no id" in refused(api, film, k=6, like=["not-an-id"])


def test_collapse_gives_one_film_per_patient_with_counts(
    api: TestClient, indexes: Path, film: Path
) -> None:
    searcher = Searcher(indexes / "demo-raw")
    meta = searcher.metadata
    for collapse in (True, "patient_id"):
        (answer,) = search(api, film, k=12, indexes=["demo-raw"], collapse=collapse)["answers"]
        patients = [meta.loc[h["row"], "patient_id"] for h in answer["hits"]]
        assert len(patients) == len(set(patients)) == meta["patient_id"].nunique()
        ref = searcher.search_image(film, 12, collapse="patient_id")
        same_as(answer, ref)
        counts = {int(i): int(m) for i, m in zip(ref.ids, ref.rows["more_films"], strict=True)}
        assert {h["row"]: h["more_films"] for h in answer["hits"]} == counts
        assert sum(counts.values()) == len(meta) - len(patients)
        for hit in answer["hits"]:  # privacy: the count is a field, the patient id stays hidden
            assert set(hit["metadata"]) <= {"label", "view", "source_repo"}
    (plain,) = search(api, film, k=3, indexes=["demo-raw"])["answers"]
    assert all(h["more_films"] is None for h in plain["hits"])


def test_diversity_equals_the_library_mmr(api: TestClient, indexes: Path, film: Path) -> None:
    (answer,) = search(api, film, k=4, indexes=["demo-adapted"], diversity=0.3)["answers"]
    ref = Searcher(indexes / "demo-adapted").search_image(film, 4, diversity=0.3)
    assert [h["row"] for h in answer["hits"]] == [int(i) for i in ref.ids]
    assert "diversity" in refused(api, film, k=4, diversity=1.5)


def test_hostile_fields_are_one_line_422s(api: TestClient, film: Path) -> None:
    hostile = ("1; DROP TABLE metadata", "read_csv('/etc/passwd') IS NULL", "path = 'x'")
    hidden = ("view = 'PA' AND patient_id = 'P01'", "patient_id == P01", "view == PA and id != x")
    for text in (*hostile, *hidden):  # privacy: no probing hidden columns through a filter
        assert "filter" in refused(api, film, k=3, filter=text).lower()
    assert "patient_id" in refused(api, film, k=3, filter={"patient_id": "P01"})
    for text in ("view = 'PA' AND label <> 'normal'", 'view == "PA"'):  # shown columns: fine
        assert search(api, film, k=3, indexes=["demo-raw"], filter=text)["answers"][0]["hits"]
    assert "collapse" in refused(api, film, k=3, collapse="patient_id; DROP TABLE x")
    assert "no_such_column" in refused(api, film, k=3, collapse="no_such_column")
    assert "like" in refused(api, film, k=3, like=[""])
