"""Whole training epochs, side by side: the Trainer (everything an epoch does: training, validation, ValViews,
TensorBoard, record.json/epochs.csv, checkpoints) against a bare loop and the study's own loop (study_loop.py,
re-written from the study's notebook and DDP script), on the same phantom shards, net and batch.

    python benchmarks/bench_epoch.py                                  # CPU: 64x64 and 256x256 at base 8
    python benchmarks/bench_epoch.py --sections gpu1,checkpoint --size 64 --repeats 5
    python benchmarks/bench_epoch.py --size 256 --base 64 --batch 16  # CUDA: the study's size and width

Each repetition is one job of every variant (`--epochs` epochs from the same initial weights), interleaved epoch
by epoch: after each Trainer epoch (from its on_epoch_end hook) one epoch of the bare loop and one of the study's,
in rotating order, so all three meet the same load on a shared machine. The Trainer's epoch includes waiting for
the checkpoint write it started (charged in full, conservative); epoch 1 (warm-up) is left out; the median over
repetitions and epochs counts. "job" ratios add what the Trainer does after its last epoch (best.pt, the final
records). Sections: gpu1 and gpu1_fast (one process), ddp2_amp
(two processes over gloo/nccl: the Trainer against the study's DDP+AMP loop and a bare DDP loop), checkpoint (at
--ckpt-base, the study's width: what an epoch pays for checkpoints, the background write, last.pt's size against
the weights and against the old layout that held a copy of best). Writes
benchmarks/results/bench_epoch_<device>_<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_output import save_result  # noqa: E402
from study_loop import bare_loop, ddp_amp_loop, decoded, gpu1_loop  # noqa: E402

from cxrdenoise.models import build_model  # noqa: E402
from cxrdenoise.provenance import device_info, git_commit  # noqa: E402

STUDY_LR = 1e-3


def settings_for(a, setup: str, epochs: int):
    from cxrdenoise.train.settings import TrainSettings

    return TrainSettings(model=a.model, setup=setup, sigma="0.1", model_kwargs={"base_channels": a.base},
                         epochs=epochs, batch_per_gpu=a.batch, workers=0, seed=1, device=a.device, preload=True,
                         log_every=5, keep_last=True, lr=STUDY_LR, fast={"compile": a.compile})


def fresh_net(a) -> torch.nn.Module:
    """The Trainer's initial weights for seed 1 (its init_seed), so every variant starts from the same net."""
    from cxrdenoise.seeding import seed_everything
    from cxrdenoise.train.settings import TrainSettings

    seed_everything(TrainSettings(model=a.model, setup="gpu1", sigma="0.1", seed=1).init_seed)
    return build_model(a.model, base_channels=a.base)


class Interleaved:
    """Drives one job of each variant epoch by epoch from the Trainer's on_epoch_end hook: after each Trainer
    epoch, one epoch of each other loop (rotating order), so all three meet the same machine load.

    The Trainer's epoch runs from the previous hook's exit to this hook's entry, plus waiting for the checkpoint
    write that epoch started (charged in full, as if it were synchronous: conservative; the checkpoint section
    shows what the overlap saves); its tail is what run() does after the last epoch."""

    def __init__(self, loops: dict):
        self.loops = loops
        self.times: dict[str, list[float]] = {"trainer": [], **{k: [] for k in loops}}
        self.rows: list[dict] = []
        self.exit = time.perf_counter()
        self.trainer = None

    def hook(self, epoch: int, info: dict) -> None:
        if self.trainer is not None:
            self.trainer.ckpt.join()
        t = time.perf_counter()
        if epoch > 1:  # epoch 1: warm-up, and the Trainer's includes run()'s preamble
            self.times["trainer"].append(t - self.exit)
            self.rows.append(info["row"])
        names = list(self.loops)
        k = epoch % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            next(self.loops[name])
            if epoch > 1:
                self.times[name].append(time.perf_counter() - t0)
        self.exit = time.perf_counter()

    def finish(self) -> dict:
        tail = time.perf_counter() - self.exit
        for loop in self.loops.values():
            for _ in loop:  # a generator's end: nothing left to run
                pass
        return {"epochs_s": self.times, "trainer_tail_s": tail, "rows": self.rows}


