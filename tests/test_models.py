"""Tests for cxrdenoise.models: registry, shapes, parameter counts, residual learning, deep supervision."""

from __future__ import annotations

import json

import pytest
import torch

from cxrdenoise.errors import CxrError
from cxrdenoise.models import available_models, build_model, check_model_config, count_parameters, model_kwarg_names
from cxrdenoise.models.blocks import KeywordError
from cxrdenoise.models.registry import model_class

torch.set_num_threads(1)

SMALL = {"unet": {"base_channels": 4}, "unetpp": {"base_channels": 4}, "dncnn": {"depth": 5, "channels": 8}}


def test_registry_lists_the_three_models():
    assert available_models() == ["dncnn", "fastddpm", "unet", "unetpp"]
    assert model_kwarg_names("unet") == ["base_channels", "block"]
    assert model_kwarg_names("unetpp") == ["base_channels", "deep_supervision", "block"]


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("batch", [1, 2])
def test_forward_shape(name, batch):
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name])
    x = torch.rand(batch, 1, 32, 32)
    for training in (True, False):
        model.train(training)
        y = model(x)
        assert isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("unet", {"base_channels": 64}, 31.0e6),
        ("unetpp", {"base_channels": 64, "deep_supervision": False}, 36.6e6),
    ],
)
def test_parameter_counts_at_base_64(name, kwargs, expected):
    with torch.device("meta"):  # no memory, no initialisation: counting only
        n = count_parameters(build_model(name, **kwargs))
    assert abs(n / expected - 1) < 0.01, n


def test_exact_parameter_counts():
    """The defaults are the study's nets: its U-Net has 31,036,481 parameters, its U-Net++ 36,621,380 with the
    four heads it defines (36,621,185 with the one it trains)."""
    with torch.device("meta"):
        counts = {
            "unet": count_parameters(build_model("unet")),
            "unetpp": count_parameters(build_model("unetpp")),
            "unetpp_ds": count_parameters(build_model("unetpp", deep_supervision=True)),
            "dncnn": count_parameters(build_model("dncnn")),
        }
    assert counts == {"unet": 31_036_481, "unetpp": 36_621_185, "unetpp_ds": 36_621_380, "dncnn": 556_097}


def test_exact_parameter_counts_double_bn():
    """double_bn (the study's DDP U-Net script) adds one BatchNorm (2 x width parameters) to each of the blocks."""
    with torch.device("meta"):
        counts = {
            "unet": count_parameters(build_model("unet", block="double_bn")),
            "unetpp": count_parameters(build_model("unetpp", block="double_bn")),
            "unetpp_ds": count_parameters(build_model("unetpp", block="double_bn", deep_supervision=True)),
        }
    assert counts == {"unet": 31_042_369, "unetpp": 36_628_481, "unetpp_ds": 36_628_676}
    widths = [64 * 2**i for i in range(5)]
    unet_block_widths = widths + widths[:4]  # encoder and decoder
    assert counts["unet"] - 31_036_481 == 2 * sum(unet_block_widths)


@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_block_layouts(name):
    """study: conv, ReLU, conv, BatchNorm, ReLU; double_bn: (conv, BatchNorm, ReLU) twice."""
    kinds = {}
    for block in ("study", "double_bn"):
        model = build_model(name, base_channels=4, block=block)
        first = model.encoder[0] if name == "unet" else model.nodes["0_0"]
        kinds[block] = [type(m).__name__ for m in first.modules() if not isinstance(m, torch.nn.Sequential)]
        n_blocks = 9 if name == "unet" else 15
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert n_bn == n_blocks * (1 if block == "study" else 2)
        assert model.model_kwargs["block"] == block
    assert kinds["study"] == ["Conv2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU"]
    assert kinds["double_bn"] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU"]
    assert build_model(name, base_channels=4).model_kwargs["block"] == "study"  # the default


@pytest.mark.parametrize("name", ["unet", "unetpp"])
@pytest.mark.parametrize("block", ["double", "", None, 1])
def test_unknown_block(name, block):
    with pytest.raises(CxrError, match=r"block must be one of study, double_bn, got") as err:
        build_model(name, base_channels=4, block=block)
    assert f"'{name}'" in str(err.value) and "\n" not in str(err.value)


def test_dncnn_is_residual():
    torch.manual_seed(0)
    model = build_model("dncnn", **SMALL["dncnn"])
    last = model.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = torch.rand(2, 1, 24, 20)  # DnCNN takes any size
    assert torch.equal(model(x), x)
    model.eval()
    assert torch.equal(model(x), x)


