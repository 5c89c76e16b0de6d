"""A verdict for every claim of the study, decided only by this pipeline's measurements.

Each row names a claim, the study's own figure for it, ours with its patient-level interval, a verdict and the
reason in one line. The rules (also in README, "Statistics and verdicts", and docs/methods.md):

* **better** (model A better than model B at σ on a metric): the paired difference A − B on the same test
  images, oriented so that positive means "A better" (LPIPS: lower is better). *holds* when its 95 %
  patient-cluster bootstrap CI lies above 0 and the Holm-adjusted patient-level paired t p < 0.05; *does not
  hold* when the CI lies below 0 (B better); *inconclusive* otherwise.
* **comparable** (LPIPS at σ = 0.3): *holds* when the CI of the difference lies inside ±`LPIPS_MARGIN`;
  *does not hold* when it lies entirely outside that band; *inconclusive* otherwise.
* **minor drop** (DDP+AMP vs 1 GPU, σ = 0.1, PSNR): *holds* when the CI's lower end of (DDP+AMP − 1 GPU) is
  ≥ −`MINOR_DROP_DB`; *does not hold* when its upper end is < −`MINOR_DROP_DB`; *inconclusive* otherwise.
* **time saving** (fixed-epoch train+val seconds, TS = (t_ref − t) / t_ref): *holds* / *does not hold* by
  the stated threshold or range (a range is read in whole percent: 36–47 % means 35.5 ≤ TS < 47.5). *Not
  testable here* when any run involved was timed on a CPU, or a 2-GPU set-up did not use two GPUs.
* **all differences significant at p < 1e-13** (U-Net vs U-Net++, every σ and metric): *holds* when every
  Holm-adjusted p < 1e-13; *does not hold* when one is ≥ 1e-13 on a test set at least the study's size
  (2,551 images); *inconclusive* on a smaller test set (it cannot reach such p-values) or when a metric is n/a.
* A paired claim on fewer than `MIN_PATIENTS` (10) test patients is *inconclusive*: a percentile bootstrap over
  so few patients has too few distinct resamples to be trusted.

* **federated** (not a claim of the study, which names federated learning as its next step; the preprint it
  sits beside claims federated training nearly matches centralized training and beats each site alone): when
  the federated stage ran, "FedAvg better than site k alone" (PSNR, the **better** rule) per site and "FedAvg
  within 0.5 dB of centralized 1-GPU training" (PSNR, the **minor drop** rule), paired on the same test images
  and in the same Holm family.
* **privacy** (the study's fourth contribution: noise-based obfuscation is a viable privacy-preserving
  mechanism): decided by the privacy stage's rule (`cxrdenoise.privacy.claim`, on patient re-identification AUC):
  *supported* -> holds, *not supported* -> does not hold, *inconclusive* stays; absent privacy results make it
  *not testable here*.

Every claim about a run flagged "did not denoise" (`cxrdenoise.denoised.did_not_denoise`) is *inconclusive*
with that reason; a missing run or an n/a metric (LPIPS without its weights) makes it *not testable here*.
The Holm family is every paired test this table runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import stats
from ..denoised import NOT_DENOISED, did_not_denoise
from ..reference import PAPER_CITATION, paper_row
from ..render import Footnotes, Table, fmt_p, write_table
from . import patients
from .cells import data_caption
from .protocol import Protocol
from .rows import finish_table
from .runs import Run, collect_runs, is_cpu, model_name, read_json, train_times
from .scores import DECIMALS, lpips_state, metric

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "does not hold", "inconclusive", "not testable here"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE)
ALPHA = 0.05
LPIPS_MARGIN = 0.01  # LPIPS units: "comparable" means the difference's CI lies within ±0.01
MINOR_DROP_DB = 0.5  # dB PSNR: a "minor" drop is at most 0.5 dB (CI's lower end ≥ −0.5)
SIGNIFICANCE = 1e-13
STUDY_TEST_IMAGES = 2551
MIN_PATIENTS = 10  # below this a percentile bootstrap over patients has too few distinct resamples to trust
LOWER_IS_BETTER = {"lpips"}
METRIC_LABELS = {"psnr": "PSNR", "ssim_w3": "SSIM (win 3)", "lpips": "LPIPS"}
METRIC_UNITS = {"psnr": " dB", "ssim_w3": "", "lpips": ""}
PAPER_METRIC = {"psnr": "psnr", "ssim_w3": "ssim", "lpips": "lpips"}  # the study's SSIM used a 3x3 window
SIGMAS = ("0.1", "0.2", "0.3")
MODELS = ("unet", "unetpp")


@dataclass
class Claim:
    """One row: the claim, what it is about, the study's figure and ours, and the verdict with its reason."""

    claim: str
    scope: str
    study: str
    ours: str = ""
    verdict: str = NOT_TESTABLE
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)


