"""Table VI: the study's literature comparison. Its quoted rows (other papers, natural images, other noise) are
labelled as quoted and never mixed up with the rows this pipeline measured.

Every measured row at one σ (no denoising, our models, the classical baselines) scores the same test images.
When `baselines.max_images` limits the classical methods to a subset (`cxrdenoise.baselines.classical_subset`,
round-robin across patients), the models' and the noisy input's numbers are recomputed from their per_image.csv
restricted to exactly the subset's image ids; when the classical methods scored every test image, all rows keep
their own (whole-split) numbers. Either way the image sets are compared, and a row whose images differ stops the
table with one line naming the two files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..denoised import NOT_DENOISED
from ..errors import CxrError
from ..reference import PAPER_CITATION, literature_rows
from ..render import Footnotes, Table, fmt, write_table
from .cells import DATA_LABELS, DIFF_NOTE, PAPER_NOTE, SSIM_NOTE, data_caption, join_notes, row_marks, run_notes
from .rows import finish_table
from .records import Run, read_per_image
from .runs import NOISY, collect_runs, device_label, eval_device_label, model_name, model_order
from .protocol import Protocol, mark_for, paper_headers
from .replicates import replicate_caption
from .scores import diff_cell, quality, with_paper
from .work import FLAG_NOTE, not_denoised
from . import patients

QUOTED_DEVICE = "not run here (quoted)"


def _quoted_label(cited: str) -> str:
    return f"quoted ({PAPER_CITATION} Table VI, citing {cited}; natural images, σ=15/25 of 255)"


def _noise_label(run: Run) -> str:
    """Our noise in the study's terms: σ on a 0-1 scale, the additive mean when the record has it."""
    mean = (run.record or {}).get("noise_mean", (run.summary or {}).get("noise_mean"))
    if mean is not None and float(mean) == 0.0:
        return f"σ={run.sigma} of 1 ≈ {float(run.sigma) * 255:.0f}/255, zero mean (the literature's setting)"
    pct = f"{float(run.sigma) * 100:g}%"
    return f"σ={run.sigma} of 1" + (f", mean {float(mean):g}" if mean is not None else "") + f" (study: {pct})"


CLASSICAL_NOTE = ("Classical rows: each method's noise parameter set from the known σ, the noise mean {handling} "
                  "(cxrdenoise.classical; docs/evaluation.md).")
SUBSET_NOTE = ("Same images in every measured row at a σ: the classical methods scored {n} of the {total} test "
               "images (baselines.max_images: {limit}), drawn round-robin across patients (the patients in a "
               "random order, one image of each per round, each patient's images in a random order; seed {seed} = "
               "the config seed), covering {patients} of the {total_patients} test patients; the models' and "
               "no-denoising rows are recomputed from their per-image scores on exactly those images (matched by "
               "image id), so they differ from Table III's whole-test-set means.")
ALL_NOTE = "Same images in every measured row at a σ: {what}."
HANDLING = {"invert": "handled by inverting the clipped-noise expectation",
            "subtract": "subtracted before denoising", "naive": "not handled (naive)"}


def _seconds(run: Run) -> tuple[float, str]:
    """(seconds per image, its cell with the device that ran it); NaN when the summary has no timing."""
    ms = ((run.summary or {}).get("inference") or {}).get("ms_per_image_mean")
    if ms is None:
        return math.nan, ""
    threads = (run.summary or {}).get("threads")
    on = eval_device_label(run) + (f", {threads} thread(s)" if threads else "")
    return float(ms) / 1000.0, f"{float(ms) / 1000.0:.4g} on {on}"


def _patient_ci(run: Run, resamples: int, seed: int, frame: pd.DataFrame | None = None) -> tuple[float, float]:
    """The PSNR mean's 95 % patient-cluster bootstrap interval over `frame` (the row's per-image scores on the
    images it shows), NaNs when the run's per_image.csv was not given."""
    if frame is None:
        return math.nan, math.nan  # per-image scores not given: the interval is left out, not invented
    ci = patients.mean_intervals(frame, run, ["psnr"], resamples, seed)
    return ci["psnr_ci95_patient_lo"], ci["psnr_ci95_patient_hi"]


