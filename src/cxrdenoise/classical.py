"""Classical denoisers measured beside the learned ones (Table VI): BM3D, non-local means, TV, wavelet, Gaussian.

Each method's strength is set from the *known* noise sigma, never from the clean image:

* ``bm3d``: Mäkinen, Azzari & Foi's BM3D (the ``bm3d`` package, non-commercial licence, an optional extra),
  ``sigma_psd = sigma``, both stages.
* ``nlm``: scikit-image's non-local means, ``h = 0.8 * sigma`` with ``sigma`` passed in and ``fast_mode``, 5x5
  patches searched within 6 pixels (scikit-image's documented recommendation for a known sigma).
* ``tv``: Chambolle's total-variation denoising, ``weight = sigma``.
* ``wavelet``: BayesShrink soft thresholding (db1, scikit-image defaults) with ``sigma`` given.
* ``gaussian``: a Gaussian low-pass filter whose spatial sigma grows with the noise, ``0.5 + 5 * sigma`` pixels
  (1 px at the study's lowest noise, 2 px at its highest).

``strength`` scales that parameter (1 = the rule above) so a caller can tune it on validation images.

The study's noise is not zero-mean and is clipped: ``noisy = clip(clean + N(mean, sigma^2), 0, 1)`` with mean
0.1. Every method here assumes zero-mean noise around the value it should return. Three ways to meet that:

* ``"invert"`` (default): denoise the noisy image as it is, which estimates the *expected* noisy value
  ``m(c) = E[clip(c + N(mean, sigma^2), 0, 1)]`` at each pixel (the noise is zero-mean around it by definition),
  then map that estimate back through the inverse of ``m``, a monotone function known in closed form. This
  undoes both the mean and the bias that clipping adds near black and white.
* ``"subtract"``: remove the nominal mean first. Right in mid-grey, wrong near the ends, where clipping has
  already shifted the mean.
* ``"naive"``: feed the noisy image as it is and return the estimate of ``m(c)``: the image stays about ``mean``
  too bright.

Measured on the 14 real NIH radiographs of ../shared/data/nih-sample at the study's noise (mean PSNR, TV, NLM,
Gaussian and wavelet): ``invert`` beats ``subtract`` by 0.2-4.2 dB and ``naive`` by 4.7-12 dB; at sigma 0.3
``subtract`` gains only 2-3 dB over ``naive``, because clipping has removed much of the mean there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import CxrError

MEAN_HANDLING = ("invert", "subtract", "naive")


@dataclass(frozen=True)
class Method:
    """One classical denoiser: its display name, the rule that sets its parameter from sigma, and how to run it."""

    name: str
    label: str
    parameter: str
    rule: Callable[[float], float]
    run: Callable[[np.ndarray, float, float], np.ndarray]  # (image, sigma, parameter) -> denoised
    package: str | None = None  # a package it needs beyond the core dependencies' own imports
    install: str = ""  # how to get that package
    # False where the implementation cannot run from two Python threads at once (bm3d's native thread pool
    # aborts the process: "ThreadPool::launchPool: Assertion `_threads.empty()' failed"); its images go one by one
    thread_safe: bool = True


def _bm3d(img: np.ndarray, sigma: float, param: float) -> np.ndarray:
    import bm3d

    return bm3d.bm3d(img, sigma_psd=param, stage_arg=bm3d.BM3DStages.ALL_STAGES)


def _nlm(img: np.ndarray, sigma: float, param: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(img, h=param, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)


def _tv(img: np.ndarray, sigma: float, param: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(img, weight=param)


def _wavelet(img: np.ndarray, sigma: float, param: float) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(img, sigma=param, method="BayesShrink", mode="soft", rescale_sigma=True)


def _gaussian(img: np.ndarray, sigma: float, param: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(img, sigma=param, mode="reflect")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("bm3d", "BM3D", "sigma_psd", lambda s: s, _bm3d, package="bm3d", thread_safe=False,
               install="pip install 'cxrdenoise[bm3d]'; its licence is non-commercial"),
        Method("nlm", "non-local means", "h", lambda s: 0.8 * s, _nlm),
        Method("tv", "TV (Chambolle)", "weight", lambda s: s, _tv),
        Method("wavelet", "wavelet (BayesShrink)", "sigma", lambda s: s, _wavelet, package="pywt",
               install="pip install PyWavelets, a dependency of cxrdenoise"),
        Method("gaussian", "Gaussian filter", "spatial sigma (px)", lambda s: 0.5 + 5.0 * s, _gaussian),
    )
}


def missing_package(name: str) -> str | None:
    """Why method `name` cannot run here (its optional package is absent), or None when it can."""
    method = get_method(name)
    if method.package and importlib.util.find_spec(method.package) is None:
        return f"{method.label} skipped: the package {method.package!r} is not installed ({method.install})"
    return None


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise CxrError(f"unknown classical denoiser {name!r}; available: {', '.join(METHODS)}") from None


def parameter(name: str, sigma: float, strength: float = 1.0) -> float:
    """The value of method `name`'s noise parameter at noise level `sigma` (times `strength`)."""
    return float(get_method(name).rule(float(sigma)) * strength)


def clipped_expectation(clean: np.ndarray, mean: float, sigma: float) -> np.ndarray:
    """``E[clip(clean + N(mean, sigma^2), 0, 1)]`` per pixel, in closed form (a truncated-normal mean)."""
    from scipy.special import ndtr

    m = np.asarray(clean, dtype=np.float64) + float(mean)
    s = float(sigma)
    a, b = (0.0 - m) / s, (1.0 - m) / s
    pdf = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # noqa: E731
    return (1.0 - ndtr(b)) + m * (ndtr(b) - ndtr(a)) + s * (pdf(a) - pdf(b))


def invert_clipped_expectation(expected: np.ndarray, mean: float, sigma: float) -> np.ndarray:
    """The clean value whose clipped-noise expectation is `expected` (inverse of :func:`clipped_expectation`,
    which is strictly increasing), clamped to [0, 1]; tabulated on a fine grid and interpolated."""
    grid = np.linspace(-1.0, 2.0, 6001)  # 0.5e-3 steps, wide enough that [0, 1] maps inside it at sigma <= 1
    table = clipped_expectation(grid, mean, sigma)
    rising = np.concatenate([[True], np.diff(table) > 0])  # far outside [0, 1] the float values stop rising
    return np.clip(np.interp(expected, table[rising], grid[rising]), 0.0, 1.0)


def denoise(name: str, noisy: np.ndarray, sigma: float, mean: float, *, mean_handling: str = "invert",
            strength: float = 1.0) -> np.ndarray:
    """Denoise one (H, W) image in [0, 1] with method `name`; returns float32 in [0, 1]."""
    if mean_handling not in MEAN_HANDLING:
        raise CxrError(f"mean_handling must be one of {', '.join(MEAN_HANDLING)}, got {mean_handling!r}")
    img = np.asarray(noisy, dtype=np.float64)
    if img.ndim != 2:
        raise CxrError(f"classical denoiser {name!r}: expected one (H, W) image, got shape {img.shape}")
    reason = missing_package(name)
    if reason:
        raise CxrError(reason)
    if mean_handling == "subtract":
        img = img - float(mean)
    out = np.asarray(get_method(name).run(img, float(sigma), parameter(name, sigma, strength)), dtype=np.float64)
    if mean_handling == "invert":
        out = invert_clipped_expectation(out, mean, sigma)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
