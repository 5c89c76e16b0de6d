"""Every run's mean with its patient-level interval, and every paired difference the study's tables imply: between
models (same σ, same set-up) and between set-ups (each against the 1 GPU run of the same model and σ), on the
same test images. The CSV's `kind` column says which: mean, models or setups.

A difference row gives the claims' estimand (`stats.patient_level_estimate`: the patient-level mean over the
training runs of each side, its interval with run-to-run and patient variation, its two-sided p) and Holm over
the whole table; the image-weighted difference and the per-patient Wilcoxon p are secondary columns. A run that
did not denoise is flagged (its replicates that did not are excluded; see `claims`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .. import stats
from ..denoised import NOT_DENOISED
from ..errors import CxrError
from ..metric_registry import METRICS, STUDY_METRICS
from ..render import Footnotes, Table, fmt_diff, fmt_p, fmt_pm, write_table
from . import patients
from .cells import SETUP_LEGEND, data_caption
from .claims import ClaimSettings, Evidence, runs_text
from .protocol import Protocol
from .replicates import excluded_caption
from .rows import finish_table
from .runs import collect_runs, model_name, model_order, sigma_order
from .scores import lpips_state

_FLAG_NOTE = (f"A run {NOT_DENOISED} (mean PSNR not above the noisy input's): its numbers are shown but decide "
              "no claim.")


def build_comparisons(records: Sequence, summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                      data_source: str | None = None, image_size: int | None = None,
                      resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> Table:
    noisy = {r.sigma: r for r in collect_runs(summaries=noisy_summaries).values() if r.summary is not None}
    runs = collect_runs(records, summaries, per_image, noisy=noisy)
    ev = Evidence(runs, noisy, ClaimSettings())
    present = [r for r in runs.values() if r.summary is not None]
    models, setups = model_order(present), list(dict.fromkeys(r.setup for r in present))
    pairs = []
    for sigma in sigma_order(present):
        for setup in setups:  # models compared, set-up by set-up
            for i, a_model in enumerate(models):
                for b_model in models[i + 1:]:
                    a, b = ev.run(a_model, sigma, setup), ev.run(b_model, sigma, setup)
                    if a is not None and b is not None:
                        pairs.append(("models", a, b))
        for model in models:  # set-ups compared with gpu1, model by model
            base = ev.run(model, sigma, "gpu1")
            for setup in setups:
                run = ev.run(model, sigma, setup)
                if setup != "gpu1" and run is not None and base is not None:
                    pairs.append(("setups", run, base))
    done = []
    for kind, a, b in pairs:
        for m in STUDY_METRICS:
            if METRICS[m].lpips and not (lpips_state(a)[0] and lpips_state(b)[0]):
                continue
            flags = "; ".join(f for f in (ev.not_denoised(a), ev.not_denoised(b)) if f)
            done.append((kind, a, b, m, ev.estimate(a, b, m), flags))
    if not done:
        raise CxrError("comparisons: no two runs at the same σ with per-image scores were given")
    for res, adj in zip((d[4] for d in done), stats.holm([d[4]["p"] for d in done])):
        res["p_holm"] = adj
    foot = Footnotes()
    rows, shown, means = [], [], []
    for run in sorted(present, key=lambda r: (float(r.sigma), models.index(r.model), setups.index(r.setup))):
        for m in STUDY_METRICS:
            if METRICS[m].lpips and not lpips_state(run)[0]:
                continue
            seed_m = stats.bootstrap_seed(seed, "mean", run.model, run.sigma, run.setup, m)
            frame = patients.mean_frame(ev.frames(run))
            r = stats.patient_mean_ci(frame, m, resamples, seed_m)
            lo, hi = r["ci95_patient_bootstrap"] or (math.nan, math.nan)
            flag = ev.not_denoised(run)
            rows.append({"kind": "mean", "sigma": float(run.sigma), "a": f"{run.model} {run.setup}", "b": None,
                         "metric": m, "n_images": r["n"], "n_patients": r["n_patients"], "mean_a": r["mean"],
                         "ci_t_halfwidth": r["ci95_t_halfwidth"], "ci_lo": lo, "ci_hi": hi,
                         "bootstrap_seed": seed_m, "flag": flag})
            means.append({"σ": run.sigma, "run": f"{model_name(run.model)} {run.setup}"
                          + (foot.mark(_FLAG_NOTE) if flag else ""), "metric": METRICS[m].label,
                          "images": str(r["n"]), "patients": str(r["n_patients"]),
                          "mean ± t": fmt_pm(r["mean"], r["ci95_t_halfwidth"], METRICS[m].decimals),
                          "95 % CI (patients)": patients.fmt_ci(r["ci95_patient_bootstrap"], METRICS[m].decimals)})
    for kind, a, b, m, res, flags in done:
        lo, hi = res["ci"] or (math.nan, math.nan)
        mark = foot.mark(_FLAG_NOTE) if flags else ""
        rows.append({"kind": kind, "sigma": float(a.sigma), "a": f"{a.model} {a.setup}", "b": f"{b.model} {b.setup}",
                     "metric": m, "n_images": res["n_images"], "n_patients": res["n_patients"],
                     "runs_a": res["n_runs_a"], "runs_b": res["n_runs_b"], "mean_a": res["mean_a"],
                     "mean_b": res["mean_b"], "mean_diff": res["estimate"], "ci_lo": lo, "ci_hi": hi,
                     "p": res["p"], "p_holm": res["p_holm"], "image_weighted_diff": res["image_weighted"],
                     "p_wilcoxon_patients": res["p_wilcoxon"], "flag": flags or None})
        shown.append({"σ": a.sigma, "A − B": f"{model_name(a.model)} {a.setup} − {model_name(b.model)} {b.setup}"
                      + mark, "metric": METRICS[m].label, "images": str(res["n_images"]),
                      "patients": str(res["n_patients"]), "runs": runs_text(res),
                      "A − B (patient level)": fmt_diff(res["estimate"], METRICS[m].decimals),
                      "95 % CI": patients.fmt_ci(res["ci"], METRICS[m].decimals),
                      "p": fmt_p(res["p"]), "p Holm": fmt_p(res["p_holm"]),
                      "image-weighted": fmt_diff(res["image_weighted"], METRICS[m].decimals)})
    caption = ["Every run's mean with its image-level t-interval and its patient-cluster bootstrap interval; then "
               "the paired differences between models (same σ and set-up) and between set-ups (each against the "
               "1 GPU run of the same model and σ), on the same test images.",
               patients.bootstrap_note(resamples, seed), patients.estimand_note(len(done)), SETUP_LEGEND,
               excluded_caption(present),
               "SSIM is SSIM (win 3), the window the study's code used; LPIPS only where it is real LPIPS."]
    caption += data_caption(data_source) + Protocol(present + list(noisy.values()), data_source,
                                                    image_size).caption()
    title = "Means and paired differences between models and between set-ups (patient level)"
    blocks = [("Means", means), ("Paired differences", shown)]
    return finish_table("comparisons", title, rows, blocks, caption, foot)


def make_comparisons(records: Sequence, summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                     out_prefix: str | Path, data_source: str | None = None, image_size: int | None = None,
                     resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> list[Path]:
    return write_table(build_comparisons(records, summaries, per_image, noisy_summaries, data_source, image_size,
                                         resamples, seed), out_prefix)