# ------------------------------------------------------------------------------- the same images in every row

@dataclass
class Scored:
    """What one row shows at its σ: its run (summary restricted to the images shown when it was), the image ids
    and per-image scores behind it (None when its per_image.csv was not given) and the file named in errors."""

    run: Run
    ids: frozenset | None
    frame: pd.DataFrame | None
    where: str

    @property
    def n_images(self) -> int | None:
        if self.ids is not None:
            return len(self.ids)
        n = (self.run.summary or {}).get("n_images")
        return None if n is None else int(n)

    @property
    def n_patients(self) -> int | None:
        if self.frame is not None:
            return patients.count_patients(self.frame)
        n = (self.run.summary or {}).get("n_patients")
        return None if n is None else int(n)


def _has_per_image(run: Run) -> bool:
    return all(r.per_image_path is not None for r in (run.replicates or [run]))


def _scored(run: Run) -> Scored:
    if not _has_per_image(run):
        return Scored(run, None, None, str(run.summary_path))
    frame = patients.run_frame(run, "table6")
    ids = frame["image_id"].astype(str)
    if ids.duplicated().any():
        raise CxrError(f"{run.per_image_path}: image {ids[ids.duplicated()].iloc[0]} appears twice")
    return Scored(run, frozenset(ids), frame, str(run.per_image_path))


def _classical_scored(run: Run) -> Scored:
    """A classical row's images: its per_image.csv when given, else the subset its summary records."""
    if _has_per_image(run):
        return _scored(run)
    chosen = ((run.summary or {}).get("subset") or {}).get("image_ids")
    return Scored(run, None if chosen is None else frozenset(map(str, chosen)), None, str(run.summary_path))


def _limited(run: Run) -> bool:
    """Whether a classical result scored a subset of the test split (baselines.max_images below its size)."""
    s = run.summary or {}
    sub = s.get("subset")
    if sub:
        return int(sub.get("n_images", 0)) < int(sub.get("n_test_images", 0))
    return s.get("max_images") is not None  # a result from before the subset was recorded


def _mismatch(sigma: str, a: Scored, b: Scored) -> CxrError:
    if a.ids is None or b.ids is None:
        return CxrError(f"table6 σ={sigma}: {a.where} has {a.n_images} test images but {b.where} has "
                        f"{b.n_images}; every measured row at a σ must score the same images (re-run the older one)")
    only_a, only_b = sorted(a.ids - b.ids), sorted(b.ids - a.ids)
    return CxrError(f"table6 σ={sigma}: {a.where} and {b.where} score different test images ({len(only_a)} only in "
                    f"the first, e.g. {only_a[:2]}; {len(only_b)} only in the second, e.g. {only_b[:2]}); every "
                    "measured row at a σ must score the same images (re-run the older one)")


def _same(a: Scored, b: Scored) -> bool:
    if a.ids is not None and b.ids is not None:
        return a.ids == b.ids
    return a.n_images == b.n_images


def restrict(side: Scored, ids: frozenset) -> Scored:
    """`side` recomputed on the images `ids` alone: each replicate's metrics from its per_image.csv rows of those
    images (`stats.summarise`, as the evaluation computes them), replicates combined as for any row."""
    from ..stats import summarise
    from .replicates import combine

    reps = []
    for r in side.run.replicates or [side.run]:
        frame = read_per_image(r.per_image_path)
        sub = frame[frame["image_id"].astype(str).isin(ids)]
        summary = dict(r.summary or {})
        metrics = dict(summary.get("metrics") or {})
        metrics.update(summarise(sub, [m for m in metrics if m in sub.columns]))
        summary.update(metrics=metrics, n_images=len(sub), n_patients=patients.count_patients(sub),
                       table6_images=f"restricted to the {len(ids)} images of the classical subset")
        reps.append(replace(r, summary=summary, replicates=[]))
    frame = side.frame[side.frame["image_id"].astype(str).isin(ids)].reset_index(drop=True)
    return Scored(combine(reps), ids, frame, side.where)


