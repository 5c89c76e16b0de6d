"""Build the LPIPS network from local files only, and label honestly what was built.

LPIPS (``lpips.LPIPS(net="alex", version="0.1")``) needs two sets of weights: the linear calibration layers
(``alex.pth``, shipped inside the lpips package) and torchvision's ImageNet AlexNet
(``alexnet-owt-7be5be79.pth``), which torchvision would fetch from the network into the torch hub cache.
Compute nodes often have no network, and a silent download attempt (or a silently random backbone) would
either hang or produce numbers that look like LPIPS but are not. So:

* the backbone is *only* read from ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``; lpips is
  built with ``pnet_rand=True`` (torchvision never tries to download) and the cached ImageNet weights are
  loaded into it here, after checking the file's sha256 prefix (the ``7be5be79`` in its name);
* when that file is missing or wrong the scorer's status is ``unavailable``, its message names the path and how
  to place the file, and every score is NaN: no crash, no substitute value;
* a random backbone exists for tests only (argument ``backbone="random"`` or environment variable
  ``CXRDENOISE_LPIPS_BACKBONE=random``). Its status is ``random-backbone (NOT LPIPS)``, its kind
  ``random-backbone``, and its values go to a column named ``lpips_random_backbone``, never ``lpips``.
  Tables accept LPIPS only when ``lpips_kind == "alexnet-imagenet"``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import CxrError
from .hashing import file_sha256
from .metrics import to_lpips_input

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
ALEXNET_SHA256_PREFIX = "7be5be79"
BACKBONE_ENV = "CXRDENOISE_LPIPS_BACKBONE"
BACKBONES = ("imagenet", "random")

KIND_REAL = "alexnet-imagenet"
KIND_RANDOM = "random-backbone"
KIND_NONE = "none"
STATUS_OK = "ok"
STATUS_UNAVAILABLE = "unavailable"
STATUS_DISABLED = "disabled"
STATUS_RANDOM = "random-backbone (NOT LPIPS)"

MIN_SIZE = 31  # smaller inputs shrink to nothing before AlexNet's second max-pool

# lpips' AlexNet slices keep torchvision's module indices: slice k holds features.i for these i.
_SLICE_OF_FEATURE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def alexnet_weights_path() -> Path:
    """Where torchvision (and this module) look for the ImageNet AlexNet weights; honours TORCH_HOME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def missing_weights_message(path: Path) -> str:
    return (
        f"LPIPS unavailable: {path} not found. On a machine with network, download {ALEXNET_URL} "
        f"and copy it to {path} (or point TORCH_HOME at a folder holding hub/checkpoints/{ALEXNET_FILE}); "
        "LPIPS values are NaN until then"
    )


