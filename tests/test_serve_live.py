"""dinosearch serve on a real uvicorn (127.0.0.1, a free port, stopped after): the client, the CLI,
keys and limits over TCP, and the model worker batching concurrent queries."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from helpers import assert_knn_equal
from prometheus_client.parser import text_string_to_metric_families
from serving import KEY, free_port, uvicorn_thread

from dinosearch.client import Client, ServerError
from dinosearch.search import Searcher
from dinosearch.serve.app import create_app
from dinosearch.serve.batcher import ModelBatcher
from dinosearch.serve.config import ServeConfig


@pytest.fixture(scope="module")
def indexes(app_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live") / "indexes"
    shutil.copytree(app_root / "indexes", root)
    return root


@pytest.fixture(scope="module")
def server(indexes: Path) -> Iterator[str]:
    config = ServeConfig(
        indexes=str(indexes), max_upload_mb=0.5, max_wait_ms=50.0, port=free_port()
    )
    app = create_app(config, {"DINOSEARCH_API_KEYS": KEY})
    with uvicorn_thread(app, config.port) as url:
        yield url


def queries(image_folder: Path) -> list[Path]:
    return sorted(image_folder.rglob("*.png"))


def test_each_endpoint_through_the_client(server: str, indexes: Path, image_folder: Path) -> None:
    with Client(server, api_key=KEY, timeout=60) as client:
        assert client.ready()
        assert {i["name"] for i in client.indexes()} == {"demo-raw", "demo-adapted"}
        path = queries(image_folder)[1]
        answer = client.search(image=path, k=6, indexes=["demo-adapted"])["answers"][0]
        ref = Searcher(indexes / "demo-adapted").search_image(path, 6)
        got_scores = np.array([[h["score"] for h in answer["hits"]]])
        got_ids = np.array([[h["row"] for h in answer["hits"]]])
        assert_knn_equal(ref.scores[None], ref.ids[None], got_scores, got_ids, tol=1e-4)
        item = client.item("demo-raw", int(got_ids[0, 0]))
        assert item["metadata"]["label"] and "patient_id" not in item["metadata"]
        png = client.explain(image=path, result={"index": "demo-raw", "row": 0}, format="png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        families = {f.name for f in text_string_to_metric_families(client.metrics())}
        assert {"dinosearch_requests", "dinosearch_model_batch_size"} <= families


def test_keys_and_limits_over_tcp(server: str, image_folder: Path) -> None:
    data = queries(image_folder)[0].read_bytes()
    files = {"file": ("q.png", data, "image/png")}
    assert httpx.post(f"{server}/v1/search", files=files).status_code == 401
    with Client(server, api_key="a-wrong-key-0000000000") as wrong:
        with pytest.raises(ServerError) as e:
            wrong.indexes()
        assert e.value.status == 403
    with Client(server, api_key=KEY) as client:
        with pytest.raises(ServerError) as e:
            client.search(image=b"\0" * 700_000, k=1)
        assert e.value.status == 413
        with pytest.raises(ServerError) as e:
            client.search(image=b"%PDF-1.4 not a film", k=1)
        assert e.value.status == 415 and "\n" not in e.value.reason


def test_search_server_prints_what_local_search_prints(
    server: str,
    indexes: Path,
    image_folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dinosearch.cli import main

    image = str(queries(image_folder)[2])
    argv = ["search", "--index", str(indexes / "demo-raw"), "--image", image, "-k", "4", "--json"]
    assert main([*argv, "--hide-identifiers"]) == 0
    local = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("DINOSEARCH_API_KEY", KEY)
    assert main([*argv, "--server", server]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["version"] == local["version"] and remote["query"] == local["query"]
    assert [r["label"] for r in remote["results"]] == [r["label"] for r in local["results"]]
    np.testing.assert_allclose(
        [r["score"] for r in remote["results"]], [r["score"] for r in local["results"]], atol=1e-4
    )
    assert set(remote["results"][0]) == set(local["results"][0])


def test_concurrent_queries_share_forward_passes(server: str, image_folder: Path) -> None:
    paths = queries(image_folder)
    with Client(server, api_key=KEY) as client, ThreadPoolExecutor(8) as pool:
        before = _batches(client.metrics())
        found = list(
            pool.map(lambda p: client.search(image=p, k=2, indexes=["demo-raw"]), paths * 2)
        )
        after = _batches(client.metrics())
    assert all(len(f["answers"][0]["hits"]) == 2 for f in found)
    images, passes = after[0] - before[0], after[1] - before[1]
    assert images == len(found) and passes < images  # some forward passes served several queries


def _batches(text: str) -> tuple[float, float]:
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "dinosearch_model_batch_size"
    )
    values = {s.name: s.value for s in family.samples}
    return values["dinosearch_model_batch_size_sum"], values["dinosearch_model_batch_size_count"]


def test_batcher_gathers_splits_and_reports_errors() -> None:
    calls: list[int] = []

    def forward(x: torch.Tensor) -> np.ndarray:
        calls.append(len(x))
        time.sleep(0.01)
        if (x < 0).any():
            raise ValueError("bad input")
        return x.flatten(1).sum(1, keepdim=True).numpy()  # (B, 1)

    batcher = ModelBatcher(forward, max_batch=8, max_wait_s=0.05)
    start = threading.Barrier(12)

    def one(i: int) -> float:
        start.wait(5)
        return float(batcher.submit(torch.full((1, 1, 2, 2), float(i))).result(10)[0, 0])

    with ThreadPoolExecutor(12) as pool:
        out = list(pool.map(one, range(12)))
    assert out == [4.0 * i for i in range(12)]
    assert max(calls) <= 8 and len(calls) < 12
    with pytest.raises(ValueError, match="bad input"):
        batcher.submit(torch.full((1, 1, 2, 2), -1.0)).result(10)
    assert batcher.submit(torch.ones(2, 1, 2, 2)).result(10).tolist() == [[4.0], [4.0]]
    batcher.close()


def test_app_with_api_queries_the_server(
    server: str, indexes: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dinosearch app --api URL``: the page's query goes to the server; cards as without --api."""
    import re

    from streamlit.testing.v1 import AppTest

    from dinosearch.app.launch import PAGE

    rank = re.compile(r"^\*\*#(\d+)\*\* · [\d.-]+(?: :violet-badge\[in both\])?$")
    monkeypatch.setenv("DINOSEARCH_INDEXES", str(indexes))
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", "id")
    monkeypatch.setenv("DINOSEARCH_API", server)
    monkeypatch.setenv("DINOSEARCH_API_KEY", KEY)
    with Client(server, api_key=KEY) as client:
        before = _answered(client.metrics(), "/v1/search")
        page = AppTest.from_file(str(PAGE), default_timeout=60).run()
        film = queries(image_folder)[0]
        page.sidebar.slider[0].set_value(5)
        page.file_uploader[0].set_value((film.name, film.read_bytes(), "image/png")).run()
        assert not page.exception and not page.error
        assert (
            _answered(client.metrics(), "/v1/search") == before + 1
        )  # one request answered both columns
    own_id = Searcher(indexes / "demo-raw").metadata.set_index("path").loc[str(film), "id"]
    for title in ("Raw backbone", "Adapted"):
        column = next(
            c for c in page.columns if any(s.value.startswith(title) for s in c.subheader)
        )
        assert [int(m.group(1)) for md in column.markdown if (m := rank.match(md.value))] == [
            1,
            2,
            3,
            4,
            5,
        ]
        ids = [t.value.removeprefix("id: ") for t in column.text if t.value.startswith("id: ")]
        assert ids[0] == own_id  # the film itself comes first, read from the answering version
    with Client(server, api_key=KEY) as client:  # "why similar": explained by the server
        before = _answered(client.metrics(), "/v1/explain")
        for column in ("raw", "adapted"):
            box = page.selectbox(key=f"why-pick-{column}")
            box.set_value(box.options[2])
        page.run()
        assert not page.exception and not page.error
        assert _answered(client.metrics(), "/v1/explain") == before + 2
    captions = [c.value for c in page.caption]
    assert sum("Computed in" in c for c in captions) == 2


