"""Shards are checked against their manifest when read: a corrupted noisy shard stops training and evaluation
with one line naming the shard and the fix, instead of being trained on and scored."""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrdenoise.commands import data as stages
from cxrdenoise.errors import CxrError
from cxrdenoise.shard_integrity import RUN_OPTIONS_ENV, verify_shard
from cxrdenoise.shards import save_shard

SETTINGS = {
    "seed": 3,
    "models": {"unet": {"base_channels": 4}},
    "noise": {"mean": 0.1},
    "train": {"device": "cpu", "epochs": 1, "batch_per_gpu": 4, "workers": 0, "preload": True, "lr": 1e-3,
              "timing_exclusive": False, "log_every": 2},
}


def _script(name: str):
    return importlib.import_module(f"cxrdenoise.commands.{name}").main


def _change_block(path: Path) -> None:
    """Rewrite the shard as a valid .npy whose first image has an 8x8 block of in-range values changed."""
    arr = np.load(path)
    arr[0, :8, :8] = np.float16(0.5) if arr.dtype == np.float16 else 128
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def _xor_bytes(path: Path) -> None:
    """XOR 32 random bytes into the array data (after the .npy header), as a bad disk block or copy would."""
    with open(path, "rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_1_0(fh)
        offset = fh.tell()
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(9)
    for pos in rng.choice(np.arange(offset, len(data)), size=32, replace=False):
        data[pos] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


CORRUPTIONS = {"changed_block": _change_block, "xor_32_bytes": _xor_bytes}


@pytest.fixture
def corrupt_data(tiny_data_dir, tmp_path, request):
    """A copy of the tiny data folder whose first noisy shard (sigma 0.1) holding test images is corrupted."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    manifest = json.loads((data / "noisy" / "sigma0.1" / "manifest.json").read_text())
    entry = next(m for m in manifest["shards"] if "test" in m["splits"] and "train" in m["splits"])
    shard = data / "noisy" / "sigma0.1" / entry["file"]
    CORRUPTIONS[request.param](shard)
    return data, shard


# the run's options as the workflow's main process exports them to its jobs (workflow/rules/common.smk)
RUN_OPTIONS = ["-s", "wf/Snakefile", "--configfile", "my.yaml"]


@pytest.fixture(autouse=True)
def _run_options(monkeypatch):
    monkeypatch.setenv(RUN_OPTIONS_ENV, json.dumps(RUN_OPTIONS))


def _one_error_line(err: str, shard: Path) -> str:
    """One line naming the shard, with the command that rebuilds it alone with the run's config (issue 22 fault 3;
    tests/test_advice.py runs such a command)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(shard) in lines[0]
    command = (f"`snakemake -s wf/Snakefile --configfile my.yaml --cores 1 --allowed-rules noise_shard "
               f"--forcerun noise_shard -- {shard}`")
    assert f"rebuild it alone (rule 'noise_shard'; nothing else is run) with {command}" in lines[0], lines[0]
    assert "delete it" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("corrupt_data", list(CORRUPTIONS), indirect=True)
def test_training_refuses_corrupted_noisy_shard(corrupt_data, tmp_path, capsys):
    data, shard = corrupt_data
    out = tmp_path / "train"
    rc = _script("train")(["--model", "unet", "--sigma", "0.1", "--setup", "gpu1", "--data-dir", str(data),
                           "--out-dir", str(out), "--settings", json.dumps(SETTINGS), "--threads", "1"])
    assert rc == 1
    _one_error_line(capsys.readouterr().err, shard)
    assert not (out / "best.pt").exists() and not (out / "record.json").exists()


@pytest.mark.parametrize("corrupt_data", list(CORRUPTIONS), indirect=True)
def test_evaluation_refuses_corrupted_noisy_shard(corrupt_data, tmp_path, capsys):
    from test_evaluate import save_checkpoint

    data, shard = corrupt_data
    ckpt = save_checkpoint(tmp_path / "best.pt", sigma=0.1)
    for what in (["--noisy"], ["--checkpoint", str(ckpt), "--setup", "gpu1"]):
        out = tmp_path / "eval" / what[0].strip("-")
        rc = _script("evaluate")([*what, "--data-dir", str(data), "--out-dir", str(out), "--sigma", "0.1",
                                  "--device", "cpu", "--no-lpips", "--batch-size", "4", "--figure-images", "1",
                                  "--workers", "0", "--no-progress"])
        assert rc == 1
        _one_error_line(capsys.readouterr().err, shard)
        assert not (out / "summary.json").exists()


def test_intact_shards_pass_and_values_are_named(tmp_path):
    good = np.linspace(0, 1, 2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16).astype(np.float16)
    good[0, 0, 0] = -0.0  # a legitimate zero
    meta = save_shard(good, tmp_path / "shard_00000.npy", {"shard": 0})
    verify_shard(tmp_path / "shard_00000.npy", meta, "noise_shard")

    for k, (value, words) in enumerate(((np.nan, "contains NaN"), (np.inf, "infinite"),
                                        (-14.0, "values range -14..1, outside [0, 1]"))):
        bad = good.copy()
        bad[1, 3, 3] = value
        path = tmp_path / f"bad_{k}.npy"
        with open(path, "wb") as fh:
            np.save(fh, bad, allow_pickle=False)
        with pytest.raises(CxrError, match=re.escape(words)):
            verify_shard(path, meta, "noise_shard")


def test_shape_dtype_and_length_are_checked(tmp_path):
    arr = np.zeros((2, 8, 8), dtype=np.uint8)
    path = tmp_path / "shard_00000.npy"
    meta = save_shard(arr, path, {"shard": 0})
    with pytest.raises(CxrError, match=r"shape \[2, 8, 8\], the manifest says uint8 \[3, 8, 8\]"):
        verify_shard(path, {**meta, "shape": [3, 8, 8]}, "resize_shard")
    with pytest.raises(CxrError, match="the manifest says float16"):
        verify_shard(path, {**meta, "dtype": "float16"}, "resize_shard")
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CxrError, match="its header implies"):
        verify_shard(path, meta, "resize_shard")
    path.unlink()
    with pytest.raises(CxrError, match=re.escape(
            "is missing: build it alone (rule 'resize_shard'; nothing else is run) with `snakemake -s wf/Snakefile "
            f"--configfile my.yaml --cores 1 --allowed-rules resize_shard -- {path}`")):
        verify_shard(path, meta, "resize_shard")


def test_noise_stage_refuses_corrupted_clean_shard(tiny_data_dir, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(tiny_data_dir / "clean", clean)
    _xor_bytes(clean / "shard_00000.npy")
    out = tmp_path / "noisy" / "shard_00000.npy"
    with pytest.raises(CxrError, match="resize_shard"):
        stages.noise_stage(str(clean / "shard_00000.npy"), 0.1, 0.1, 3, str(out))
    assert not out.exists()