@dataclass
class LpipsScorer:
    """An LPIPS network (or none) plus the label that travels with every value it produces."""

    net: nn.Module | None
    status: str
    kind: str
    message: str
    weights_path: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def available(self) -> bool:
        return self.net is not None

    @property
    def column(self) -> str:
        """Column name for the values: ``lpips`` only for the real metric."""
        return "lpips_random_backbone" if self.kind == KIND_RANDOM else "lpips"

    def to(self, device: str | torch.device) -> "LpipsScorer":
        self.device = torch.device(device)
        if self.net is not None:
            self.net.to(self.device)
        return self

    def score(self, output: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        """Per-image distance of two (N, 1, H, W) batches in [0, 1] (clamped here); NaN when unavailable."""
        if self.net is None:
            return np.full(output.shape[0], np.nan)
        if min(output.shape[-2:]) < MIN_SIZE:
            raise CxrError(f"LPIPS (AlexNet) needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got "
                           f"{tuple(output.shape[-2:])}; disable it with evaluate.lpips: false")
        with torch.inference_mode():
            a = to_lpips_input(output.to(self.device))
            b = to_lpips_input(target.to(self.device))
            return self.net(a, b).reshape(-1).double().cpu().numpy()

    def info(self) -> dict[str, str | None]:
        """What a summary records about LPIPS."""
        return {
            "lpips_status": self.status,
            "lpips_kind": self.kind,
            "lpips_message": self.message,
            "lpips_column": self.column,
            "lpips_weights": self.weights_path,
        }


def load_lpips(enabled: bool = True, backbone: str | None = None, device: str | torch.device = "cpu") -> LpipsScorer:
    """The LPIPS scorer for this run; never downloads, never raises for missing weights.

    `backbone` is ``imagenet`` (the real metric, default) or ``random`` (tests only); when None it comes from
    the environment variable CXRDENOISE_LPIPS_BACKBONE.
    """
    if not enabled:
        return LpipsScorer(None, STATUS_DISABLED, KIND_NONE, "LPIPS disabled in the config (evaluate.lpips: false)")
    backbone = backbone or os.environ.get(BACKBONE_ENV) or "imagenet"
    if backbone not in BACKBONES:
        raise CxrError(f"LPIPS backbone {backbone!r} unknown (from argument or {BACKBONE_ENV}); use one of {BACKBONES}")
    if backbone == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same random backbone every time, so tests are reproducible
            net = _build_lpips()
        message = "random AlexNet backbone for tests: these values are NOT LPIPS and must not be reported"
        return LpipsScorer(net, STATUS_RANDOM, KIND_RANDOM, message).to(device)

    path = alexnet_weights_path()
    if not path.is_file():
        return LpipsScorer(None, STATUS_UNAVAILABLE, KIND_NONE, missing_weights_message(path), str(path))
    problem = _check_sha256(path)
    if problem:
        return LpipsScorer(None, STATUS_UNAVAILABLE, KIND_NONE, problem, str(path))
    net = _build_lpips()
    try:
        _load_backbone(net, path)
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        message = f"LPIPS unavailable: {path} could not be loaded ({err}); replace it with a fresh copy of " + ALEXNET_URL
        return LpipsScorer(None, STATUS_UNAVAILABLE, KIND_NONE, message, str(path))
    message = f"LPIPS AlexNet v0.1 with ImageNet weights from {path}"
    return LpipsScorer(net, STATUS_OK, KIND_REAL, message, str(path)).to(device)


def _check_sha256(path: Path) -> str | None:
    """None if the file's sha256 starts with the prefix in its name, else the reason it is refused."""
    digest = file_sha256(path)
    if digest.startswith(ALEXNET_SHA256_PREFIX):
        return None
    return (
        f"LPIPS unavailable: {path} has sha256 {digest[:8]}..., expected {ALEXNET_SHA256_PREFIX}... "
        f"(truncated or not torchvision's file); replace it with a fresh copy of {ALEXNET_URL}"
    )


def _build_lpips() -> nn.Module:
    """lpips AlexNet v0.1 with a random backbone (so torchvision fetches nothing) and the packaged linear layers."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's 'pretrained is deprecated' notices
        net = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)
    lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    lin_state = torch.load(lin_path, map_location="cpu", weights_only=True)
    expected = {k for k in net.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
    if set(lin_state) != expected:
        raise CxrError(f"{lin_path}: unexpected LPIPS linear-layer keys {sorted(lin_state)}; reinstall lpips==0.1.4")
    net.load_state_dict(lin_state, strict=False)  # `lins.*` are aliases of `lin*`, filled by the same tensors
    net.eval()
    for param in net.parameters():
        param.requires_grad_(False)
    return net


def _load_backbone(net: nn.Module, path: Path) -> None:
    """Copy torchvision's AlexNet `features.*` tensors into lpips' sliced backbone, checking every key."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for index, slice_no in _SLICE_OF_FEATURE.items():
        for param in ("weight", "bias"):
            mapped[f"slice{slice_no}.{index}.{param}"] = state[f"features.{index}.{param}"]
    net.net.load_state_dict(mapped, strict=True)
