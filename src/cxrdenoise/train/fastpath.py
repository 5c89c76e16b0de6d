"""Which fast paths a training job uses, decided once from its set-up, the `train.fast` config and the device.

The study's set-ups (gpu1, dp2, ddp2, ddp2_amp) get `FastPlan.study`: exactly the loop the study's timings were
measured with (float16 + GradScaler for AMP on CUDA, a DataLoader, a `loss.item()` per step, a checkpoint after
every epoch; like every set-up, written from a CPU snapshot in the background, which changes no number). The fast
set-ups (gpu1_fast, ddp2_fast) get `FastPlan.fast`:
every switch of `train.fast`, each checked against what this torch and device can do; a switch that cannot be
honoured is turned off with its reason, and `FastPlan.record()` puts requested value, value used and reason of
every switch into record.json, so a timing always says which paths produced it.

Its own module because it is the one decision "which loop runs": the engine asks the plan at its hooks (marked
`[fast-path hook]` there) instead of testing set-up names and switches itself.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..errors import CxrError

from .fastopts import COMPILE_MODES, FAST_DEFAULTS, FAST_MATH_KEYS, fast_options  # noqa: F401 (re-exported)

AMP_DTYPES = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None}


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu"  # CPU autocast runs bfloat16 (the study's AMP on CPU does too)


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run here (None when a tiny compiled function ran): checked up front, because a
    compile error would otherwise surface inside the first training step."""
    try:
        import torch._dynamo as dynamo
    except Exception as err:  # pragma: no cover - every supported torch has it
        return f"torch._dynamo unavailable ({type(err).__name__})"
    if not dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python"
    if device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        return "no C++ compiler on PATH (inductor's CPU backend needs one)"
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except Exception:  # pragma: no cover - older layouts
            has_triton = None
        if has_triton is not None and not has_triton():
            return "triton is not installed (inductor's CUDA backend needs it)"
    try:
        probe = torch.compile(lambda x: torch.relu(x) * 2 + 1)
        probe(torch.ones(8, device=device))
    except Exception as err:
        return f"a trial compile failed ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
    return None


def fused_adam_available(device: torch.device) -> bool:
    """Adam(fused=True) exists for CUDA since torch 2.0 and for the CPU since 2.4: try it on one parameter."""
    try:
        p = torch.nn.Parameter(torch.zeros(2, device=device))
        opt = torch.optim.Adam([p], lr=1e-3, fused=True)
        p.grad = torch.ones_like(p)
        opt.step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


@dataclass
class FastPlan:
    """What the loop does: every field is read by the engine, for the study's set-ups as for the fast ones."""

    enabled: bool
    amp_dtype: torch.dtype | None
    grad_scaler: bool
    cudnn_benchmark: bool
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    device_data: bool = False
    fused_adam: bool = False
    sync_free: bool = False
    checkpoint_every: int = 1
    checkpoint_async: bool = False
    requested: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)  # switch -> why it is off although requested

    @classmethod
    def study(cls, amp: bool, device: torch.device) -> "FastPlan":
        """The study's loop: float16 + GradScaler under AMP on CUDA (bfloat16 on the CPU), nothing else."""
        cuda = device.type == "cuda"
        dtype = (torch.float16 if cuda else torch.bfloat16) if amp else None
        return cls(enabled=False, amp_dtype=dtype, grad_scaler=amp and cuda, cudnn_benchmark=cuda,
                   checkpoint_async=True)  # where and when files are written, not what is trained

    @classmethod
    def fast(cls, options: Mapping[str, Any], device: torch.device, check_compile: Callable = compile_unavailable
             ) -> "FastPlan":
        opts = fast_options(options)
        cuda = device.type == "cuda"
        reasons: dict[str, str] = {}
        name = opts["amp_dtype"]
        if name == "auto":
            name = "bfloat16" if bf16_supported(device) else "float16"
        if name == "bfloat16" and not bf16_supported(device):
            reasons["amp_dtype"] = f"{device} has no bfloat16 support: float16 + GradScaler instead"
            name = "float16"
        if name == "float16" and not cuda:
            reasons["amp_dtype"] = "float16 autocast needs CUDA here: bfloat16 on the CPU instead"
            name = "bfloat16"
        dtype = AMP_DTYPES[name]
        compile_on = opts["compile"] is True or (opts["compile"] == "auto" and cuda)
        if opts["compile"] == "auto" and not cuda:
            reasons["compile"] = "auto: off on the CPU (minutes of compiling, then no faster: benchmarks/README.md)"
        if compile_on:
            why = check_compile(device)
            if why is not None:
                reasons["compile"] = why
                compile_on = False
        cudnn = opts["cudnn_benchmark"] and cuda
        if opts["cudnn_benchmark"] and not cuda:
            reasons["cudnn_benchmark"] = "cuDNN is CUDA only"
        fused = opts["fused_adam"] and fused_adam_available(device)
        if opts["fused_adam"] and not fused:
            reasons["fused_adam"] = f"this torch has no fused Adam for {device.type}: foreach Adam instead"
        return cls(
            enabled=True, amp_dtype=dtype, grad_scaler=dtype == torch.float16, cudnn_benchmark=cudnn,
            channels_last=opts["channels_last"], compile=compile_on, compile_mode=opts["compile_mode"],
            device_data=opts["device_data"], fused_adam=fused, sync_free=opts["sync_free"],
            checkpoint_every=opts["checkpoint_every"], checkpoint_async=opts["checkpoint_async"],
            requested=opts, reasons=reasons,
        )

    # ------------------------------------------------------------------------------------------- the engine
    def apply_backends(self) -> None:
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # fixed image size: autotuned convolutions; epoch 1 pays

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        """channels_last weights, before the set-up's wrapper moves the net to its device."""
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def compiled(self, model: torch.nn.Module) -> torch.nn.Module:
        """torch.compile of the (wrapped) model; the bare net keeps its own state_dict keys for checkpoints."""
        return torch.compile(model, mode=self.compile_mode) if self.compile else model

    def optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        if self.fused_adam:
            return torch.optim.Adam(params, lr=lr, fused=True)
        if self.enabled:
            return torch.optim.Adam(params, lr=lr, foreach=True)
        return torch.optim.Adam(params, lr=lr)  # the study's: torch's default choice

    def make_scaler(self, device: torch.device):
        """float16 gradients can overflow: GradScaler scales the loss and skips steps with inf/NaN gradients."""
        return torch.amp.GradScaler(device.type) if self.grad_scaler else None

    def batch_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def eval_context(self, device: torch.device):
        """Validation in the training precision under inference_mode (fast); the study's: float32, no_grad."""
        if not self.enabled:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.amp_dtype is not None:
            stack.enter_context(torch.autocast(device_type=device.type, dtype=self.amp_dtype))
        return stack

    def checkpoint_due(self, epoch: int, last_epoch: int) -> bool:
        return not self.enabled or epoch % self.checkpoint_every == 0 or epoch == last_epoch

    def precision_label(self) -> str:
        if self.amp_dtype is None:
            return "float32"
        return "autocast float16 + GradScaler" if self.grad_scaler else "autocast bfloat16"

    def validation_label(self) -> str:
        if not self.enabled:
            return "whole val split every epoch, float32, mean of per-image L1"
        prec = "float32" if self.amp_dtype is None else f"autocast {str(self.amp_dtype).replace('torch.', '')}"
        return (f"whole val split every epoch under inference_mode, {prec} forward, per-image L1 in float32 "
                "summed in float64")

    def record(self) -> dict:
        """Every switch: requested value, value used, and why they differ (absent when they agree)."""
        used = {
            "channels_last": self.channels_last,
            "amp_dtype": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "float32",
            "grad_scaler": self.grad_scaler,
            "compile": self.compile,
            "compile_mode": self.compile_mode if self.compile else None,
            "cudnn_benchmark": self.cudnn_benchmark,
            "device_data": self.device_data,
            "fused_adam": self.fused_adam,
            "sync_free": self.sync_free,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_async": self.checkpoint_async,
        }
        return {"enabled": self.enabled, "requested": dict(self.requested), "used": used,
                "reasons": dict(self.reasons)}


