"""``dinosearch embed``: records, batched extraction, bad files skipped, shards and resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY, TINY_CLI, TINY_SIZE

from dinosearch.backbones.transforms import eval_transform
from dinosearch.cli import main
from dinosearch.features import extract as featurestore_extract
from dinosearch.features import shards as featurestore
from dinosearch.features.extract import extract_features
from dinosearch.features.folder import embed_to_folder, load_features
from dinosearch.inputs.images import read_image
from dinosearch.inputs.records import load_records

TINY_ARGS = [
    *TINY_CLI,
    "--no-progress",
]


def add_bad_files(folder: Path) -> list[Path]:
    bad = [folder / "corrupt.png", folder / "empty.jpg", folder / "notes.txt"]
    bad[0].write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bad[1].touch()
    bad[2].write_text("not an image")
    return bad


def test_folder_records_are_stable_and_labelled(image_folder: Path) -> None:
    records, skipped = load_records(image_folder)
    assert len(records) == 12 and skipped.empty
    assert records["id"].tolist() == sorted(records["id"].tolist())
    assert set(records["label"]) == {"effusion", "normal", "pneumonia"}
    assert records.loc[0, "id"] == "effusion/effusion_0"


def test_manifest_records_keep_their_columns(tmp_path: Path, image_folder: Path) -> None:
    paths = sorted(str(p.relative_to(image_folder)) for p in image_folder.rglob("*.png"))
    pd.DataFrame({"file": paths, "patient_id": range(len(paths))}).to_csv(
        image_folder / "m.csv", index=False
    )
    try:
        records, _ = load_records(image_folder / "m.csv")
    finally:
        (image_folder / "m.csv").unlink()
    assert list(records.columns[:2]) == ["id", "path"] and "patient_id" in records
    assert all(Path(p).is_file() for p in records["path"])


def test_manifest_errors_name_the_problem(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match="m.csv: no path column"):
        load_records(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records(tmp_path / "nothing")


def test_embed_cli_skips_bad_files_and_aligns_rows(
    tmp_path: Path, image_folder: Path, tiny_backbone, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    add_bad_files(folder)
    out = tmp_path / "feats"
    assert main(["embed", "--images", str(folder), "--out", str(out), *TINY_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "embedded 12 images" in printed and "skipped 3" in printed and "corrupt.png" in printed
    fs = load_features(out, verify=True)
    assert fs.features.shape == (12, 32) and fs.features.dtype == np.float32
    assert fs.manifest["backbone"]["random_init"] is True
    assert set(pd.read_csv(out / "skipped.csv")["path"].map(lambda p: Path(p).name)) == {
        "corrupt.png",
        "empty.jpg",
        "notes.txt",
    }
    # Row i of the metadata is vector i: re-embed row 5 alone and compare.
    transform = eval_transform(tiny_backbone.preprocess)
    x = transform(read_image(fs.metadata.loc[5, "path"]))[None]
    with torch.inference_mode():
        np.testing.assert_allclose(
            tiny_backbone(x).numpy()[0], fs.features[5], rtol=1e-4, atol=1e-5
        )


def test_embed_is_deterministic(tmp_path: Path, image_folder: Path) -> None:
    for name in ("a", "b"):
        assert (
            main(
                [
                    "embed",
                    "--images",
                    str(image_folder),
                    "--out",
                    str(tmp_path / name),
                    "--workers",
                    "0",
                    *TINY_ARGS,
                ]
            )
            == 0
        )
    a, b = load_features(tmp_path / "a"), load_features(tmp_path / "b")
    assert np.array_equal(a.features, b.features)
    assert a.manifest["checksums"] == b.manifest["checksums"]


def test_all_bad_exits_nonzero(tmp_path: Path) -> None:
    add_bad_files(tmp_path)
    (tmp_path / "notes.txt").unlink()
    assert main(["embed", "--images", str(tmp_path), "--out", str(tmp_path / "o"), *TINY_ARGS]) == 1


def test_resume_after_interruption_redoes_no_finished_shard(
    tmp_path: Path, image_folder: Path, tiny_backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, _ = load_records(image_folder)
    out = tmp_path / "feats"
    calls: list[int] = []
    real = featurestore.write_shard

    def interrupted(shard: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if int(shard.stem) >= 2:
            raise KeyboardInterrupt  # the job is killed as shard 2 completes
        calls.append(int(shard.stem))
        real(shard, *args, **kwargs)

    monkeypatch.setattr(featurestore, "write_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_to_folder(records, tiny_backbone, out, shard_size=4, num_workers=0, progress=False)
    assert calls == [0, 1] and not out.exists()
    assert len(list((tmp_path / "feats.partial" / "shards").glob("*.npz"))) == 2

    embedded: list[str] = []
    real_iter = featurestore_extract.iter_features
    monkeypatch.setattr(
        featurestore, "write_shard", lambda s, *a: (calls.append(int(s.stem)), real(s, *a))
    )

    def recording(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        embedded.extend(paths)
        yield from real_iter(paths, *args, **kwargs)

    monkeypatch.setattr(featurestore_extract, "iter_features", recording)
    resumed = embed_to_folder(
        records, tiny_backbone, out, shard_size=4, resume=True, num_workers=0, progress=False
    )
    assert calls == [0, 1, 2]  # only the unfinished shard ran again
    assert embedded == records["path"].tolist()[8:]
    _, fresh, _ = extract_features(
        records["path"].tolist(), tiny_backbone, num_workers=0, progress=False
    )
    np.testing.assert_allclose(resumed.features, fresh, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "feats.partial").exists()


def test_resume_refuses_another_backbone(tmp_path: Path, image_folder: Path, tiny_backbone) -> None:
    from dinosearch.backbones import load_backbone

    records, _ = load_records(image_folder)
    partial = tmp_path / "feats.partial"
    partial.mkdir()
    (partial / "plan.json").write_text('{"fingerprint": "other"}')
    with pytest.raises(ValueError, match="another backbone or image set"):
        embed_to_folder(
            records,
            load_backbone(TINY, "random", image_size=TINY_SIZE, seed=5),
            tmp_path / "feats",
            resume=True,
            progress=False,
        )


def test_rewrite_keeps_old_output_until_new_one_is_complete(
    tmp_path: Path, image_folder: Path, tiny_backbone, monkeypatch
) -> None:
    records, _ = load_records(image_folder)
    out = tmp_path / "feats"
    embed_to_folder(records, tiny_backbone, out, num_workers=0, progress=False)
    before = (out / "features.npy").read_bytes()
    monkeypatch.setattr(
        featurestore, "write_shard", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(KeyboardInterrupt):
        embed_to_folder(records, tiny_backbone, out, num_workers=0, progress=False)
    assert (out / "features.npy").read_bytes() == before
    load_features(out, verify=True)


@pytest.mark.cxr
def test_embed_real_xrays_with_vits14_random(tmp_path: Path, cxr_dir: Path) -> None:
    """Real X-rays with bad files mixed in: ViT-S/14 (random) gives one 384-d vector per readable film."""
    folder = tmp_path / "cxr"
    folder.mkdir()
    for src in sorted((cxr_dir / "images").glob("*.jpg"))[:6]:
        shutil.copy(src, folder / src.name)
    add_bad_files(folder)
    out = tmp_path / "feats"
    args = ["--backbone", "dinov2_vits14", "--weights", "random", "--no-progress"]
    assert main(["embed", "--images", str(folder), "--out", str(out), *args]) == 0
    fs = load_features(out)
    assert fs.features.shape == (6, 384) and np.isfinite(fs.features).all()
    assert fs.manifest["skipped"] == 3
