"""What runs at one hospital site: its slice of the train split and a few local epochs from the global model.

Training uses the project's pieces (model registry, `l1_loss`, Adam at `train.lr`, seeds derived from the
config seed); FedProx adds (mu/2)||w - w_global||^2 to the local loss. Only weights and counts leave the site.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from ..data import PairDataset
from ..errors import CxrError
from ..seeding import derived_seed
from ..train.engine import l1_loss
from .fedavg import proximal_term
from .weights import build, load_arrays, to_arrays


def site_dataset(spec: dict, site: int) -> Subset:
    """The site's train images: the rows of sites.csv with this site, looked up in the train split."""
    train = PairDataset(spec["data_dir"], "train", spec["sigma"], preload=True)
    table = pd.read_csv(Path(spec["run_dir"]) / "sites.csv", dtype={"image_id": str})
    mine = set(table.loc[table["site"] == site, "image_id"])
    index = [i for i, image_id in enumerate(train.image_ids) if image_id in mine]
    if not index:
        raise CxrError(f"{spec['run_dir']}/sites.csv: site {site} has no train images")
    return Subset(train, index)


def local_train(spec: dict, site: int, arrays: list[np.ndarray], server_round: int) -> tuple[list[np.ndarray], dict]:
    """Train the global weights `arrays` for `local_epochs` on this site; returns new weights and metrics."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    device = torch.device(spec["device"])
    data = site_dataset(spec, site)
    torch.manual_seed(derived_seed(spec["seed"], "federated", "site", site, "round", server_round) % 2**63)
    model = build(spec)
    load_arrays(model, arrays)
    model.to(device).train()
    anchor = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    gen = torch.Generator().manual_seed(derived_seed(spec["seed"], "federated", "shuffle", site, server_round) % 2**63)
    loader = DataLoader(data, batch_size=spec["batch_size"], shuffle=True, generator=gen)
    mu = spec["mu"] if spec["strategy"] == "fedprox" else 0.0
    total, steps = 0.0, 0
    for _ in range(spec["local_epochs"]):
        for noisy, clean in loader:
            noisy, clean = noisy.to(device), clean.to(device)
            loss = l1_loss(model(noisy), clean)
            objective = loss + proximal_term(list(model.parameters()), anchor, mu)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            total += float(loss.detach())
            steps += 1
    return to_arrays(model), {"num-examples": len(data), "train_loss": total / max(steps, 1),
                              "train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - cpu0,
                              "threads": torch.get_num_threads(), "site": site, "steps": steps}