def plain_loops(a, train_ds, val_ds, device: torch.device, out: Path, ddp: bool = False, rank: int = 0) -> dict:
    kw = dict(epochs=a.epochs, batch=a.batch, lr=STUDY_LR, device=device)
    amp = (torch.bfloat16 if device.type == "cpu" else torch.float16) if ddp else None
    study = (ddp_amp_loop(fresh_net(a), decoded(train_ds), decoded(val_ds), save_path=out / "best_model.pth",
                          rank=rank, **kw) if ddp else
             gpu1_loop(fresh_net(a), decoded(train_ds), decoded(val_ds), save_path=out / "best_model.pth", **kw))
    return {"bare": bare_loop(fresh_net(a), train_ds, val_ds, ddp=ddp, amp_dtype=amp, **kw), "study": study}


# --------------------------------------------------------------------------------------------- one process
def run_job(a, setup: str, data: Path, out: Path) -> dict:
    from cxrdenoise.train.distributed import single_process
    from cxrdenoise.train.engine import Trainer
    from cxrdenoise.train.worker import load_splits

    train_ds, val_ds = load_splits(data, "0.1", preload=True)
    out.mkdir(parents=True, exist_ok=True)
    drive = Interleaved(plain_loops(a, train_ds, val_ds, torch.device(a.device), out))
    tr = Trainer(settings_for(a, setup, a.epochs), train_ds, val_ds, out / "trainer", single_process(a.device),
                 on_epoch_end=drive.hook)
    drive.trainer = tr
    drive.exit = time.perf_counter()
    tr.run()
    return drive.finish()


# ------------------------------------------------------------------------------------------------------ DDP
def _ddp_rank(rank: int, a, data: str, out: str, port: int, result_file: str) -> None:
    import json

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(a.threads)
    from cxrdenoise.train.distributed import init_distributed, teardown
    from cxrdenoise.train.engine import Trainer
    from cxrdenoise.train.worker import load_splits

    ctx = init_distributed(a.device, 2)
    try:
        train_ds, val_ds = load_splits(data, "0.1", preload=True)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        drive = Interleaved(plain_loops(a, train_ds, val_ds, ctx.device, out_dir, ddp=True, rank=rank))
        tr = Trainer(settings_for(a, "ddp2_amp", a.epochs), train_ds, val_ds, out_dir / "trainer", ctx,
                     on_epoch_end=drive.hook)
        drive.trainer = tr
        drive.exit = time.perf_counter()
        tr.run()
        result = drive.finish()
    finally:
        teardown(ctx)
    if rank == 0:
        Path(result_file).write_text(json.dumps(result))


def run_ddp_job(a, data: Path, out: Path) -> dict:
    import json

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = out.parent / f"{out.name}.json"
    mp.spawn(_ddp_rank, args=(a, str(data), str(out), port, str(result)), nprocs=2, join=True)
    return json.loads(result.read_text())


# ------------------------------------------------------------------------------------------------- sections
def compare(a, section: str, data: Path, work: Path) -> dict:
    """--repeats jobs of --epochs epochs, each variant interleaved epoch by epoch; medians over all epochs."""
    jobs = []
    for rep in range(a.repeats):
        out = work / f"{section}_{rep}"
        jobs.append(run_ddp_job(a, data, out) if section == "ddp2_amp" else run_job(a, section, data, out))
    res: dict = {"jobs": [{k: v for k, v in j.items() if k != "rows"} for j in jobs]}
    for name in ("trainer", "bare", "study"):
        times = [t for j in jobs for t in j["epochs_s"][name]]
        res[name] = {"epoch_s": statistics.median(times), "epoch_s_min": min(times), "epochs_timed": len(times)}
    res["trainer"]["tail_s"] = statistics.median(j["trainer_tail_s"] for j in jobs)
    for other in ("bare", "study"):
        res[f"trainer_over_{other}"] = res["trainer"]["epoch_s"] / res[other]["epoch_s"]
        # per job: its timed epochs plus the Trainer's tail (joining the last write, best.pt, final records)
        ratios = [(sum(j["epochs_s"]["trainer"]) + j["trainer_tail_s"]) / sum(j["epochs_s"][other]) for j in jobs]
        res[f"trainer_over_{other}_job"] = statistics.median(ratios)
    rows = [r for j in jobs for r in j["rows"]]
    if rows:  # where the Trainer's epoch goes (rank 0's clocks)
        med = {k: statistics.median(r[k] for r in rows) for k in ("train_s", "val_s", "checkpoint_s")}
        med["rest_s"] = res["trainer"]["epoch_s"] - sum(med.values())  # ValViews, records, TensorBoard, write
        res["trainer"]["parts_s"] = med
    return res


