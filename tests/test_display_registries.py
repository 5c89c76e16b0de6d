"""The model cards and the metric registry: each model's and each metric's display facts said once, torch-free,
and read by every table and figure (issue 23, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cxrdenoise.metric_registry import METRIC_COLUMNS, METRICS, STUDY_METRICS, metric_info
from cxrdenoise.models.cards import model_card, model_cards, study_models
from cxrdenoise.tables.protocol import _architecture
from cxrdenoise.tables.records import Run
from cxrdenoise.tables.runs import model_name


def test_every_registered_model_has_a_card_and_every_card_a_model():
    from cxrdenoise.models import available_models, model_class

    assert sorted(c.name for c in model_cards()) == available_models()
    for card in model_cards():
        assert model_class(card.name).__module__ == f"cxrdenoise.models.{card.module}"


def test_register_refuses_a_model_without_a_card():
    from torch import nn

    from cxrdenoise.errors import CxrError
    from cxrdenoise.models import register

    with pytest.raises(CxrError, match="no card in cxrdenoise.models.cards"):
        register("tinynet")(type("TinyNet", (nn.Module,), {}))


def test_labels_as_the_tables_print_them():
    assert [model_name(m) for m in ("noisy", "unet", "unetpp", "dncnn", "fastddpm", "resnet")] == \
        ["no denoising", "U-Net", "U-Net++", "DnCNN", "Fast-DDPM", "resnet"]
    assert study_models() == ("unet", "unetpp")
    assert model_card("resnet").color is None


def test_figure_colours_are_the_privacy_figures():
    """The colours privacy/figure.py kept in its own COLORS before the cards (Fast-DDPM had none)."""
    assert {c.name: c.color for c in model_cards()} == {"unet": "#4477aa", "unetpp": "#228833", "dncnn": "#ccbb44",
                                                         "fastddpm": None}


@pytest.mark.parametrize("model, kwargs, record, expected", [
    ("unet", {"base_channels": 64}, {"block": "study"}, "U-Net base width 64, block study"),
    ("unetpp", {"base_channels": 8}, {}, "U-Net++ base width 8, block not recorded"),
    ("dncnn", {"depth": 17, "channels": 64}, {}, "DnCNN depth 17, 64 channels"),
    ("fastddpm", {"base_channels": 8, "prediction": "x0"}, {}, "Fast-DDPM base width 8, predicts x0"),
    ("fastddpm", {"base_channels": 8}, {}, "Fast-DDPM base width 8, predicts eps"),
    ("resnet", {}, {}, "resnet base width ?, block not recorded"),
])
def test_protocol_line_of_each_model(model, kwargs, record, expected):
    run = Run(model, "0.1", "gpu1", record={"model_kwargs": kwargs, **record})
    assert _architecture(model, [run]) == expected


def test_metric_registry():
    assert METRIC_COLUMNS == ("psnr", "ssim", "ssim_w3", "lpips")
    assert STUDY_METRICS == ("psnr", "ssim_w3", "lpips")
    assert {m: METRICS[m].paper for m in STUDY_METRICS} == {"psnr": "psnr", "ssim_w3": "ssim", "lpips": "lpips"}
    assert [METRICS[m].decimals for m in METRIC_COLUMNS] == [3, 4, 4, 4]
    assert [METRICS[m].sign for m in METRIC_COLUMNS] == [1.0, 1.0, 1.0, -1.0]
    assert [METRICS[m].heading for m in ("psnr", "ssim", "lpips")] == ["PSNR (dB)", "SSIM", "LPIPS"]
    assert [METRICS[m].label + METRICS[m].unit_suffix for m in METRIC_COLUMNS] == \
        ["PSNR dB", "SSIM", "SSIM (win 3)", "LPIPS"]
    assert [m for m in METRIC_COLUMNS if METRICS[m].lpips] == ["lpips"]
    with pytest.raises(KeyError, match="known: psnr"):
        metric_info("mse")


def test_cards_and_metric_registry_import_no_torch():
    code = """
        import json, sys
        import cxrdenoise.models, cxrdenoise.models.cards, cxrdenoise.metric_registry, cxrdenoise.tables.runs
        print(json.dumps("torch" in sys.modules))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) is False