def plan_for(setup, fast_config: Mapping[str, Any] | None, device: torch.device) -> FastPlan:
    """The plan of one job: the study's loop for the study's set-ups, `train.fast` for the fast ones."""
    if getattr(setup, "fast", False):
        return FastPlan.fast(fast_config or {}, device)
    return FastPlan.study(setup.amp, device)


class StepAccumulator:
    """Loss, image and skipped-step sums of one epoch. Sync-free: device tensors read once by `finish()`;
    otherwise (the study's loop) `loss.item()` every step, NaN-checked at once."""

    def __init__(self, sync_free: bool, device: torch.device, where: Callable[[int | None], str]):
        self.sync_free, self.device, self.where = sync_free, device, where
        self.loss = torch.zeros((), dtype=torch.float64, device=device) if sync_free else 0.0
        self.skipped = torch.zeros((), dtype=torch.int64, device=device) if sync_free else 0
        self.images = 0
        self.pending_scalars: list[tuple[int, torch.Tensor]] = []

    def scale_before(self, scaler):
        if self.sync_free:
            return None  # read after scale(): GradScaler creates its scale tensor lazily
        return scaler.get_scale()

    def count_skip(self, scaler, before, scale_after_scale_call=None) -> None:
        """A skipped step (overflowing float16 gradients) is the only thing that lowers the scale."""
        if self.sync_free:
            if scale_after_scale_call is not None:
                self.skipped += (scaler._scale < scale_after_scale_call).to(torch.int64)
        else:
            self.skipped += int(scaler.get_scale() < before)

    def add(self, loss: torch.Tensor, n: int, step: int) -> float | None:
        """Add one step's mean loss over `n` images; returns the value (study loop) or None (sync-free)."""
        self.images += n
        if self.sync_free:
            self.loss += loss.detach().double() * n
            return None
        import math

        value = loss.item()
        if not math.isfinite(value):
            raise CxrError(f"training loss is {value} at {self.where(step)}; lower train.lr or check the shards")
        self.loss += value * n
        return value

    def finish(self) -> tuple[float, int, int]:
        """(loss sum, images, skipped steps); one host sync for the sync-free sums, and the epoch's NaN check."""
        if not self.sync_free:
            return self.loss, self.images, self.skipped
        loss, skipped = torch.stack([self.loss, self.skipped.double()]).tolist()
        if not torch.isfinite(torch.tensor(loss)):
            raise CxrError(f"training loss is {loss / max(self.images, 1)} (mean over the epoch; checked once per "
                           f"epoch on the fast path) at {self.where(None)}; lower train.lr or check the shards")
        return loss, self.images, int(skipped)


def scale_tensor(scaler):
    """The GradScaler's current scale as a device tensor (no sync), or None before its first scale()."""
    scale = getattr(scaler, "_scale", None)
    return scale.clone() if isinstance(scale, torch.Tensor) else None

