"""Global validation loss per round of a federated run, with the session boundaries of a resumed run."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..figures import save_figure  # noqa: E402
from ..tables.cells import DATA_LABELS  # noqa: E402
from ..tables.federated import round_frame  # noqa: E402
from ..tables.runs import model_name  # noqa: E402


def plot_rounds(run_dir: str | Path, out_prefix: str | Path, data_source: str | None = None) -> list[Path]:
    frame = round_frame(run_dir)
    spec = json.loads((Path(run_dir) / "spec.json").read_text())
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(frame["round"], frame["val_loss"], marker="o", color="tab:blue", label="global model")
    for session in sorted(frame["session"].unique())[1:]:
        first = frame.loc[frame["session"] == session, "round"].min()
        ax.axvline(first - 0.5, color="grey", ls=":", lw=1)
        ax.text(first - 0.45, ax.get_ylim()[1], " resumed", va="top", fontsize=7, color="grey")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("validation L1 (centralized val split)")
    source = DATA_LABELS.get(data_source, data_source) if data_source else ""
    ax.set_title(f"Federated {spec['strategy']}: {model_name(spec['model'])}, σ = {spec['sigma']:g}, "
                 f"{len(spec['sites'])} sites, {spec['local_epochs']} local epoch(s)/round"
                 + (f"\n{source}" if source else ""), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        return save_figure(fig, out_prefix)
    finally:
        plt.close(fig)
