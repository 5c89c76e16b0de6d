"""`train.fast`: its switches, defaults and checks, without torch.

Its own module so that TrainSettings (built by the launcher, which for the DDP set-ups only starts torchrun) can
check a config's fast switches without importing torch; fastpath.py, which needs torch, re-exports these.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import CxrError

# train.fast defaults. Measured where possible (benchmarks/bench_train_step.py, benchmarks/README.md); the CUDA
# defaults follow the documented behaviour of the kernels until a GPU run replaces them with measurements.
FAST_DEFAULTS: dict[str, Any] = {
    "channels_last": True,  # NHWC convolutions: the layout cuDNN's tensor-core kernels use natively
    "amp_dtype": "auto",  # auto: bfloat16 where the device supports it (no GradScaler), else float16 + GradScaler
    "compile": "auto",  # auto: CUDA only (on the CPU: 4-5 min of compiling, then no faster; benchmarks/README.md)
    "compile_mode": "default",  # torch.compile mode: default | reduce-overhead | max-autotune | ...
    "cudnn_benchmark": True,  # autotune convolutions for the fixed image size
    "device_data": True,  # split preloaded to the device, batches indexed there (no DataLoader)
    "fused_adam": True,  # Adam's fused kernel where this torch has one for the device
    "sync_free": True,  # no host sync per step: loss summed on the device, read (and NaN-checked) once per epoch
    "checkpoint_every": 1,  # write last.pt every N epochs (and after the last epoch)
    "checkpoint_async": True,  # write checkpoints in a background thread from a CPU snapshot
}
AMP_NAMES = ("auto", "bfloat16", "float16", "float32")  # fastpath.AMP_DTYPES maps them to dtypes
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# keys that change what is computed: a last.pt written under other values is not resumed
FAST_MATH_KEYS = ("channels_last", "amp_dtype", "compile", "compile_mode", "device_data")


def fast_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """`train.fast` with defaults filled in; an unknown key or bad value stops with one line naming it."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(FAST_DEFAULTS))
    if unknown:
        raise CxrError(f"train.fast.{unknown[0]} is not a fast-path switch; choose from {', '.join(FAST_DEFAULTS)}")
    opts = {**FAST_DEFAULTS, **given}
    if opts["amp_dtype"] not in AMP_NAMES:
        raise CxrError(f"train.fast.amp_dtype must be one of {', '.join(AMP_NAMES)}, not {opts['amp_dtype']!r}")
    if opts["compile"] not in ("auto", True, False):
        raise CxrError(f"train.fast.compile must be auto, true or false, not {opts['compile']!r}")
    if opts["compile_mode"] not in COMPILE_MODES:
        raise CxrError(f"train.fast.compile_mode must be one of {', '.join(COMPILE_MODES)}, "
                       f"not {opts['compile_mode']!r}")
    if not isinstance(opts["checkpoint_every"], int) or opts["checkpoint_every"] < 1:
        raise CxrError(f"train.fast.checkpoint_every must be an integer >= 1, not {opts['checkpoint_every']!r}")
    for key in ("channels_last", "cudnn_benchmark", "device_data", "fused_adam", "sync_free", "checkpoint_async"):
        if not isinstance(opts[key], bool):
            raise CxrError(f"train.fast.{key} must be true or false, not {opts[key]!r}")
    return opts
