"""config/demo.yaml must train nets that denoise under every setup, not only gpu1.

With the study's lr (1e-3) and the demo's 24 training images, the 2-GPU setups (global batch 4) took 90 Adam steps
in 15 epochs, half of gpu1's 180, and U-Net ended below the noisy input (9-12 dB vs 12-18 dB): each weight moves
about lr per Adam step, and the net's output starts far from the images. A demo-sized U-Net under dp2 and ddp2,
trained with the demo's own train settings at sigma 0.1 (where the noisy input scores highest), must beat the
noisy input by at least 3 dB PSNR.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config_files import load_config
from cxrdenoise.evaluate import evaluate_checkpoint, evaluate_noisy
from cxrdenoise.train.launch import launch
from cxrdenoise.train.settings import TrainSettings
from datadir import build_data_dir

REPO = Path(__file__).resolve().parents[1]
MARGIN_DB = 3.0


@pytest.fixture(scope="module")
def demo():
    return load_config(REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml")


@pytest.fixture(scope="module")
def demo_data(demo, tmp_path_factory):
    """The demo's data at sigma 0.1: its image count, size, shard size, seed and phantom patients."""
    synth = demo["data"]["synthetic"]
    return build_data_dir(tmp_path_factory.mktemp("demo"), n_images=demo["sample"]["n_images"],
                          size=demo["resize"]["size"], sigmas=(0.1,), per_shard=demo["shards"]["images_per_shard"],
                          seed=demo["seed"], patients=synth["patients"], phantom_size=synth["size"],
                          max_follow_ups=synth["max_follow_ups"])


@pytest.fixture(scope="module")
def noisy_psnr(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("noisy")
    summary = evaluate_noisy("0.1", out, data_dir=demo_data, device="cpu", batch_size=8, figure_images=1,
                             lpips_enabled=False, num_workers=0, config_hash="test", progress=False)
    return summary["metrics"]["psnr"]["mean"]


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["dp2", "ddp2"])
def test_demo_settings_make_the_two_gpu_setups_denoise(demo, demo_data, noisy_psnr, tmp_path, setup):
    settings = TrainSettings.from_config(demo, "unet", "0.1", setup, threads=2)
    assert settings.epochs == demo["train"]["epochs"] and settings.lr == demo["train"]["lr"]  # the demo's own
    launch(settings, demo_data, tmp_path / "train", "test")
    summary = evaluate_checkpoint(tmp_path / "train" / "best.pt", tmp_path / "eval", setup=setup, expected_sigma="0.1",
                                  data_dir=demo_data, device="cpu", batch_size=8, figure_images=1, lpips_enabled=False,
                                  num_workers=0, config_hash="test", progress=False)
    psnr = summary["metrics"]["psnr"]["mean"]
    assert psnr >= noisy_psnr + MARGIN_DB, (
        f"U-Net {setup} with config/demo.yaml: {psnr:.2f} dB, noisy input {noisy_psnr:.2f} dB")