def test_unetpp_deep_supervision_outputs():
    torch.manual_seed(0)
    model = build_model("unetpp", base_channels=4, deep_supervision=True)
    x = torch.rand(2, 1, 32, 32)
    model.train()
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == x.shape for o in outs)
    model.eval()
    with torch.no_grad():
        y = model(x)
        assert isinstance(y, torch.Tensor) and y.shape == x.shape
        # eval returns the deepest (X^{0,4}) head, the last of the training outputs: compare with BatchNorm
        # kept in eval mode and only the top module switched to training
        model.training = True
        assert torch.equal(y, model(x)[-1])
    without = build_model("unetpp", base_channels=4, deep_supervision=False)
    assert len(without.heads) == 1


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("unetpp", {"base_channels": 4, "deep_supervision": False}),
        ("unetpp", {"base_channels": 4, "deep_supervision": True}),
        ("unetpp", {"base_channels": 4, "block": "double_bn"}),
        ("unet", {"base_channels": 4}),
        ("unet", {"base_channels": 4, "block": "double_bn"}),
        ("dncnn", {"depth": 4, "channels": 4}),
    ],
)
def test_every_parameter_gets_a_gradient(name, kwargs):
    """DDP (find_unused_parameters=False) fails if any parameter is left out of the training graph."""
    torch.manual_seed(0)
    model = build_model(name, **kwargs).train()
    out = model(torch.rand(2, 1, 32, 32))
    loss = torch.stack([o.abs().mean() for o in out]).mean() if isinstance(out, list) else out.abs().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_unknown_model_name():
    with pytest.raises(CxrError, match=r"unknown model 'resnet'; available: dncnn, fastddpm, unet, unetpp") as err:
        build_model("resnet")
    assert "\n" not in str(err.value)


def test_unknown_kwarg():
    with pytest.raises(CxrError) as err:
        build_model("unet", base_channels=8, depth=3)
    msg = str(err.value)
    assert "'unet'" in msg and "depth" in msg and "base_channels" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("unet", {"base_channels": 0}),
        ("unet", {"base_channels": 8.0}),
        ("unet", {"block": "double"}),
        ("unetpp", {"deep_supervision": "yes"}),
        ("unetpp", {"base_channels": -1}),
        ("dncnn", {"depth": 2}),
        ("dncnn", {"channels": True}),
        ("fastddpm", {"steps": 1}),
        ("fastddpm", {"steps": 5000}),
        ("fastddpm", {"steps": 7}),
        ("fastddpm", {"schedule": "cosine"}),
        ("fastddpm", {"ema": 1.5}),
        ("fastddpm", {"levels": 1}),
        ("fastddpm", {"base_channels": 1}),
        ("fastddpm", {"sample_seed": -1}),
        ("fastddpm", {"prediction": "noise"}),
    ],
)
def test_bad_kwarg_values(name, kwargs):
    """The constructor and the model's own start-up check (`check_config`, no network built) refuse the same
    value with the same one-line message, which names the keyword."""
    with pytest.raises(KeywordError, match=name) as built:
        build_model(name, **kwargs)
    with pytest.raises(KeywordError) as checked:
        check_model_config(name, kwargs, 64)
    assert str(checked.value) == str(built.value) and "\n" not in str(built.value)
    assert checked.value.keyword == next(iter(kwargs))


def test_every_model_checks_its_config_without_being_built():
    """Every registered model has `check_config(kwargs, image_size)`, and its defaults pass at the study's size."""
    for name in available_models():
        assert callable(getattr(model_class(name), "check_config", None)), name
        check_model_config(name, {}, 256)


@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_unet_config_check_names_the_image_size(name):
    check_model_config(name, {}, 48)
    with pytest.raises(KeywordError) as err:
        check_model_config(name, {}, 72)
    assert err.value.keyword is None  # the start-up check names resize.size
    assert err.value.problem == (f"72 is not divisible by 16, which '{name}' needs (it halves the image 4 times); "
                                 "give a multiple of 16")
    check_model_config("dncnn", {}, 17)  # DnCNN takes any size


def test_non_json_kwarg():
    with pytest.raises(CxrError, match="JSON"):
        build_model("unet", base_channels=torch.tensor(8))


@pytest.mark.parametrize("name", ["unet", "unetpp"])
@pytest.mark.parametrize("shape", [(1, 1, 40, 32), (1, 1, 32, 24), (1, 3, 32, 32), (1, 32, 32)])
def test_unet_input_shape_checked(name, shape):
    model = build_model(name, **SMALL[name])
    with pytest.raises(CxrError, match=r"\(1, .*divisible by 16"):
        model(torch.rand(shape))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_kwargs_round_trip_through_json(name):
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name])
    spec = json.loads(json.dumps({"name": model.model_name, "kwargs": model.model_kwargs}))
    rebuilt = build_model(spec["name"], **spec["kwargs"])
    rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    assert rebuilt.model_kwargs == model.model_kwargs
    model.eval()
    rebuilt.eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
