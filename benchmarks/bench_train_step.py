"""Training speed near the hardware, side by side in one process: eager float32 against each fast path and all of
them together (images/s, achieved TFLOP/s from FlopCounter counts, MFU against the device's dense bf16 peak where
known), the Trainer's epoch against a bare loop on the same model and data, and the loaders against the study's
approach (decoded once into float32 tensors held in memory).

    python benchmarks/bench_train_step.py                     # CUDA: the study's size (256x256, base 64, batch 16)
    python benchmarks/bench_train_step.py --size 64 --base 16 --batch 4      # the CPU defaults
    python benchmarks/bench_train_step.py --sections flops,step --models unet --compile

Every variant runs the same steps (L1 loss, Adam) on the same random batch held on the device; rounds alternate
the variants (paired), and the median round counts. FLOPs are counted once per model on the meta device (no
compute), for the image size measured; `--size 256 --base 64` reproduces the issue's 96.2 / 288.5 GFLOP (U-Net)
and 275.5 / 826.4 (U-Net++) per image. Writes benchmarks/results/bench_train_step_<device>_<UTC time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from cxrdenoise.models import build_model  # noqa: E402
from cxrdenoise.provenance import device_info, git_commit  # noqa: E402
from cxrdenoise.train import fastpath  # noqa: E402
from cxrdenoise.train.engine import l1_loss  # noqa: E402
from bench_output import save_result  # noqa: E402

# dense (no sparsity) bfloat16 tensor-core peaks, TFLOP/s, from the vendors' data sheets; first match wins
PEAK_BF16_TFLOPS = (("H100 PCIe", None), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))
ISSUE_GFLOP = {"unet": (96.2, 288.5), "unetpp": (275.5, 826.4)}  # per 256x256 image at base 64 (issue 11)


def peak_tflops(device_name: str) -> float | None:
    for key, peak in PEAK_BF16_TFLOPS:
        if key in device_name:
            return peak
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model: str, base: int, size: int) -> dict:
    """Forward and forward+backward FLOPs per image (FlopCounterMode on the meta device: counted, not run)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build_model(model, base_channels=base)
        x = torch.empty(1, 1, size, size)
    with FlopCounterMode(display=False) as fwd:
        net(x)
    with FlopCounterMode(display=False) as both:
        out = net(x)
        out = out[-1] if isinstance(out, (list, tuple)) else out
        out.sum().backward()
    return {"forward": fwd.get_total_flops(), "forward_backward": both.get_total_flops()}


# ------------------------------------------------------------------------------------------------ step variants
def variants(device: torch.device, want_compile: bool, solo_compile: bool = True
             ) -> tuple[dict[str, dict], dict[str, str]]:
    """name -> switches; and skipped variant -> reason."""
    amp = "bfloat16" if fastpath.bf16_supported(device) else "float16"
    fused = fastpath.fused_adam_available(device)
    out = {
        "eager_fp32": {},
        "channels_last": {"channels_last": True},
        f"amp_{amp}": {"amp": amp},
    }
    skipped = {}
    if fused:
        out["fused_adam"] = {"fused": True}
    else:
        skipped["fused_adam"] = f"no fused Adam for {device.type} in torch {torch.__version__}"
    compile_ok = want_compile
    if not want_compile:
        skipped["compile"] = "not asked (--compile; on by default on CUDA)"
    else:
        why = fastpath.compile_unavailable(device)
        if why:
            skipped["compile"], compile_ok = why, False
        elif solo_compile:
            out["compile"] = {"compile": True}
        else:
            skipped["compile"] = "alone: not asked (--no-compile-solo); compiled in 'all'"
    out["all"] = {"channels_last": True, "amp": amp, "fused": fused, "compile": compile_ok}
    return out, skipped


