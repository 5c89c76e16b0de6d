"""Set-up registry and settings: global batch, lr, GPUs per rule, what the resume fingerprint covers."""

from pathlib import Path

import pytest

from config_files import load_config
from cxrdenoise.errors import CxrError
from cxrdenoise.train.setups import SETUPS, get_setup, gpus_needed
from cxrdenoise.train.settings import TrainSettings

REPO = Path(__file__).resolve().parents[1]


def test_setup_table_matches_the_study():
    assert list(SETUPS) == ["gpu1", "dp2", "ddp2", "ddp2_amp", "gpu1_fast", "ddp2_fast"]
    assert [SETUPS[n].global_batch(16) for n in SETUPS] == [16, 32, 32, 32, 16, 32]
    assert [SETUPS[n].batch_per_process(16) for n in SETUPS] == [16, 32, 16, 16, 16, 16]
    assert [SETUPS[n].processes for n in SETUPS] == [1, 1, 2, 2, 1, 2]
    assert [n for n in SETUPS if SETUPS[n].fast] == ["gpu1_fast", "ddp2_fast"]  # the study's four stay plain
    assert SETUPS["dp2"].data_parallel and not SETUPS["dp2"].ddp
    assert SETUPS["ddp2_amp"].amp and not SETUPS["ddp2"].amp


def test_gpus_for_the_rule():
    assert [gpus_needed(n, "cuda") for n in SETUPS] == [1, 2, 2, 2, 1, 2]
    assert [gpus_needed(n, "cpu") for n in SETUPS] == [0, 0, 0, 0, 0, 0]


def test_unknown_setup_is_one_line():
    with pytest.raises(CxrError, match="unknown training setup 'tpu8'"):
        get_setup("tpu8")


