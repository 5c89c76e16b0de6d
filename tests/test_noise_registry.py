"""Noise as a registry (issue 23, item 3): look-up and refusal, the study's Gaussian bit-identical to the formula
of before the registry, the literature's zero-mean entry, and a third type that plugs in through the same call
path as the noise stage without touching anything else."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cxrdenoise.commands import data as stages
from cxrdenoise.config import noise_means, validate_config
from cxrdenoise.errors import CxrError
from cxrdenoise.naming import sigma_label
from cxrdenoise.noise import NoiseModel, available_noises, get_noise, make_noise, noise_plan, register
from cxrdenoise.noise import registry
from cxrdenoise.seeding import rng_for
from cxrdenoise.shards import STORAGE_SCALE, decode, encode, image_noise, save_shard

IMAGE = "00000001_000.png"


def config(**noise) -> dict:
    return validate_config({"noise": noise}, check_models=False)


def test_lookup_and_refusal():
    assert {"gaussian_study", "gaussian_literature"} <= set(available_noises())
    assert get_noise("gaussian_study").name == "gaussian_study"
    with pytest.raises(CxrError, match=r"unknown noise type 'poisson'; registered: .*gaussian_study"):
        get_noise("poisson")
    with pytest.raises(CxrError, match=r"'gaussian_study': missing parameter 'mean'; its parameters: mean"):
        make_noise("gaussian_study", {})
    with pytest.raises(CxrError, match=r"unknown parameter 'gain'"):
        make_noise("gaussian_study", {"mean": 0.1, "gain": 2})


def test_study_entry_is_the_formula_of_before_bit_for_bit():
    clean = np.random.default_rng(0).random((24, 24), dtype=np.float32)
    noise = make_noise("gaussian_study", {"mean": 0.1})
    for sigma in (0.1, 0.2, 0.3):
        before = np.clip(clean + rng_for(7, "noise", IMAGE, sigma_label(sigma)).normal(0.1, sigma, size=clean.shape),
                         0.0, 1.0)
        after = noise.apply(clean, noise.rng(7, IMAGE, sigma), sigma)
        assert after.dtype == before.dtype and after.tobytes() == before.tobytes()
        assert np.array_equal(image_noise(7, IMAGE, sigma, 0.1, clean.shape),
                              rng_for(7, "noise", IMAGE, sigma_label(sigma)).normal(0.1, sigma, size=clean.shape))
    assert noise.label(0.1) == "0.1" and noise.sidecar(0.2) == {"sigma": 0.2, "noise_mean": 0.1}


def test_entries_read_their_parameters_and_levels_from_the_config():
    cfg = config(mean=0.05, sigmas=[0.1, 0.2])
    assert cfg["noise"]["type"] == "gaussian_study"  # the schema's default
    study, literature = get_noise("gaussian_study"), get_noise("gaussian_literature")
    assert study.from_config(cfg).mean == 0.05 and study.levels(cfg) == [0.1, 0.2]
    assert literature.from_config(cfg).mean == 0.0 and literature.levels(cfg) == [0.0588235, 0.0980392]
    plan = noise_plan(cfg)  # what common.smk's NOISE_MEANS gives today, label for label
    assert {label: p.noise.mean for label, p in plan.items()} == noise_means(cfg)
    assert [p.noise.name for p in plan.values()] == ["gaussian_study"] * 2 + ["gaussian_literature"] * 2


def test_literature_entry_is_zero_mean_and_clipped():
    noise = get_noise("gaussian_literature").from_config(config())
    sigma = 0.0980392
    grey = np.full((256, 256), 0.5, dtype=np.float32)  # 5 sigma from either bound: clipping is negligible
    noisy = noise.apply(grey, noise.rng(3, IMAGE, sigma), sigma)
    assert abs(float((noisy - grey).mean())) < 4 * sigma / 256  # 4 standard errors of the mean
    assert abs(float((noisy - grey).std()) - sigma) < 0.01
    black = np.zeros((256, 256), dtype=np.float32)  # clipped at 0: about half the pixels stay black
    noisy = noise.apply(black, noise.rng(3, IMAGE, sigma), sigma)
    assert noisy.min() == 0.0 and noisy.max() <= 1.0 and 0.45 < float((noisy == 0).mean()) < 0.55


def test_config_refuses_an_unregistered_or_unusable_type():
    with pytest.raises(CxrError) as err:
        config(type="poisson")
    message = str(err.value)
    assert "\n" not in message and message.startswith("config key noise.type: unknown noise type 'poisson'")
    assert "registered: gaussian_literature, gaussian_study" in message
    with pytest.raises(CxrError, match="config key noise.type: 'gaussian_literature' is the literature's setting"):
        config(type="gaussian_literature")


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that the test may add to; the real one is left as it was."""
    available_noises()  # load the package's entries first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def clean_shard(path, n=3, size=16) -> list[str]:
    images = np.random.default_rng(1).random((n, size, size), dtype=np.float32)
    ids = [f"{i + 1:08d}_000.png" for i in range(n)]
    save_shard(encode(images, "float16"), path, {"kind": "clean", "shard": 0, "image_ids": ids,
                                                  "patient_ids": list(range(1, n + 1)), "splits": ["test"] * n,
                                                  "colour_converted": 0, "storage_scale": STORAGE_SCALE["float16"]})
    return ids


def test_a_third_type_plugs_in_through_the_noise_stage(tmp_path, scratch_registry):
    @register("toy_salt")
    @dataclasses.dataclass(frozen=True)
    class ToySalt(NoiseModel):  # the module, the schema entry and this test: nothing else changes
        amount: float

        def apply(self, clean, rng, level):
            return np.where(rng.random(clean.shape) < self.amount * level, 1.0, clean)

    assert "toy_salt" in available_noises() and get_noise("toy_salt") is ToySalt
    ids = clean_shard(tmp_path / "clean" / "shard_00000.npy")
    out = tmp_path / "noisy" / "shard_00000.npy"
    assert stages.main(["noise", "--clean-npy", str(tmp_path / "clean" / "shard_00000.npy"), "--sigma", "0.5",
                        "--seed", "3", "--out-npy", str(out), "--noise", "toy_salt",
                        "--noise-params", '{"amount": 0.4}']) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["noise"] == "toy_salt" and meta["noise_params"] == {"amount": 0.4} and meta["sigma"] == 0.5
    clean = decode(np.load(tmp_path / "clean" / "shard_00000.npy"))
    toy = ToySalt(amount=0.4)
    expected = np.stack([toy.apply(clean[i], rng_for(3, "noise", image_id, "0.5"), 0.5)
                         for i, image_id in enumerate(ids)])
    noisy = decode(np.load(out))
    assert np.array_equal(noisy, encode(expected.astype(np.float32), "float16").astype(np.float32))
    assert 0 < float((noisy == 1.0).mean()) < 0.5
    with pytest.raises(CxrError, match="'toy_salt' is registered, but the workflow makes only gaussian_study"):
        config(type="toy_salt")
