"""Table III: test-set quality ± 95 % t-interval per model and noise level (gpu1 runs), the noisy input as a
baseline, and paired tests between the two models on the same test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .. import stats
from ..errors import CxrError
from ..render import Footnotes, Table, fmt_diff, fmt_p, fmt_paper, fmt_pm, write_table
from .cells import DIFF_NOTE, PAPER_NOTE, SSIM_NOTE, data_caption, device_cell, join_notes, lpips_cell, run_notes
from .rows import finish_table
from .runs import Run, collect_runs, device_label, model_name, model_order, sigma_order
from .replicates import per_image_means, replicate_caption
from .scores import DP, METRICS, lpips_state, quality, with_paper
from .work import FLAG_NOTE, not_denoised

_NUMBERS = ("psnr", "psnr_ci95", "paper_psnr", "paper_psnr_ci95", "diff_psnr",
            "ssim", "ssim_ci95", "ssim_w3", "ssim_w3_ci95", "paper_ssim", "paper_ssim_ci95", "diff_ssim_w3",
            "lpips", "lpips_ci95", "paper_lpips", "paper_lpips_ci95", "diff_lpips", "lpips_status")
_METRIC_NAMES = {"psnr": "PSNR dB", "ssim": "SSIM", "ssim_w3": "SSIM (win 3)", "lpips": "LPIPS"}


def build_table3(summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                 records: Sequence = (), data_source: str | None = None) -> Table:
    """Test-set quality ± 95 % t-interval per model and sigma (gpu1 runs), the noisy input, paired tests."""
    runs = [r for r in collect_runs(records, summaries, per_image).values() if r.summary is not None]
    noisy = {r.sigma: r for r in collect_runs(summaries=noisy_summaries).values()}
    if not runs:
        raise CxrError("table3: no evaluation summaries given")
    foot = Footnotes()
    models = model_order(runs)
    pair = ("unet", "unetpp") if {"unet", "unetpp"} <= set(models) else tuple(models[:2])
    rows, shown, tests = [], [], []
    for sigma in sigma_order([*runs, *noisy.values()]):
        group = [r for r in runs if r.sigma == sigma]
        if sigma in noisy:
            group.insert(0, noisy[sigma])
        pvals = _paired(group, pair, tests) if len(pair) == 2 else {}
        for run in group:
            q = with_paper(quality(run, foot), run)
            notes = q.pop("_notes") + run_notes(run, timings=False)
            if run.setup and not_denoised(run, noisy):
                notes.append(FLAG_NOTE)
            rows.append({"sigma": float(sigma), "model": run.model, "setup": run.setup or "none",
                         "n": q["n"], "device": device_label(run),
                         **{k: q[k] for k in _NUMBERS}, **pvals.get(run.model, {}), "notes": join_notes(notes)})
            shown.append(_display_row(sigma, run, q, foot, notes))
    over = ("over the test images" if all(r.n_replicates == 1 for r in runs)
            else "over the test images for the no-denoising rows, over the training runs for the trained rows")
    caption = ["Mean ± half-width of the 95 % t-interval (Student t, n − 1 df; the study used a normal "
               f"approximation) {over}, for the 1 GPU (gpu1) runs.", replicate_caption(runs), SSIM_NOTE,
               DIFF_NOTE, PAPER_NOTE,
               f"Paired tests pair the two models' scores on the same test images (by image id): paired t-test "
               f"and Wilcoxon signed-rank, two-sided, {model_name(pair[0])} − {model_name(pair[1])}."
               if len(pair) == 2 else ""]
    blocks = [("Metrics", shown)] + ([(f"Paired tests, {model_name(pair[0])} vs {model_name(pair[1])}", tests)]
                                      if tests else [])
    title = "Table III. Denoising quality on the test set (1 GPU runs), with the study's values"
    return finish_table("table3", title, rows, blocks, [c for c in caption if c] + data_caption(data_source), foot)


def _display_row(sigma: str, run: Run, q: dict, foot: Footnotes, notes: list[str]) -> dict[str, str]:
    return {
        "σ": sigma, "model": model_name(run.model), "n": str(q["n"] or ""),
        "PSNR dB": fmt_pm(q["psnr"], q["psnr_ci95"], 3),
        "paper PSNR": fmt_paper(q["paper_psnr"], q["paper_psnr_ci95"], 3), "Δ PSNR": fmt_diff(q["diff_psnr"], 3),
        "SSIM": fmt_pm(q["ssim"], q["ssim_ci95"], 4), "SSIM (win 3)": fmt_pm(q["ssim_w3"], q["ssim_w3_ci95"], 4),
        "paper SSIM": fmt_paper(q["paper_ssim"], q["paper_ssim_ci95"], 4),
        "Δ SSIM (w3)": fmt_diff(q["diff_ssim_w3"], 4),
        "LPIPS": lpips_cell(q, ci=True), "paper LPIPS": fmt_paper(q["paper_lpips"], q["paper_lpips_ci95"], 4),
        "Δ LPIPS": fmt_diff(q["diff_lpips"], 4),
        "device": device_cell(device_label(run), notes, foot),
    }


def _paired(group: list[Run], pair: tuple[str, str], tests: list[dict]) -> dict[str, dict]:
    """Paired tests of the pair's per-image scores at one sigma; p-value columns for both models' CSV rows."""
    by_model = {r.model: r for r in group}
    if not all(m in by_model for m in pair):
        return {}
    a, b = (by_model[m] for m in pair)
    for run in (a, b):
        if any(r.per_image_path is None for r in run.replicates or [run]):
            raise CxrError(f"table3: paired tests need per_image.csv for {run.label} (not given)")
    fa, fb = per_image_means(a), per_image_means(b)  # per image, averaged over replicates when N >= 2
    lpips_ok = lpips_state(a)[0] and lpips_state(b)[0]  # never test a random backbone's numbers
    cols: dict[str, Any] = {"paired_with": f"{pair[0]} vs {pair[1]}"}
    for m in METRICS:
        if m == "lpips" and not lpips_ok:
            continue
        res = stats.paired_test(fa, fb, m, a.label, b.label)
        cols[f"p_t_{m}"], cols[f"p_wilcoxon_{m}"] = res["t_pvalue"], res["wilcoxon_pvalue"]
        cols[f"paired_n_{m}"] = res["n"]
        tests.append({"σ": a.sigma, "metric": _METRIC_NAMES[m], "pairs": str(res["n"]),
                      f"mean {model_name(pair[0])} − {model_name(pair[1])}":
                          fmt_diff(res["mean_diff"], DP[m] if m != "psnr" else 3),
                      "p (paired t)": fmt_p(res["t_pvalue"]), "p (Wilcoxon)": fmt_p(res["wilcoxon_pvalue"])})
    return {pair[0]: cols, pair[1]: cols}


def make_table3(summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence, out_prefix: str | Path,
                records: Sequence = (), data_source: str | None = None) -> list[Path]:
    return write_table(build_table3(summaries, per_image, noisy_summaries, records, data_source), out_prefix)