class Stepper:
    """One variant's model, optimizer and step function on a fixed batch."""

    def __init__(self, model: torch.nn.Module, sw: dict, device: torch.device, batch: torch.Tensor,
                 target: torch.Tensor):
        self.device = device
        net = copy.deepcopy(model).to(device)
        if sw.get("channels_last"):
            net = net.to(memory_format=torch.channels_last)
            batch = batch.contiguous(memory_format=torch.channels_last)
        self.net = torch.compile(net) if sw.get("compile") else net
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True) if sw.get("fused") else \
            torch.optim.Adam(net.parameters(), lr=1e-4)
        self.dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(sw.get("amp"))
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self.batch, self.target = batch, target

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        with ctx:
            loss = l1_loss(self.net(self.batch), self.target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()

    def timed(self, steps: int) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        return time.perf_counter() - t0


def bench_steps(model_name: str, a, device: torch.device, flops: dict, peak: float | None) -> dict:
    torch.manual_seed(0)
    model = build_model(model_name, base_channels=a.base)
    batch = torch.rand(a.batch, 1, a.size, a.size, device=device)
    target = (batch * 0.9).clamp(0, 1)
    vs, skipped = variants(device, a.compile, a.compile_solo)
    steppers = {name: Stepper(model, sw, device, batch, target) for name, sw in vs.items()}
    warm_s = {}
    for name, st in steppers.items():  # warm-up: cuDNN autotuning, compile, allocator
        warm_s[name] = st.timed(a.warmup)
    rounds: dict[str, list[float]] = {n: [] for n in steppers}
    for _ in range(a.rounds):
        for name, st in steppers.items():
            rounds[name].append(st.timed(a.steps))
    rows = {}
    base_ips = None
    for name, times in rounds.items():
        med = statistics.median(times)
        ips = a.batch * a.steps / med
        base_ips = base_ips or ips
        tflops = ips * flops["forward_backward"] / 1e12
        rows[name] = {"switches": vs[name], "images_per_s": ips, "ms_per_step": med * 1000 / a.steps,
                      "vs_eager_fp32": ips / base_ips, "achieved_tflops": tflops,
                      "mfu": tflops / peak if peak else None, "warmup_s": warm_s[name],
                      "round_s": times}
    return {"variants": rows, "skipped": skipped}


# ---------------------------------------------------------------------------------------- the loop's overhead
class MemoryPairs(torch.utils.data.Dataset):
    """The study's approach: every image decoded once into float32 tensors held in memory."""

    def __init__(self, noisy: torch.Tensor, clean: torch.Tensor):
        self.noisy, self.clean = noisy, clean
        self.noise_mean = 0.1

    def __len__(self) -> int:
        return len(self.noisy)

    def __getitem__(self, i: int):
        return self.noisy[i], self.clean[i]


def bench_loop(a, device: torch.device, model_name: str) -> dict:
    """Trainer.train_epoch (gpu1 and gpu1_fast) against a bare loop of the same steps on the same data."""
    import tempfile

    from cxrdenoise.train.distributed import single_process
    from cxrdenoise.train.engine import Trainer
    from cxrdenoise.train.settings import TrainSettings
    from cxrdenoise.train.state import TensorBoard

    g = torch.Generator().manual_seed(1)
    n = a.loop_images
    clean = torch.rand(n, 1, a.size, a.size, generator=g)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    ds = MemoryPairs(noisy, clean)
    ctx = single_process(device.type)
    out = {}
    tmp = tempfile.TemporaryDirectory()
    for setup in ("gpu1", "gpu1_fast"):
        s = TrainSettings(model=model_name, setup=setup, sigma="0.1", model_kwargs={"base_channels": a.base},
                          epochs=1, batch_per_gpu=a.batch, workers=0, seed=1, device=device.type, log_every=10**6,
                          fast={"compile": a.loop_compile})
        tr = Trainer(s, ds, ds, Path(tmp.name) / setup, ctx)
        tr.tb = TensorBoard(None)
        plan = tr.plan
        bare = copy.deepcopy(tr.bare)
        bare_opt = plan.optimizer(bare.parameters(), s.lr)
        bare_in = noisy.to(device), clean.to(device)
        if plan.channels_last:
            bare_in = tuple(t.contiguous(memory_format=torch.channels_last) for t in bare_in)
        bare_net = torch.compile(bare) if plan.compile else bare
        scaler = plan.make_scaler(device)

        def bare_epoch(epoch: int) -> float:
            bare.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(1 + epoch)).to(device)
            sync(device)
            t0 = time.perf_counter()
            for i in range(0, n, a.batch):
                idx = order[i:i + a.batch]
                x, y = bare_in[0][idx], bare_in[1][idx]
                bare_opt.zero_grad(set_to_none=True)
                ctx_amp = torch.autocast(device.type, dtype=plan.amp_dtype) if plan.amp_dtype else \
                    contextlib.nullcontext()
                with ctx_amp:
                    loss = l1_loss(bare_net(x), y)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(bare_opt)
                    scaler.update()
                else:
                    loss.backward()
                    bare_opt.step()
            sync(device)
            return time.perf_counter() - t0

        tr.train_epoch(0)  # warm-up of both
        bare_epoch(0)
        trainer_s, bare_s = [], []
        for r in range(1, a.rounds + 1):
            trainer_s.append(tr.train_epoch(r)["train_s"])
            bare_s.append(bare_epoch(r))
        ratio = statistics.median(trainer_s) / statistics.median(bare_s)
        out[setup] = {"trainer_epoch_s": statistics.median(trainer_s), "bare_epoch_s": statistics.median(bare_s),
                      "trainer_over_bare": ratio, "within_5_percent": ratio <= 1.05,
                      "data_path": "device memory" if plan.device_data else "DataLoader (workers 0)",
                      "precision": plan.precision_label(), "images": n}
    tmp.cleanup()
    return out


