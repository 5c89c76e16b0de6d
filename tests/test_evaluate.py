"""Evaluation end to end on a tiny checkpoint and the tiny phantom data folder (conftest: tiny_data_dir)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrdenoise import lpips_weights as lw
from cxrdenoise.data import PairDataset
from cxrdenoise.errors import CxrError
from cxrdenoise.evaluate import PER_IMAGE_COLUMNS, evaluate_checkpoint, evaluate_noisy
from cxrdenoise.models import build_model



def save_checkpoint(path: Path, sigma: float = 0.1, identity: bool = False, name: str = "dncnn", **kwargs) -> Path:
    """A best.pt in the training stage's format; `identity` zeroes DnCNN's last layer so output == input."""
    kwargs = kwargs or {"depth": 3, "channels": 4}
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    if identity:
        last = model.layers[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": name, "model_kwargs": model.model_kwargs, "state_dict": model.state_dict(), "epoch": 7,
                "val_loss": 0.05, "sigma": sigma, "noise_mean": 0.1, "config_hash": "abc"}, path)
    return path


def strict_json(path: Path) -> dict:
    def refuse(token):
        raise AssertionError(f"{path}: non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def random_lpips(monkeypatch):
    monkeypatch.setenv(lw.BACKBONE_ENV, "random")


def test_evaluate_checkpoint_files(tmp_path, tiny_data_dir, random_lpips):
    ckpt = save_checkpoint(tmp_path / "train" / "best.pt")
    out = tmp_path / "eval"
    summary = evaluate_checkpoint(ckpt, out, data_dir=tiny_data_dir, setup="gpu1", expected_sigma="0.1",
                                  device="cpu", batch_size=2, figure_images=3, progress=False)
    test_set = PairDataset(tiny_data_dir, "test", 0.1)
    frame = pd.read_csv(out / "per_image.csv")
    assert list(frame.columns) == PER_IMAGE_COLUMNS + ["lpips_random_backbone"]
    assert frame["image_id"].tolist() == test_set.image_ids
    assert frame["patient_id"].tolist() == test_set.patient_ids
    assert frame["lpips"].isna().all()  # random-backbone values never sit in the lpips column
    assert (frame["lpips_random_backbone"] > 0).all() and (frame["inference_ms"] > 0).all()
    assert frame["ssim"].between(-1, 1).all() and np.isfinite(frame["psnr"]).all()

    saved = strict_json(out / "summary.json")
    assert saved == summary
    assert saved["lpips_kind"] == "random-backbone" and saved["lpips_status"] == "random-backbone (NOT LPIPS)"
    assert saved["metrics"]["lpips"]["mean"] is None
    assert saved["metrics"]["lpips_random_backbone"]["n"] == len(test_set)
    assert saved["n_images"] == len(test_set) and saved["sigma"] == 0.1 and saved["setup"] == "gpu1"
    assert saved["n_patients"] == len(set(test_set.patient_ids)) < len(test_set)  # patients, not images
    assert saved["model"] == "dncnn" and saved["checkpoint_epoch"] == 7 and saved["inference"]["device"] == "cpu"
    assert saved["metrics"]["psnr"]["mean"] == pytest.approx(frame["psnr"].mean())
    ssim = saved["metrics"]["ssim"]
    assert ssim["ci95_t"][0] < ssim["mean"] < ssim["ci95_t"][1]
    assert saved["ci_method"] == "t" and saved["psnr_inf_count"] == 0
    assert {"config_hash", "git_commit", "packages", "created"} <= set(saved["provenance"])

    ex = np.load(out / "examples.npz")
    assert ex["image_ids"].tolist() == saved["figure_image_ids"]
    shown = dict(zip(map(str, test_set.image_ids), map(str, test_set.patient_ids)))
    assert len({shown[i] for i in saved["figure_image_ids"]}) == 3  # three patients, not one patient's follow-ups
    assert ex["noisy"].shape == ex["denoised"].shape == ex["clean"].shape == (3, 32, 32)
    first = test_set.image_ids.index(ex["image_ids"][0])
    assert np.allclose(ex["clean"][0], test_set[first][1][0].numpy())


def test_identity_model_equals_noisy_baseline(tmp_path, tiny_data_dir, monkeypatch):
    """A model that returns its input must score exactly what the "no denoising" evaluation scores."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.delenv(lw.BACKBONE_ENV, raising=False)
    ckpt = save_checkpoint(tmp_path / "best.pt", sigma=0.2, identity=True)
    model = evaluate_checkpoint(ckpt, tmp_path / "model", data_dir=tiny_data_dir, device="cpu", progress=False)
    noisy = evaluate_noisy(0.2, tmp_path / "noisy", data_dir=tiny_data_dir, device="cpu", progress=False)
    a, b = pd.read_csv(tmp_path / "model" / "per_image.csv"), pd.read_csv(tmp_path / "noisy" / "per_image.csv")
    for col in ("psnr", "ssim", "ssim_w3"):
        assert np.allclose(a[col], b[col], rtol=1e-6)
    # LPIPS weights absent: NaN column, status says why, naming the file
    assert a["lpips"].isna().all() and model["lpips_status"] == "unavailable"
    assert "alexnet-owt-7be5be79.pth" in model["lpips_message"] and model["lpips_kind"] == "none"
    assert noisy["kind"] == "noisy" and noisy["model"] == "noisy" and noisy["noise_mean"] == 0.1
    assert b["inference_ms"].isna().all() and noisy["inference"]["timed"] is False
    assert list(b.columns) == PER_IMAGE_COLUMNS