def same_images(runs: Sequence[Run], baseline: dict[str, Run], classical_runs: Sequence[Run]
                ) -> tuple[dict[int, Scored], dict[str, Scored], dict[int, Scored], dict[str, dict[str, Any]]]:
    """Every measured row of Table VI on the same images at its σ.

    The classical rows at a σ must all score the same images (their subset); the models' rows and the noisy input
    at that σ are restricted to it when the classical methods scored a subset (baselines.max_images), else must
    score the same images themselves. Returns the models' and classical rows by id() of their run, the noisy
    input by σ, and per σ what the rows score (n_images, n_patients, the classical subset record, whether rows
    were restricted). A row whose images differ raises CxrError naming the two files."""
    models = {id(r): _scored(r) for r in runs}
    noisy = {s: _scored(r) for s, r in baseline.items()}
    classical = {id(r): _classical_scored(r) for r in classical_runs
                 if r.summary is not None and not r.summary.get("skipped")}
    info: dict[str, dict[str, Any]] = {}
    sigmas = {r.sigma for r in runs} | {r.sigma for r in classical_runs} | set(baseline)
    for sigma in sorted(sigmas, key=float):
        cls = [classical[id(r)] for r in classical_runs if r.sigma == sigma and id(r) in classical]
        others = [models[id(r)] for r in runs if r.sigma == sigma] + ([noisy[sigma]] if sigma in noisy else [])
        for side in cls[1:]:
            if not _same(cls[0], side):
                raise _mismatch(sigma, cls[0], side)
        ref = cls[0] if cls else next((o for o in others if o.ids is not None), others[0] if others else None)
        if ref is None:
            continue
        limited = bool(cls) and _limited(cls[0].run)
        restricted = False
        for side in others:
            if side is ref:
                continue
            if ref.ids is not None and side.ids is not None:
                if side.ids == ref.ids:
                    continue
                if not (limited and ref.ids < side.ids):
                    raise _mismatch(sigma, ref, side)
                new = restrict(side, ref.ids)
                if side.run.model == NOISY and not side.run.setup:
                    noisy[sigma] = new
                else:
                    models[id(side.run)] = new
                restricted = True
            elif limited:
                missing = side if side.ids is None else ref
                raise CxrError(f"table6 σ={sigma}: the classical rows score a subset of the test images "
                               f"(baselines.max_images; {ref.where}) and {missing.where}'s per_image.csv, needed to "
                               "put every row on the same images, was not given")
            elif side.n_images != ref.n_images:
                raise _mismatch(sigma, ref, side)
        info[sigma] = {"n_images": ref.n_images, "n_patients": ref.n_patients, "restricted": restricted,
                       "limited": limited, "classical": bool(cls),
                       "subset": (cls[0].run.summary or {}).get("subset") if cls else None,
                       "max_images": (cls[0].run.summary or {}).get("max_images") if cls else None}
    return models, noisy, classical, info


def _images_caption(info: dict[str, dict[str, Any]]) -> list[str]:
    """What the measured rows score, per σ where it differs: images, patients and how they were chosen."""
    if not info:
        return []

    def count(i: dict) -> str:
        pat = f" of {i['n_patients']} patients" if i["n_patients"] is not None else ""
        return f"{i['n_images'] if i['n_images'] is not None else '?'} test images{pat}"

    counts = {s: count(i) for s, i in info.items()}
    if len(set(counts.values())) == 1:
        line = f"Measured rows: {next(iter(counts.values()))} at every σ."
    else:
        line = "Measured rows: " + "; ".join(f"σ={s}: {c}" for s, c in counts.items()) + "."
    out = [line]
    limited = [i for i in info.values() if i["limited"]]
    subsets = {(i["n_images"], i["n_patients"], str(i["max_images"]), str((i["subset"] or {}).get("seed")),
                (i["subset"] or {}).get("n_test_images"), (i["subset"] or {}).get("n_test_patients"))
               for i in limited}
    for n, pat, limit, seed, total, total_pat in sorted(subsets, key=str):
        out.append(SUBSET_NOTE.format(n=n, total=total if total is not None else "?", limit=limit,
                                      patients=pat if pat is not None else "?",
                                      total_patients=total_pat if total_pat is not None else "?", seed=seed))
    if not limited:
        out.append(ALL_NOTE.format(what="the classical methods scored every test image, as the models and the noisy "
                                        "input did" if any(i["classical"] for i in info.values())
                                   else "each row's whole test split"))
    return out


