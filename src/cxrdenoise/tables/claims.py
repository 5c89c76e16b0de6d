"""A verdict for every claim of the study, decided only by this pipeline's measurements.

Each row names a claim, the study's own figure for it, ours with its interval, a verdict and the reason in one
line. What is estimated, and how a row is decided (docs/statistics.md, `cxrdenoise.tables.verdicts`):

* **One estimand**: every quality claim is about the patient-level mean of a paired difference on the same test
  images (each test patient weighs the same), averaged over the training runs of each side; its interval and
  its test are computed on that same quantity (`stats.patient_level_estimate`). The image-weighted difference is
  a secondary CSV column.
* **Training runs as the unit**: the interval adds the run-to-run spread of each side (train.replicates) to the
  patient spread. With one run on a side the verdict reads "... for this trained model only (1 run)". A
  replicate that did not denoise is excluded (and counted); a side with none left is inconclusive.
* **One family**: every quality, minor-drop and federated row is one hypothesis of one Holm family (its size
  and members are in the caption); "holds" and "does not hold" are both read at the row's Holm level.
  The study's "p < 1e-13" claim is a second family: the nine U-Net vs U-Net++ differences (3 σ x 3 metrics),
  point-null tests at the patient level, Holm within the nine, image-level p beside them.
* **Margins** (config `claims`): a "better" claim whose interval lies inside ±negligible does not hold
  (equivalent); "comparable" holds inside ±negligible; "minor drop" holds when the drop is above −minor_drop on
  every metric the study reports (PSNR, SSIM (win 3), and LPIPS where it is real).
* **Speed** claims are decided on time-to-quality (train + validation seconds until the validation loss first
  reached the 1-GPU run's best, same model and replicate), a run that never reached it counted as censored (a
  bound, never dropped); fixed-epoch seconds are shown beside it. A CPU timing never decides a GPU claim.
* **privacy**: the privacy stage's verdict (`cxrdenoise.privacy.claim`): "not refuted by these attackers" ->
  holds, "refuted" -> does not hold; absent privacy results make it *not testable here*.
* **federated** (not a claim of the study, which names federated learning as its next step): FedAvg better than
  each site alone (PSNR) and within the minor-drop margins of centralized 1-GPU training, in the same family.

Fewer than `claims.min_patients` test patients make a quality row inconclusive (its coverage is not 95 %:
benchmarks/sim_coverage.py); a missing run or an n/a metric (LPIPS without its weights) makes it not testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import stats
from ..denoised import NOT_DENOISED
from ..metric_registry import METRICS, STUDY_METRICS
from ..models.cards import study_models
from ..reference import PAPER_CITATION, paper_row
from ..render import Footnotes, Table, fmt_p, write_table
from . import patients
from .cells import data_caption
from .protocol import Protocol
from .replicates import excluded_caption
from .rows import finish_table
from .records import Run, read_json
from .runs import collect_runs, is_cpu, model_name, train_times
from .scores import lpips_state, metric
from .verdicts import (FAILS, HOLDS, INCONCLUSIVE, NOT_TESTABLE, ONE_RUN, VERDICTS, Hypothesis, decide,
                       holm_family, oriented, verdict_kind)
from .work import best_val_loss, bounds_text, mean_bounds, noisy_psnr, replicates_not_denoised, ttq_saving_bounds

SIGNIFICANCE = 1e-13
STUDY_TEST_IMAGES = 2551
# a default full run's patient-level split of 15,000 images gives 2,550: "the study's size" within 2 %
STUDY_SIZE_MIN = 2500
SIGMAS = ("0.1", "0.2", "0.3")


@dataclass(frozen=True)
class ClaimSettings:
    """Config `claims` (schema defaults): the family's level, the margins per metric, the patients' floor."""

    alpha: float = 0.05
    negligible: Mapping[str, float] = field(default_factory=lambda: {"psnr": 0.25, "ssim_w3": 0.0025, "lpips": 0.01})
    minor_drop: Mapping[str, float] = field(default_factory=lambda: {"psnr": 0.5, "ssim_w3": 0.015, "lpips": 0.02})
    min_patients: int = 3

    @classmethod
    def from_config(cls, claims: Mapping[str, Any]) -> "ClaimSettings":
        return cls(alpha=float(claims["alpha"]), negligible=dict(claims["negligible"]),
                   minor_drop=dict(claims["minor_drop"]), min_patients=int(claims["min_patients"]))

    def margin_text(self, which: str) -> str:
        margins = getattr(self, which)
        return ", ".join(f"{METRICS[m].label} {margins[m]:g}{METRICS[m].unit_suffix}" for m in STUDY_METRICS)


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
    hypothesis: Hypothesis | None = None


class Evidence:
    """The runs, their replicates' per-image frames and the estimates the claims need, each computed once.

    The runs come from `collect_runs(noisy=...)`, which leaves out a replicate whose own mean PSNR did not beat
    the noisy input (`Run.excluded`), so no verdict or mean below rests on it."""

    def __init__(self, runs: dict, noisy: dict, settings: ClaimSettings | None = None) -> None:
        self.runs, self.noisy = runs, noisy
        self.settings = settings or ClaimSettings()
        self._frames: dict[tuple, list] = {}
        self._estimates: dict[tuple, dict] = {}

    def run(self, model: str, sigma: str, setup: str) -> Run | None:
        run = self.runs.get((model, sigma, setup))
        return run if run is not None and run.summary is not None else None

    def kept(self, run: Run) -> list[Run]:
        """The replicates of `run` that denoised (`collect_runs(noisy=...)` left the others out); none when no
        replicate did (all are then still in the row, which is flagged)."""
        bad = set(replicates_not_denoised(run, self.noisy)) if run.setup not in ("", None) else set()
        return [r for r in run.replicates or [run] if (r.rep or 1) not in bad]

    def frames(self, run: Run) -> list:
        """Per-image frames of the kept replicates; of all of them when none denoised (the row is flagged and
        decides nothing, but descriptive tables still show its numbers)."""
        key = (run.model, run.sigma, run.setup)
        if key not in self._frames:
            reps = self.kept(run) or run.replicates or [run]
            self._frames[key] = [patients.run_frame(r, "claims") for r in reps]
        return self._frames[key]

    def not_denoised(self, run: Run) -> str | None:
        """The reason text when no replicate of `run` denoised (PSNR not above the noisy input's), else None."""
        if self.kept(run):
            return None
        base = noisy_psnr(self.noisy, run.sigma)
        psnr = metric(run, "psnr")[0]
        return (f"{model_name(run.model)} {run.setup} at σ={run.sigma} {NOT_DENOISED} (PSNR {psnr:.3f} dB ≤ "
                f"no denoising {base:.3f} dB" + (", every replicate" if run.n_replicates > 1 else "") + ")")

    def estimate(self, a: Run, b: Run | None, m: str) -> dict[str, Any]:
        """`stats.patient_level_estimate` of a − b (or of a alone) over the kept replicates, cached."""
        key = (a.model, a.sigma, a.setup, *((b.model, b.sigma, b.setup) if b else ()), m)
        if key not in self._estimates:
            self._estimates[key] = stats.patient_level_estimate(self.frames(a), self.frames(b) if b else None, m,
                                                                a.label, b.label if b else "B")
        return self._estimates[key]


def _missing(ev: Evidence, needed: Sequence[tuple[str, str, str]]) -> str | None:
    absent = [f"{model_name(m)} {u} at σ={s}" for m, s, u in needed if ev.run(m, s, u) is None]
    return f"no evaluated run of {', '.join(absent)} in this pipeline's results" if absent else None


def _lpips_na(runs: Sequence[Run]) -> str | None:
    for run in runs:
        ok, cell, _, status = lpips_state(run)
        if not ok:
            return f"LPIPS {cell} for {run.label} ({status}; see the tables' LPIPS footnote)"
    return None


def runs_text(est: dict[str, Any]) -> str:
    ra, rb = est["n_runs_a"], est["n_runs_b"]
    return f"{ra} vs {rb} runs" if rb else f"{ra} runs"


# ------------------------------------------------------------------------------------------- quality claims

def _paper_diff(m: str, sigma: str, a: tuple[str, str], b: tuple[str, str]) -> tuple[float, str]:
    pa, pb = paper_row(sigma, *a) or {}, paper_row(sigma, *b) or {}
    info = METRICS[m]
    va, vb = pa.get(info.paper, math.nan), pb.get(info.paper, math.nan)
    dp = info.decimals
    return va - vb, f"{va - vb:+.{dp}f}{info.unit_suffix} ({va:.{dp}f} vs {vb:.{dp}f})"


def _hypothesis(ev: Evidence, row: Claim, kind: str, a: Run, b: Run, metrics: Sequence[str]) -> None:
    """Attach the row's hypothesis (or its reason for having none: did not denoise, too few patients)."""
    flagged = ev.not_denoised(a) or ev.not_denoised(b)
    if flagged:
        row.verdict, row.reason = INCONCLUSIVE, flagged
        return
    ests = {m: ev.estimate(a, b, m) for m in metrics}
    first = ests[metrics[0]]
    row.ours = "; ".join(_ours_text(e, m) for m, e in ests.items())
    row.numbers.update(ours_value=first["estimate"], ci_lo=(first["ci"] or [math.nan])[0],
                       ci_hi=(first["ci"] or [math.nan, math.nan])[1], image_weighted=first["image_weighted"],
                       n_images=first["n_images"], n_patients=first["n_patients"], runs_a=first["n_runs_a"],
                       runs_b=first["n_runs_b"], p_wilcoxon=first["p_wilcoxon"])
    if first["n_patients"] < ev.settings.min_patients:
        row.verdict = INCONCLUSIVE
        row.reason = (f"only {first['n_patients']} test patients; the interval's coverage needs at least "
                      f"{ev.settings.min_patients} (claims.min_patients)")
        return
    margins = ev.settings.minor_drop if kind == "minor_drop" else ev.settings.negligible
    row.hypothesis = Hypothesis(kind, {m: oriented(e, METRICS[m].sign) for m, e in ests.items()},
                                {m: float(margins[m]) for m in metrics},
                                key=(kind, a.model, a.sigma, a.setup, b.model, b.sigma, b.setup, *metrics))


def _ours_text(est: dict, m: str) -> str:
    info = METRICS[m]
    dp = info.decimals
    ci = patients.fmt_ci(est["ci"], dp)
    return (f"{info.label} {est['estimate']:+.{dp}f}{info.unit_suffix} {ci} (95 %, {est['n_patients']} "
            f"patients / {est['n_images']} images, {runs_text(est)})")


def _paired_claim(ev: Evidence, kind: str, claim: str, sigma: str, metrics: Sequence[str],
                  a_key: tuple[str, str, str], b_key: tuple[str, str, str]) -> Claim:
    """A claim on the paired difference a − b (oriented per metric); its hypothesis is decided after Holm."""
    a_model, _, a_setup = a_key
    b_model, _, b_setup = b_key
    names = ", ".join(METRICS[m].label for m in metrics)
    scope = (f"σ={sigma}, {names}, {model_name(a_model)} {a_setup} − {model_name(b_model)} {b_setup}, "
             "same test images")
    m0 = metrics[0]
    study_value, study_text = _paper_diff(m0, sigma, (a_model, a_setup), (b_model, b_setup))
    if len(metrics) > 1:
        study_text = "; ".join(f"{METRICS[m].label} {_paper_diff(m, sigma, (a_model, a_setup), (b_model, b_setup))[1]}"
                               for m in metrics)
    row = Claim(claim, scope, study_text, numbers={"study_value": study_value, "metric": m0, "sigma": float(sigma)})
    missing = _missing(ev, [a_key, b_key])
    if missing:
        row.reason = missing
        return row
    a, b = ev.run(*a_key), ev.run(*b_key)
    if "lpips" in metrics and _lpips_na([a, b]):
        if kind != "minor_drop":
            row.reason = _lpips_na([a, b])
            return row
        metrics = [m for m in metrics if m != "lpips"]
        row.scope = row.scope.replace(", LPIPS", "") + " (LPIPS n/a)"
    _hypothesis(ev, row, kind, a, b, metrics)
    return row


def _decide_rows(rows: Sequence[Claim], alpha: float) -> list[Hypothesis]:
    """Holm over the rows' hypotheses (each once), then every row's verdict; returns the family."""
    family: dict[tuple, Hypothesis] = {}
    for row in rows:
        if row.hypothesis is not None:
            row.hypothesis = family.setdefault(row.hypothesis.key, row.hypothesis)
    holm_family(list(family.values()), alpha)
    for row in rows:
        h = row.hypothesis
        if h is None:
            continue
        row.verdict, row.reason = decide(h)
        row.numbers.update(p_decision=h.p, p_holm=h.p_holm)
        if h.p_holm is not None:
            row.ours += f"; Holm p {fmt_p(h.p_holm)}"
    return [h for h in family.values() if math.isfinite(h.p)]


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
    """TS = (TTQ_ref − TTQ_setup) / TTQ_ref × 100 to the gpu1 run's best validation loss (same replicate), the
    mean over replicate pairs, censored runs as bounds; fixed-epoch train+val TS shown beside it."""
    kind, lo_lim, hi_lim = test
    p_ref, p_run = paper_row(sigma, model, ref) or {}, paper_row(sigma, model, setup) or {}
    study = (p_ref.get("train_s", math.nan) - p_run.get("train_s", math.nan)) / p_ref.get("train_s", math.nan) * 100
    row = Claim(claim, f"{model_name(model)}, σ={sigma}, time to the 1-GPU run's best validation loss, {setup} vs "
                f"{ref}", f"{study:.2f} % fixed-epoch ({p_run.get('train_s', math.nan):.0f} s vs "
                f"{p_ref.get('train_s', math.nan):.0f} s)",
                numbers={"study_value": study, "metric": "time_saving_pct", "sigma": float(sigma)})
    missing = _missing(ev, [(model, sigma, setup), (model, sigma, ref), (model, sigma, "gpu1")])
    if missing:
        row.reason = missing
        return row
    run, base, gpu1 = ev.run(model, sigma, setup), ev.run(model, sigma, ref), ev.run(model, sigma, "gpu1")
    t_run, t_ref = (train_times(r)[1] if r.record is not None else math.nan for r in (run, base))
    fixed = (t_ref - t_run) / t_ref * 100 if t_ref and not math.isnan(t_ref) else math.nan
    row.numbers["fixed_epoch_value"] = fixed
    blocker = _timing_blocker(ev, [run, base])
    bounds = []
    kept = {r.rep or 1: r for r in ev.kept(run)}
    refs = {r.rep or 1: r for r in ev.kept(base)}
    targets = {r.rep or 1: best_val_loss(r) for r in gpu1.replicates or [gpu1]}
    for k in sorted(set(kept) & set(refs) & set(targets)):
        bounds.append(ttq_saving_bounds(kept[k], refs[k], targets[k]))
    censored = sum(1 for lo, hi in bounds if lo != hi)
    if bounds:
        lo, hi = mean_bounds(bounds)
        row.numbers.update(ours_value=lo if lo == hi else math.nan, ci_lo=lo, ci_hi=hi)
        ttq = bounds_text(lo, hi) + " %"
        row.ours = (f"time-to-quality saving {ttq} (mean of {len(bounds)} run pair(s), {censored} censored: never "
                    f"reached the target); fixed-epoch {fixed:.2f} % ({t_run:.0f} s vs {t_ref:.0f} s train+val)")
    if blocker:
        row.verdict = INCONCLUSIVE if NOT_DENOISED in blocker else NOT_TESTABLE
        row.reason = blocker
        return row
    if not bounds:
        row.reason = "no replicate pair with records to compare"
        return row
    one = "" if len(bounds) > 1 else f" {ONE_RUN}"
    if kind == "over":
        if lo > lo_lim:
            row.verdict, row.reason = HOLDS + one, f"time-to-quality saving {lo:.2f} % > {lo_lim:g} %"
        elif hi <= lo_lim:
            row.verdict, row.reason = FAILS + one, f"time-to-quality saving at most {hi:.2f} % ≤ {lo_lim:g} %"
        else:
            row.verdict, row.reason = INCONCLUSIVE, f"censored runs leave the saving in [{lo:.2f}, {hi:.2f}] %"
    else:
        inside = lambda x: lo_lim - 0.5 <= x < hi_lim + 0.5  # noqa: E731 (whole percent)
        if lo == hi:
            ok = inside(lo)
            row.verdict = (HOLDS if ok else FAILS) + one
            row.reason = f"{lo:.2f} % {'inside' if ok else 'outside'} {lo_lim:g}–{hi_lim:g} % (whole percent)"
        elif hi < lo_lim - 0.5 or lo >= hi_lim + 0.5:
            row.verdict, row.reason = FAILS + one, f"the saving's bounds [{lo:.2f}, {hi:.2f}] % lie outside the range"
        else:
            row.verdict, row.reason = INCONCLUSIVE, f"censored runs leave the saving in [{lo:.2f}, {hi:.2f}] %"
    return row


# ------------------------------------------------------------------------------------------- the table

def federated_runs(per_image: Sequence[str | Path]) -> list[Run]:
    """The federated stage's evaluations as runs: the global model first, then each site alone, in the order
    given (<...>/global/eval/per_image.csv, <...>/site{k}/eval/per_image.csv; summary.json beside each)."""
    runs = []
    for path in map(Path, per_image):
        summary = read_json(path.parent / "summary.json")
        which = path.parent.parent.name
        run = Run(summary["model"], f"{float(summary['sigma']):g}",
                  "federated" if which == "global" else f"{which}_alone", summary=summary,
                  summary_path=path.parent / "summary.json", per_image_path=path)
        run.replicates = [run]
        runs.append(run)
    return runs


FEDERATED_STUDY = "not measured by the study (its next step)"


def _federated_claims(ev: Evidence, runs: Sequence[Run]) -> list[Claim]:
    """FedAvg vs each site alone (better, PSNR) and vs centralized gpu1 (minor drop), paired per test image."""
    if not runs:
        return []
    fed, sites = runs[0], runs[1:]
    out = []
    pairs = [(f"Federated FedAvg better than {r.setup.removesuffix('_alone').replace('site', 'site ')} trained "
              "alone", "better", r, ["psnr"]) for r in sites]
    central = ev.run(fed.model, fed.sigma, "gpu1")
    pairs.append(("Federated FedAvg within the minor-drop margins of centralized training", "minor_drop", central,
                  ["psnr", "ssim_w3"]))
    for text, kind, other, metrics in pairs:
        label = other.setup if other is not None else "gpu1"
        row = Claim(text, f"σ={fed.sigma}, {', '.join(METRICS[m].label for m in metrics)}, "
                    f"{model_name(fed.model)} federated − {label}, same test images",
                    FEDERATED_STUDY, numbers={"study_value": math.nan, "metric": metrics[0],
                                              "sigma": float(fed.sigma)})
        if other is None:
            row.reason = f"no evaluated run of {model_name(fed.model)} gpu1 at σ={fed.sigma} in this pipeline's results"
        else:
            _hypothesis(ev, row, kind, fed, other, metrics)
        out.append(row)
    return out


def build_claims(records: Sequence, summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                 data_source: str | None = None, image_size: int | None = None,
                 resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, privacy: dict | None = None,
                 federated: Sequence[str | Path] = (), settings: ClaimSettings | None = None) -> Table:
    """One row per claim of the study with its verdict; see the module docstring for the rules. `privacy` is the
    privacy stage's verdict (`cxrdenoise.tables.privacy.privacy_claim_from_files`), or None when it did not run;
    `federated` the federated stage's per_image.csv files (`federated_runs`), empty when it did not run;
    `settings` config `claims` (schema defaults when None). `resamples`/`seed` are kept for the caption of the
    tables that still bootstrap; the claims' intervals are analytic."""
    noisy = {r.sigma: r for r in collect_runs(summaries=noisy_summaries).values() if r.summary is not None}
    runs = collect_runs(records, summaries, per_image, noisy=noisy)
    ev = Evidence(runs, noisy, settings)

    def model_pair(sigma: str, a: str, b: str) -> tuple[tuple, tuple]:
        return (a, sigma, "gpu1"), (b, sigma, "gpu1")

    quality: list[Claim] = []
    for m in STUDY_METRICS:
        quality.append(_paired_claim(ev, "better", f"U-Net better than U-Net++ at σ=0.1 on {METRICS[m].label}",
                                     "0.1", [m], *model_pair("0.1", "unet", "unetpp")))
    for sigma in ("0.2", "0.3"):
        for m in ("psnr", "ssim_w3"):
            quality.append(_paired_claim(ev, "better", f"U-Net++ better than U-Net at σ={sigma} on "
                                         f"{METRICS[m].label}", sigma, [m], *model_pair(sigma, "unetpp", "unet")))
    quality.append(_paired_claim(ev, "comparable", "LPIPS comparable between U-Net and U-Net++ at σ=0.3", "0.3",
                                 ["lpips"], *model_pair("0.3", "unet", "unetpp")))
    for model in study_models():
        quality.append(_paired_claim(ev, "minor_drop", f"Only a minor accuracy drop under DDP+AMP ({model_name(model)})",
                                     "0.1", list(STUDY_METRICS), (model, "0.1", "ddp2_amp"), (model, "0.1", "gpu1")))
    federated_rows = _federated_claims(ev, federated_runs(federated))
    family = _decide_rows([*quality, *federated_rows], ev.settings.alpha)
    rows: list[Claim] = list(quality)
    timing = [("DDP+AMP saves over 60 % of the 1-GPU training time", "ddp2_amp", "gpu1", ("over", 60.0, 0.0)),
              ("DDP+AMP beats DataParallel by over 40 % (time)", "ddp2_amp", "dp2", ("over", 40.0, 0.0)),
              ("DataParallel saves 36–47 % of the 1-GPU training time", "dp2", "gpu1", ("range", 36.0, 47.0))]
    for text, setup, ref, test in timing:
        for model in study_models():
            rows.append(_timing_claim(ev, text, model, setup, ref, "0.1", test))
    significance = _significance_claim(ev)
    rows.append(significance)
    rows.append(_privacy_claim(privacy))
    rows.extend(federated_rows)
    return _table(rows, ev, family, significance, data_source, image_size)


PRIVACY_VERDICTS = {"not refuted by these attackers": HOLDS, "refuted": FAILS, "inconclusive": INCONCLUSIVE,
                    "supported": HOLDS, "not supported": FAILS}  # the last two: privacy results of before


def _privacy_claim(verdict: dict | None) -> Claim:
    """The study's privacy claim, judged by the privacy stage's measured re-identification."""
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
    if row.verdict == HOLDS:
        row.verdict = f"{HOLDS} (not refuted by these attackers)"
    row.reason = f"{verdict['evidence']} (rule: {verdict['rule']})"
    return row


def _significance_claim(ev: Evidence) -> Claim:
    """The study's "all differences significant at p < 1e-13": its own family of the nine U-Net vs U-Net++
    point-null tests (3 σ x 3 metrics) at the patient level, Holm within the nine; image-level p beside it."""
    row = Claim("All differences significant at p < 1e-13", "U-Net vs U-Net++, gpu1, every σ and metric "
                "(PSNR, SSIM (win 3), LPIPS), patient level", "p < 1e-13 (as printed, image level)",
                numbers={"study_value": SIGNIFICANCE, "metric": "p"})
    tests, skipped, flagged = [], [], None
    for sigma in SIGMAS:
        for m in STUDY_METRICS:
            a, b = ev.run("unet", sigma, "gpu1"), ev.run("unetpp", sigma, "gpu1")
            if a is None or b is None or (m == "lpips" and _lpips_na([a, b])):
                skipped.append(f"{METRICS[m].label} σ={sigma}")
                continue
            flagged = flagged or ev.not_denoised(a) or ev.not_denoised(b)
            if not flagged:
                tests.append((sigma, m, ev.estimate(a, b, m), stats.paired_test(
                    patients.mean_frame(ev.frames(a)), patients.mean_frame(ev.frames(b)), m)["t_pvalue"]))
    if flagged:
        row.verdict, row.reason = INCONCLUSIVE, flagged
        return row
    if not tests:
        row.reason = "no model comparison could be run: " + ", ".join(skipped)
        return row
    adjusted = stats.holm([t[2]["p"] for t in tests])
    worst = max(p if p is not None else 1.0 for p in adjusted)
    worst_image = max(p if p is not None else 1.0 for p in stats.holm([t[3] for t in tests]))
    n_images = min(t[2]["n_images"] for t in tests)
    n_patients = min(t[2]["n_patients"] for t in tests)
    runs = min(min(t[2]["n_runs_a"], t[2]["n_runs_b"]) for t in tests)
    row.ours = (f"largest Holm-adjusted patient-level p {fmt_p(worst)} over {len(tests)} tests ({n_patients} patients / "
                f"{n_images} images, {runs} run(s) a side); image-level: {fmt_p(worst_image)}"
                + (f"; not tested: {', '.join(skipped)}" if skipped else ""))
    row.numbers.update(ours_value=worst, p_holm=worst, p_image_holm=worst_image, n_images=n_images,
                       n_patients=n_patients, family_size=len(tests))
    one = "" if runs > 1 else f" {ONE_RUN}"
    if worst < SIGNIFICANCE and not skipped:
        row.verdict, row.reason = HOLDS + one, f"every Holm-adjusted patient-level p < {SIGNIFICANCE:g}"
    elif worst >= SIGNIFICANCE and n_images >= STUDY_SIZE_MIN:
        row.verdict = FAILS + one
        row.reason = (f"a Holm-adjusted patient-level p ≥ {SIGNIFICANCE:g} on a test set of the study's size "
                      f"({n_images:,} images; the study: {STUDY_TEST_IMAGES:,})")
    elif worst >= SIGNIFICANCE:
        row.verdict = INCONCLUSIVE
        row.reason = (f"a Holm-adjusted p ≥ {SIGNIFICANCE:g}, on {n_images} test images (the study: "
                      f"{STUDY_TEST_IMAGES:,}), too few to reach such p-values")
    else:
        row.verdict = INCONCLUSIVE
        row.reason = f"every tested p < {SIGNIFICANCE:g}, but not tested: {', '.join(skipped)}"
    return row


def _family_text(family: Sequence[Hypothesis], rows: Sequence[Claim]) -> str:
    ids = [str(i) for i, r in enumerate(rows, start=1) if r.hypothesis is not None and math.isfinite(r.hypothesis.p)]
    return (f"The claims' Holm family: {len(family)} hypotheses, one per testable quality, minor-drop and federated "
            f"row (rows {', '.join(ids) or 'none'}).")


def _table(rows: list[Claim], ev: Evidence, family: Sequence[Hypothesis], significance: Claim,
           data_source: str | None, image_size: int | None) -> Table:
    foot = Footnotes()
    data, shown = [], []
    for i, row in enumerate(rows, start=1):
        n = row.numbers
        data.append({"id": i, "claim": row.claim, "scope": row.scope, "study": row.study, "ours": row.ours,
                     "verdict": row.verdict, "verdict_kind": verdict_kind(row.verdict), "reason": row.reason,
                     **{k: n.get(k, math.nan) for k in ("study_value", "ours_value", "ci_lo", "ci_hi", "p_decision",
                                                        "p_holm", "p_image_holm", "p_wilcoxon", "image_weighted",
                                                        "fixed_epoch_value", "n_images", "n_patients", "runs_a",
                                                        "runs_b")}})
        shown.append({"#": str(i), "claim": row.claim, "scope": row.scope, "study": row.study, "ours": row.ours,
                      "verdict": row.verdict, "reason": row.reason})
    used = [r for r in ev.runs.values() if r.summary is not None] + list(ev.noisy.values())
    counts = {v: sum(verdict_kind(r.verdict) == v for r in rows) for v in VERDICTS}
    s = ev.settings
    caption = [
        f"Every claim of {PAPER_CITATION}, judged only by this pipeline's measurements. Verdicts: "
        + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".",
        f"Estimand: the {stats.PRIMARY_ESTIMAND}, of the paired difference on the same test images at the same σ; "
        f"interval and test on that same quantity ({stats.RUNS_PATIENTS_METHOD}; 95 % shown). A verdict "
        f"'{ONE_RUN}' rests on one training run of a side: run-to-run variation is not in it. The image-weighted "
        "difference is in the CSV (image_weighted).",
        f"Rules: each quality, minor-drop and federated row is one hypothesis; Holm's step-down over the family at "
        f"α = {s.alpha:g}; a row Holm rejects is read at its Holm level: \"better\" holds when the interval lies "
        f"above 0, does not hold when it lies below 0 or inside ±negligible (equivalent); \"comparable\" holds "
        f"inside ±negligible, does not hold entirely outside; a \"minor drop\" holds when every metric's interval "
        f"lies above −minor_drop, does not hold when one lies below it. Margins (config claims): negligible "
        f"{s.margin_text('negligible')}; minor drop {s.margin_text('minor_drop')}. Fewer than {s.min_patients} "
        "test patients, or a side whose every replicate did not denoise, make a row inconclusive.",
        _family_text(family, rows),
        f"The p < 1e-13 claim is its own family: {significance.numbers.get('family_size', 0)} U-Net vs U-Net++ "
        "point-null tests at the patient level, Holm within them; decided only on a test set of the study's size "
        f"(≥ {STUDY_SIZE_MIN:,} images), image-level p beside it.",
        "Speed claims: time-to-quality (train + validation seconds until the validation loss first reached the "
        "1-GPU run's best, same model and replicate), runs that never reached it counted as censored bounds; "
        "fixed-epoch seconds beside it; never decided on a CPU timing.",
        excluded_caption(list(ev.runs.values())) or "No training run was excluded for not denoising.",
        "SSIM is compared as SSIM (win 3), the window the study's code used. The study's figures are its own "
        "numbers, shown for reference; they decide no verdict.",
    ]
    caption += data_caption(data_source) + (Protocol(used, data_source, image_size).caption() if used else [])
    title = "Claims of the study: verdicts from this pipeline's measurements"
    return finish_table("claims", title, data, [("", shown)], caption, foot)


def make_claims(records: Sequence, summaries: Sequence, per_image: Sequence, noisy_summaries: Sequence,
                out_prefix: str | Path, data_source: str | None = None, image_size: int | None = None,
                resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, privacy: dict | None = None,
                federated: Sequence[str | Path] = (), settings: ClaimSettings | None = None) -> list[Path]:
    return write_table(build_claims(records, summaries, per_image, noisy_summaries, data_source, image_size,
                                    resamples, seed, privacy, federated, settings), out_prefix)


__all__ = ["build_claims", "make_claims", "Claim", "ClaimSettings", "Evidence", "VERDICTS", "HOLDS", "FAILS",
           "INCONCLUSIVE", "NOT_TESTABLE", "SIGNIFICANCE"]
