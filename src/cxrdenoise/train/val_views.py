"""What TensorBoard shows beyond the losses (rank 0 writes; every rank helps with PSNR).

Its own module because it is image-quality measurement (PSNR on the device, SSIM on a fixed subset, image
strips), not the loop (engine.py) nor the files a run writes (state.py), which only pass its numbers on.

* ``val/psnr``: mean per-image PSNR over the WHOLE validation split, from per-image MSE computed on the device
  inside the validation pass (outputs clamped to [0, 1]; MSE floored at 1e-10, so an exact copy counts 100 dB).
* ``val/ssim_subset``: mean SSIM (scikit-image, 7x7, as in evaluation) on a FIXED subset of at most
  ``SSIM_IMAGES`` val images, evenly spaced over the images rank 0 validates (under DDP rank r validates the
  global indices r, r+W, ...), computed on the host from the outputs of the validation pass itself (its batches
  and precision), so the views cost no forward pass of their own: comparable between epochs, not the split's
  SSIM (the subset's indices are written in the hyper-parameter text).
* ``val_images/<index>``: noisy | denoised | clean of the first ``SHOWN_IMAGES`` of that subset, at every epoch
  whose validation loss improved (the checkpoint kept as best.pt).
* ``hparams``: the training settings, as TensorBoard hyper-parameters and as a text table.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

PSNR_MSE_FLOOR = 1e-10  # 100 dB
SSIM_IMAGES = 8
SHOWN_IMAGES = 3
HPARAM_KEYS = ("model", "sigma", "noise_mean", "setup", "device", "world_size", "global_batch", "batch_per_gpu",
               "lr", "epochs_planned", "seed", "precision", "n_parameters", "train_images", "val_images")


def fixed_indices(n: int, k: int = SSIM_IMAGES) -> list[int]:
    """At most k val indices spread evenly over 0..n-1: the same images at every epoch and on every resume."""
    if n <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


class PsnrSum:
    """Sum of per-image PSNR over the validation images this rank scored, kept on the device."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, output: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> None:
        mse = (output.float().clamp(0.0, 1.0) - clean.float()).pow(2).flatten(1).mean(1)
        psnr = -10.0 * torch.log10(mse.clamp_min(PSNR_MSE_FLOOR))
        self.total += (psnr.double() * mask.to(psnr.device, torch.float64)).sum()  # no host sync


class ValViews:
    """The fixed val subset (held on the host), its outputs caught from the validation pass, and what is logged
    from them each epoch (rank 0 only)."""

    def __init__(self, val_ds: Any, world_size: int = 1, n_ssim: int = SSIM_IMAGES, n_shown: int = SHOWN_IMAGES):
        # positions in rank 0's (unshuffled, DistributedSampler) order: position p is global index p * world_size
        self.positions = fixed_indices(-(-len(val_ds) // world_size), n_ssim)
        self.indices = [p * world_size for p in self.positions]
        pairs = [val_ds[i] for i in self.indices]
        self.noisy = torch.stack([p[0] for p in pairs]).float()
        self.clean = torch.stack([p[1] for p in pairs]).float()
        self.n_shown = min(n_shown, len(self.indices))
        self._caught: list[torch.Tensor] = []

    def start(self) -> None:
        """Forget the last validation pass's outputs (called as one begins)."""
        self._caught = []

    def catch(self, first_position: int, output: torch.Tensor) -> None:
        """Keep (on the device) this batch's outputs of subset images; the batch holds rank 0's positions
        first_position .. first_position + len(output) - 1."""
        local = [p - first_position for p in self.positions if first_position <= p < first_position + len(output)]
        if local:
            self._caught.append(output[local].detach())

    def outputs(self) -> np.ndarray:
        """The subset's clamped outputs from the last validation pass, (k, H, W) on the host."""
        if not self._caught:
            raise RuntimeError("no validation outputs caught for the TensorBoard subset (validate() not run?)")
        out = torch.cat(self._caught).float().clamp(0.0, 1.0).cpu().numpy()[:, 0]
        if len(out) != len(self.indices):
            raise RuntimeError(f"caught {len(out)} of the {len(self.indices)} subset outputs in validation")
        return out

    def ssim(self, outputs: np.ndarray) -> float:
        from ..metrics import ssim

        return float(np.mean([ssim(o, c) for o, c in zip(outputs, self.clean.numpy()[:, 0])]))

    def log_epoch(self, tb: Any, step: int, psnr: float | None, improved: bool) -> dict[str, float]:
        """Write val/psnr, val/ssim_subset and (when improved) the images; returns the two numbers."""
        outputs = self.outputs()
        numbers = {"val_ssim_subset": self.ssim(outputs)}
        if psnr is not None and math.isfinite(psnr):
            numbers["val_psnr"] = psnr
            tb.scalar("val/psnr", psnr, step)
        tb.scalar("val/ssim_subset", numbers["val_ssim_subset"], step)
        if improved:
            for j in range(self.n_shown):
                strip = np.concatenate([self.noisy[j, 0].numpy(), outputs[j], self.clean[j, 0].numpy()], axis=1)
                tb.image(f"val_images/{self.indices[j]:05d}_noisy_denoised_clean", strip, step)
        return numbers

    def hparam_text(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """The hyper-parameters (TensorBoard-safe values) and a Markdown table of them with the subset used."""
        hparams = {k: _tb_value(record.get(k)) for k in HPARAM_KEYS if k in record}
        rows = "\n".join(f"| {k} | {v} |" for k, v in hparams.items())
        text = (f"| hyper-parameter | value |\n|---|---|\n{rows}\n\n"
                f"val/psnr: whole val split ({record.get('val_images')} images), per-image PSNR from MSE on the "
                f"device, MSE floored at {PSNR_MSE_FLOOR:g}. val/ssim_subset: SSIM on val indices {self.indices} "
                "only, on the host.")
        return hparams, text


def _tb_value(value: Any) -> Any:
    """TensorBoard hparams take bool, int, float or str."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
