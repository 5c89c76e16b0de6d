"""Data stages: sampling, patient-disjoint split, resize, noise shards, Dataset, and bad input."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxrdenoise.commands import data as stages
from config_files import load_config
from cxrdenoise.data import PairDataset
from cxrdenoise.errors import CxrError
from cxrdenoise.imaging import load_grey, resize_grey
from cxrdenoise.inventory import build_inventory
from cxrdenoise.sampling import sample_images
from cxrdenoise.shards import image_noise
from cxrdenoise.split import assign_patients, check_patient_disjoint, split_sample, target_counts
from datadir import build_data_dir

REPO = Path(__file__).resolve().parents[1]


def fake_inventory(sizes: list[int]) -> pd.DataFrame:
    rows = [{"image_id": f"{p:08d}_{f:03d}.png", "patient_id": p, "follow_up": f, "view_position": "PA",
             "source_path": f"/x/{p:08d}_{f:03d}.png"}
            for p, n in enumerate(sizes, start=1) for f in range(n)]
    return pd.DataFrame(rows)


def write_png(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


# --- sampling -------------------------------------------------------------------------------------------

def test_sampling_is_deterministic_and_seed_dependent(tmp_path):
    for i in range(30):
        write_png(tmp_path / f"{i // 3 + 1:08d}_{i % 3:03d}.png", np.full((8, 8), i, np.uint8))
    inv = build_inventory([tmp_path])
    a = sample_images(inv, 10, seed=1, progress=False)
    b = sample_images(inv.sample(frac=1, random_state=0), 10, seed=1, progress=False)  # other row order
    c = sample_images(inv, 10, seed=2, progress=False)
    assert a.equals(b)
    assert list(a["image_id"]) != list(c["image_id"])
    assert len(set(a["image_id"])) == 10
    assert all(len(h) == 64 for h in a["source_sha256"])


def test_sampling_more_than_available_names_both_numbers():
    with pytest.raises(CxrError, match=r"n_images is 50 but only 12 images"):
        sample_images(fake_inventory([3] * 4), 50, seed=0, progress=False)


# --- split ----------------------------------------------------------------------------------------------

def test_study_split_sizes():
    # The study's 7,499 / 4,949 / 2,551 add up to 14,999: the floor rule reproduces them exactly.
    assert target_counts(14_999, 0.5, 0.33) == {"train": 7499, "val": 4949, "test": 2551}
    assert target_counts(15_000, 0.5, 0.33) == {"train": 7500, "val": 4950, "test": 2550}


def test_patient_disjoint_split_hits_targets_exactly():
    rng = np.random.default_rng(0)
    inv = fake_inventory(list(rng.integers(1, 6, size=400)))  # many multi-image patients
    out = split_sample(inv, 0.5, 0.33, seed=5)
    counts = out["split"].value_counts().to_dict()
    assert counts == target_counts(len(inv), 0.5, 0.33)
    assert out.groupby("patient_id")["split"].nunique().max() == 1
    assert list(out["split"].unique()) == ["train", "val", "test"]  # ordered by split


def test_split_is_closest_when_groups_forbid_exactness():
    sizes = pd.Series([10, 10, 10], index=[1, 2, 3])
    assignment = assign_patients(sizes, {"train": 15, "val": 10, "test": 5}, seed=0)
    assert sorted(assignment.values()) == ["test", "train", "val"]


def test_overlap_check_names_the_patient():
    bad = pd.DataFrame({"patient_id": [7, 7, 8], "split": ["train", "test", "val"]})
    with pytest.raises(CxrError, match=r"patient 7 appears in splits \['test', 'train'\]"):
        check_patient_disjoint(bad)


def test_official_split_honours_test_list(tmp_path):
    inv = fake_inventory([2] * 30)
    test_ids = set(inv.loc[inv["patient_id"] > 25, "image_id"])
    out = split_sample(inv, 0.5, 0.33, seed=1, test_ids=test_ids)
    assert set(out.loc[out["split"] == "test", "image_id"]) == test_ids


# --- resize ---------------------------------------------------------------------------------------------

def test_resize_antialiased_rgba_and_non_1024(tmp_path):
    stripes = np.tile(np.array([0, 255], np.uint8), (96, 48))  # 1-pixel stripes: aliasing would keep them
    rgba = np.dstack([stripes] * 3 + [np.full_like(stripes, 255)])
    path = write_png(tmp_path / "00000001_000.png", rgba, mode="RGBA")
    arr, converted = load_grey(path)
    assert converted
    out = resize_grey(arr, 32, path)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert abs(out.mean() - 0.5) < 0.02 and out.std() < 0.05  # antialiasing averages the stripes


def test_real_nih_images_resize(nih_sample_dir):
    path = sorted(nih_sample_dir.glob("*.png"))[0]
    arr, _ = load_grey(path)
    out = resize_grey(arr, 64, path)
    assert out.shape == (64, 64) and 0 <= out.min() and out.max() <= 1 and out.std() > 0.05


@pytest.mark.parametrize("content, message", [
    (b"not a png at all", "not a readable image"),
    (None, "not a readable image"),  # truncated PNG
])
def test_bad_images_name_the_file(tmp_path, content, message):
    path = tmp_path / "00000001_000.png"
    if content is None:
        buf = io.BytesIO()
        Image.fromarray(np.zeros((64, 64), np.uint8) + 7).save(buf, format="PNG")
        content = buf.getvalue()[:60]
    path.write_bytes(content)
    with pytest.raises(CxrError, match=rf"{path}: {message}"):
        load_grey(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_image_with_nan_or_inf_is_refused(tmp_path, bad):
    """NaN fails every comparison, so a range check alone let it through (issue 22, fault 4, in the data stages)."""
    arr = np.full((16, 16), 0.5, np.float32)
    arr[2, 3] = bad
    path = tmp_path / "00000001_000.tiff"
    Image.fromarray(arr, mode="F").save(path)
    with pytest.raises(CxrError, match=r"00000001_000.tiff: 1 NaN or infinite pixel"):
        load_grey(path)


def test_unexpected_size_names_the_file(tmp_path):
    path = write_png(tmp_path / "00000001_000.png", np.zeros((40, 64), np.uint8))
    with pytest.raises(CxrError, match=r"00000001_000.png: unexpected size 64x40"):
        resize_grey(load_grey(path)[0], 32, path)


def test_non_nih_name_and_missing_metadata_row(tmp_path):
    write_png(tmp_path / "a" / "xray.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(CxrError, match=r"xray.png: not an NIH image index"):
        build_inventory([tmp_path / "a"])
    write_png(tmp_path / "b" / "00000001_000.png", np.zeros((8, 8), np.uint8))
    write_png(tmp_path / "b" / "00000002_000.png", np.zeros((8, 8), np.uint8))
    meta = tmp_path / "meta.csv"
    meta.write_text("Image Index,Patient ID,View Position\n00000001_000.png,1,PA\n")
    with pytest.raises(CxrError, match=r"meta.csv: no metadata row for image 00000002_000.png"):
        build_inventory([tmp_path / "b"], meta)


def test_metadata_patient_ids_and_views(tmp_path):
    write_png(tmp_path / "00000001_000.png", np.zeros((8, 8), np.uint8))
    meta = tmp_path / "meta.csv"
    meta.write_text("Image Index,Patient ID,View Position\n00000001_000.png,42,AP\n")
    inv = build_inventory([tmp_path], meta)
    assert inv.loc[0, "patient_id"] == 42 and inv.loc[0, "view_position"] == "AP"


def test_negative_sigma_is_a_config_error():
    with pytest.raises(CxrError, match=r"config key noise.sigmas.0: -0.1 is less than the minimum of 0"):
        load_config(REPO / "config" / "config.yaml", overrides={"noise": {"sigmas": [-0.1]}})


def test_failed_stage_leaves_no_output(tmp_path):
    write_png(tmp_path / "img" / "00000001_000.png", np.zeros((64, 64), np.uint8))
    (tmp_path / "img" / "00000002_000.png").write_bytes(b"garbage")
    data = tmp_path / "data"
    stages.inventory_stage([str(tmp_path / "img")], data / "inventory.csv")
    stages.sample_stage(data / "inventory.csv", 2, 0, data / "sample.csv")
    split = pd.read_csv(data / "sample.csv").assign(split="train")
    split.to_csv(data / "split.csv", index=False)
    with pytest.raises(CxrError, match="00000002_000.png"):
        stages.resize_stage(data / "split.csv", 0, 2, 32, "float16", data / "clean" / "shard_00000.npy")
    clean = data / "clean"
    assert not clean.exists() or not any(clean.iterdir())  # no half-written shard, no temp file left


# --- noise shards ---------------------------------------------------------------------------------------

def shard_bytes(data: Path, sigma: str) -> dict[str, np.ndarray]:
    """Noisy image per id, whatever the shard layout."""
    manifest = json.loads((data / "noisy" / f"sigma{sigma}" / "manifest.json").read_text())
    out = {}
    for meta in manifest["shards"]:
        arr = np.load(data / "noisy" / f"sigma{sigma}" / meta["file"])
        out.update({i: arr[k] for k, i in enumerate(meta["image_ids"])})
    return out


def test_noise_shards_byte_identical_across_runs_and_shard_sizes(tmp_path, tiny_data_dir):
    again = build_data_dir(tmp_path / "again")
    for sigma in ("0.1", "0.2"):
        a = tiny_data_dir / "noisy" / f"sigma{sigma}"
        b = again / "noisy" / f"sigma{sigma}"
        for npy in sorted(a.glob("shard_*.npy")):
            assert npy.read_bytes() == (b / npy.name).read_bytes()
    other_layout = build_data_dir(tmp_path / "layout", per_shard=7)
    x, y = shard_bytes(tiny_data_dir, "0.1"), shard_bytes(other_layout, "0.1")
    assert x.keys() == y.keys()
    assert all(np.array_equal(x[k], y[k]) for k in x)


def test_noise_depends_on_image_sigma_and_seed_only():
    base = image_noise(1, "00000001_000.png", 0.1, 0.1, (16, 16))
    assert np.array_equal(base, image_noise(1, "00000001_000.png", 0.1, 0.1, (16, 16)))
    assert not np.array_equal(base, image_noise(2, "00000001_000.png", 0.1, 0.1, (16, 16)))
    assert not np.array_equal(base, image_noise(1, "00000001_001.png", 0.1, 0.1, (16, 16)))
    assert not np.array_equal(base, image_noise(1, "00000001_000.png", 0.2, 0.1, (16, 16)))


def test_noisy_is_clipped_clean_plus_the_image_noise(tiny_data_dir):
    ds = PairDataset(tiny_data_dir, "train", 0.2)
    noisy, clean = ds[3]
    expected = np.clip(clean.numpy()[0] + image_noise(3, ds.image_ids[3], 0.2, 0.1, (32, 32)), 0, 1)
    assert np.array_equal(noisy.numpy()[0], expected.astype(np.float16).astype(np.float32))
    noise = image_noise(3, ds.image_ids[3], 0.2, 0.1, (256, 256))
    assert abs(noise.mean() - 0.1) < 0.005 and abs(noise.std() - 0.2) < 0.005


def test_manifest_records_ids_dtype_shape_and_hashes(tiny_data_dir):
    manifest = json.loads((tiny_data_dir / "clean" / "manifest.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["image_shape"] == [32, 32]
    assert manifest["n_images"] == 24 and len(manifest["shards"]) == 3
    from cxrdenoise.hashing import file_sha256
    for meta in manifest["shards"]:
        assert file_sha256(tiny_data_dir / "clean" / meta["file"]) == meta["sha256"]
    assert "config_hash" in manifest["provenance"]


def test_uint8_storage(tmp_path):
    data = build_data_dir(tmp_path, dtype="uint8", sigmas=(0.1,))
    ds = PairDataset(data, "val", 0.1)
    noisy, clean = ds[0]
    assert noisy.dtype == torch.float32 and 0 <= clean.min() and clean.max() <= 1
    assert torch.allclose(clean * 255, torch.round(clean * 255), atol=1e-3)


# --- Dataset --------------------------------------------------------------------------------------------

def test_dataset_splits_are_patient_disjoint_and_complete(tiny_data_dir):
    sets = {s: PairDataset(tiny_data_dir, s, 0.1) for s in ("train", "val", "test")}
    assert sum(len(d) for d in sets.values()) == 24
    assert [len(sets[s]) for s in ("train", "val", "test")] == [12, 7, 5]
    patients = {s: set(d.patient_ids) for s, d in sets.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    noisy, clean = sets["train"][0]
    assert noisy.shape == clean.shape == (1, 32, 32)
    assert not torch.equal(noisy, clean)


def test_dataset_preload_matches_memory_map(tiny_data_dir):
    lazy, eager = PairDataset(tiny_data_dir, "test", 0.2), PairDataset(tiny_data_dir, "test", 0.2, preload=True)
    for i in range(len(lazy)):
        assert all(torch.equal(a, b) for a, b in zip(lazy[i], eager[i]))


def test_dataset_in_worker_processes(tiny_data_dir):
    loader = torch.utils.data.DataLoader(PairDataset(tiny_data_dir, "train", 0.1), batch_size=4, num_workers=2)
    assert sum(batch[0].shape[0] for batch in loader) == 12


def test_dataset_missing_noise_level_names_the_rule(tiny_data_dir):
    with pytest.raises(CxrError, match=r"sigma0.3/manifest.json is missing: build it alone \(rule 'noisy_manifest'"):
        PairDataset(tiny_data_dir, "train", 0.3)


def test_real_images_through_every_stage(tmp_path, nih_sample_dir):
    data = build_data_dir(tmp_path, n_images=14, size=64, sigmas=(0.1,), per_shard=5, source_dir=nih_sample_dir)
    counts = json.loads((data / "split_counts.json").read_text())
    assert counts["counts"] == {"train": 7, "val": 4, "test": 3} and counts["exact"]
    ds = PairDataset(data, "test", 0.1)
    assert len(ds) == 3 and all(i.endswith(".png") for i in ds.image_ids)