class Evidence:
    """The runs, their per-image frames and the paired comparisons the claims need, computed once each."""

    def __init__(self, runs: dict, noisy: dict, resamples: int, seed: int) -> None:
        self.runs, self.noisy, self.resamples, self.seed = runs, noisy, resamples, seed
        self.frames: dict[tuple, Any] = {}
        self.results: list[dict[str, Any]] = []  # every paired test run, for Holm
        self._cache: dict[tuple, dict] = {}

    def run(self, model: str, sigma: str, setup: str) -> Run | None:
        run = self.runs.get((model, sigma, setup))
        return run if run is not None and run.summary is not None else None

    def frame(self, run: Run):
        key = (run.model, run.sigma, run.setup)
        if key not in self.frames:
            self.frames[key] = patients.run_frame(run, "claims")
        return self.frames[key]

    def not_denoised(self, run: Run) -> str | None:
        """The reason text when `run` did not denoise (PSNR not above the noisy input's at its σ), else None."""
        noisy = self.noisy.get(run.sigma)
        noisy_psnr = metric(noisy, "psnr")[0] if noisy is not None else None
        noisy_psnr = None if noisy_psnr is None or math.isnan(noisy_psnr) else noisy_psnr  # no baseline: no flag
        psnr = metric(run, "psnr")[0]
        if did_not_denoise(None if math.isnan(psnr) else psnr, noisy_psnr):
            vs = f" ≤ no denoising {noisy_psnr:.3f} dB" if noisy_psnr is not None else ""
            return f"{model_name(run.model)} {run.setup} at σ={run.sigma} {NOT_DENOISED} (PSNR {psnr:.3f} dB{vs})"
        return None

    def compare(self, a: Run, b: Run, m: str) -> dict[str, Any]:
        key = (a.model, a.sigma, a.setup, b.model, b.sigma, b.setup, m)
        if key not in self._cache:
            res = patients.compare(self.frame(a), self.frame(b), a, b, m, self.resamples, self.seed)
            self._cache[key] = res
            self.results.append(res)
        return self._cache[key]


def _missing(ev: Evidence, needed: Sequence[tuple[str, str, str]]) -> str | None:
    absent = [f"{model_name(m)} {u} at σ={s}" for m, s, u in needed if ev.run(m, s, u) is None]
    return f"no evaluated run of {', '.join(absent)} in this pipeline's results" if absent else None


def _lpips_na(runs: Sequence[Run]) -> str | None:
    for run in runs:
        ok, cell, _, status = lpips_state(run)
        if not ok:
            return f"LPIPS {cell} for {run.label} ({status}; see the tables' LPIPS footnote)"
    return None


# ------------------------------------------------------------------------------------------- quality claims

def _paper_diff(m: str, sigma: str, a: tuple[str, str], b: tuple[str, str]) -> tuple[float, str]:
    pa, pb = paper_row(sigma, *a) or {}, paper_row(sigma, *b) or {}
    key = PAPER_METRIC[m]
    va, vb = pa.get(key, math.nan), pb.get(key, math.nan)
    dp = DECIMALS[m]
    return va - vb, f"{va - vb:+.{dp}f}{METRIC_UNITS[m]} ({va:.{dp}f} vs {vb:.{dp}f})"