def bench_checkpoint(a, data: Path, work: Path) -> dict:
    """The Trainer at the study's width (--ckpt-base) for --epochs epochs: what the epoch pays for checkpoints
    against the whole epoch, the background write, and last.pt's size against the weights and the old layout."""
    from cxrdenoise.train import state
    from cxrdenoise.train.distributed import single_process
    from cxrdenoise.train.engine import Trainer
    from cxrdenoise.train.worker import load_splits

    train_ds, val_ds = load_splits(data, "0.1", preload=True)
    out = {}
    for setup in ("gpu1", "gpu1_fast"):
        stamps: list[float] = []
        rows: list[dict] = []
        a_w = argparse.Namespace(**{**vars(a), "base": a.ckpt_base})
        tr = Trainer(settings_for(a_w, setup, a.epochs), train_ds, val_ds, work / f"ckpt_{setup}",
                     single_process(a.device),
                     on_epoch_end=lambda e, info: (stamps.append(time.perf_counter()), rows.append(info["row"])))
        record = tr.run()
        epochs = [b - a for a, b in zip(stamps, stamps[1:])]  # epoch 2 onwards
        pays = [r["checkpoint_s"] for r in rows[1:]]
        last = tr.out / "last.pt"
        weights = sum(v.numel() * v.element_size() for v in tr.bare.state_dict().values())
        old = dict(tr.resume_point(a.epochs))
        old["best"] = tr.progress.best  # the old layout: a full copy of best (its weights) inside last.pt
        old_path = work / f"old_last_{setup}.pt"
        torch.save(state.cpu_snapshot(old), old_path)
        ck = record.get("checkpoints") or {}
        out[setup] = {
            "base_channels": a.ckpt_base, "epoch_s": statistics.median(epochs),
            "epoch_pays_s": statistics.median(pays),
            "share_of_epoch": statistics.median(pays) / statistics.median(epochs),
            "background_write_s": ck.get("write_s_max"), "background": ck.get("background"),
            "weights_mb": weights / 2**20, "last_pt_mb": last.stat().st_size / 2**20,
            "old_layout_last_pt_mb": old_path.stat().st_size / 2**20,
        }
    return out


