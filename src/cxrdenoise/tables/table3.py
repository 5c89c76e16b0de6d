"""Table III: test-set quality per model and noise level (gpu1 runs) with the image-level 95 % t-interval and
the patient-cluster bootstrap interval, the noisy input as a baseline, and patient-level paired tests between the
two models on the same test images, Holm-adjusted within the table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .. import stats
from ..errors import CxrError
from ..metric_registry import METRICS
from ..models.cards import study_models
from ..render import Footnotes, Table, fmt_diff, fmt_p, fmt_paper, fmt_pm, write_table
from . import patients
from .cells import DIFF_NOTE, PAPER_NOTE, SSIM_NOTE, data_caption, device_cell, join_notes, lpips_cell, run_notes
from .patients import fmt_ci, run_frame
from .protocol import Protocol, mark_for, paper_headers
from .protocol import n_patients as patients_n
from .rows import finish_table
from .records import Run
from .runs import NOISY, collect_runs, device_label, model_name, model_order, parse_run_path, sigma_order
from .replicates import replicate_caption
from .scores import diff_cell, lpips_state, quality, with_paper
from .work import FLAG_NOTE, not_denoised

_NUMBERS = ("psnr", "psnr_ci95", "paper_psnr", "paper_psnr_ci95", "diff_psnr",
            "ssim", "ssim_ci95", "ssim_w3", "ssim_w3_ci95", "paper_ssim", "paper_ssim_ci95", "diff_ssim_w3",
            "lpips", "lpips_ci95", "paper_lpips", "paper_lpips_ci95", "diff_lpips", "lpips_status")


def build_table3(summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                 records: Sequence = (), data_source: str | None = None, image_size: int | None = None,
                 resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> Table:
    """Test-set quality per model and sigma (gpu1 runs) with image-level t and patient-bootstrap intervals, the
    noisy input, and patient-level paired tests between the two models, Holm-adjusted within the table.

    `per_image` may include the noisy input's per_image.csv (results/eval/noisy/...), for its patient interval.
    `resamples` and `seed` are evaluate.bootstrap_resamples and the config seed.
    """
    noisy_per_image = [p for p in per_image if parse_run_path(p)[0] == NOISY]
    noisy = {r.sigma: r for r in collect_runs(summaries=noisy_summaries, per_image=noisy_per_image).values()
             if r.summary is not None}
    trained = [p for p in per_image if parse_run_path(p)[0] != NOISY]
    runs = [r for r in collect_runs(records, summaries, trained, noisy=noisy).values() if r.summary is not None]
    if not runs:
        raise CxrError("table3: no evaluation summaries given")
    foot = Footnotes()
    proto = Protocol([*runs, *noisy.values()], data_source, image_size)
    models = model_order(runs)
    study = study_models()  # the study's two nets, when both ran; else the first two models
    pair = study if set(study) <= set(models) else tuple(models[:2])
    rows, shown, tests, results = [], [], [], []
    for sigma in sigma_order([*runs, *noisy.values()]):
        group = [r for r in runs if r.sigma == sigma]
        if sigma in noisy:
            group.insert(0, noisy[sigma])
        frames = {r.model: run_frame(r, "table3") for r in group if r.per_image_path is not None}
        pvals = _paired(group, pair, tests, results, frames, resamples, seed) if len(pair) == 2 else {}
        for run in group:
            q = with_paper(quality(run, foot), run, proto.comparable(run))
            notes = q.pop("_notes") + run_notes(run, timings=False)
            if run.setup and not_denoised(run, noisy):
                notes.append(FLAG_NOTE)
            ci = (patients.mean_intervals(frames[run.model], run, _patient_metrics(run), resamples, seed)
                  if run.model in frames else {"n_patients": patients_n(run)})
            rows.append({"sigma": float(sigma), "model": run.model, "setup": run.setup or "none",
                         "n": q["n"], **ci, "device": device_label(run),
                         **{k: q[k] for k in _NUMBERS}, **pvals.get(run.model, {}), "notes": join_notes(notes)})
            shown.append(_display_row(sigma, run, q, ci, foot, notes))
    for res, test, adj in zip(results, tests, stats.holm([r["p"] for r in results])):
        test["p Holm"] = fmt_p(adj)
        for row in rows:  # the adjusted p-values go to both models' CSV rows of that sigma
            if row["sigma"] == float(res["sigma"]) and row["model"] in pair:
                row[f"p_holm_{res['metric']}"] = adj
    over = ("over the test images" if all(r.n_replicates == 1 for r in runs)
            else "over the test images for the no-denoising rows and over the training runs for the trained rows")
    caption = [f"Mean ± half-width of the 95 % t-interval {over} (Student t, n − 1 df; the study "
               "used a normal approximation), and the 95 % patient-cluster bootstrap interval, for the 1 GPU "
               "(gpu1) runs.", replicate_caption(runs), patients.bootstrap_note(resamples, seed), SSIM_NOTE,
               DIFF_NOTE, PAPER_NOTE,
               patients.estimand_note(len(results)) + f" Differences are {model_name(pair[0])} − "
               f"{model_name(pair[1])}; the CSV keeps the image-level p-values (p_t_*, p_wilcoxon_*) as well."
               if len(pair) == 2 and results else ""]
    blocks = [("Metrics", paper_headers(shown, mark_for(proto, foot)))] + (
        [(f"Paired differences, {model_name(pair[0])} − {model_name(pair[1])} (patient level)", tests)]
        if tests else [])
    title = "Table III. Denoising quality on the test set (1 GPU runs), with the study's values"
    return finish_table("table3", title, rows, blocks,
                        [c for c in caption if c] + data_caption(data_source) + proto.caption(), foot)


def _patient_metrics(run: Run) -> list[str]:
    """Metrics that get a patient interval: LPIPS only when it is real LPIPS (lpips_state)."""
    return [m for m, info in METRICS.items() if not info.lpips or lpips_state(run)[0]]


def _display_row(sigma: str, run: Run, q: dict, ci: dict, foot: Footnotes, notes: list[str]) -> dict[str, str]:
    def patient_ci(m: str) -> str:
        return fmt_ci([ci.get(f"{m}_ci95_patient_lo"), ci.get(f"{m}_ci95_patient_hi")], METRICS[m].decimals)

    return {
        "σ": sigma, "model": model_name(run.model), "n": str(q["n"] or ""),
        "patients": str(ci.get("n_patients") or ""),
        "PSNR dB": fmt_pm(q["psnr"], q["psnr_ci95"], 3), "PSNR CI (patients)": patient_ci("psnr"),
        "paper PSNR": fmt_paper(q["paper_psnr"], q["paper_psnr_ci95"], 3), "Δ PSNR": diff_cell(q, "psnr", 3),
        "SSIM": fmt_pm(q["ssim"], q["ssim_ci95"], 4), "SSIM (win 3)": fmt_pm(q["ssim_w3"], q["ssim_w3_ci95"], 4),
        "SSIM (win 3) CI (patients)": patient_ci("ssim_w3"),
        "paper SSIM": fmt_paper(q["paper_ssim"], q["paper_ssim_ci95"], 4),
        "Δ SSIM (w3)": diff_cell(q, "ssim", 4),
        "LPIPS": lpips_cell(q, ci=True), "LPIPS CI (patients)": patient_ci("lpips"),
        "paper LPIPS": fmt_paper(q["paper_lpips"], q["paper_lpips_ci95"], 4),
        "Δ LPIPS": diff_cell(q, "lpips", 4),
        "device": device_cell(device_label(run), notes, foot),
    }


def _paired(group: list[Run], pair: tuple[str, str], tests: list[dict], results: list[dict],
            frames: dict, resamples: int, seed: int) -> dict[str, dict]:
    """Paired comparisons of the pair at one sigma: patient-level tests and bootstrap CI of the difference (for
    the table and the claims), image-level p-values kept in the CSV for comparison with the study's."""
    by_model = {r.model: r for r in group}
    if not all(m in by_model for m in pair):
        return {}
    a, b = (by_model[m] for m in pair)
    for run in (a, b):
        if run.model not in frames:
            raise CxrError(f"table3: paired tests need per_image.csv for {run.label} (not given)")
    fa, fb = frames[a.model], frames[b.model]
    lpips_ok = lpips_state(a)[0] and lpips_state(b)[0]  # never test a random backbone's numbers
    cols: dict[str, Any] = {"paired_with": f"{pair[0]} vs {pair[1]}"}
    for m, info in METRICS.items():
        if info.lpips and not lpips_ok:
            continue
        res = stats.paired_test(fa, fb, m, a.label, b.label)  # image level: only to set beside the study's p
        cols[f"p_t_{m}"], cols[f"p_wilcoxon_{m}"] = res["t_pvalue"], res["wilcoxon_pvalue"]
        cols[f"paired_n_{m}"] = res["n"]
        pat = stats.patient_level_estimate(patients.replicate_frames(a, "table3"),
                                           patients.replicate_frames(b, "table3"), m, a.label, b.label)
        lo, hi = pat["ci"] or (math.nan, math.nan)
        cols.update({f"paired_mean_{m}": pat["estimate"], f"paired_ci_lo_{m}": lo, f"paired_ci_hi_{m}": hi,
                     f"p_patient_{m}": pat["p"], f"p_patient_wilcoxon_{m}": pat["p_wilcoxon"],
                     f"paired_patients_{m}": pat["n_patients"], f"paired_image_weighted_{m}": pat["image_weighted"]})
        results.append({**pat, "sigma": a.sigma})
        dp = info.decimals
        tests.append({"σ": a.sigma, "metric": info.label + info.unit_suffix, "images": str(pat["n_images"]),
                      "patients": str(pat["n_patients"]), "runs": f"{pat['n_runs_a']} vs {pat['n_runs_b']}",
                      f"{model_name(pair[0])} − {model_name(pair[1])} (patient level)": fmt_diff(pat["estimate"], dp),
                      "95 % CI": patients.fmt_ci(pat["ci"], dp), "p": fmt_p(pat["p"])})
    return {pair[0]: cols, pair[1]: cols}


def make_table3(*, out_prefix: str | Path, summaries: Sequence, records: Sequence = (), noisy: Sequence,
                per_image: Sequence, data_source: str | None = None, image_size: int | None = None,
                resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> list[Path]:
    """Build and write Table III (keywords as make_table4/5/6; `noisy`: the no-denoising summaries)."""
    return write_table(build_table3(summaries, per_image, noisy, records, data_source, image_size,
                                    resamples, seed), out_prefix)