def _paired_claim(ev: Evidence, kind: str, claim: str, sigma: str, m: str, a_key: tuple[str, str, str],
                  b_key: tuple[str, str, str]) -> tuple[Claim, dict | None]:
    """A claim on a paired difference a − b: returns the row (verdict pending Holm) and the test result."""
    a_model, _, a_setup = a_key
    b_model, _, b_setup = b_key
    scope = (f"σ={sigma}, {METRIC_LABELS[m]}, {model_name(a_model)} {a_setup} − {model_name(b_model)} {b_setup}, "
             "same test images")
    study_value, study_text = _paper_diff(m, sigma, (a_model, a_setup), (b_model, b_setup))
    row = Claim(claim, scope, study_text, numbers={"study_value": study_value, "metric": m, "sigma": float(sigma)})
    missing = _missing(ev, [a_key, b_key])
    if missing:
        row.reason = missing
        return row, None
    a, b = ev.run(*a_key), ev.run(*b_key)
    if m == "lpips" and _lpips_na([a, b]):
        row.reason = _lpips_na([a, b])
        return row, None
    flagged = ev.not_denoised(a) or ev.not_denoised(b)
    res = ev.compare(a, b, m)
    row.numbers.update(kind=kind, flagged=flagged)
    return row, res


def _ours_text(res: dict, m: str) -> str:
    dp = DECIMALS[m]
    ci = patients.fmt_ci(res["ci95_patient_bootstrap"], dp)
    return (f"{res['mean_diff']:+.{dp}f}{METRIC_UNITS[m]} {ci} (95 % CI, {res['n_patients']} patients / "
            f"{res['n_images']} images), p Holm {fmt_p(res.get('p_t_holm'))}")


def _decide_paired(row: Claim, res: dict) -> None:
    """Apply the rule of the row's kind to a Holm-adjusted paired result (module docstring)."""
    m, kind = row.numbers["metric"], row.numbers["kind"]
    lo_hi = res["ci95_patient_bootstrap"]
    row.ours = _ours_text(res, m)
    row.numbers.update(ours_value=res["mean_diff"], ci_lo=lo_hi[0] if lo_hi else math.nan,
                       ci_hi=lo_hi[1] if lo_hi else math.nan, p_holm=res.get("p_t_holm"),
                       p_wilcoxon_holm=res.get("p_wilcoxon_holm"), n_images=res["n_images"],
                       n_patients=res["n_patients"])
    if row.numbers.get("flagged"):
        row.verdict, row.reason = INCONCLUSIVE, row.numbers["flagged"]
        return
    if not lo_hi or res["n_patients"] < MIN_PATIENTS:
        row.verdict = INCONCLUSIVE
        row.reason = (f"only {res['n_patients']} test patients; a patient bootstrap interval needs at least "
                      f"{MIN_PATIENTS}")
        return
    lo, hi = lo_hi
    p = res.get("p_t_holm")
    if kind == "better":
        sign = -1.0 if m in LOWER_IS_BETTER else 1.0
        lo, hi = sorted((sign * lo, sign * hi))
        direction = "lower" if sign < 0 else "higher"
        if lo > 0 and p is not None and p < ALPHA:
            row.verdict, row.reason = HOLDS, f"CI {direction} than 0 in the claimed direction, Holm p < {ALPHA}"
        elif hi < 0:
            row.verdict, row.reason = FAILS, "CI excludes 0 in the opposite direction: the other model is better"
        else:
            row.verdict = INCONCLUSIVE
            row.reason = ("CI includes 0" if lo <= 0 else f"Holm-adjusted p {fmt_p(p)} ≥ {ALPHA}")
    elif kind == "comparable":
        if -LPIPS_MARGIN <= lo and hi <= LPIPS_MARGIN:
            row.verdict, row.reason = HOLDS, f"CI within the equivalence margin ±{LPIPS_MARGIN}"
        elif lo > LPIPS_MARGIN or hi < -LPIPS_MARGIN:
            row.verdict, row.reason = FAILS, f"CI entirely outside the equivalence margin ±{LPIPS_MARGIN}"
        else:
            row.verdict, row.reason = INCONCLUSIVE, f"CI crosses the equivalence margin ±{LPIPS_MARGIN}"
    elif kind == "minor_drop":
        if lo >= -MINOR_DROP_DB:
            row.verdict, row.reason = HOLDS, f"CI's lower end {lo:+.3f} dB ≥ −{MINOR_DROP_DB} dB"
        elif hi < -MINOR_DROP_DB:
            row.verdict, row.reason = FAILS, f"whole CI below −{MINOR_DROP_DB} dB: a larger drop"
        else:
            row.verdict, row.reason = INCONCLUSIVE, f"CI crosses −{MINOR_DROP_DB} dB"


