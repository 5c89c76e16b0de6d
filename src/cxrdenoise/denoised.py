"""Whether a trained net denoised at all, decided in one place for tables, figures, claims and the run summary.

A row whose mean test PSNR does not beat the no-denoising row at the same noise level (the noisy input scored
against the clean image) did not denoise: it is flagged wherever it appears, never averaged in silently, and it
gets no time-saving figure.
"""

from __future__ import annotations

import math

NOT_DENOISED = "did not denoise"


def did_not_denoise(model_psnr: float | None, noisy_psnr: float | None) -> bool:
    """True when the model's mean PSNR is missing, not finite, or not above the noisy input's."""
    if model_psnr is None or noisy_psnr is None:
        return model_psnr is None
    if not math.isfinite(model_psnr):
        return True
    return not model_psnr > noisy_psnr