# ------------------------------------------------------------------------------------------------ checkpoints
def bench_checkpoint(a, device: torch.device, model_name: str) -> dict:
    """Seconds an epoch spends on checkpoints at base --ckpt-base, gpu1 and gpu1_fast: both write last.pt without a
    copy of best from a CPU snapshot in a background thread (the epoch pays only for the snapshot). Same Trainer
    methods as training uses; benchmarks/bench_epoch.py measures the share of a whole epoch."""
    import tempfile

    from cxrdenoise import atomic  # noqa: F401 - the writes go through cxrdenoise.train.state's atomic save
    from cxrdenoise.train import state
    from cxrdenoise.train.distributed import single_process
    from cxrdenoise.train.engine import Trainer
    from cxrdenoise.train.settings import TrainSettings

    ds = MemoryPairs(torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32))
    out = {}
    with tempfile.TemporaryDirectory(dir=a.ckpt_dir) as tmp:
        for setup in ("gpu1", "gpu1_fast"):
            s = TrainSettings(model=model_name, setup=setup, sigma="0.1", model_kwargs={"base_channels": a.ckpt_base},
                              epochs=2, batch_per_gpu=4, workers=0, seed=1, device=device.type, fast={"compile": False})
            tr = Trainer(s, ds, ds, Path(tmp) / setup, single_process(device.type))
            tr.out.mkdir(parents=True, exist_ok=True)
            loss = l1_loss(tr.model(torch.rand(2, 1, 32, 32, device=device)), torch.rand(2, 1, 32, 32, device=device))
            loss.backward()
            tr.optimizer.step()  # Adam's moment buffers exist, as after any epoch
            tr.progress.best = state.best_payload(tr.facts, tr.bare, 1, 0.1)
            times, background = [], []
            for rep in range(a.rounds):
                sync(device)
                t0 = time.perf_counter()
                tr.ckpt.best_written = None  # write the best file too, as an improving epoch does
                tr.ckpt.save_last(tr.resume_point(1), tr.progress.best)
                times.append(time.perf_counter() - t0)
                tr.ckpt.wait()
                background.append(tr.ckpt.write_s[-1])
            sizes = {p.name: p.stat().st_size / 2**20 for p in tr.out.glob("*.pt")}
            out[setup] = {"epoch_pays_s": statistics.median(times),
                          "background_write_s": statistics.median(background) if background else None,
                          "files_mb": sizes, "base_channels": a.ckpt_base}
    return out