# ------------------------------------------------------------------------------------------- timing claims

def _timing_blocker(ev: Evidence, runs: Sequence[Run]) -> str | None:
    for run in runs:
        if run.record is None:
            return f"no training record for {run.label}"
        if is_cpu(run):
            return f"{run.label} was timed on a CPU; the claim is about GPU training time"
        rec = run.record
        one_gpu = rec.get("gpus_used") is not None and int(rec["gpus_used"]) < 2
        if run.setup.startswith("dp") and rec.get("data_parallel_effective") is False:
            one_gpu = True
        if run.setup != "gpu1" and one_gpu:
            return f"{run.label} did not train on two GPUs"
    for run in runs:
        flagged = ev.not_denoised(run)
        if flagged:
            return flagged
    return None


def _timing_claim(ev: Evidence, claim: str, model: str, setup: str, ref: str, sigma: str,
                  test: tuple[str, float, float]) -> Claim:
    """TS = (t_ref − t_setup) / t_ref × 100 from fixed-epoch train+val seconds, against `test`."""
    kind, lo_lim, hi_lim = test
    p_ref, p_run = paper_row(sigma, model, ref) or {}, paper_row(sigma, model, setup) or {}
    study = (p_ref.get("train_s", math.nan) - p_run.get("train_s", math.nan)) / p_ref.get("train_s", math.nan) * 100
    row = Claim(claim, f"{model_name(model)}, σ={sigma}, train time of {setup} vs {ref}",
                f"{study:.2f} % ({p_run.get('train_s', math.nan):.0f} s vs {p_ref.get('train_s', math.nan):.0f} s)",
                numbers={"study_value": study, "metric": "time_saving_pct", "sigma": float(sigma)})
    missing = _missing(ev, [(model, sigma, setup), (model, sigma, ref)])
    if missing:
        row.reason = missing
        return row
    run, base = ev.run(model, sigma, setup), ev.run(model, sigma, ref)
    blocker = _timing_blocker(ev, [run, base])
    t_run, t_ref = (train_times(r)[1] if r.record is not None else math.nan for r in (run, base))
    ours = (t_ref - t_run) / t_ref * 100 if t_ref and not math.isnan(t_ref) else math.nan
    row.numbers["ours_value"] = ours
    if not math.isnan(ours):
        row.ours = f"{ours:.2f} % ({t_run:.0f} s vs {t_ref:.0f} s train+val; one run each, no interval)"
    if blocker:
        row.verdict = INCONCLUSIVE if NOT_DENOISED in blocker else NOT_TESTABLE
        row.reason = blocker
        return row
    if kind == "over":
        ok = ours > lo_lim
        row.verdict, row.reason = (HOLDS if ok else FAILS), f"{ours:.2f} % {'>' if ok else '≤'} {lo_lim:g} %"
    else:
        ok = lo_lim - 0.5 <= ours < hi_lim + 0.5
        row.verdict = HOLDS if ok else FAILS
        row.reason = f"{ours:.2f} % {'inside' if ok else 'outside'} {lo_lim:g}–{hi_lim:g} % (whole percent)"
    return row


# ------------------------------------------------------------------------------------------- the table

def federated_runs(per_image: Sequence[str | Path]) -> list[Run]:
    """The federated stage's evaluations as runs: the global model first, then each site alone, in the order
    given (<...>/global/eval/per_image.csv, <...>/site{k}/eval/per_image.csv; summary.json beside each)."""
    runs = []
    for path in map(Path, per_image):
        summary = read_json(path.parent / "summary.json")
        which = path.parent.parent.name
        runs.append(Run(summary["model"], f"{float(summary['sigma']):g}",
                        "federated" if which == "global" else f"{which}_alone", summary=summary,
                        summary_path=path.parent / "summary.json", per_image_path=path))
    return runs