def _answered(text: str, endpoint: str) -> float:
    """Requests to ``endpoint`` the server has counted (its /metrics text)."""
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "dinosearch_requests"
    )
    return sum(
        s.value
        for s in family.samples
        if s.labels.get("endpoint") == endpoint and s.name.endswith("_total")
    )


def test_search_server_forwards_refinements(
    server: str,
    indexes: Path,
    image_folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--region/--like/--unlike/--per-patient/--diversity reach the server: same rows as locally."""
    from dinosearch.cli import main

    meta = Searcher(indexes / "demo-raw").metadata
    image = str(queries(image_folder)[2])
    argv = ["search", "--index", str(indexes / "demo-raw"), "--image", image, "-k", "4", "--json"]
    argv += ["--region", "0,0,40,60", "--like", str(meta.loc[3, "id"]), "--unlike"]
    argv += [str(meta.loc[8, "id"]), "--per-patient", "--diversity", "0.8"]
    assert main([*argv, "--hide-identifiers"]) == 0
    local = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("DINOSEARCH_API_KEY", KEY)
    assert main([*argv, "--server", server]) == 0
    remote = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(
        [r["score"] for r in remote["results"]], [r["score"] for r in local["results"]], atol=1e-4
    )
    assert [r["more_films"] for r in remote["results"]] == [
        r["more_films"] for r in local["results"]
    ]
    assert main([*argv[:8], "--server", server]) == 0  # no refinements: other results
    whole = json.loads(capsys.readouterr().out)
    assert [r["score"] for r in whole["results"]] != [r["score"] for r in remote["results"]]


def test_app_api_mode_with_region_and_marks(
    server: str, indexes: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dinosearch app --api URL`` with every refine control: the same cards as in-process."""
    from streamlit.testing.v1 import AppTest
    from test_app import card_ids, result_column

    from dinosearch.app import compare
    from dinosearch.app.launch import PAGE

    monkeypatch.setenv("DINOSEARCH_INDEXES", str(indexes))
    monkeypatch.setenv("DINOSEARCH_SHOW_COLUMNS", "id,patient_id")
    monkeypatch.setenv("DINOSEARCH_API", server)
    monkeypatch.setenv("DINOSEARCH_API_KEY", KEY)
    page = AppTest.from_file(str(PAGE), default_timeout=60).run()
    film = queries(image_folder)[0]
    page.sidebar.slider[0].set_value(6)
    page.file_uploader[0].set_value((film.name, film.read_bytes(), "image/png")).run()
    assert not page.exception and not page.error
    page.checkbox(key="region-on").check().run()
    page.slider(key="region-x").set_value((0, 50)).run()
    first = card_ids(result_column(page, "Raw backbone"))
    page.checkbox(key="like-raw-0-2").check()
    page.checkbox(key="unlike-raw-0-1").check()
    page.button(key="fb-apply").click().run()
    assert not page.exception and not page.error
    assert any("outlined region" in c.value for c in page.caption)
    assert any("other film" in c.value for c in page.caption)  # per patient (default): counts
    pair = compare.SideBySide(indexes / "demo-raw", indexes / "demo-adapted")
    image = compare.read_query(film.read_bytes(), film.name)
    w, h = image.size
    marks = {"raw": ([first[2]], [first[1]]), "adapted": ([], [])}
    want = pair.query(image, 6, region=(0, 0, w / 2, h), feedback=marks, collapse="patient_id")
    assert card_ids(result_column(page, "Raw backbone")) == [str(i) for i in want.raw.rows["id"]]
    assert card_ids(result_column(page, "Adapted")) == [str(i) for i in want.adapted.rows["id"]]


def test_batcher_waits_only_for_announced_requests() -> None:
    """A lone query is not held for ``max_wait_s``; one announced with ``coming()`` joins the batch,
    and the wait ends when the announced request leaves without submitting."""
    calls: list[int] = []

    def forward(x: torch.Tensor) -> np.ndarray:
        calls.append(len(x))
        return x.flatten(1).sum(1, keepdim=True).numpy()

    batcher = ModelBatcher(forward, max_batch=8, max_wait_s=60.0)
    one = torch.ones(1, 1, 2, 2)
    assert batcher.submit(one).result(10).tolist() == [[4.0]]  # would time out after a 60 s wait
    with ThreadPoolExecutor(1) as pool:
        with batcher.coming():
            first = pool.submit(lambda: batcher.submit(one).result(10)).result  # queued, waiting
            time.sleep(0.2)  # the worker holds the first job for the announced one
            second = batcher.submit(2 * one)
        assert first(10).tolist() == [[4.0]] and second.result(10).tolist() == [[8.0]]
        with batcher.coming():
            lone = pool.submit(lambda: batcher.submit(one).result(10))
            time.sleep(0.2)
        assert lone.result(10).tolist() == [[4.0]]  # the announced one left: no 60 s wait
    assert calls == [1, 2, 1]
    batcher.close()


def test_why_similar_through_the_server_equals_the_local_panel(
    server: str, indexes: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``app --api``: the server explains a shown result; the map drawn here is the one the app
    computes locally (same shares, words and scale), and a stale version is one line, not another film."""
    from PIL import Image

    from dinosearch.app.compare import SideBySide
    from dinosearch.app.remote import RemotePair
    from dinosearch.app.why import WhySimilar

    monkeypatch.setenv("DINOSEARCH_API_KEY", KEY)
    remote = RemotePair(server, indexes / "demo-raw", indexes / "demo-adapted")
    local = WhySimilar(SideBySide(indexes / "demo-raw", indexes / "demo-adapted"))
    query = Image.open(queries(image_folder)[2])
    result = remote.query(query, 3)
    for column, hits in (("raw", result.raw), ("adapted", result.adapted)):
        path = str(hits.rows["path"].iloc[1])
        there = remote.why.view(column, query, path, matches=True)
        here = local.view(column, query, path, matches=True)
        a, b = there.explanation.map, here.explanation.map
        assert a.method == b.method and a.grid == b.grid
        for side in ("query", "result"):
            np.testing.assert_allclose(a.shares(side), b.shares(side), atol=1e-6)
            np.testing.assert_allclose(a.rest(side), b.rest(side), atol=1e-6)
        assert there.caption.split(" Computed in")[0] == here.caption.split(" Computed in")[0]
        assert there.legend == here.legend and there.image.size == here.image.size
        assert np.array_equal(there.explanation.matches, here.explanation.matches)
        assert remote.why.view(column, query, path, matches=True).caption.endswith(
            "(kept from before)."
        )
    path = str(result.adapted.rows["path"].iloc[0])
    remote.refs[("demo-adapted", path)] |= {"version": "v999999"}  # as if republished meanwhile
    with pytest.raises(ServerError) as caught:
        remote.why.view("adapted", query, path)
    assert caught.value.status == 409 and "search again" in str(caught.value)


def test_a_server_that_does_not_answer_is_one_line(
    image_folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening: the client raises one line naming the address; the CLI exits 2 with it."""
    from dinosearch.cli import main
    from dinosearch.client import ServerUnreachable

    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    with Client(url, api_key=KEY, timeout=5) as client:
        assert client.ready() is False
        with pytest.raises(
            ServerUnreachable, match=r"no answer from http://127\.0\.0\.1:\d+ \(ConnectError"
        ):
            client.search(image=queries(image_folder)[0], k=3)
    monkeypatch.setenv("DINOSEARCH_API_KEY", KEY)
    argv = [
        "search",
        "--index",
        "demo-raw",
        "--image",
        str(queries(image_folder)[0]),
        "--server",
        url,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no answer from" in err and "dinosearch serve" in err
    assert "\n" not in err and "Traceback" not in err
