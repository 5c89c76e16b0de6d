"""Figure: verification AUC against noise level, clean / obfuscated / denoised, one panel per attacker.

Clean queries do not depend on sigma, so they are a horizontal line with their interval as a band; the chance
level (0.5) is drawn, and so is the trivial baseline's obfuscated AUC (grey, dotted) in every panel; the title
says what data and image size were measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..figures import save_figure  # noqa: E402
from ..models.cards import model_card  # noqa: E402
from ..tables.cells import DATA_LABELS  # noqa: E402
from ..tables.privacy import read_privacy  # noqa: E402
from ..tables.runs import model_name  # noqa: E402

OBFUSCATED_COLOR = "#ee6677"  # the obfuscated (noisy) queries; each denoiser is drawn in its card's colour


def privacy_figure(metrics: Sequence[str | Path], summaries: Sequence[str | Path], out_prefix: str | Path,
                   data_source: str | None = None) -> list[Path]:
    frame, infos = read_privacy(metrics, summaries)
    labels = {i["attacker"]: i.get("attacker_label", i["attacker"]) for i in infos}
    baseline = frame[(frame["attacker"] == "trivial") & (frame["query"] == "obfuscated")].dropna(subset=["sigma"])
    baseline = baseline.assign(x=baseline["sigma"].astype(float)).sort_values("x")
    attackers = [a for a in dict.fromkeys(frame["attacker"]) if a != "trivial"] or ["trivial"]
    fig, axes = plt.subplots(1, len(attackers), figsize=(4.6 * len(attackers), 3.9), sharey=True, squeeze=False)
    for ax, attacker in zip(axes[0], attackers):
        rows = frame[frame["attacker"] == attacker]
        sig = rows.dropna(subset=["sigma"])
        xs = sorted({float(s) for s in sig["sigma"]})
        clean = rows[rows["query"] == "clean"].iloc[0]
        span = [min(xs) - 0.02, max(xs) + 0.02] if xs else [0, 1]
        ax.axhline(clean["auc"], color="black", lw=1.2, label="clean query")
        if np.isfinite(clean["auc_lo"]):
            ax.fill_between(span, clean["auc_lo"], clean["auc_hi"], color="black", alpha=0.1, lw=0)
        ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance")
        if attacker != "trivial" and not baseline.empty:
            ax.plot(baseline["x"], baseline["auc"], color="grey", ls=":", marker="s", ms=3,
                    label="trivial baseline, obfuscated")
        groups = [("obfuscated", sig[sig["query"] == "obfuscated"], "obfuscated (noisy) query", OBFUSCATED_COLOR)]
        for model in dict.fromkeys(sig.loc[sig["query"] == "denoised", "model"]):
            groups.append((model, sig[(sig["query"] == "denoised") & (sig["model"] == model)],
                           f"denoised by {model_name(model)}", model_card(model).color))
        for i, (key, g, label, color) in enumerate(groups):
            g = g.assign(x=g["sigma"].astype(float)).sort_values("x")
            dx = (i - (len(groups) - 1) / 2) * 0.006
            yerr = np.vstack([g["auc"] - g["auc_lo"], g["auc_hi"] - g["auc"]])
            ax.errorbar(g["x"] + dx, g["auc"], yerr=np.nan_to_num(yerr), marker="o", ms=4, capsize=3,
                        color=color, label=label, ls="--" if key == "obfuscated" else "-")
        ax.set_xlim(*span)
        ax.set_xticks(xs)
        ax.set_xlabel("noise σ")
        ax.set_title(labels.get(attacker, attacker), fontsize=10)
        ax.set_ylim(0.0, 1.02)
    axes[0][0].set_ylabel("patient-balanced AUC (95 % two-way CI)")
    axes[0][-1].legend(fontsize=8, loc="lower left")
    info = infos[0] if infos else {}
    data = DATA_LABELS.get(data_source or "", data_source or "")
    fig.suptitle(f"Patient re-identification: {data}; {info.get('n_query_patients', '?')} query patients, "
                 f"{info.get('n_pairs_same', '?')} / {info.get('n_pairs_different', '?')} same / different-patient pairs, "
                 f"{info.get('n_gallery_images', '?')} gallery images, {info.get('image_size', '?')} px", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_prefix)
