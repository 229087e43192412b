"""The DICOMweb source against a real Orthanc: same features as the files on disk, paging, faults."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from archive_films import sample_rows, write_films
from helpers import TINY_CLI
from orthanc import PASSWORD, USER, Orthanc, available, free_port
from pydicom import dcmread

from dinosearch.cli import main
from dinosearch.inputs import dicomweb
from dinosearch.inputs.dicomweb import dicom_metadata, load_archive_records
from dinosearch.inputs.errors import ArchiveError

EMBED = ["--workers", "0", "--batch-size", "8", "--no-progress", *TINY_CLI]


def _disk_manifest(films: list[Path], out: Path) -> Path:
    """The same films as a manifest with the metadata the archive gives (read from the files)."""
    rows = []
    for path in films:
        ds = dcmread(path, stop_before_pixels=True)
        rows.append({"id": str(ds.SOPInstanceUID), "path": str(path), **dicom_metadata(ds)})
    pd.DataFrame(rows).to_csv(out, index=False, quoting=1)
    return out


def test_embed_from_orthanc_equals_embed_from_disk(archive, tmp_path: Path) -> None:
    server, films = archive
    assert (
        main(["embed", "--images", server.dicomweb, "--out", str(tmp_path / "pacs"), *EMBED]) == 0
    )
    manifest = _disk_manifest(films, tmp_path / "disk.csv")
    assert main(["embed", "--images", str(manifest), "--out", str(tmp_path / "disk"), *EMBED]) == 0
    pacs = pd.read_parquet(tmp_path / "pacs" / "metadata.parquet")
    disk = pd.read_parquet(tmp_path / "disk" / "metadata.parquet").astype(str)
    order = np.argsort(disk["id"].to_numpy())
    disk = disk.iloc[order].reset_index(drop=True)
    assert len(pacs) == 40
    columns = [c for c in pacs.columns if c != "path"]
    pd.testing.assert_frame_equal(pacs[columns].astype(str), disk[columns], check_dtype=False)
    assert (
        set(pacs["patient_id"]) == set(disk["patient_id"]) and pacs["view"].isin(["PA", "AP"]).all()
    )
    a = np.load(tmp_path / "pacs" / "features.npy")
    b = np.load(tmp_path / "disk" / "features.npy")[order]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_paged_listing_and_filters(archive) -> None:
    server, _ = archive
    full, _ = load_archive_records(server.dicomweb)
    paged, _ = load_archive_records(server.dicomweb, page=7)  # 6 requests, the last one short
    pd.testing.assert_frame_equal(full, paged)
    assert full["id"].is_unique and len(full) == 40
    cr, _ = load_archive_records(server.dicomweb + "?Modality=CR")
    dx, _ = load_archive_records(server.dicomweb + "?Modality=DX")
    both, _ = load_archive_records(server.dicomweb + "?Modality=CR&Modality=DX")
    assert set(cr["Modality"]) == {"CR"} and set(dx["Modality"]) == {"DX"}
    assert len(cr) + len(dx) == len(both) == 40
    patient = full["patient_id"][full["patient_id"].str.contains(":")].iloc[0]  # "cxnet-img:025"
    one, _ = load_archive_records(f"{server.dicomweb}?PatientID={patient}")
    assert len(one) and set(one["patient_id"]) == {patient}
    assert len(one) == (full["patient_id"] == patient).sum()


def test_credentials_in_the_url_are_refused(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    url = "dicomweb+http://alice:secret@127.0.0.1:1/dicom-web"
    assert main(["embed", "--images", url, "--out", str(tmp_path / "f"), *EMBED]) == 2
    err = capsys.readouterr().err
    assert "must not hold credentials" in err and "secret" not in err and err.count("\n") == 1


@pytest.fixture()
def own_archive(tmp_path: Path):
    """A fresh Orthanc of 12 films for tests that break it; basic auth on when asked."""
    missing = available()
    if missing:
        pytest.skip(missing)
    films = write_films(sample_rows(12, start=100), tmp_path / "films")
    servers: list[Orthanc] = []

    def start(auth: bool = False, port: int | None = None) -> Orthanc:
        server = Orthanc(tmp_path / "orthanc", auth=auth, port=port).start()
        servers.append(server)
        return server

    yield start, films
    for server in servers:
        server.stop()


def test_401_names_the_environment_variable(
    own_archive, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start, films = own_archive
    server = start(auth=True)
    server.store(films[:3])
    for name in (dicomweb.TOKEN_ENV, dicomweb.USER_ENV, dicomweb.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    dicomweb._session.cache_clear()
    assert main(["embed", "--images", server.dicomweb, "--out", str(tmp_path / "f"), *EMBED]) == 2
    err = capsys.readouterr().err
    assert "401" in err and dicomweb.TOKEN_ENV in err and err.count("\n") == 1
    monkeypatch.setenv(dicomweb.USER_ENV, USER)
    monkeypatch.setenv(dicomweb.PASSWORD_ENV, PASSWORD)
    dicomweb._session.cache_clear()
    assert main(["embed", "--images", server.dicomweb, "--out", str(tmp_path / "f"), *EMBED]) == 0
    assert PASSWORD not in (tmp_path / "f" / "manifest.json").read_text()
    assert PASSWORD not in capsys.readouterr().out
    dicomweb._session.cache_clear()


def test_undecodable_instance_is_skipped(own_archive, tmp_path: Path) -> None:
    start, films = own_archive
    server = start()
    broken = dcmread(films[0])
    broken.PixelData = b"\x00" * 10  # 10 bytes for a 256-px film
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    broken.save_as(tmp_path / "broken.dcm")
    server.store([*films[:4], tmp_path / "broken.dcm"])
    assert main(["embed", "--images", server.dicomweb, "--out", str(tmp_path / "f"), *EMBED]) == 0
    skipped = pd.read_csv(tmp_path / "f" / "skipped.csv")
    assert len(skipped) == 1 and skipped["path"][0].endswith("/instances/1.2.3.4.5.6.7.8.9")
    assert len(pd.read_parquet(tmp_path / "f" / "metadata.parquet")) == 4


def test_archive_down_mid_run_then_resume(
    own_archive, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start, films = own_archive
    server = start()
    server.store(films)
    real, fetched = dicomweb.fetch_bytes, []

    def fetch_then_stop(path: str) -> bytes:
        fetched.append(path)
        if len(fetched) == 6:  # the archive goes down after two shards of 3
            server.stop()
        return real(path)

    monkeypatch.setattr("dinosearch.inputs.images.fetch_bytes", fetch_then_stop)
    monkeypatch.setenv(dicomweb.RETRIES_ENV, "1")
    dicomweb._session.cache_clear()
    out = tmp_path / "f"
    argv = ["embed", "--images", server.dicomweb, "--out", str(out), "--shard-size", "3", *EMBED]
    argv[argv.index("--batch-size") + 1] = "3"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "archive unreachable" in err and err.count("\n") == 1 and not out.exists()
    assert len(list((tmp_path / "f.partial" / "shards").glob("*.npz"))) == 1
    start(port=server.port)  # the same storage: the same films
    fetched.clear()
    assert main([*argv, "--resume"]) == 0
    assert len(fetched) == 9  # the finished shard was kept
    assert len(pd.read_parquet(out / "metadata.parquet")) == 12
    dicomweb._session.cache_clear()


def test_slow_archive_times_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stall() -> None:  # accepts, never answers
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_stall, daemon=True)
    thread.start()
    monkeypatch.setenv(dicomweb.TIMEOUT_ENV, "0.3")
    monkeypatch.setenv(dicomweb.RETRIES_ENV, "1")
    dicomweb._session.cache_clear()
    url = f"dicomweb+http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
    try:
        began = time.monotonic()
        with pytest.raises(ArchiveError, match="no answer within 0.3 s"):
            load_archive_records(url)
        assert time.monotonic() - began < 5  # two tries of 0.3 s and a back-off, not forever
        assert main(["embed", "--images", url, "--out", str(tmp_path / "f"), *EMBED]) == 2
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
        dicomweb._session.cache_clear()
    err = capsys.readouterr().err
    assert "no answer within 0.3 s" in err and err.count("\n") == 1


def test_search_json_links_each_result_to_its_study(
    archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from dinosearch.app.compare import read_archive_query
    from dinosearch.inputs.dicomweb import fetch_instance

    server, films = archive
    url = f"{server.dicomweb}?StudyInstanceUID={films_study(films[0])}"
    assert main(["embed", "--images", url, "--out", str(tmp_path / "f"), *EMBED]) == 0
    assert main(["index", "--features", str(tmp_path / "f"), "--out", str(tmp_path / "i")]) == 0
    template = f"{server.url}/app/explorer.html#study?uuid={{StudyInstanceUID}}&sop={{id}}"
    capsys.readouterr()
    argv = ["search", "--index", str(tmp_path / "i"), "--image", str(films[0]), "--json"]
    assert main([*argv, "--viewer-url", template, "-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    ds = dcmread(films[0], stop_before_pixels=True)
    for row in results:
        assert row["viewer_url"] == template.format(
            StudyInstanceUID=row["StudyInstanceUID"], id=row["id"]
        )
    assert ds.StudyInstanceUID in {r["StudyInstanceUID"] for r in results}
    # "this film in the archive": by SOP Instance UID (the very file stored), by Study Instance UID
    assert fetch_instance(server.dicomweb, ds.SOPInstanceUID) == films[0].read_bytes()
    by_study = read_archive_query(server.dicomweb, ds.StudyInstanceUID)
    assert by_study.size[0] > 0
    with pytest.raises(ValueError, match="no study or instance"):
        fetch_instance(server.dicomweb, "1.2.3.999")


def films_study(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_multipart_parts_come_back_byte_exact() -> None:
    parts = [b"DICM\r\n--not-a-boundary\r\n\x00\xff", b"\r\n\r\nsecond\r\n"]
    body = b"".join(
        b"--b0undary\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts
    )
    body += b"--b0undary--\r\n"
    assert (
        dicomweb._multipart(
            'multipart/related; type="application/dicom"; boundary="b0undary"', body
        )
        == parts
    )
    assert dicomweb._multipart("application/dicom", b"raw") == [b"raw"]


def test_archive_error_from_a_loader_worker_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process's ArchiveError reaches the caller as itself, without the worker's traceback."""
    import torch

    from dinosearch.features.loader import ImageDataset, make_loader

    monkeypatch.setenv(dicomweb.RETRIES_ENV, "0")
    closed = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web/studies/1/series/2/instances/3"
    dataset = ImageDataset([closed], transform=lambda image: image)  # type: ignore[arg-type]
    loader = make_loader(dataset, batch_size=1, num_workers=1, device=torch.device("cpu"))
    with pytest.raises(ArchiveError) as caught:
        next(iter(loader))
    assert "archive unreachable" in str(caught.value) and "\n" not in str(caught.value)