# ---------------------------------------------------------------------------------------------------- loaders
def bench_loaders(a, device: torch.device) -> dict:
    """Images/s of one epoch delivered to the device: the study's float32 tensors in memory, our DataLoader over
    float16 shards (preloaded), and the split in device memory."""
    import tempfile

    from phantom_data import build_phantom_data

    from cxrdenoise.data import PairDataset
    from cxrdenoise.train.distributed import DeviceLoader, make_loader, single_process

    tmp = tempfile.TemporaryDirectory()
    data = a.loader_data or build_phantom_data(tmp.name, n_images=a.loader_images, size=a.size)
    ds = PairDataset(data, "train", "0.1", preload=True)
    ctx = single_process(device.type)
    pin = device.type == "cuda"
    pairs = [ds[i] for i in range(len(ds))]  # the study: decode once, keep float32 tensors
    study = torch.utils.data.DataLoader(MemoryPairs(torch.stack([p[0] for p in pairs]),
                                                    torch.stack([p[1] for p in pairs])),
                                        batch_size=a.batch, shuffle=True, num_workers=0, pin_memory=pin)
    loaders = {
        "study_float32_in_memory": study,
        "dataloader_float16_shards": make_loader(ds, ctx, a.batch, shuffle=True, seed=1, workers=0, pin=pin),
        "device_memory": DeviceLoader(ds, ctx, a.batch, shuffle=True, seed=1),
    }

    def epoch(loader) -> float:
        sync(device)
        t0 = time.perf_counter()
        for item in loader:
            noisy, clean = item[-2], item[-1]
            noisy.to(device, non_blocking=True), clean.to(device, non_blocking=True)
        sync(device)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {k: [] for k in loaders}
    for name, loader in loaders.items():
        epoch(loader)  # warm-up
    for _ in range(a.rounds):
        for name, loader in loaders.items():
            times[name].append(epoch(loader))
    n = len(ds)
    ref = n / statistics.median(times["study_float32_in_memory"])
    rows = {k: {"images_per_s": n / statistics.median(v), "vs_study": n / statistics.median(v) / ref}
            for k, v in times.items()}
    tmp.cleanup()
    return {"train_images": n, "storage_dtype": "float16", "loaders": rows}


