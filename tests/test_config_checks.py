"""Start-up config checks: model names and keywords against the registry, every number finite."""

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
    return load_config(REPO / "config.yaml", REPO / "config" / "demo.yaml")


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
    (("noise", "sigmas"), [math.inf], "noise.sigmas.0: inf"),
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


@pytest.mark.parametrize("override, line", [
    ({"train": {"models": ["unet", "unte"]}}, "error: config key train.models.1: unknown model 'unte'"),
    ({"models": {"unet": {"base_chanels": 8}}}, "error: config key models.unet.base_chanels: model 'unet' has no"),
    ({"noise": {"sigmas": [".nan"]}}, "error: config key noise.sigmas.0: nan is not a finite number"),
    ({"noise": {"mean": ".inf"}}, "error: config key noise.mean: inf is not a finite number"),
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