def build_table6(summaries: Sequence, records: Sequence = (), data_source: str | None = None,
                 image_size: int | None = None, noisy: Sequence = (), per_image: Sequence = (),
                 classical: Sequence = (), classical_per_image: Sequence = (), resamples: int = 2000,
                 seed: int = 0) -> Table:
    """The study's literature comparison: its quoted rows, labelled as such, and measured rows on the same test
    images at each σ (`same_images`): no denoising (the `noisy` summaries), our models and the classical
    baselines (`classical`: results/classical/{method}/sigma{s}/summary.json, in config order), each flagged when
    it did not beat no denoising. `per_image` holds the models' and the noisy input's per_image.csv,
    `classical_per_image` the classical ones': they give the rows their images (a model restricted to the
    classical subset is recomputed from them) and their patient-level PSNR intervals (`resamples`, `seed`:
    evaluate.bootstrap_resamples, config seed)."""
    foot = Footnotes()
    rows, shown = [], []
    for lit in literature_rows().to_dict("records"):
        src = _quoted_label(lit["cited"])
        rows.append({"method": lit["method"], "source": src, "data": lit["data"], "noise": lit["noise"],
                     "psnr": lit["psnr"], "ssim": lit["ssim"], "ssim_w3": math.nan, "paper_psnr": math.nan,
                     "diff_psnr": math.nan, "paper_ssim": math.nan, "diff_ssim_w3": math.nan,
                     "n_images": math.nan, "n_patients": math.nan,
                     "device": QUOTED_DEVICE, "notes": f"study's label: {lit['paper_noise_label']} noise"})
        shown.append({"method": f"{lit['method']} ({lit['cited']})", "source": src, "data": lit["data"],
                      "noise": lit["noise"], "PSNR dB": fmt(lit["psnr"], 2), "SSIM": fmt(lit["ssim"], 4),
                      "PSNR 95 % CI (patients)": "", "SSIM (win 3)": "", "s/image": "", "paper PSNR": "",
                      "Δ PSNR": "", "paper SSIM": "", "Δ SSIM (w3)": "", "device": QUOTED_DEVICE})
    noisy_runs = collect_runs(summaries=noisy, per_image=per_image).values()
    baseline_given = {r.sigma: r for r in noisy_runs if r.summary is not None}
    all_runs = collect_runs(records, summaries, per_image, noisy=baseline_given).values()  # failed replicates out
    given = [r for r in all_runs if r.summary is not None]
    classical_runs = list(collect_runs(summaries=classical, per_image=classical_per_image).values())
    scored, noisy_scored, classical_scored, info = same_images(given, baseline_given, classical_runs)
    shown_sigmas = {r.sigma for r in given} | {r.sigma for r in classical_runs}
    info = {s: i for s, i in info.items() if s in shown_sigmas}  # a noisy input alone at a σ shows no row
    sides = [scored[id(r)] for r in given]  # each model row on the images every row at its σ shows
    runs = [side.run for side in sides]
    baseline = {s: side.run for s, side in noisy_scored.items()}
    proto = Protocol(runs, data_source, image_size)
    data = DATA_LABELS.get(data_source or "", "this pipeline's test set")
    for sigma in sorted((s for s in baseline if s in shown_sigmas), key=float):
        _noisy_row(noisy_scored[sigma], data, rows, shown, resamples, seed)
    for model in model_order(runs):
        for side in sorted((x for x in sides if x.run.model == model), key=lambda x: float(x.run.sigma)):
            run = side.run
            q = with_paper(quality(run, Footnotes()), run, proto.comparable(run))  # no LPIPS column: no LPIPS note
            src = f"measured (this pipeline, {run.setup}, n={q['n']})"
            noise = _noise_label(run)
            flagged = bool(not_denoised(run, baseline))
            notes = run_notes(run, timings=False) + ([FLAG_NOTE] if flagged else [])
            lo, hi = _patient_ci(run, resamples, seed, side.frame)
            sec, sec_cell = _seconds(run)
            rows.append({"method": model_name(model), "source": src, "data": data, "noise": noise,
                         **{k: q[k] for k in ("psnr", "ssim", "ssim_w3", "paper_psnr", "diff_psnr", "paper_ssim",
                                              "diff_ssim_w3")},
                         "psnr_ci95_patient_lo": lo, "psnr_ci95_patient_hi": hi, "s_per_image": sec,
                         **_counts(side), "device": device_label(run), "notes": join_notes(notes)})
            shown.append({"method": f"{model_name(model)} (ours)", "source": src, "data": data, "noise": noise,
                          "PSNR dB": fmt(q["psnr"], 3) + (f" ({NOT_DENOISED})" if flagged else ""),
                          "SSIM": fmt(q["ssim"], 4), "PSNR 95 % CI (patients)": patients.fmt_ci([lo, hi], 3),
                          "SSIM (win 3)": fmt(q["ssim_w3"], 4), "s/image": sec_cell,
                          "paper PSNR": fmt(q["paper_psnr"], 3),
                          "Δ PSNR": diff_cell(q, "psnr", 3), "paper SSIM": fmt(q["paper_ssim"], 4),
                          "Δ SSIM (w3)": diff_cell(q, "ssim", 4),
                          "device": device_label(run) + row_marks(foot, notes)})
    handling = set()
    for run in sorted(classical_runs, key=lambda r: (model_order(classical_runs).index(r.model), float(r.sigma))):
        _classical_row(run, classical_scored.get(id(run)), baseline, data, rows, shown, foot, resamples, seed,
                       handling)
    caption = ["Quoted rows are copied from the study's Table VI, which took them from the cited papers: BSD68 "
               "natural images with Gaussian noise σ = 15 and 25 on a 0-255 scale (the study calls them "
               "\"15%\"/\"25%\"); they were not measured here and are not comparable with chest X-rays at "
               "σ = 0.2/0.3 with mean 0.1.", "Measured rows are this pipeline's means over the test images below "
               "(n_images and n_patients per row in the CSV).",
               replicate_caption(runs), SSIM_NOTE,
               DIFF_NOTE, PAPER_NOTE]
    caption += _images_caption(info)
    if classical_runs:
        caption.append(CLASSICAL_NOTE.format(
            handling="; ".join(HANDLING.get(h, h) for h in sorted(handling)) or "(no method ran)"))
    if runs or classical_runs:
        caption.append(patients.bootstrap_note(resamples, seed) + " s/image: inference (models) or denoising "
                       "(classical) time per image on the device named in the cell.")
    title = "Table VI. Literature comparison: quoted rows (other data, other noise) and our measured rows"
    return finish_table("table6", title, rows, [("", paper_headers(shown, mark_for(proto, foot)))],
                        caption + data_caption(data_source) + (proto.caption() if runs else []), foot)