FEDERATED_STUDY = "not measured by the study (its next step)"


def _federated_claims(ev: Evidence, runs: Sequence[Run]) -> list[tuple[Claim, dict | None]]:
    """FedAvg vs each site alone (better) and vs centralized gpu1 (minor drop), PSNR, paired per test image."""
    if not runs:
        return []
    fed, sites = runs[0], runs[1:]
    out = []
    pairs = [(f"Federated FedAvg better than {r.setup.removesuffix('_alone').replace('site', 'site ')} trained "
              "alone", "better", r) for r in sites]
    central = ev.run(fed.model, fed.sigma, "gpu1")
    pairs.append(("Federated FedAvg within 0.5 dB of centralized training", "minor_drop", central))
    for text, kind, other in pairs:
        label = other.setup if other is not None else "gpu1"
        row = Claim(text, f"σ={fed.sigma}, PSNR, {model_name(fed.model)} federated − {label}, same test images",
                    FEDERATED_STUDY, numbers={"study_value": math.nan, "metric": "psnr", "sigma": float(fed.sigma)})
        if other is None:
            row.reason = f"no evaluated run of {model_name(fed.model)} gpu1 at σ={fed.sigma} in this pipeline's results"
            out.append((row, None))
            continue
        row.numbers.update(kind=kind, flagged=ev.not_denoised(fed) or ev.not_denoised(other))
        out.append((row, ev.compare(fed, other, "psnr")))
    return out


def build_claims(records: Sequence, summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                 data_source: str | None = None, image_size: int | None = None,
                 resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, privacy: dict | None = None,
                 federated: Sequence[str | Path] = ()) -> Table:
    """One row per claim of the study with its verdict; see the module docstring for the rules. `privacy` is the
    privacy stage's verdict (`cxrdenoise.tables.privacy.privacy_claim_from_files`), or None when it did not run;
    `federated` the federated stage's per_image.csv files (`federated_runs`), empty when it did not run."""
    runs = collect_runs(records, summaries, per_image)
    noisy = {r.sigma: r for r in collect_runs(summaries=noisy_summaries).values() if r.summary is not None}
    ev = Evidence(runs, noisy, resamples, seed)
    paired: list[tuple[Claim, dict | None]] = []

    def model_pair(sigma: str, a: str, b: str) -> tuple[tuple, tuple]:
        return (a, sigma, "gpu1"), (b, sigma, "gpu1")

    for m in ("psnr", "ssim_w3", "lpips"):
        paired.append(_paired_claim(ev, "better", f"U-Net better than U-Net++ at σ=0.1 on {METRIC_LABELS[m]}",
                                    "0.1", m, *model_pair("0.1", "unet", "unetpp")))
    for sigma in ("0.2", "0.3"):
        for m in ("psnr", "ssim_w3"):
            paired.append(_paired_claim(ev, "better", f"U-Net++ better than U-Net at σ={sigma} on "
                                        f"{METRIC_LABELS[m]}", sigma, m, *model_pair(sigma, "unetpp", "unet")))
    paired.append(_paired_claim(ev, "comparable", "LPIPS comparable between U-Net and U-Net++ at σ=0.3", "0.3",
                                "lpips", *model_pair("0.3", "unet", "unetpp")))
    for model in MODELS:
        paired.append(_paired_claim(ev, "minor_drop", f"Only a minor accuracy drop under DDP+AMP ({model_name(model)})",
                                    "0.1", "psnr", (model, "0.1", "ddp2_amp"), (model, "0.1", "gpu1")))
    federated_rows = _federated_claims(ev, federated_runs(federated))  # in the Holm family, shown last
    # the significance claim covers every model difference of the study's Table III: run them all for Holm
    significance_tests = []
    for sigma in SIGMAS:
        for m in ("psnr", "ssim_w3", "lpips"):
            a, b = ev.run("unet", sigma, "gpu1"), ev.run("unetpp", sigma, "gpu1")
            if a is None or b is None or (m == "lpips" and _lpips_na([a, b])):
                significance_tests.append((sigma, m, None))
            else:
                significance_tests.append((sigma, m, ev.compare(a, b, m)))
    patients.add_holm(ev.results)
    rows: list[Claim] = []
    for row, res in paired:
        if res is not None:
            _decide_paired(row, res)
        rows.append(row)
    timing = [("DDP+AMP saves over 60 % of the 1-GPU training time", "ddp2_amp", "gpu1", ("over", 60.0, 0.0)),
              ("DDP+AMP beats DataParallel by over 40 % (time)", "ddp2_amp", "dp2", ("over", 40.0, 0.0)),
              ("DataParallel saves 36–47 % of the 1-GPU training time", "dp2", "gpu1", ("range", 36.0, 47.0))]
    for text, setup, ref, test in timing:
        for model in MODELS:
            rows.append(_timing_claim(ev, text, model, setup, ref, "0.1", test))
    rows.append(_significance_claim(ev, significance_tests))
    rows.append(_privacy_claim(privacy))
    for row, res in federated_rows:
        if res is not None:
            _decide_paired(row, res)
        rows.append(row)
    return _table(rows, ev, data_source, image_size, resamples, seed)


