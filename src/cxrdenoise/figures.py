"""The study's Figures 4-7 and a training-curve figure, drawn from the pipeline's result files.

Figure 4 puts the study's training times (hatched) beside ours; when ours come from a CPU they differ from the
study's GPU seconds by orders of magnitude, so the axis goes logarithmic and the legend says "ours (CPU)" rather
than pretending the bars are comparable. Figures 5-7 show the same test images for every model at one noise
level, one image per patient where examples.npz holds several patients, with a zoomed inset on anatomy (the most
varied window of the clean image away from dark corners and the border; the inset sits in the panel corner
farthest from it) and each panel's own PSNR/SSIM taken from per_image.csv, so the numbers match the tables.
Every file is written atomically (PNG and PDF).

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
from .naming import parse_image_name  # noqa: E402
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
    return {key: bool(not_denoised(run, baseline))
            for key, run in collect_runs(records, summaries, noisy=baseline).items() if run.summary is not None}


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


DARK_FRACTION = 0.05  # a zoom window may hold at most this share of dark (background, collimation) pixels
BORDER_FRACTION = 0.05  # ... and keeps this share of the side away from the image border (markers, edges)


def _zoom_box(clean: np.ndarray, frac: float = 0.22) -> tuple[int, int, int]:
    """(row, col, size) of the zoom window: the square of highest variance of the clean image among those that
    lie on anatomy, i.e. off the outer border and with at most DARK_FRACTION dark pixels (darker than 10 % of
    the 1st-99th percentile range above the 1st percentile: background corners, collimation). Falls back to
    every window when none qualifies (an image without dark background)."""
    h, w = clean.shape
    size = max(4, int(min(h, w) * frac))
    step = max(1, size // 4)
    lo, hi = np.percentile(clean, [1, 99])
    dark = clean < lo + 0.1 * (hi - lo) if hi > lo else np.zeros_like(clean, dtype=bool)
    margin_r, margin_c = int(h * BORDER_FRACTION), int(w * BORDER_FRACTION)
    candidates = []
    for r in range(0, max(1, h - size + 1), step):
        for c in range(0, max(1, w - size + 1), step):
            on_anatomy = (r >= margin_r and c >= margin_c and r + size <= h - margin_r and c + size <= w - margin_c
                          and float(dark[r:r + size, c:c + size].mean()) <= DARK_FRACTION)
            candidates.append((on_anatomy, float(clean[r:r + size, c:c + size].var()), -abs(r + size / 2 - h / 2)
                               - abs(c + size / 2 - w / 2), (r, c, size)))
    pool = [x for x in candidates if x[0]] or candidates
    return max(pool, key=lambda x: (x[1], x[2]))[3]


def _inset_corner(box: tuple[int, int, int], shape: tuple[int, int], extent: float = 0.4) -> list[float]:
    """Axes rectangle [x0, y0, w, h] of the inset: the panel corner whose inset overlaps the zoom box least
    (ties: farthest from it), so the inset never hides the region it magnifies."""
    r, c, size = box
    h, w = shape
    x0, x1 = c / w, (c + size) / w  # box in axes fractions (x right, y up: image rows run down)
    y0, y1 = 1 - (r + size) / h, 1 - r / h
    best = None
    for ax0 in (0.02, 1 - extent - 0.02):
        for ay0 in (0.02, 1 - extent - 0.02):
            overlap = (max(0.0, min(x1, ax0 + extent) - max(x0, ax0))
                       * max(0.0, min(y1, ay0 + extent) - max(y0, ay0)))
            dist = (ax0 + extent / 2 - (x0 + x1) / 2) ** 2 + (ay0 + extent / 2 - (y0 + y1) / 2) ** 2
            key = (overlap, -dist)
            if best is None or key < best[0]:
                best = (key, [ax0, ay0, extent, extent])
    return best[1]


def _patient_of(image_id: str, frames: Sequence) -> str:
    """The patient of a test image: from a per_image.csv that lists it, else from its NIH file name."""
    for frame in frames:
        if frame is not None and "patient_id" in frame.columns:
            hit = frame.loc[frame["image_id"] == image_id, "patient_id"]
            if not hit.empty:
                value = str(hit.iloc[0])
                return str(int(value)) if value.isdigit() else value  # 00000001 and 1 are one patient
    try:
        return str(parse_image_name(image_id)[0])
    except CxrError:
        return image_id


def pick_examples(image_ids: Sequence[str], patients: Sequence[str], k: int | None) -> list[int]:
    """Indices of up to `k` examples (all when None), one image per patient first (in the given order), then,
    only when there are fewer patients than `k`, further images of the patients already shown."""
    k = len(image_ids) if k is None else max(0, int(k))
    first, rest, seen = [], [], set()
    for i, patient in enumerate(patients):
        (rest if patient in seen else first).append(i)
        seen.add(patient)
    return (first + rest)[:k]


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
    stored = [str(i) for i in first["image_ids"]]
    stored_patients = [_patient_of(i, [noisy_scores, *scores.values()]) for i in stored]
    rows = pick_examples(stored, stored_patients, max_images or None)
    ids = [stored[k] for k in rows]
    n_patients = len({stored_patients[k] for k in rows})
    columns = [("Noisy input", lambda k: first["noisy"][k], lambda i: _scores(noisy_scores, i))]
    for run, data in loaded:
        flagged = f" ({NOT_DENOISED})" if flags.get((run.model, run.sigma, run.setup)) else ""
        columns.append((model_name(run.model) + flagged, lambda k, d=data: d["denoised"][k],
                        lambda i, m=run.model: _scores(scores[m], i)))
    columns.append(("Clean", lambda k: first["clean"][k], lambda i: ""))
    fig, axes = plt.subplots(len(ids), len(columns), figsize=(2.6 * len(columns), 3.0 * len(ids) + 0.4),
                             squeeze=False, layout="constrained")
    for row, (k, image_id) in enumerate(zip(rows, ids)):
        box = _zoom_box(np.asarray(first["clean"][k], dtype=float))
        for c, (name, image, score) in enumerate(columns):
            _panel(axes[row][c], np.asarray(image(k), dtype=float), box, f"{name}{score(image_id)}")
        axes[row][0].set_ylabel(f"{image_id}\npatient {stored_patients[k]}", fontsize=8)
    label = f"Figure {number}. " if number else ""
    rep = f", replicate {first_run.rep}" if first_run.rep is not None else ""
    who = (f"{len(ids)} images of {n_patients} patients, one per patient" if n_patients == len(ids) else
           f"{len(ids)} images of only {n_patients} patient(s): the examples hold no more patients")
    fig.suptitle(f"{label}Test images at noise σ = {sigmas[0]} (setup {first_run.setup}{rep}; {who}); "
                 "inset: zoomed region (yellow box)", fontsize=10)
    stamp(fig, [r for r, _ in loaded], data_source, image_size)
    return save_figure(fig, out_prefix)


def _panel(ax: plt.Axes, image: np.ndarray, box: tuple[int, int, int], title: str) -> None:
    r, c, size = box
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    inset = ax.inset_axes(_inset_corner(box, image.shape))
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


def _images_of(runs: Sequence) -> str:
    """'N test images of P patients' of these runs, each distinct count once ('?' where a summary has none)."""
    counts = sorted({(int(s["n_images"]) if s.get("n_images") is not None else -1,
                      int(s["n_patients"]) if s.get("n_patients") is not None else -1)
                     for s in (r.summary or {} for r in runs)})
    return " / ".join(f"{'?' if n < 0 else n} test images of {'?' if p < 0 else p} patients" for n, p in counts)


def psnr_sigma_images(classical_runs: Sequence, other_runs: Sequence) -> str:
    """The figure's line saying which test images each kind of line averages: the classical methods' subset
    (baselines.max_images, round-robin across patients from the config seed) with its image and patient counts,
    and the models' and the noisy input's (their whole test split: this figure does not restrict them; Table VI
    puts every row on the same images)."""
    done = [r for r in classical_runs if r.summary is not None and not r.summary.get("skipped")]
    parts = []
    if done:
        subsets = [r.summary.get("subset") or {} for r in done]
        limited = [s for s in subsets if s and int(s.get("n_images", 0)) < int(s.get("n_test_images", 0))]
        legacy = [r for r, s in zip(done, subsets) if not s and r.summary.get("max_images") is not None]
        how = ""
        if limited:
            seeds = sorted({str(s.get("seed")) for s in limited})
            how = (f", drawn round-robin across patients from the {limited[0].get('n_test_images')} test images "
                   f"(baselines.max_images {limited[0].get('max_images')}, seed {'/'.join(seeds)})")
        elif legacy:
            how = f" (baselines.max_images {legacy[0].summary.get('max_images')}; selection not recorded)"
        parts.append(f"classical: {_images_of(done)}{how}")
    if other_runs:
        parts.append(f"models and no denoising: {_images_of(other_runs)} (their whole test split)")
    return "\n".join(parts)


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
    baseline = {r.sigma: r for r in collect_runs(summaries=noisy).values()}
    models = [r for r in collect_runs(records, summaries, noisy=baseline).values() if r.summary is not None]
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
    title = "PSNR against noise level: classical baselines, our models, no denoising"
    images = psnr_sigma_images(cls, models + [r for r in collect_runs(summaries=noisy).values()
                                              if r.summary is not None])
    if images:
        title += f"\n{images}; bars: 95 % t-interval"
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