def _counts(side: Scored | None) -> dict[str, float]:
    """The CSV's n_images and n_patients of a row: the images it shows (NaN when not known)."""
    if side is None:
        return {"n_images": math.nan, "n_patients": math.nan}
    return {"n_images": math.nan if side.n_images is None else side.n_images,
            "n_patients": math.nan if side.n_patients is None else side.n_patients}


def _noisy_row(side: Scored, data: str, rows: list, shown: list, resamples: int, seed: int) -> None:
    """The noisy input itself at one σ, on the same images as the other measured rows (the flag's reference)."""
    run = side.run
    q = quality(run, Footnotes())
    noise = _noise_label(run)
    lo, hi = _patient_ci(run, resamples, seed, side.frame)
    src = f"measured (this pipeline, noisy input, n={q['n']})"
    rows.append({"method": model_name(NOISY), "source": src, "data": data, "noise": noise,
                 **{k: q[k] for k in ("psnr", "ssim", "ssim_w3")},
                 **{k: math.nan for k in ("paper_psnr", "diff_psnr", "paper_ssim", "diff_ssim_w3", "s_per_image")},
                 "psnr_ci95_patient_lo": lo, "psnr_ci95_patient_hi": hi, **_counts(side),
                 "device": eval_device_label(run), "notes": ""})
    shown.append({"method": model_name(NOISY), "source": src, "data": data, "noise": noise,
                  "PSNR dB": fmt(q["psnr"], 3), "SSIM": fmt(q["ssim"], 4),
                  "PSNR 95 % CI (patients)": patients.fmt_ci([lo, hi], 3), "SSIM (win 3)": fmt(q["ssim_w3"], 4),
                  "s/image": "", "paper PSNR": "", "Δ PSNR": "", "paper SSIM": "", "Δ SSIM (w3)": "",
                  "device": eval_device_label(run)})


