"""One site trained alone: the federated run's network and settings on that site's images only.

The budget is the federated one (rounds x local epochs), in one go with one optimizer, and nothing is sent
anywhere; the result is the baseline a hospital gets without federating.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import atomic
from ..data import PairDataset
from ..train.state import save
from .runner import prepare_sites
from .server import checkpoint_payload, val_loss
from .site import local_train
from .weights import build, load_arrays, to_arrays


def train_alone(spec: dict, site: int, out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "run_dir": str(out_dir)}
    prepare_sites(spec)
    t0 = time.perf_counter()
    epochs = spec["rounds"] * spec["local_epochs"]
    model = build(spec, seeded=True)
    arrays, metrics = local_train({**spec, "local_epochs": epochs, "strategy": "fedavg"}, site, to_arrays(model), 0)
    load_arrays(model, arrays)
    val = PairDataset(spec["data_dir"], "val", spec["sigma"], preload=True)
    device = torch.device(spec["device"])
    loss = val_loss(model.to(device), val, device, spec["batch_size"])
    model.cpu()
    save({**checkpoint_payload(spec, model, arrays, epochs, loss, val.noise_mean), "setup": f"site{site}_alone"},
         out_dir / "best.pt")
    record = {"site": site, "epochs": epochs, "val_loss": loss, "n_examples": metrics["num-examples"],
              "train_loss_last": metrics["train_loss"], "steps": metrics["steps"], "device": spec["device"],
              "wall_s": time.perf_counter() - t0, "config_hash": spec["config_hash"]}
    atomic.write_json(out_dir / "record.json", record)
    return record
