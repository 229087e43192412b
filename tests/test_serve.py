"""dinosearch serve through FastAPI's TestClient: each endpoint, keys, limits, errors, metrics, versions."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_knn_equal
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from serving import KEY

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from dinosearch.search import Searcher  # noqa: E402
from dinosearch.serve.app import create_app  # noqa: E402
from dinosearch.serve.config import ServeConfig  # noqa: E402

AUTH = {"Authorization": f"Bearer {KEY}"}
ENV = {"DINOSEARCH_API_KEYS": KEY}


@pytest.fixture(scope="module")
def indexes(app_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "indexes"
    shutil.copytree(app_root / "indexes", root)
    return root


@pytest.fixture(scope="module")
def api(indexes: Path) -> Iterator[TestClient]:
    config = ServeConfig(indexes=str(indexes), max_upload_mb=0.5, refresh_s=0.0)
    with TestClient(create_app(config, ENV)) as client:
        yield client


def png(path: Path) -> bytes:
    out = io.BytesIO()
    Image.open(path).save(out, format="PNG")
    return out.getvalue()


def query_file(image_folder: Path) -> Path:
    return sorted(image_folder.rglob("*.png"))[0]


def search(api: TestClient, data: bytes, name: str = "q.png", **params: object):
    files = {"file": (name, data, "application/octet-stream")}
    return api.post("/v1/search", files=files, data={"params": json.dumps(params)}, headers=AUTH)


def one_line_reason(response) -> str:
    body = response.json()
    assert set(body) == {"error", "request_id"}, body
    reason = body["error"]
    assert "\n" not in reason and "Traceback" not in reason and "/tmp" not in reason, reason
    return reason


def test_health_ready_and_indexes(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models_warm"] is True
    assert set(ready.json()["indexes"]) == {"demo-raw", "demo-adapted"}
    listed = {i["name"]: i for i in api.get("/v1/indexes", headers=AUTH).json()["indexes"]}
    assert set(listed) == {"demo-raw", "demo-adapted"}
    assert listed["demo-raw"]["untrained"] is True and listed["demo-raw"]["size"] == 12
    assert listed["demo-raw"]["adapter"] is None and listed["demo-adapted"]["adapter"]


def test_upload_search_equals_the_in_process_searcher(
    api: TestClient, indexes: Path, image_folder: Path
) -> None:
    path = query_file(image_folder)
    response = search(api, png(path), k=5, indexes=["both"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert [a["index"] for a in body["answers"]] == ["demo-raw", "demo-adapted"]
    for answer in body["answers"]:
        ref = Searcher(indexes / answer["index"]).search_image(path, 5)
        scores = np.array([[h["score"] for h in answer["hits"]]])
        ids = np.array([[h["row"] for h in answer["hits"]]])
        assert_knn_equal(ref.scores[None], ref.ids[None], scores, ids, tol=1e-4)
        assert body["versions"][answer["index"]] == answer["version"] == "v000001"
        for hit in answer["hits"]:  # privacy: safe columns only, never a path or patient id
            assert set(hit["metadata"]) <= {"label", "view", "source_repo"}
            assert hit["metadata"]["label"] in {"effusion", "normal", "pneumonia"}


def test_item_query_filter_and_group_exclusion(api: TestClient, indexes: Path) -> None:
    params = {
        "item": {"index": "demo-raw", "row": 2, "version": "v000001"},
        "k": 4,
        "indexes": ["demo-raw"],
        "filter": 'view == "PA"',
        "exclude_group": {"column": "patient_id", "value": "P01"},
    }
    response = api.post("/v1/search", json=params, headers=AUTH)
    assert response.status_code == 200, response.text
    hits = response.json()["answers"][0]["hits"]
    meta = Searcher(indexes / "demo-raw").metadata
    assert len(hits) == 4
    assert all(
        meta.loc[h["row"], "view"] == "PA" and meta.loc[h["row"], "patient_id"] != "P01"
        for h in hits
    )
    moved = api.post(
        "/v1/search", json={**params, "item": {**params["item"], "version": "v9"}}, headers=AUTH
    )
    assert moved.status_code == 409 and "v000001" in one_line_reason(moved)


def test_item_endpoint_shows_allowed_metadata_and_a_thumbnail(api: TestClient) -> None:
    item = api.get("/v1/items/demo-adapted/3", headers=AUTH).json()
    assert item["row"] == 3 and item["version"] == "v000001"
    assert set(item["metadata"]) == {"label", "view"}  # no id, path, patient_id
    thumb = Image.open(io.BytesIO(base64.b64decode(item["thumbnail_png"])))
    assert max(thumb.size) <= 128
    assert api.get("/v1/items/demo-raw/99", headers=AUTH).status_code == 404
    assert api.get("/v1/items/nope/1", headers=AUTH).status_code == 404


def test_explain_as_json_and_png(api: TestClient, image_folder: Path) -> None:
    params = {"result": {"index": "demo-raw", "row": 1}, "format": "json"}
    files = {"file": ("q.png", png(query_file(image_folder)), "image/png")}
    answer = api.post("/v1/explain", files=files, data={"params": json.dumps(params)}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    explanation = answer.json()["explanation"]
    assert explanation["grid"] and len(explanation["query"]["contributions"]) > 1
    figure = api.post(
        "/v1/explain",
        json={**params, "item": {"index": "demo-raw", "row": 0}, "format": "png"},
        headers=AUTH,
    )
    assert figure.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(figure.content)).width > 50


def test_keys_limits_and_one_line_errors(api: TestClient, image_folder: Path) -> None:
    data = png(query_file(image_folder))
    files = {"file": ("q.png", data, "image/png")}
    assert api.post("/v1/search", files=files).status_code == 401
    wrong = api.post(
        "/v1/search", files=files, headers={"Authorization": "Bearer wrong-key-000000000"}
    )
    assert wrong.status_code == 403 and one_line_reason(wrong)
    assert api.get("/metrics").status_code == 401
    big = search(api, b"\x89PNG" + b"\0" * 600_000)
    assert big.status_code == 413 and "limit" in one_line_reason(big)
    text = search(api, b"hello", name="notes.txt")
    assert text.status_code == 415 and ".txt" in one_line_reason(text)
    garbage = search(api, b"not an image at all", name="scan.png")
    assert garbage.status_code == 415 and "scan.png" in one_line_reason(garbage)
    bad_k = search(api, data, k=0)
    assert bad_k.status_code == 422 and one_line_reason(bad_k).startswith("k:")
    unknown = search(api, data, indexes=["nope"])
    assert unknown.status_code == 404 and "nope" in one_line_reason(unknown)
    bad_filter = search(api, data, filter="no_such_column == 1")
    assert bad_filter.status_code == 422 and one_line_reason(bad_filter)
    later = search(api, data, like=[1])
    assert later.status_code == 422 and "like" in one_line_reason(later)


def test_metrics_parse_as_prometheus_text(api: TestClient, image_folder: Path) -> None:
    search(api, png(query_file(image_folder)), k=2)
    text = api.get("/metrics", headers=AUTH).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["dinosearch_requests"].samples
    assert any(
        s.labels["endpoint"] == "/v1/search" and s.labels["status"] == "200" for s in requests
    )
    assert any(s.name.endswith("_count") and s.labels.get("endpoint") == "/v1/search"
               for s in families["dinosearch_request_seconds"].samples)  # fmt: skip
    batches = [
        s for s in families["dinosearch_model_batch_size"].samples if s.name.endswith("_count")
    ]
    assert batches and batches[0].value >= 1
    served = {
        s.labels["index"]: s.labels["version"]
        for s in families["dinosearch_index_version_info"].samples
    }
    assert set(served) == {"demo-raw", "demo-adapted"}


def test_new_version_is_served_without_restart(
    app_root: Path, tmp_path: Path, image_folder: Path
) -> None:
    from dinosearch.index import build_index

    root = tmp_path / "indexes"
    shutil.copytree(app_root / "indexes", root)
    config = ServeConfig(indexes=str(root), refresh_s=0.0)
    with TestClient(create_app(config, ENV)) as api:
        data = png(query_file(image_folder))
        assert search(api, data, k=2).json()["versions"]["demo-raw"] == "v000001"
        build_index(app_root / "features", root / "demo-raw")
        after = search(api, data, k=2).json()
        assert after["versions"] == {"demo-raw": "v000002", "demo-adapted": "v000001"}
        answered = {a["index"]: a["version"] for a in after["answers"]}
        assert answered == after["versions"]


def test_access_rules_refuse_unsafe_setups(indexes: Path, tmp_path: Path) -> None:
    from dinosearch.serve.keys import hash_key, load_keys

    with pytest.raises(ValueError, match="no API keys"):
        create_app(ServeConfig(indexes=str(indexes)), {})
    with pytest.raises(ValueError, match="loopback"):
        create_app(ServeConfig(indexes=str(indexes), no_auth=True, host="0.0.0.0"), {})
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"# reading room\n{hash_key(KEY)}\n")
    ring = load_keys(keyfile, {})
    assert ring.accepts(KEY) and not ring.accepts(KEY + "x") and not ring.accepts("")
    keyfile.write_text("plain-text-key\n")
    with pytest.raises(ValueError, match="keys:1 is not a key hash"):
        load_keys(keyfile, {})
    with pytest.raises(ValueError, match="characters"):
        load_keys(None, {"DINOSEARCH_API_KEYS": "short"})


def test_viewer_links_from_the_template(indexes: Path, image_folder: Path) -> None:
    template = "https://viewer.example/open?finding={label}"
    config = ServeConfig(indexes=str(indexes), viewer_url=template)
    with TestClient(create_app(config, ENV)) as api:
        hits = search(api, png(query_file(image_folder)), k=3).json()["answers"][0]["hits"]
        item = api.get("/v1/items/demo-raw/0", headers=AUTH, params={"thumbnail": "false"}).json()
    assert all(h["viewer_url"] == template.format(label=h["metadata"]["label"]) for h in hits)
    assert item["viewer_url"].startswith("https://viewer.example/open?finding=")
    assert item["thumbnail_png"] is None


def test_no_auth_answers_loopback_only_and_cors_is_opt_in(indexes: Path) -> None:
    app = create_app(ServeConfig(indexes=str(indexes), no_auth=True), {})
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.get("/v1/indexes").status_code == 200
        preflight = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "POST"}
        assert (
            "access-control-allow-origin"
            not in local.options("/v1/search", headers=preflight).headers
        )
    with TestClient(app, client=("10.1.2.3", 5000)) as remote:
        refused = remote.get("/v1/indexes")
        assert refused.status_code == 403 and "loopback" in one_line_reason(refused)
    cors = ServeConfig(indexes=str(indexes), cors_origin=("https://viewer.example",))
    with TestClient(create_app(cors, ENV)) as api:
        allowed = api.options("/v1/search", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://viewer.example"
        assert (
            "access-control-allow-origin"
            not in api.options(
                "/v1/search", headers={**preflight, "Origin": "https://evil.example"}
            ).headers
        )


def test_request_ids_headers_and_one_log_line_per_request(
    api: TestClient, image_folder: Path
) -> None:
    """The ASGI middleware: a safe X-Request-ID is kept, an unsafe one replaced; one log record
    per request names the route template and status, never the file or the filled URL."""
    import logging
    import re

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("dinosearch.serve")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the logger's cache
    try:
        files = {"file": ("secret-patient-name.png", png(query_file(image_folder)))}
        ok = api.post("/v1/search", files=files, data={"params": '{"k": 2}'},
                      headers={**AUTH, "X-Request-ID": "abc-123"})  # fmt: skip
        bad = api.get("/v1/items/demo-raw/0", headers={**AUTH, "X-Request-ID": "a b<script>"})
        missing = api.get("/v1/items/demo-raw/999999", headers=AUTH)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "abc-123"
    assert ok.json()["request_id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["X-Request-ID"])
    assert (
        missing.status_code == 404
        and missing.json()["request_id"] == missing.headers["X-Request-ID"]
    )
    lines = [(r.endpoint, r.status, r.request_id) for r in records if r.getMessage() == "request"]  # type: ignore[attr-defined]
    assert lines == [
        ("/v1/search", 200, "abc-123"),
        ("/v1/items/{index}/{row}", bad.status_code, bad.headers["X-Request-ID"]),
        ("/v1/items/{index}/{row}", 404, missing.headers["X-Request-ID"]),
    ]
    assert not any("secret-patient-name" in str(vars(r)) for r in records)


def test_server_environment_sets_only_what_is_unset() -> None:
    from dinosearch.serve.config import SERVER_ENV, server_environment

    env: dict[str, str] = {}
    server_environment(env)
    assert env == SERVER_ENV and env["OMP_WAIT_POLICY"] == "PASSIVE"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    server_environment(mine)
    assert mine == {"OMP_WAIT_POLICY": "ACTIVE"}  # the operator's choice wins