def _classical_row(run: Run, side: Scored | None, baseline: dict, data: str, rows: list, shown: list,
                   foot: Footnotes, resamples: int, seed: int, handling: set) -> None:
    """One classical method at one σ: its measured numbers, or the reason it was not run (a skip is no failure)."""
    from ..classical import METHODS

    s = run.summary or {}
    label = s.get("method_label") or (METHODS[run.model].label if run.model in METHODS else run.model)
    noise = _noise_label(run)
    blank = {k: math.nan for k in ("psnr", "ssim", "ssim_w3", "paper_psnr", "diff_psnr", "paper_ssim",
                                   "diff_ssim_w3", "psnr_ci95_patient_lo", "psnr_ci95_patient_hi", "s_per_image",
                                   "n_images", "n_patients")}
    if s.get("skipped"):
        src = "not measured here: skipped"
        rows.append({"method": label, "source": src, "data": data, "noise": noise, **blank, "device": "",
                     "notes": s["skipped"]})
        shown.append({"method": f"{label} (classical)", "source": src + foot.mark(s["skipped"]), "data": data,
                      "noise": noise, "PSNR dB": "skipped", "SSIM": "", "PSNR 95 % CI (patients)": "",
                      "SSIM (win 3)": "", "s/image": "", "paper PSNR": "", "Δ PSNR": "", "paper SSIM": "",
                      "Δ SSIM (w3)": "", "device": ""})
        return
    handling.add(s.get("mean_handling"))
    q = quality(run, Footnotes())
    flagged = bool(not_denoised(run, baseline))
    notes = [FLAG_NOTE] if flagged else []
    lo, hi = _patient_ci(run, resamples, seed, side.frame if side is not None else None)
    sec, sec_cell = _seconds(run)
    par = s.get("method_parameter") or {}
    value = float(par.get("value", math.nan))
    src = (f"measured (this pipeline, classical, {par.get('name', 'parameter')}={value:.3g},"
           f" mean {s.get('mean_handling')}, n={q['n']})")
    rows.append({"method": label, "source": src, "data": data, "noise": noise,
                 **{**blank, **{k: q[k] for k in ("psnr", "ssim", "ssim_w3")}},
                 "psnr_ci95_patient_lo": lo, "psnr_ci95_patient_hi": hi, "s_per_image": sec, **_counts(side),
                 "device": eval_device_label(run), "notes": join_notes(notes)})
    shown.append({"method": f"{label} (classical)", "source": src, "data": data, "noise": noise,
                  "PSNR dB": fmt(q["psnr"], 3) + (f" ({NOT_DENOISED})" if flagged else ""),
                  "SSIM": fmt(q["ssim"], 4), "PSNR 95 % CI (patients)": patients.fmt_ci([lo, hi], 3),
                  "SSIM (win 3)": fmt(q["ssim_w3"], 4), "s/image": sec_cell, "paper PSNR": "", "Δ PSNR": "",
                  "paper SSIM": "", "Δ SSIM (w3)": "", "device": eval_device_label(run) + row_marks(foot, notes)})


def make_table6(*, out_prefix: str | Path, summaries: Sequence, records: Sequence = (), noisy: Sequence = (),
                per_image: Sequence = (), data_source: str | None = None, image_size: int | None = None,
                classical: Sequence = (), classical_per_image: Sequence = (), resamples: int = 2000,
                seed: int = 0) -> list[Path]:
    return write_table(build_table6(summaries, records, data_source, image_size, noisy, per_image, classical,
                                    classical_per_image, resamples, seed), out_prefix)
