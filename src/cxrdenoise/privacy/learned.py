"""The learned attacker: a small siamese embedding CNN trained with a triplet loss on train-split patients.

In the spirit of Packhäuser et al. (Sci. Rep. 2022), who re-identified ChestX-ray14 patients with a siamese
network, but small enough for the CPU demo. Anchors are images of train-split patients with >= 2 images; the
positive is another clean image of the same patient, the negative a clean image of another patient. With
`noise_augment` the anchor is, at random, the clean image or its obfuscated version at one of the configured
noise levels (taken from the noisy shards of the train split): the attacker knows the published mechanism.

Engine conventions: every random choice derives from the seed (initial weights from (seed, "init"), triplets
and views of epoch e from (seed, "triplets", e)), so a resumed run draws what an uninterrupted one would;
`last.pt` (weights, optimiser, epochs so far, settings fingerprint) is written after every epoch and resumed
only when its fingerprint matches; `record.json` records settings, per-epoch loss, data and provenance.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import write_json
from ..errors import CxrError
from ..provenance import provenance
from ..seeding import derived_seed, rng_for
from ..train.state import LAST_FORMAT, cpu_state_dict, load_last, save
from .images import preprocess

NAME = "learned"
LABEL = "siamese CNN (learned, triplet loss)"


@dataclass(frozen=True)
class AttackerSettings:
    """privacy.learned in the config, plus the seed (no defaults here: they are the schema's)."""

    seed: int
    epochs: int
    lr: float
    margin: float
    batch_size: int
    channels: int
    embedding: int
    noise_augment: bool


class EmbeddingNet(nn.Module):
    """Four stride-2 conv blocks (GroupNorm: batch-size independent), global average pooling and a linear layer
    to a unit-norm embedding."""

    def __init__(self, channels: int, embedding: int):
        super().__init__()
        c = channels
        layers, cin = [], 1
        for cout in (c, 2 * c, 4 * c, 4 * c):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(1, cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.features(x).mean(dim=(2, 3)))
        return nn.functional.normalize(z, dim=1)


def triplets(patient_ids: Sequence[int], n_views: int, settings: AttackerSettings, epoch: int) -> np.ndarray:
    """(n, 4) rows of (anchor, anchor view, positive, negative) image indices for one epoch, in batch order."""
    patients = np.asarray(patient_ids)
    everyone = np.arange(len(patients))
    rng = rng_for(settings.seed, "privacy-attacker", "triplets", epoch)
    rows = []
    for a in rng.permutation(len(patients)):
        same = everyone[(patients == patients[a]) & (everyone != a)]
        other = everyone[patients != patients[a]]
        if same.size == 0 or other.size == 0:
            continue
        view = int(rng.integers(0, n_views)) if settings.noise_augment else 0
        rows.append((a, view, int(rng.choice(same)), int(rng.choice(other))))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def _loss(net: EmbeddingNet, views: torch.Tensor, batch: np.ndarray, margin: float) -> torch.Tensor:
    a = net(views[batch[:, 1], batch[:, 0]][:, None])
    p = net(views[0, batch[:, 2]][:, None])
    n = net(views[0, batch[:, 3]][:, None])
    d_pos = 1.0 - (a * p).sum(dim=1)
    d_neg = 1.0 - (a * n).sum(dim=1)
    return torch.relu(d_pos - d_neg + margin).mean()


def fingerprint(settings: AttackerSettings, image_ids: Sequence[str], view_names: Sequence[str], shape) -> str:
    """What last.pt must have been trained with to be resumed (every setting but the number of epochs)."""
    kept = {k: v for k, v in asdict(settings).items() if k != "epochs"}
    text = json.dumps({"settings": kept, "ids": list(image_ids), "views": list(view_names),
                       "shape": list(shape)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def train_attacker(views: np.ndarray, view_names: Sequence[str], image_ids: Sequence[str], patient_ids: Sequence[int],
                   settings: AttackerSettings, out_dir: str | Path, *, data_note: dict | None = None,
                   log=print) -> dict[str, Any]:
    """Train on (n_views, N, H, W) preprocessed images (view 0 clean); writes attacker.pt, last.pt, record.json."""
    out_dir = Path(out_dir)
    views_t = torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32))
    if sum(np.unique(patient_ids, return_counts=True)[1] >= 2) < 1 or len(set(patient_ids)) < 2:
        raise CxrError("privacy: the attacker's training split needs a patient with two images and another patient; "
                       "raise sample.n_images")
    torch.manual_seed(derived_seed(settings.seed, "privacy-attacker", "init") % 2**63)
    net = EmbeddingNet(settings.channels, settings.embedding)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    fp = fingerprint(settings, image_ids, view_names, views.shape)
    state, why = load_last(out_dir / "last.pt", fp, settings.epochs)
    log(why)
    epochs: list[dict] = []
    resumed_after = None
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epochs, resumed_after = list(state["epochs"]), int(state["epoch"])
    for epoch in range(len(epochs) + 1, settings.epochs + 1):
        start = time.perf_counter()
        net.train()
        rows = triplets(patient_ids, len(views), settings, epoch)
        total = 0.0
        for i in range(0, len(rows), settings.batch_size):
            batch = rows[i:i + settings.batch_size]
            loss = _loss(net, views_t, batch, settings.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        epochs.append({"epoch": epoch, "loss": total / max(len(rows), 1), "n_triplets": int(len(rows)),
                       "seconds": time.perf_counter() - start})
        log(f"epoch {epoch}: triplet loss {epochs[-1]['loss']:.4f} ({len(rows)} triplets)")
        save({"format": LAST_FORMAT, "fingerprint": fp, "epoch": epoch, "model": cpu_state_dict(net),
              "optimizer": opt.state_dict(), "epochs": epochs}, out_dir / "last.pt")
    weights = cpu_state_dict(net)
    save({"kind": "privacy-attacker", "model_kwargs": {"channels": settings.channels, "embedding": settings.embedding},
          "state_dict": weights, "image_size": int(views.shape[-1])}, out_dir / "attacker.pt")
    counts = np.unique(patient_ids, return_counts=True)[1]
    record = {
        "attacker": NAME, "label": LABEL, "settings": asdict(settings), "views": list(view_names),
        "image_size": int(views.shape[-1]), "n_images": len(image_ids), "n_patients": int(len(counts)),
        "n_patients_with_follow_ups": int((counts >= 2).sum()), "epochs": epochs, "resumed_after": resumed_after,
        "first_loss": epochs[0]["loss"], "final_loss": epochs[-1]["loss"],
        "loss": "triplet margin loss on cosine distance", "data": data_note or {},
        "provenance": provenance(device=torch.device("cpu")),
    }
    write_json(out_dir / "record.json", record)
    return record


def load_attacker(path: str | Path) -> EmbeddingNet:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = EmbeddingNet(**ckpt["model_kwargs"])
        net.load_state_dict(ckpt["state_dict"])
    except Exception as err:  # any unreadable or foreign file
        raise CxrError(f"{path}: not a privacy attacker checkpoint ({type(err).__name__}); rerun rule privacy_attacker") from None
    return net.eval()


def similarity(net: EmbeddingNet, queries: np.ndarray, gallery: np.ndarray, size: int) -> np.ndarray:
    """(n_query, n_gallery) cosine similarity of the embeddings of the preprocessed images."""
    return embed(net, preprocess(queries, size)) @ embed(net, preprocess(gallery, size)).T


def embed(net: EmbeddingNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, H, W) preprocessed images -> (N, D) unit embeddings."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            out.append(net(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size]))[:, None]).numpy())
    return np.concatenate(out).astype(np.float64)
