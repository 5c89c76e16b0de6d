"""The coordinator's round loop: send the global weights, aggregate the sites' replies, validate, checkpoint.

Transport-free: `exchange(arrays, round)` returns one `Reply` per site (Flower's ServerApp supplies it over
the SuperLink). After every round the global model is written as rounds/round_NNN.pt (the evaluation's
best.pt format plus the round) before the round's record, so a killed server loses at most the round in
flight and a re-run continues after the last checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import atomic
from ..data import PairDataset
from ..errors import CxrError
from ..models import count_parameters
from ..train.engine import l1_loss
from .fedavg import dp_fedavg, fedavg
from ..train.state import save
from .weights import build, load_arrays, state_dict, to_arrays


@dataclass
class Reply:
    site: int
    arrays: list[np.ndarray]
    n_examples: int
    bytes_sent: int       # serialized global weights sent to the site this round
    bytes_received: int   # serialized weights the site sent back
    metrics: dict


Exchange = Callable[[list[np.ndarray], int], list[Reply]]


def round_path(run_dir: Path, server_round: int) -> Path:
    return run_dir / "rounds" / f"round_{server_round:03d}.pt"


def last_round(run_dir: Path) -> int:
    done = sorted(run_dir.glob("rounds/round_*.pt"))
    return int(done[-1].stem.split("_")[1]) if done else 0


def val_loss(model: torch.nn.Module, val: PairDataset, device: torch.device, batch: int) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for noisy, clean in DataLoader(val, batch_size=batch):
            out = model(noisy.to(device))
            total += float(l1_loss(out, clean.to(device))) * len(noisy)
            n += len(noisy)
    return total / n


def checkpoint_payload(spec: dict, model: torch.nn.Module, arrays, server_round: int, loss: float,
                       noise_mean) -> dict:
    """The evaluation's best.pt keys (cxrdenoise.denoise.CHECKPOINT_KEYS); `epoch` is the round."""
    return {"model": spec["model"], "model_kwargs": spec["model_kwargs"], "state_dict": state_dict(model, arrays),
            "epoch": server_round, "val_loss": loss, "sigma": float(spec["sigma"]), "noise_mean": noise_mean,
            "config_hash": spec["config_hash"], "setup": "federated", "n_parameters": count_parameters(model),
            "round": server_round}


def run_rounds(spec: dict, exchange: Exchange, log: Callable[[str], None] = print) -> dict:
    """Rounds last_round+1..rounds; returns the summary (also written to summary.json)."""
    run_dir = Path(spec["run_dir"])
    device = torch.device(spec["device"])
    model = build(spec, seeded=True)
    records_path = run_dir / "rounds.json"
    start = last_round(run_dir)
    records = []
    if start:
        ckpt = torch.load(round_path(run_dir, start), map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        if records_path.exists():
            records = [r for r in json.loads(records_path.read_text()) if r["round"] <= start]
        log(f"resuming after round {start} ({round_path(run_dir, start)})")
    sessions = 1 + max((r.get("session", 1) for r in records), default=0) if start else 1
    arrays = to_arrays(model)
    val = PairDataset(spec["data_dir"], "val", spec["sigma"], preload=True)
    for r in range(start + 1, spec["rounds"] + 1):
        t0 = time.perf_counter()
        replies = sorted(exchange(arrays, r), key=lambda x: x.site)
        t_exchange = time.perf_counter()
        if len(replies) != spec["n_sites"]:
            raise CxrError(f"federated round {r}: {len(replies)} of {spec['n_sites']} sites replied")
        results = [(x.arrays, x.n_examples) for x in replies]
        dp = spec.get("dp") or {}
        dp_record = None
        if dp.get("enabled"):
            arrays, dp_record = dp_fedavg(arrays, results, float(dp["clipping_norm"]),
                                          float(dp["noise_multiplier"]), spec["seed"], r)
        else:
            arrays = fedavg(results)
        load_arrays(model, arrays)
        t_aggregate = time.perf_counter()
        model.to(device)
        loss = val_loss(model, val, device, spec["batch_size"])
        model.cpu()
        t_validate = time.perf_counter()

        save(checkpoint_payload(spec, model, arrays, r, loss, val.noise_mean), round_path(run_dir, r))
        records.append({
            "round": r, "val_loss": loss, "wall_s": time.perf_counter() - t0, "session": sessions,
            "exchange_s": t_exchange - t0, "aggregate_s": t_aggregate - t_exchange, "validate_s": t_validate - t_aggregate,
            "sites": [{"site": x.site, "n_examples": x.n_examples, "bytes_sent": x.bytes_sent,
                       "bytes_received": x.bytes_received, **{k: v for k, v in x.metrics.items()
                                                               if k not in ("site", "num-examples")}}
                      for x in replies],
            "bytes_sent": sum(x.bytes_sent for x in replies),
            "bytes_received": sum(x.bytes_received for x in replies),
            "dp": dp_record,
        })
        atomic.write_json(records_path, records)
        log(f"round {r}/{spec['rounds']}: global val L1 {loss:.5f}, "
            f"{records[-1]['bytes_sent'] + records[-1]['bytes_received']} bytes, {records[-1]['wall_s']:.1f}s")
    best = min(records, key=lambda x: x["val_loss"])
    summary = {"rounds": spec["rounds"], "best_round": best["round"], "best_val_loss": best["val_loss"],
               "sessions": sessions, "resumed_after": start,
               "bytes_total": sum(x["bytes_sent"] + x["bytes_received"] for x in records),
               "wall_s_rounds": sum(x["wall_s"] for x in records)}
    atomic.write_json(run_dir / "summary.json", summary)
    return summary