PRIVACY_VERDICTS = {"supported": HOLDS, "not supported": FAILS, "inconclusive": INCONCLUSIVE}


def _privacy_claim(verdict: dict | None) -> Claim:
    """The study's privacy claim, judged by the privacy stage's measured re-identification (issue 14)."""
    row = Claim("Noise-based obfuscation is a viable privacy-preserving mechanism",
                "patient re-identification (verification AUC) from obfuscated and denoised test images",
                "not measured by the study")
    if verdict is None:
        row.reason = "the privacy stage did not run (results/privacy/*/metrics.csv not given)"
        return row
    worst = [w for w in (verdict.get("worst_obfuscated"), verdict.get("worst_denoised")) if w]
    if worst:
        top = max(worst, key=lambda w: w["auc"])
        row.ours = (f"highest AUC {top['auc']:.3f} [{top['auc_lo']:.3f}, {top['auc_hi']:.3f}] "
                    f"({top['attacker']}, {'denoised by ' + top['model'] if top.get('model') else 'obfuscated'}"
                    + (f", σ {top['sigma']:g}" if top.get("sigma") is not None else "") + ")")
        row.numbers.update(ours_value=top["auc"], ci_lo=top["auc_lo"], ci_hi=top["auc_hi"])
    row.verdict = PRIVACY_VERDICTS[verdict["verdict"]]
    row.reason = f"{verdict['evidence']} (rule: {verdict['rule']})"
    return row


def _significance_claim(ev: Evidence, tests: list[tuple[str, str, dict | None]]) -> Claim:
    row = Claim("All differences significant at p < 1e-13", "U-Net vs U-Net++, gpu1, every σ and metric "
                "(PSNR, SSIM (win 3), LPIPS)", "p < 1e-13 (as printed)",
                numbers={"study_value": SIGNIFICANCE, "metric": "p"})
    done = [(s, m, r) for s, m, r in tests if r is not None]
    skipped = [f"{METRIC_LABELS[m]} σ={s}" for s, m, r in tests if r is None]
    if not done:
        row.reason = "no model comparison could be run: " + ", ".join(skipped)
        return row
    flagged = next((f for s in SIGMAS for mdl in MODELS if (r := ev.run(mdl, s, "gpu1")) is not None
                    and (f := ev.not_denoised(r))), None)
    worst = max((r.get("p_t_holm") if r.get("p_t_holm") is not None else 1.0) for _, _, r in done)
    n_images = min(r["n_images"] for _, _, r in done)
    row.ours = (f"largest Holm-adjusted patient-level p {fmt_p(worst)} over {len(done)} tests "
                f"({n_images} images)" + (f"; not tested: {', '.join(skipped)}" if skipped else ""))
    row.numbers.update(ours_value=worst, p_holm=worst, n_images=n_images,
                       n_patients=min(r["n_patients"] for _, _, r in done))
    if flagged:
        row.verdict, row.reason = INCONCLUSIVE, flagged
    elif worst < SIGNIFICANCE and not skipped:
        row.verdict, row.reason = HOLDS, f"every Holm-adjusted p < {SIGNIFICANCE:g}"
    elif worst >= SIGNIFICANCE and n_images >= STUDY_TEST_IMAGES:
        row.verdict, row.reason = FAILS, f"a Holm-adjusted p ≥ {SIGNIFICANCE:g} on a test set of the study's size"
    elif worst >= SIGNIFICANCE:
        row.verdict = INCONCLUSIVE
        row.reason = (f"a Holm-adjusted p ≥ {SIGNIFICANCE:g}, on {n_images} test images (the study: "
                      f"{STUDY_TEST_IMAGES:,}), too few to reach such p-values")
    else:
        row.verdict = INCONCLUSIVE
        row.reason = f"every tested p < {SIGNIFICANCE:g}, but not tested: {', '.join(skipped)}"
    return row