class StandIn(torch.utils.data.Dataset):
    """Noisy == clean: every output of an identity model is exact, so every PSNR is inf."""

    def __init__(self, n: int = 4):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 32, 32, generator=g)
        self.image_ids = [f"{i:08d}_000.png" for i in range(n, 0, -1)]
        self.patient_ids = list(range(n, 0, -1))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.images[i]


def test_inf_psnr_handled_in_summary(tmp_path, random_lpips):
    ckpt = save_checkpoint(tmp_path / "best.pt", identity=True)
    summary = evaluate_checkpoint(ckpt, tmp_path / "out", dataset=StandIn(), device="cpu", figure_images=2,
                                  progress=False)
    frame = pd.read_csv(tmp_path / "out" / "per_image.csv")
    assert np.isinf(frame["psnr"]).all() and np.allclose(frame["ssim"], 1.0)
    assert summary["psnr_inf_count"] == 4 and summary["metrics"]["psnr"]["mean"] is None
    assert summary["metrics"]["lpips_random_backbone"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert summary["figure_image_ids"] == ["00000001_000.png", "00000002_000.png"]  # sorted, not dataset order
    strict_json(tmp_path / "out" / "summary.json")


def test_sigma_mismatch_and_bad_checkpoint(tmp_path, tiny_data_dir):
    ckpt = save_checkpoint(tmp_path / "best.pt", sigma=0.2)
    with pytest.raises(CxrError, match="trained at sigma 0.2"):
        evaluate_checkpoint(ckpt, tmp_path / "out", data_dir=tiny_data_dir, expected_sigma="0.1", device="cpu")
    ckpt_dp2 = tmp_path / "dp2.pt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "setup": "dp2", "sigma": 0.1}, ckpt_dp2)
    with pytest.raises(CxrError, match="trained with setup 'dp2'"):
        evaluate_checkpoint(ckpt_dp2, tmp_path / "out", data_dir=tiny_data_dir, setup="gpu1", device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CxrError, match="bad.pt: cannot read checkpoint"):
        evaluate_checkpoint(bad, tmp_path / "out", data_dir=tiny_data_dir, device="cpu")
    assert not (tmp_path / "out").exists()


def _script(name: str):
    return importlib.import_module(f"cxrdenoise.commands.{name}")


SIZES = ["--batch-size", "4", "--figure-images", "1", "--workers", "0"]  # the rules pass the config's


def test_evaluate_commands(tmp_path, tiny_data_dir, random_lpips, capsys):
    ckpt = save_checkpoint(tmp_path / "best.pt", sigma=0.1)
    out = tmp_path / "eval" / "dncnn" / "sigma0.1" / "gpu1"
    rc = _script("evaluate").main(["--checkpoint", str(ckpt), "--data-dir", str(tiny_data_dir), "--out-dir", str(out),
                                   "--sigma", "0.1", "--setup", "gpu1", "--device", "cpu", "--config-hash", "h" * 64,
                                   *SIZES, "--no-progress"])
    assert rc == 0 and strict_json(out / "summary.json")["provenance"]["config_hash"] == "h" * 64
    noisy_out = tmp_path / "eval" / "noisy" / "sigma0.1"
    rc = _script("evaluate").main(["--noisy", "--data-dir", str(tiny_data_dir), "--out-dir", str(noisy_out),
                                   "--sigma", "0.1", "--device", "cpu", "--no-lpips", *SIZES, "--no-progress"])
    assert rc == 0 and strict_json(noisy_out / "summary.json")["lpips_status"] == "disabled"
    rc = _script("evaluate").main(["--checkpoint", str(ckpt), "--data-dir", str(tiny_data_dir), "--out-dir", str(out),
                                   "--sigma", "0.3", "--setup", "gpu1", "--device", "cpu", *SIZES, "--no-progress"])
    assert rc == 1 and "sigma" in capsys.readouterr().err


def test_device_metrics_and_scikit_image_paths_agree(tmp_path, tiny_data_dir, monkeypatch):
    """The evaluation's batched torch metrics score what the per-image scikit-image reference scores."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.delenv(lw.BACKBONE_ENV, raising=False)
    ckpt = save_checkpoint(tmp_path / "best.pt", sigma=0.2, name="unet", base_channels=2)
    fast = evaluate_checkpoint(ckpt, tmp_path / "fast", data_dir=tiny_data_dir, device="cpu", progress=False,
                               metrics_on_device=True)
    ref = evaluate_checkpoint(ckpt, tmp_path / "ref", data_dir=tiny_data_dir, device="cpu", progress=False)
    assert fast["metrics_backend"].startswith("torch, batched, float64 on cpu")
    assert ref["metrics_backend"].startswith("scikit-image")  # the CPU default: faster there than torch
    assert fast["block"] == ref["block"] == "study"  # the U-Net's block, for table captions
    a, b = pd.read_csv(tmp_path / "fast" / "per_image.csv"), pd.read_csv(tmp_path / "ref" / "per_image.csv")
    assert len(a) == len(b) > 0 and list(a["image_id"]) == list(b["image_id"])
    for col in ("psnr", "ssim", "ssim_w3"):
        assert np.abs(a[col] - b[col]).max() < 1e-9, col


def test_figure_images_come_from_distinct_patients():
    from cxrdenoise.evaluate import figure_image_ids

    ids = ["a1", "a2", "a3", "b1", "c1", "c2"]
    patients = ["A", "A", "A", "B", "C", "C"]
    assert figure_image_ids(ids, patients, 3) == ["a1", "b1", "c1"]  # one per patient, not a1 a2 a3
    assert figure_image_ids(ids, patients, 4) == ["a1", "a2", "b1", "c1"]  # a second image only past the patients
    assert figure_image_ids(ids, patients, 0) == []


def _evaluate_cli(*args: str) -> int:
    from cxrdenoise.commands.evaluate import main

    return main([*args, "--sigma", "0.1", "--device", "cpu", "--no-lpips", "--batch-size", "4",
                 "--figure-images", "1", "--workers", "0", "--no-progress"])


def test_one_process_scores_every_replicate_as_separate_runs_would(tmp_path, tiny_data_dir):
    """rule evaluate_{n}reps: the replicates of a run in one process write what one process each writes."""
    ckpts = [save_checkpoint(tmp_path / f"rep{k}" / "best.pt", depth=2 + k, channels=4) for k in (1, 2)]
    outs = [tmp_path / "together" / f"rep{k}" for k in (1, 2)]
    assert _evaluate_cli("--checkpoint", *map(str, ckpts), "--out-dir", *map(str, outs), "--setup", "gpu1",
                         "--data-dir", str(tiny_data_dir)) == 0
    for ckpt, out in zip(ckpts, outs):
        alone = tmp_path / "alone" / ckpt.parent.name
        assert _evaluate_cli("--checkpoint", str(ckpt), "--out-dir", str(alone), "--setup", "gpu1",
                             "--data-dir", str(tiny_data_dir)) == 0
        a, b = pd.read_csv(out / "per_image.csv"), pd.read_csv(alone / "per_image.csv")
        scores = ["image_id", "psnr", "ssim", "ssim_w3"]
        assert a[scores].equals(b[scores])  # to the bit
        assert strict_json(out / "summary.json")["checkpoint"] == str(ckpt)
    assert not pd.read_csv(outs[0] / "per_image.csv")[["psnr"]].equals(pd.read_csv(outs[1] / "per_image.csv")[["psnr"]])


def test_a_failed_replicate_names_itself_and_the_others_are_scored(tmp_path, tiny_data_dir, capsys):
    good = save_checkpoint(tmp_path / "rep1" / "best.pt")
    bad = save_checkpoint(tmp_path / "rep2" / "best.pt", sigma=0.2)  # trained at another sigma
    outs = [tmp_path / "eval" / "rep1", tmp_path / "eval" / "rep2"]
    rc = _evaluate_cli("--checkpoint", str(good), str(bad), "--out-dir", *map(str, outs), "--setup", "gpu1",
                       "--data-dir", str(tiny_data_dir))
    err = capsys.readouterr().err
    assert rc == 1
    assert f"FAILED: {bad} -> {outs[1]}" in err and "trained at sigma 0.2" in err
    assert f"evaluation failed for 1 of 2 checkpoints: {bad}" in err
    assert (outs[0] / "summary.json").exists() and not (outs[1] / "summary.json").exists()


def test_out_dirs_must_pair_with_checkpoints(tmp_path, tiny_data_dir):
    with pytest.raises(SystemExit):
        _evaluate_cli("--checkpoint", "a.pt", "b.pt", "--out-dir", str(tmp_path), "--setup", "gpu1",
                      "--data-dir", str(tiny_data_dir))


def test_importing_evaluation_loads_no_pandas_scipy_or_skimage():
    """pandas, scipy.stats/ndimage and scikit-image are imported when an evaluation runs, not at import: the
    commands import this module to start, and the workflow runs dozens of them."""
    import subprocess
    import sys

    code = ("import sys, cxrdenoise.evaluate, cxrdenoise.commands.evaluate, cxrdenoise.denoise; "
            "print(sorted(m for m in ('scipy.ndimage', 'skimage', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
