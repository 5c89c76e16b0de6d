"""Batched torch PSNR/SSIM (cxrdenoise.device_metrics) against the scikit-image reference (cxrdenoise.metrics)
on the 14 real NIH radiographs at every noise level of the project, with the project's own noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from config_files import load_config
from cxrdenoise.device_metrics import batch_image_metrics, batch_psnr, batch_ssim
from cxrdenoise.imaging import load_grey, resize_grey
from cxrdenoise.metrics import image_metrics
from cxrdenoise.shards import image_noise

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


@pytest.fixture(scope="module")
def project():
    config = load_config(REPO / "config" / "config.yaml")
    return config["seed"], float(config["noise"]["mean"]), [float(s) for s in config["noise"]["sigmas"]]


def real_images(nih_sample_dir: Path) -> tuple[list[str], np.ndarray]:
    paths = sorted(nih_sample_dir.glob("*.png"))
    assert len(paths) == 14
    return [p.name for p in paths], np.stack([resize_grey(load_grey(p)[0], 256, p) for p in paths])


NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=NO_CUDA)])
def test_equal_to_scikit_image_on_real_images_at_every_sigma(nih_sample_dir, project, device):
    seed, mean, sigmas = project
    assert sigmas == [0.1, 0.2, 0.3]
    ids, clean = real_images(nih_sample_dir)
    checked = 0
    for sigma in sigmas:
        noise = np.stack([image_noise(seed, i, sigma, mean, c.shape) for i, c in zip(ids, clean)])
        cases = {
            "noisy input": np.clip(clean + noise, 0, 1).astype(np.float32),  # as the noise shards hold it
            "unclamped output": (clean + 0.3 * noise).astype(np.float32),  # outside [0, 1]: clamping is checked
            "identical": clean.copy(),
        }
        for case, output in cases.items():
            reference = [image_metrics(o, c) for o, c in zip(output, clean)]
            batched = batch_image_metrics(torch.from_numpy(output)[:, None].to(device), torch.from_numpy(clean))
            assert all(v.device.type == device for v in batched.values())
            for metric in ("psnr", "ssim", "ssim_w3"):
                ours = batched[metric].tolist()
                assert len(ours) == 14
                for j, (ref, got) in enumerate(zip(reference, ours)):
                    where = f"sigma {sigma}, {case}, {ids[j]}, {metric}"
                    if ref[metric] == float("inf"):
                        assert got == float("inf"), where
                    else:
                        assert abs(got - ref[metric]) <= TOL, f"{where}: {got} vs {ref[metric]}"
                    checked += 1
    assert checked == 3 * 3 * 3 * 14


def test_shapes_dtypes_and_errors():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 16, 20, generator=g), torch.rand(3, 16, 20, generator=g)
    m = batch_image_metrics(x, y)
    assert all(v.shape == (3,) and v.dtype == torch.float64 for v in m.values())
    assert torch.equal(batch_ssim(x, y[:, None], 3), m["ssim_w3"])
    assert torch.equal(batch_psnr(y, y), torch.full((3,), float("inf"), dtype=torch.float64))
    assert torch.allclose(batch_ssim(y, y), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="smaller than the 7x7 window"):
        batch_ssim(torch.rand(1, 1, 6, 32), torch.rand(1, 1, 6, 32))
    with pytest.raises(ValueError, match="shape mismatch"):
        batch_psnr(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, 1, H, W\)"):
        batch_psnr(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        batch_ssim(x, y, 4)