def _table(rows: list[Claim], ev: Evidence, data_source: str | None, image_size: int | None, resamples: int,
           seed: int) -> Table:
    foot = Footnotes()
    data, shown = [], []
    for i, row in enumerate(rows, start=1):
        n = row.numbers
        data.append({"id": i, "claim": row.claim, "scope": row.scope, "study": row.study, "ours": row.ours,
                     "verdict": row.verdict, "reason": row.reason,
                     **{k: n.get(k, math.nan) for k in ("study_value", "ours_value", "ci_lo", "ci_hi", "p_holm",
                                                        "p_wilcoxon_holm", "n_images", "n_patients")}})
        shown.append({"#": str(i), "claim": row.claim, "scope": row.scope, "study": row.study, "ours": row.ours,
                      "verdict": row.verdict, "reason": row.reason})
    used = [r for r in ev.runs.values() if r.summary is not None] + list(ev.noisy.values())
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    caption = [
        f"Every claim of {PAPER_CITATION}, judged only by this pipeline's measurements. Verdicts: "
        + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".",
        f"Rules: \"better\" holds when the 95 % patient-cluster bootstrap CI of the paired difference (same test "
        f"images, same σ) excludes 0 in the claimed direction and the Holm-adjusted patient-level paired t p < "
        f"{ALPHA}, does not hold when the CI excludes 0 in the other direction, else inconclusive; \"comparable\" "
        f"needs the CI within ±{LPIPS_MARGIN} LPIPS; a \"minor drop\" needs the CI's lower end ≥ −{MINOR_DROP_DB} "
        f"dB PSNR; time savings compare fixed-epoch train+val seconds with the stated threshold and are not "
        f"testable on a CPU; the p < 1e-13 claim is inconclusive on a test set smaller than the study's "
        f"{STUDY_TEST_IMAGES:,} images. A claim about a net that did not denoise, or resting on fewer than "
        f"{MIN_PATIENTS} test patients, is inconclusive.",
        patients.bootstrap_note(resamples, seed),
        patients.paired_note(len(ev.results)),
        "SSIM is compared as SSIM (win 3), the window the study's code used. The study's figures are its own "
        "numbers, shown for reference; they decide no verdict.",
    ]
    caption += data_caption(data_source) + (Protocol(used, data_source, image_size).caption() if used else [])
    title = "Claims of the study: verdicts from this pipeline's measurements"
    return finish_table("claims", title, data, [("", shown)], caption, foot)


def make_claims(records: Sequence, summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                out_prefix: str | Path, data_source: str | None = None, image_size: int | None = None,
                resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, privacy: dict | None = None,
                federated: Sequence[str | Path] = ()) -> list[Path]:
    return write_table(build_claims(records, summaries, per_image, noisy_summaries, data_source, image_size,
                                    resamples, seed, privacy, federated), out_prefix)


__all__ = ["build_claims", "make_claims", "Claim", "VERDICTS", "HOLDS", "FAILS", "INCONCLUSIVE", "NOT_TESTABLE",
           "LPIPS_MARGIN", "MINOR_DROP_DB", "SIGNIFICANCE", "ALPHA"]