# ------------------------------------------------------------------------------------------------------- main
def parse(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--models", default="unet,unetpp")
    p.add_argument("--size", type=int, default=256 if cuda else 64)
    p.add_argument("--base", type=int, default=64 if cuda else 16)
    p.add_argument("--batch", type=int, default=16 if cuda else 4, help="images per step (per GPU)")
    p.add_argument("--steps", type=int, default=20 if cuda else 3, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=10 if cuda else 2)
    p.add_argument("--rounds", type=int, default=5 if cuda else 3)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=cuda,
                   help="include torch.compile (default: on CUDA only; on the CPU it compiles for minutes)")
    p.add_argument("--compile-solo", action=argparse.BooleanOptionalAction, default=True,
                   help="with --compile: also torch.compile alone (else only in 'all')")
    p.add_argument("--loop-compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile gpu1_fast and its bare loop in the loop section")
    p.add_argument("--loop-models", default=None, help="models of the loop section (default: --models)")
    p.add_argument("--loop-images", type=int, default=256 if cuda else 32)
    p.add_argument("--loader-images", type=int, default=480 if cuda else 96)
    p.add_argument("--loader-data", type=Path, default=None,
                   help="a data folder with sigma 0.1 shards to reuse (default: phantoms built at --size)")
    p.add_argument("--sections", default="flops,step,loop,checkpoint,loader")
    p.add_argument("--ckpt-base", type=int, default=64, help="U-Net width of the checkpoint section (study: 64)")
    p.add_argument("--ckpt-dir", default=None, help="where the checkpoint section writes (default: system temp)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    info = device_info(device)
    peak = peak_tflops(info["device_name"]) if device.type == "cuda" else None
    sections = a.sections.split(",")
    result = {
        "benchmark": "bench_train_step",
        "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "git_commit": git_commit(REPO), "device": device.type,
        "device_name": info["device_name"], "torch_version": torch.__version__, "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(), "image_size": [a.size, a.size], "base_channels": a.base,
        "batch_per_gpu": a.batch, "steps_per_round": a.steps, "rounds": a.rounds,
        "peak_bf16_dense_tflops": peak, "models": {},
    }
    print(f"{info['device_name']} ({device.type}), torch {torch.__version__}, {a.size}x{a.size}, base {a.base}, "
          f"batch {a.batch}; peak bf16 dense: {f'{peak:.0f} TFLOP/s' if peak else 'unknown (MFU not printed)'}")
    for name in a.models.split(","):
        row: dict = {}
        flops = count_flops(name, a.base, a.size)
        row["gflop_per_image"] = {k: v / 1e9 for k, v in flops.items()}
        if "flops" in sections:
            f, fb = flops["forward"] / 1e9, flops["forward_backward"] / 1e9
            line = f"{name}: {f:.1f} GFLOP forward, {fb:.1f} forward+backward per {a.size}x{a.size} image"
            if a.size == 256 and a.base == 64:
                ref = ISSUE_GFLOP[name]
                line += f" (issue: {ref[0]} / {ref[1]})"
                row["issue_gflop_match"] = abs(f - ref[0]) < 0.05 and abs(fb - ref[1]) < 0.05
            else:
                study = count_flops(name, 64, 256)
                row["gflop_per_image_256_base64"] = {k: v / 1e9 for k, v in study.items()}
                line += (f"; at 256x256 base 64: {study['forward'] / 1e9:.1f} / {study['forward_backward'] / 1e9:.1f}"
                         f" (issue: {ISSUE_GFLOP[name][0]} / {ISSUE_GFLOP[name][1]})")
            print(line)
        if "step" in sections:
            row["step"] = bench_steps(name, a, device, flops, peak)
            for vname, v in row["step"]["variants"].items():
                mfu = f"  MFU {100 * v['mfu']:.1f} %" if v["mfu"] is not None else ""
                print(f"  {name} {vname:<16} {v['images_per_s']:9.1f} img/s  x{v['vs_eager_fp32']:.2f} vs eager fp32"
                      f"  {v['achieved_tflops']:8.3f} TFLOP/s{mfu}")
            for vname, why in row["step"]["skipped"].items():
                print(f"  {name} {vname:<16} skipped: {why}")
        if "loop" in sections and name in (a.loop_models or a.models).split(","):
            row["loop"] = bench_loop(a, device, name)
            for setup, v in row["loop"].items():
                print(f"  {name} loop {setup:<9}: Trainer {v['trainer_epoch_s']:.3f} s / bare {v['bare_epoch_s']:.3f} s"
                      f" = {v['trainer_over_bare']:.3f} ({v['data_path']}, {v['precision']}; "
                      f"{'within' if v['within_5_percent'] else 'NOT within'} 5 %)")
        if "checkpoint" in sections and name == "unet":
            row["checkpoint"] = bench_checkpoint(a, device, name)
            for setup, v in row["checkpoint"].items():
                bg = f", background write {v['background_write_s']:.2f} s" if v["background_write_s"] else ""
                print(f"  {name} checkpoint {setup:<9} (base {v['base_channels']}): the epoch pays "
                      f"{v['epoch_pays_s']:.3f} s{bg}; files " + ", ".join(f"{k} {mb:.0f} MB" for k, mb in
                                                                       sorted(v["files_mb"].items())))
        result["models"][name] = row
    if "loader" in sections:
        result["loader"] = bench_loaders(a, device)
        for lname, v in result["loader"]["loaders"].items():
            print(f"  loader {lname:<26} {v['images_per_s']:10.0f} img/s  x{v['vs_study']:.2f} vs the study's")
    save_result(a.out, f"bench_train_step_{device.type}", result)
    return result


if __name__ == "__main__":
    main()
