"""Start-up config checks: model names and keywords against the registry, keyword values against each model's own
constraints, every number finite, and the keys that refer to other keys (issue 22, faults 5, 9, 10 and 11)."""

import copy
import math

import pytest
import yaml

from cxrdenoise.config import validate_config
from config_files import load_config
from cxrdenoise.errors import CxrError
from snakemake_run import REPO, snakemake


@pytest.fixture(scope="module")
def base():
    return load_config(REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml")


def _error(config) -> str:
    with pytest.raises(CxrError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_resolved_demo_config_passes(base):
    train = validate_config(copy.deepcopy(base))["train"]
    assert train["models"] == ["unet", "unetpp", "dncnn", "fastddpm"]
    assert train["setups_by_model"] == {"dncnn": ["gpu1"], "fastddpm": ["gpu1"]}


def test_setups_by_model_leaves_every_trained_model_a_setup(base):
    config = copy.deepcopy(base)
    config["train"]["setups"] = ["ddp2"]
    config["privacy"]["setup"] = "ddp2"
    assert _error(config) == ("config key train.setups_by_model.dncnn: none of gpu1 is in train.setups (ddp2), "
                              "so 'dncnn' would train under no setup; list one of those")
    config["train"]["models"] = ["unet"]  # an override that drops DnCNN and Fast-DDPM needs no edit of setups_by_model
    assert validate_config(config)["train"]["setups_by_model"] == {"dncnn": ["gpu1"], "fastddpm": ["gpu1"]}


def test_unknown_model_in_train_models(base):
    config = copy.deepcopy(base)
    config["train"]["models"] = ["unet", "unte"]
    assert _error(config) == "config key train.models.1: unknown model 'unte'; available: dncnn, fastddpm, unet, unetpp"


def test_unknown_setup_names_the_setups_table(base):
    config = copy.deepcopy(base)
    config["train"]["setups"] = ["gpu1", "ddp4"]
    assert _error(config) == ("config key train.setups.1: unknown set-up 'ddp4'; "
                              "available: gpu1, dp2, ddp2, ddp2_amp, gpu1_fast, ddp2_fast")


def test_unknown_model_under_models(base):
    config = copy.deepcopy(base)
    config["models"]["resnet"] = {"depth": 3}
    assert _error(config).startswith("config key models.resnet: unknown model 'resnet'; available: dncnn,")


def test_trained_model_without_models_entry(base, monkeypatch):
    """The schema fills an entry for every model it knows; a registered model it does not know needs one."""
    from torch import nn

    from cxrdenoise.models import registry

    monkeypatch.setitem(registry._REGISTRY, "tinynet", nn.Identity)
    config = copy.deepcopy(base)
    config["train"]["models"] = ["unet", "tinynet"]
    assert "config key train.models.1: model 'tinynet' has no entry under `models:`" in _error(config)


def test_misspelt_model_keyword(base):
    config = copy.deepcopy(base)
    config["models"]["unet"] = {"base_channel": 8}
    message = _error(config)
    assert message.startswith("config key models.unet.base_channel: model 'unet' has no argument 'base_channel'")
    assert "base_channels" in message.split("valid:")[1]


@pytest.mark.parametrize("keys, value, shown", [
    (("noise", "sigmas"), [0.1, math.nan], "noise.sigmas.1: nan"),
    (("federated", "sites"), [20, math.inf], "federated.sites.1: inf"),  # (an infinite sigma is out of (0, 1))
    (("noise", "mean"), math.inf, "noise.mean: inf"),
    (("noise", "mean"), math.nan, "noise.mean: nan"),
    (("train", "lr"), math.nan, "train.lr: nan"),
    (("models", "fastddpm", "ema"), -math.inf, "models.fastddpm.ema: -inf"),
])
def test_non_finite_numbers_are_named(base, keys, value, shown):
    config = copy.deepcopy(base)
    parent = config
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = value
    assert _error(config) == f"config key {shown} is not a finite number; give a finite value"


def _set(config, dotted: str, value):
    *parents, leaf = dotted.split(".")
    for key in parents:
        config = config[key]
    config[leaf] = value


def test_privacy_setup_outside_train_setups_is_refused(base):
    """Fault 5: it passed start-up and scheduled training runs of its own (hours of 2-GPU time in the study)."""
    config = copy.deepcopy(base)
    config["privacy"]["setup"] = "ddp2"
    assert _error(config) == ("config key privacy.setup: 'ddp2' is not in train.setups (gpu1, dp2, ddp2_amp), so the "
                              "privacy stage would schedule training runs of its own under it; give one of gpu1, "
                              "dp2, ddp2_amp")
    config["privacy"]["setup"] = "gpu1_fast"  # any set-up of SETUPS, once it is trained
    config["train"]["setups"] = ["gpu1", "gpu1_fast"]
    assert validate_config(config)["privacy"]["setup"] == "gpu1_fast"


@pytest.mark.parametrize("key, sigmas, shown", [
    ("noise.sigmas", [0], "noise.sigmas.0: 0 is out of range"),
    ("noise.sigmas", [0.1, 0.0], "noise.sigmas.1: 0.0 is out of range"),
    ("noise.sigmas", [1.0], "noise.sigmas.0: 1.0 is out of range"),
    ("noise.sigmas", [1.5], "noise.sigmas.0: 1.5 is greater than the maximum of 1"),
    ("noise.sigmas", [-0.2], "noise.sigmas.0: -0.2 is less than the minimum of 0"),
    ("noise.literature.sigmas", [0.05, 1.0], "noise.literature.sigmas.1: 1.0 is out of range"),
    ("noise.literature.sigmas", [0], "noise.literature.sigmas.0: 0 is out of range"),
])
def test_sigma_outside_zero_one_is_refused(base, key, sigmas, shown):
    """Fault 9: sigma 0, 1.0 and 1.5 were accepted (sigma 0 then crashed the TV baseline: ZeroDivisionError)."""
    config = copy.deepcopy(base)
    _set(config, key, sigmas)
    assert _error(config) == f"config key {shown}; give a number > 0 and < 1"


def test_federated_sigma_must_be_a_trained_sigma(base):
    """Fault 10: a sigma no model is trained at gave an InputFunctionException/KeyError traceback."""
    config = copy.deepcopy(base)
    config["federated"]["sigma"] = 0.33
    assert _error(config) == ("config key federated.sigma: 0.33 is not a noise level models are trained at; give one "
                              "of noise.sigmas (0.1, 0.2, 0.3), or null for the first")
    config["federated"]["sigma"] = 0.0588235  # a literature sigma: noisy images exist, but no model is trained at it
    config["noise"]["literature"]["sigmas"] = [0.0588235]
    assert _error(config).startswith("config key federated.sigma: 0.0588235 is not a noise level models are trained")
    config["federated"]["sigma"] = 0.2
    assert validate_config(config)["federated"]["sigma"] == 0.2


@pytest.mark.parametrize("model, message", [
    ("resnet", "unknown model 'resnet'; available: dncnn, fastddpm, unet, unetpp"),
    ("fastddpm", "'fastddpm' cannot be trained federated (the sites train the L1 loss of model(noisy); 'fastddpm' "
                 "trains on its own diffusion loss); give one of dncnn, unet, unetpp"),
])
def test_federated_model_must_be_one_federated_training_can_train(base, model, message):
    """Fault 10: an unknown model gave a KeyError traceback in federated.smk; Fast-DDPM's forward(noisy) samples
    without gradients, so the sites' L1 step cannot train it: refused at start."""
    config = copy.deepcopy(base)
    config["federated"]["model"] = model
    assert _error(config) == f"config key federated.model: {message}"


@pytest.mark.parametrize("key, value, message", [
    ("models.fastddpm.steps", 1, "must be an integer in 2..1000, got 1"),
    ("models.fastddpm.steps", 5000, "must be an integer in 2..1000, got 5000"),
    ("models.fastddpm.steps", 7, "7 gives 6 distinct time steps under the non-uniform rule; use steps 10"),
    ("models.fastddpm.ema", 1.5, "must be a decay in [0, 1) (0 = off), got 1.5"),
    ("models.fastddpm.levels", 1, "must be an integer >= 2, got 1"),
    ("models.fastddpm.base_channels", 1, "must be an integer >= 2, got 1"),
    ("models.dncnn.depth", 2, "must be an integer >= 3, got 2"),
    ("models.unet.base_channels", 0, "must be an integer >= 1, got 0"),
])
def test_model_values_are_checked_against_the_model_at_start_up(base, key, value, message):
    """Fault 11: these passed start-up and failed only inside the train job."""
    config = copy.deepcopy(base)
    _set(config, key, value)
    assert _error(config).startswith(f"config key {key}: {message}")


def test_fastddpm_levels_are_checked_against_the_image_size(base):
    """Fault 11: levels too deep for resize.size failed in the train job, naming the input shape, not the key."""
    config = copy.deepcopy(base)
    config["resize"]["size"] = 32
    config["models"]["fastddpm"]["levels"] = 7
    assert _error(config) == ("config key models.fastddpm.levels: 7 needs image sizes divisible by 2^6 = 64, and "
                              "resize.size is 32; use levels 6 or fewer, or a resize.size divisible by 64")
    config["models"]["fastddpm"]["levels"] = 6  # 32 / 2^5: the deepest that works at 32 px
    validate_config(config)


@pytest.mark.parametrize("key, value, message", [
    ("train.setups_by_model", {"resnet": ["gpu1"]},
     "train.setups_by_model.resnet: unknown model 'resnet'; available: dncnn, fastddpm, unet, unetpp"),
    ("train.setups_by_model", {"dncnn": ["gpu9"]}, "train.setups_by_model.dncnn.0: unknown set-up 'gpu9'; available:"),
    ("train.replicates_by_model", {"resnet": {"gpu1": 2}},
     "train.replicates_by_model.resnet: unknown model 'resnet'; available: dncnn, fastddpm, unet, unetpp"),
    ("train.replicates_by_model", {"unet": {"gpu1": 3, "gpu9": 2}},
     "train.replicates_by_model.unet.gpu9: unknown set-up 'gpu9'; available: gpu1, dp2, ddp2, ddp2_amp"),
])
def test_per_model_train_keys_name_registered_models_and_setups(base, key, value, message):
    """Fault 11: train.setups_by_model naming an unknown model was ignored (so was train.replicates_by_model)."""
    config = copy.deepcopy(base)
    _set(config, key, value)
    assert _error(config).startswith(f"config key {message}")


def test_per_model_train_keys_may_name_models_and_setups_not_trained(base):
    """Registered but untrained names stay allowed: an override narrowing train.models needs no edit of them."""
    config = copy.deepcopy(base)
    config["train"]["models"] = ["unet"]
    config["train"]["replicates_by_model"]["unetpp"] = {"ddp2": 2}
    validate_config(config)


@pytest.mark.parametrize("override, line", [
    ({"train": {"models": ["unet", "unte"]}}, "error: config key train.models.1: unknown model 'unte'"),
    ({"models": {"unet": {"base_chanels": 8}}}, "error: config key models.unet.base_chanels: model 'unet' has no"),
    ({"noise": {"sigmas": [".nan"]}}, "error: config key noise.sigmas.0: nan is not a finite number"),
    ({"noise": {"mean": ".inf"}}, "error: config key noise.mean: inf is not a finite number"),
    # issue 22: an extra training run planned, and two tracebacks (federated.smk's KeyError) before these checks
    ({"privacy": {"setup": "ddp2"}}, "error: config key privacy.setup: 'ddp2' is not in train.setups"),
    ({"federated": {"sigma": 0.33}}, "error: config key federated.sigma: 0.33 is not a noise level"),
    ({"federated": {"model": "resnet"}}, "error: config key federated.model: unknown model 'resnet'"),
])
def test_snakemake_stops_at_start_up_with_one_line(tmp_path, override, line):
    text = yaml.safe_dump(override).replace("'.nan'", ".nan").replace("'.inf'", ".inf")  # YAML's own NaN / inf
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    # a cheap target: without the start-up check it would simply run (the data stages do not use these keys)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(REPO / "config" / "demo.yaml"), str(bad),
                       "--", "results/data/inventory.csv")
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()  # no job ran
