"""The study's Figures 4-7 and a training-curve figure, drawn from the pipeline's result files.

Figure 4 puts the study's training times (hatched) beside ours; when ours come from a CPU they differ from the
study's GPU seconds by orders of magnitude, so the axis goes logarithmic and the legend says "ours (CPU)" rather
than pretending the bars are comparable. Figures 5-7 show the same test images for every model at one noise
level, with a zoomed inset (fine structure is where denoisers differ) and each panel's own PSNR/SSIM taken from
per_image.csv, so the numbers match the tables. Every file is written atomically (PNG and PDF).

A run whose mean PSNR does not beat no denoising at its noise level (`cxrdenoise.denoised`) is marked "did not
denoise" in every figure when the no-denoising summaries are given: its Figure 4 bar is greyed and cross-hatched,
its curves and panels are labelled. With replicates, Figure 4 shows the mean time over them, the curves one line
per replicate, and Figures 5-7 replicate 1's outputs (said in the title).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .denoised import NOT_DENOISED  # noqa: E402
from .errors import CxrError  # noqa: E402
from .reference import PAPER_CITATION, PAPER_HARDWARE, paper_row  # noqa: E402
from .tables import (collect_runs, is_cpu, model_name, model_order, not_denoised, read_per_image,  # noqa: E402
                     sigma_order, train_times)

SETUP_COLORS = {"gpu1": "#4477aa", "dp2": "#ee6677", "ddp2": "#ccbb44", "ddp2_amp": "#228833",
                "gpu1_fast": "#66ccee", "ddp2_fast": "#aa3377"}
EXAMPLE_FIGURES = {"0.1": 5, "0.2": 6, "0.3": 7}  # the study's figure number per noise level


def save_figure(fig: plt.Figure, out_prefix: str | Path, dpi: int = 150) -> list[Path]:
    """Write `<prefix>.png` and `<prefix>.pdf`, each renamed into place only once complete."""
    prefix = Path(out_prefix)
    written = []
    for ext in ("png", "pdf"):
        dest = prefix.with_name(f"{prefix.name}.{ext}")
        with atomic_path(dest, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        written.append(dest)
    plt.close(fig)
    return written


# ---------------------------------------------------------------------------------------------- Figure 4

def stamp(fig: plt.Figure, runs: Sequence, data_source: str | None, image_size: int | None) -> None:
    """Print what the figure measured under it (data, size, test set, widths, block, epochs, batch, device)."""
    from .tables.protocol import figure_label

    fig.text(0.01, -0.01, figure_label(runs, data_source, image_size), fontsize=6.5, ha="left", va="top",
             wrap=True)


def _flags(records: Sequence, summaries: Sequence, noisy: Sequence) -> dict[tuple[str, str, str], bool]:
    """(model, sigma, setup) -> True where the run did not denoise (only for runs whose summaries were given)."""
    if not summaries or not noisy:
        return {}
    baseline = {r.sigma: r for r in collect_runs(summaries=noisy).values()}
    return {key: bool(not_denoised(run, baseline)) for key, run in collect_runs(records, summaries).items()
            if run.summary is not None}


def figure4(records: Sequence, out_prefix: str | Path, data_source: str | None = None,
            image_size: int | None = None, summaries: Sequence = (), noisy: Sequence = ()) -> list[Path]:
    """Grouped bars of training time (train + validation) per model and setup at one noise level, paper beside;
    a run that did not denoise (given `summaries` and the `noisy` summaries) is greyed, hatched and labelled."""
    flags = _flags(records, summaries, noisy)
    runs = [r for r in collect_runs(records=records).values() if r.record is not None]
    sigmas = sigma_order(runs)
    if len(sigmas) != 1:
        raise CxrError(f"figure4: expected training records of one noise level, got {', '.join(sigmas) or 'none'}")
    models, setups = model_order(runs), list(dict.fromkeys(r.setup for r in runs))
    cpu = any(is_cpu(r) for r in runs)
    ours_label = "ours (CPU)" if cpu else "ours (GPU)"
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(models) * len(setups) / 2, 4.2))
    width = 0.8 / (2 * len(setups))
    values = []
    for i, model in enumerate(models):
        for j, setup in enumerate(setups):
            run = next((r for r in runs if (r.model, r.setup) == (model, setup)), None)
            paper = (paper_row(sigmas[0], model, setup) or {}).get("train_s", math.nan)
            x = i - 0.4 + (2 * j + 0.5) * width
            color = SETUP_COLORS.get(setup, "grey")
            if run is not None:
                ours = train_times(run)[1]
                if flags.get((model, sigmas[0], setup)):
                    ax.bar(x, ours, width, color="lightgrey", edgecolor=color, hatch="xx", linewidth=1.2)
                    _label_bar(ax, x, ours, suffix=f" ({NOT_DENOISED})")
                else:
                    ax.bar(x, ours, width, color=color, edgecolor="black", linewidth=0.6)
                    _label_bar(ax, x, ours)
                values.append(ours)
            if not math.isnan(paper):
                ax.bar(x + width, paper, width, color=color, alpha=0.45, hatch="///", edgecolor="black", linewidth=0.6)
                _label_bar(ax, x + width, paper)
                values.append(paper)
    positive = [v for v in values if v > 0]
    if positive and (cpu or max(positive) / min(positive) > 30):
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, max(positive) * 4)
        ax.set_ylabel("training time, train + val (s, log scale)")
    else:
        ax.set_ylabel("training time, train + val (s)")
        ax.set_ylim(0, max(positive or [1]) * 1.15)
    ax.set_xticks(range(len(models)), [model_name(m) for m in models])
    handles = [Patch(facecolor=SETUP_COLORS.get(s, "grey"), edgecolor="black", label=s) for s in setups]
    handles += [Patch(facecolor="white", edgecolor="black", label=ours_label),
                Patch(facecolor="white", edgecolor="black", hatch="///", label=f"paper ({PAPER_HARDWARE})")]
    if any(flags.values()):
        handles.append(Patch(facecolor="lightgrey", edgecolor="black", hatch="xx",
                             label=f"ours, {NOT_DENOISED} (PSNR not above the noisy input)"))
    n_reps = max(r.n_replicates for r in runs)
    ax.legend(handles=handles, fontsize=8, ncol=2, loc="upper left", frameon=False)
    title = f"Figure 4. Training time at σ = {sigmas[0]}: ours (solid) vs {PAPER_CITATION} (hatched)"
    if n_reps > 1:
        title += f"\nours: mean over {n_reps} training runs (train.replicates)"
    if cpu:
        title += "\nours: CPU timing — not comparable to the paper's GPU times"
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    stamp(fig, runs, data_source, image_size)
    return save_figure(fig, out_prefix)


def _label_bar(ax: plt.Axes, x: float, value: float, suffix: str = "") -> None:
    text = (f"{value:.0f}" if value >= 100 else f"{value:.3g}") + suffix
    ax.annotate(text, (x, value), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                fontsize=6, rotation=90)


# ---------------------------------------------------------------------------------------------- Figures 5-7

def _load_examples(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in ("noisy", "denoised", "clean", "image_ids")}
    except FileNotFoundError:
        raise CxrError(f"{path}: not found") from None
    except KeyError as err:
        raise CxrError(f"{path}: missing array {err} (expected noisy, denoised, clean, image_ids)") from None
    data["image_ids"] = np.asarray([str(i) for i in data["image_ids"]])
    return data


def _zoom_box(clean: np.ndarray, frac: float = 0.22) -> tuple[int, int, int]:
    """(row, col, size) of the most textured square in the upper-left two thirds (the inset sits lower right)."""
    h, w = clean.shape
    size = max(4, int(min(h, w) * frac))
    step = max(1, size // 2)
    best, box = -1.0, (0, 0, size)
    for r in range(0, max(1, int(h * 0.66) - size + 1), step):
        for c in range(0, max(1, int(w * 0.66) - size + 1), step):
            v = float(clean[r:r + size, c:c + size].var())
            if v > best:
                best, box = v, (r, c, size)
    return box


def _scores(frame, image_id: str) -> str:
    if frame is None:
        return ""
    hit = frame[frame["image_id"] == image_id]
    if hit.empty:
        return ""
    row = hit.iloc[0]
    return f"\nPSNR {row['psnr']:.2f} dB · SSIM {row['ssim']:.3f}"


def examples_figure(examples: Sequence, per_image: Sequence, noisy_per_image: str | Path | None,
                    out_prefix: str | Path, number: int | None = None, max_images: int | None = None,
                    data_source: str | None = None, image_size: int | None = None,
                    records: Sequence = (), summaries: Sequence = (), noisy: Sequence = ()) -> list[Path]:
    """Rows = the same test images; columns = noisy, each model's output, clean; zoomed inset in every panel.

    `records` (the runs' record.json) only feed the label under the figure (widths, block, epochs, device).
    One replicate per model (pass replicate 1's files); a model that did not denoise (given `summaries` and the
    `noisy` summaries) is labelled.
    """
    flags = _flags((), summaries, noisy)
    runs = [r for r in collect_runs(records, per_image=per_image, examples=examples).values() if r.examples_path]
    if any(r.n_replicates > 1 for r in runs):
        raise CxrError("examples figure: pass one replicate's examples per model (e.g. rep1), not several")
    sigmas = sigma_order(runs)
    if len(sigmas) != 1:
        raise CxrError(f"examples figure: expected examples of one noise level, got {', '.join(sigmas) or 'none'}")
    loaded = [(r, _load_examples(r.examples_path)) for r in runs]
    first_run, first = loaded[0]
    for run, data in loaded[1:]:
        if list(data["image_ids"]) != list(first["image_ids"]) or not np.allclose(data["clean"], first["clean"]):
            raise CxrError(f"{run.examples_path}: shows other test images than {first_run.examples_path}; "
                           "examples must be the same images for every model")
    noisy_scores = read_per_image(noisy_per_image) if noisy_per_image else None
    scores = {r.model: read_per_image(r.per_image_path) if r.per_image_path else None for r, _ in loaded}
    ids = list(first["image_ids"])[:max_images] if max_images else list(first["image_ids"])
    columns = [("Noisy input", lambda k: first["noisy"][k], lambda i: _scores(noisy_scores, i))]
    for run, data in loaded:
        flagged = f" ({NOT_DENOISED})" if flags.get((run.model, run.sigma, run.setup)) else ""
        columns.append((model_name(run.model) + flagged, lambda k, d=data: d["denoised"][k],
                        lambda i, m=run.model: _scores(scores[m], i)))
    columns.append(("Clean", lambda k: first["clean"][k], lambda i: ""))
    fig, axes = plt.subplots(len(ids), len(columns), figsize=(2.6 * len(columns), 3.0 * len(ids) + 0.4),
                             squeeze=False, layout="constrained")
    for k, image_id in enumerate(ids):
        box = _zoom_box(np.asarray(first["clean"][k], dtype=float))
        for c, (name, image, score) in enumerate(columns):
            _panel(axes[k][c], np.asarray(image(k), dtype=float), box, f"{name}{score(image_id)}")
        axes[k][0].set_ylabel(image_id, fontsize=8)
    label = f"Figure {number}. " if number else ""
    rep = f", replicate {first_run.rep}" if first_run.rep is not None else ""
    fig.suptitle(f"{label}Test images at noise σ = {sigmas[0]} (setup {first_run.setup}{rep}); "
                 "inset: zoomed region (yellow box)", fontsize=10)
    stamp(fig, [r for r, _ in loaded], data_source, image_size)
    return save_figure(fig, out_prefix)


def _panel(ax: plt.Axes, image: np.ndarray, box: tuple[int, int, int], title: str) -> None:
    r, c, size = box
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    inset = ax.inset_axes([0.58, 0.02, 0.4, 0.4])
    inset.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    inset.set_xlim(c - 0.5, c + size - 0.5)
    inset.set_ylim(r + size - 0.5, r - 0.5)
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor("yellow")
    ax.indicate_inset_zoom(inset, edgecolor="yellow", alpha=0.9)


# ---------------------------------------------------------------------------------------------- training curves

def training_curves(records: Sequence, out_prefix: str | Path, data_source: str | None = None,
                    image_size: int | None = None, summaries: Sequence = (), noisy: Sequence = ()) -> list[Path]:
    """Train (solid) and validation (dashed) loss per epoch: one panel per model and noise level, a line per setup
    and replicate; a setup that did not denoise says so in its panel title."""
    flags = _flags(records, summaries, noisy)
    runs = [r for r in collect_runs(records=records).values() if r.record is not None]
    if not runs:
        raise CxrError("training_curves: no training records given")
    models, sigmas = model_order(runs), sigma_order(runs)
    fig, axes = plt.subplots(len(models), len(sigmas), figsize=(3.6 * len(sigmas), 2.8 * len(models)),
                             squeeze=False, sharex=True)
    for i, model in enumerate(models):
        for j, sigma in enumerate(sigmas):
            ax = axes[i][j]
            flagged = []
            for run in (r for r in runs if (r.model, r.sigma) == (model, sigma)):
                color = SETUP_COLORS.get(run.setup, "grey")
                if flags.get((model, sigma, run.setup)):
                    flagged.append(run.setup)
                for k, rep in enumerate(run.replicates or [run]):
                    epochs = (rep.record or {}).get("epochs") or []
                    x = [e["epoch"] for e in epochs]
                    alpha = 1.0 if k == 0 else 0.45
                    ax.plot(x, [e["train_loss"] for e in epochs], "-", color=color, marker=".", alpha=alpha,
                            label=f"{run.setup} train" if k == 0 else None)
                    ax.plot(x, [e["val_loss"] for e in epochs], "--", color=color, marker=".", alpha=alpha,
                            label=f"{run.setup} val" if k == 0 else None)
            title = f"{model_name(model)}, σ = {sigma}"
            if flagged:
                title += f"\n{NOT_DENOISED}: {', '.join(flagged)}"
            ax.set_title(title, fontsize=9, color="firebrick" if flagged else "black")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("L1 loss")
            if i == len(models) - 1:
                ax.set_xlabel("epoch")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, max(1, len(labels))), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    device = "CPU" if any(is_cpu(r) for r in runs) else "GPU"
    n_reps = max(r.n_replicates for r in runs)
    reps = f"; {n_reps} replicates per setup (replicate 1 opaque)" if n_reps > 1 else ""
    fig.suptitle(f"Training curves: train (solid) and validation (dashed) loss per epoch (ours, {device}){reps}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    stamp(fig, runs, data_source, image_size)
    return save_figure(fig, out_prefix)


# ------------------------------------------------------------------------------------ PSNR against sigma

CLASSICAL_STYLE = dict(linestyle="--", marker="s", markersize=4)


def psnr_vs_sigma(classical: Sequence, out_prefix: str | Path, summaries: Sequence = (), noisy: Sequence = (),
                  records: Sequence = (), data_source: str | None = None, image_size: int | None = None) -> list[Path]:
    """Test-set mean PSNR against the noise sigma, one line per method: the classical baselines (dashed), our
    trained models' 1 GPU runs (solid) and no denoising (grey dotted), with image-level 95 % t-interval bars.
    A classical method skipped for an absent package is named under the title, not drawn."""
    from .classical import METHODS
    from .tables.scores import metric

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    skipped: dict[str, str] = {}

    def line(runs, label, **style):
        pts = sorted(((float(r.sigma), *metric(r, "psnr")) for r in runs), key=lambda p: p[0])
        if pts:
            xs, ys, hw = zip(*pts)
            ax.errorbar(xs, ys, yerr=[0 if math.isnan(h) else h for h in hw], label=label, capsize=3, **style)

    cls = [r for r in collect_runs(summaries=classical).values() if r.summary is not None]
    for method in model_order(cls):
        runs = [r for r in cls if r.model == method]
        done = [r for r in runs if not r.summary.get("skipped")]
        label = runs[0].summary.get("method_label") or (METHODS[method].label if method in METHODS else method)
        if not done:
            skipped[label] = runs[0].summary["skipped"]
            continue
        line(done, f"{label} (classical)", **CLASSICAL_STYLE)
    flags = _flags(records, summaries, noisy)
    models = [r for r in collect_runs(records, summaries).values() if r.summary is not None]
    for model in model_order(models):
        runs = [r for r in models if r.model == model]
        bad = [r.sigma for r in runs if flags.get((r.model, r.sigma, r.setup))]
        line(runs, f"{model_name(model)} (ours, {runs[0].setup})" + (f", {NOT_DENOISED} at σ={', '.join(bad)}"
                                                                   if bad else ""), marker="o", markersize=4)
    line([r for r in collect_runs(summaries=noisy).values() if r.summary is not None], "no denoising",
         color="grey", linestyle=":", marker="x")
    if not ax.lines:
        raise CxrError("psnr_sigma: no measured result to draw (all classical methods skipped, no model given)")
    ax.set_xlabel("noise σ (0-1 scale; the study's noise adds mean 0.1 and clips)")
    ax.set_ylabel("test-set mean PSNR (dB)")
    n = sorted({int((r.summary or {}).get("n_images") or 0) for r in cls if not r.summary.get("skipped")})
    title = "PSNR against noise level: classical baselines, our models, no denoising"
    if n:
        title += (f"\nclassical: first {', '.join(map(str, n))} test images (baselines.max_images), others: whole "
                  "test split; bars: 95 % t-interval")
    if skipped:
        title += "\nnot run: " + "; ".join(skipped)
    ax.set_title(title, fontsize=8.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    if models:
        stamp(fig, models, data_source, image_size)
    else:  # the model protocol line would describe nets that are not drawn
        from .tables.cells import DATA_LABELS

        fig.text(0.01, -0.01, f"Measured: {DATA_LABELS.get(data_source or '', 'data source not stated')}, "
                 f"{image_size or '?'}x{image_size or '?'} images; classical methods on the CPU", fontsize=6.5,
                 ha="left", va="top", wrap=True)
    return save_figure(fig, out_prefix)