# ------------------------------------------------------------------------------------------------------ main
def parse(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="gpu1,gpu1_fast,ddp2_amp,checkpoint",
                   help="comma-separated: gpu1, gpu1_fast, ddp2_amp, checkpoint")
    p.add_argument("--size", default="64,256", help="image sizes, comma-separated (each gets its own phantoms)")
    p.add_argument("--base", type=int, default=64 if cuda else 8, help="U-Net width of the comparisons")
    p.add_argument("--batch", type=int, default=16 if cuda else 2, help="images per step per process "
                   "(CPU default: the demo's 2; the study's 16 on CUDA)")
    p.add_argument("--images", type=int, default=None,
                   help="phantoms per size (split 50/33/17; default 96 at <=64 px, 32 above on the CPU)")
    p.add_argument("--ckpt-images", type=int, default=None,
                   help="phantoms of the checkpoint section (default 16 on the CPU: few images, so a short epoch "
                        "and a conservative share; 96 on CUDA)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per job (epoch 1 is warm-up, not counted)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved jobs per variant")
    p.add_argument("--ckpt-base", type=int, default=64, help="U-Net width of the checkpoint section (study: 64)")
    p.add_argument("--model", default="unet")
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile in gpu1_fast (train.fast.compile); off: minutes of compiling on the CPU")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    from phantom_data import build_phantom_data

    info = device_info(torch.device(a.device))
    sections = a.sections.split(",")
    result = {
        "benchmark": "bench_epoch", "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "git_commit": git_commit(REPO), "device": a.device,
        "device_name": info["device_name"], "torch_version": torch.__version__, "python": platform.python_version(),
        "torch_threads_per_process": a.threads, "cpu_count": os.cpu_count(), "model": a.model,
        "base_channels": a.base, "batch_per_process": a.batch, "epochs_per_job": a.epochs, "repeats": a.repeats,
        "sizes": {},
    }
    label = f"{info['device_name']} ({a.device.upper()})"
    print(f"{label}, torch {torch.__version__}, {a.model} base {a.base}, batch {a.batch}, {a.threads} thread(s) per "
          f"process, {a.epochs} epochs x {a.repeats} interleaved jobs per variant")
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as tmp:
        for size in (int(s) for s in a.size.split(",")):
            n = a.images or (96 if size <= 64 or a.device == "cuda" else 32)
            data = build_phantom_data(Path(tmp) / f"data{size}", n_images=n, size=size)
            from cxrdenoise.train.worker import load_splits

            tr_ds, va_ds = load_splits(data, "0.1", preload=True)
            row: dict = {"images": n, "train_images": len(tr_ds), "val_images": len(va_ds)}
            print(f"{size}x{size}: {len(tr_ds)} train / {len(va_ds)} val phantoms")
            for section in sections:
                if section == "checkpoint":
                    if size != min(int(s) for s in a.size.split(",")):
                        continue  # once, at the smallest size: the cost is the width's, not the image size's
                    n_ck = a.ckpt_images or (96 if a.device == "cuda" else 16)
                    ck_data = build_phantom_data(Path(tmp) / f"ckdata{size}", n_images=n_ck, size=size)
                    row["checkpoint"] = bench_checkpoint(a, ck_data, Path(tmp) / f"work{size}")
                    row["checkpoint_images"] = n_ck
                    for setup, v in row["checkpoint"].items():
                        print(f"  checkpoint {setup:<9} base {v['base_channels']}: the epoch pays "
                              f"{v['epoch_pays_s']:.3f} s of {v['epoch_s']:.2f} s ({100 * v['share_of_epoch']:.1f} %)"
                              f"; background write {v['background_write_s'] or 0:.2f} s; last.pt "
                              f"{v['last_pt_mb']:.1f} MB = {v['last_pt_mb'] / v['weights_mb']:.2f}x the weights "
                              f"(old layout {v['old_layout_last_pt_mb']:.1f} MB)")
                    continue
                work = Path(tmp) / f"work{size}" / section
                work.mkdir(parents=True)
                res = compare(a, section, data, work)
                row[section] = res
                parts = res["trainer"].get("parts_s")
                split = (" (train {train_s:.3f} + val {val_s:.3f} + checkpoint {checkpoint_s:.3f} + rest "
                         "{rest_s:.3f})".format(**parts)) if parts else ""
                print(f"  {section:<9} epoch: Trainer {res['trainer']['epoch_s']:.3f} s{split}, bare "
                      f"{res['bare']['epoch_s']:.3f} s, study {res['study']['epoch_s']:.3f} s -> Trainer/bare "
                      f"{res['trainer_over_bare']:.3f}, Trainer/study {res['trainer_over_study']:.3f}; whole job "
                      f"after epoch 1: {res['trainer_over_bare_job']:.3f} / {res['trainer_over_study_job']:.3f}")
            result["sizes"][str(size)] = row
    save_result(a.out, f"bench_epoch_{a.device}", result)
    return result


if __name__ == "__main__":
    main()