def test_settings_from_the_configs():
    full = TrainSettings.from_config(load_config(REPO / "config" / "config.yaml"), "unetpp", "0.2", "ddp2_amp")
    assert (full.lr, full.batch_per_gpu, full.epochs, full.device, full.seed) == (1e-3, 16, 50, "cuda", 2025)
    assert full.model_kwargs == {"base_channels": 64, "deep_supervision": False, "block": "study"}
    assert full.sync_bn is False
    demo_config = load_config(REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml")
    demo = TrainSettings.from_config(demo_config, "unet", "0.1", "gpu1")
    # the demo's lr is its own (README: how the demo deviates), the study's stays 1e-3
    assert (demo.device, demo.epochs, demo.batch_per_gpu, demo.workers, demo.lr) == ("cpu", 8, 2, 0, 5e-3)
    assert (demo.replicate, demo.init_seed) == (1, demo_config["seed"])


def test_model_without_config_entry_is_named():
    with pytest.raises(CxrError, match="model 'resnet' has no entry under `models:`"):
        TrainSettings.from_config({"models": {"unet": {}}}, "resnet", "0.1", "gpu1")


def test_fingerprint_covers_the_math_not_the_length():
    base = TrainSettings(model="unet", setup="gpu1", sigma="0.1")
    longer = TrainSettings(model="unet", setup="gpu1", sigma="0.1", epochs=7, workers=0)
    assert base.fingerprint("d") == longer.fingerprint("d")
    assert base.fingerprint("d") != TrainSettings(model="unet", setup="gpu1", sigma="0.1", lr=2e-3).fingerprint("d")
    assert base.fingerprint("d") != base.fingerprint("other data")


def test_block_and_sync_bn_change_the_resume_fingerprint():
    base = TrainSettings(model="unet", setup="ddp2", sigma="0.1")
    synced = TrainSettings(model="unet", setup="ddp2", sigma="0.1", sync_bn=True)
    assert base.fingerprint("d") != synced.fingerprint("d")
    # the block the net was built with counts, whether the config names it or leaves it to the default
    assert base.fingerprint("d", block="study") != base.fingerprint("d", block="double_bn")
    named = TrainSettings(model="unet", setup="ddp2", sigma="0.1", model_kwargs={"block": "study"})
    assert named.fingerprint("d", block="study") == base.fingerprint("d", block="study")


def test_sync_bn_flows_from_the_config_and_needs_cuda_under_ddp():
    config = load_config(REPO / "config" / "config.yaml", overrides={"train": {"sync_bn": True}})
    assert TrainSettings.from_config(config, "unet", "0.1", "ddp2").sync_bn is True
    TrainSettings(model="unet", setup="gpu1", sigma="0.1", device="cpu", sync_bn=True)  # inert without DDP
    with pytest.raises(CxrError, match=r"train.sync_bn: .*needs CUDA.*ddp2_amp runs on the cpu") as err:
        TrainSettings(model="unet", setup="ddp2_amp", sigma="0.1", device="cpu", sync_bn=True)
    assert "\n" not in str(err.value)
    with pytest.raises(CxrError, match=r"^config key train.sync_bn: .*needs CUDA"):
        load_config(REPO / "config" / "config.yaml", overrides={"train": {"sync_bn": True, "device": "cpu"}})
    with pytest.raises(CxrError, match="sync_bn"):
        load_config(REPO / "config" / "config.yaml", overrides={"train": {"sync_bn": "yes"}})


def test_rule_params_hold_only_what_training_depends_on():
    import json

    from cxrdenoise.train.settings import rule_settings_json

    config = load_config(REPO / "config" / "config.yaml")
    subset = json.loads(rule_settings_json(config, "unet"))
    assert subset["models"] == {"unet": {"base_channels": 64, "block": "study"}} and subset["noise"] == {"mean": 0.1}
    assert subset["train"]["sync_bn"] is False  # a training key: changing it retrains
    assert "setups" not in subset["train"] and "models" not in subset["train"] and "evaluate" not in subset
    assert "replicates" not in subset["train"]  # adding replicates trains only the new ones
    config["train"]["setups"] = ["gpu1"]
    config["evaluate"]["batch_size"] = 1
    assert json.loads(rule_settings_json(config, "unet")) == subset  # no retraining for these edits
    assert TrainSettings.from_config(subset, "unet", "0.1", "gpu1").lr == 1e-3


def test_block_is_checked_by_the_schema():
    assert load_config(REPO / "config" / "config.yaml")["models"]["unetpp"]["block"] == "study"
    with pytest.raises(CxrError, match=r"models.unet.block") as err:
        load_config(REPO / "config" / "config.yaml", overrides={"models": {"unet": {"block": "triple"}}})
    assert "\n" not in str(err.value)
    assert load_config(REPO / "config" / "config.yaml", overrides={"models": {"unet": {"block": "double_bn"}}})


def test_replicates_by_model_overrides_train_replicates():
    from cxrdenoise.errors import CxrError
    from cxrdenoise.train.setups import replicates_for

    config = {"train": {"replicates": 1, "replicates_by_model": {"unet": {"gpu1": 3, "ddp2_amp": 3}}}}
    assert replicates_for(config, "unet", "gpu1") == 3 and replicates_for(config, "unet", "ddp2_amp") == 3
    assert replicates_for(config, "unet", "dp2") == 1 and replicates_for(config, "unetpp", "gpu1") == 1
    config["train"]["replicates"] = 2
    assert replicates_for(config, "unetpp", "gpu1") == 2
    config["train"]["replicates_by_model"]["unet"]["gpu1"] = 0
    with pytest.raises(CxrError, match="train.replicates_by_model.unet.gpu1"):
        replicates_for(config, "unet", "gpu1")


def test_demo_plans_three_runs_of_what_the_claims_compare():
    from cxrdenoise.train.setups import replicates_for

    demo = load_config(REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml")
    for model in ("unet", "unetpp"):
        for sigma, runs in (("0.1", [3, 1, 3]), ("0.2", [3, 1, 1]), (0.3, [3, 1, 1])):
            assert [replicates_for(demo, model, s, sigma) for s in ("gpu1", "dp2", "ddp2_amp")] == runs
    assert replicates_for(demo, "dncnn", "gpu1", "0.1") == 1
