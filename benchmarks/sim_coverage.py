"""Coverage of the claims' interval, simulated with a known truth (docs/statistics.md).

Two "models" A and B are each trained R times and scored on the same P test patients with a skewed number of
images per patient (one patient holds a large share, as on real NIH test sets). A score is

    y[side, run, patient, image] = mu_side + u[side, run] + v[patient] + w[side, patient] + e[image],

with a run effect u (the run-to-run spread of a training procedure), a patient effect v shared by both models,
a patient-by-model effect w (heavy-tailed: Student t with 3 df) and image noise e. The truth is the difference
mu_A - mu_B of the training procedures on the patient population: the quantity a claim is about. For each
setting the script draws many data sets and counts how often each interval covers the truth:

* ``runs + patients``: `cxrdenoise.stats.patient_level_estimate` with all runs (the claims' interval);
* ``patients only``: the same estimand from run 1 of each side (what a one-run verdict rests on);
* ``image cluster bootstrap``: the previous release's interval (image-weighted mean, patients resampled, run 1).

It prints a coverage table for the demo's and the study's patient counts at 3 runs, and the coverage of the
claims' interval against the number of test patients, from which `claims.min_patients` is read (the smallest P
from which coverage stays within 1.5 points of 95 % in both scenarios). Usage: `python benchmarks/sim_coverage.py [--sims N]`; writes
benchmarks/results/sim_coverage.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxrdenoise import stats

RESULTS = Path(__file__).resolve().parent / "results" / "sim_coverage.json"
SCENARIO = {"sd_run": 0.3, "sd_patient": 2.0, "sd_interaction": 0.4, "sd_image": 0.6, "truth": 0.2}
# the patient term dominates: little run-to-run spread, a large heavy-tailed patient-by-model effect
PATIENT_HEAVY = {"sd_run": 0.05, "sd_patient": 2.0, "sd_interaction": 1.0, "sd_image": 0.6, "truth": 0.2}


def images_per_patient(p: int, rng: np.random.Generator) -> np.ndarray:
    """1-4 images for most patients, and one patient holding about a quarter of the images."""
    counts = rng.integers(1, 5, size=p)
    counts[0] = max(1, int(round(counts[1:].sum() / 3)))
    return counts


def draw(p: int, runs: int, rng: np.random.Generator, sc: dict) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    counts = images_per_patient(p, rng)
    patient = np.repeat(np.arange(p), counts)
    ids = np.arange(patient.size).astype(str)
    v = rng.normal(0.0, sc["sd_patient"], p)
    frames: dict[str, list[pd.DataFrame]] = {"a": [], "b": []}
    for side, mu in (("a", sc["truth"]), ("b", 0.0)):
        w = sc["sd_interaction"] * rng.standard_t(3, p) / np.sqrt(3.0)
        for _ in range(runs):
            u = rng.normal(0.0, sc["sd_run"])
            y = mu + u + v[patient] + w[patient] + rng.normal(0.0, sc["sd_image"], patient.size)
            frames[side].append(pd.DataFrame({"image_id": ids, "patient_id": patient.astype(str), "psnr": y}))
    return frames["a"], frames["b"]


def coverage(p: int, runs: int, sims: int, seed: int, sc: dict = SCENARIO, bootstrap: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    hits = {"runs + patients": 0, "patients only": 0, "image cluster bootstrap": 0}
    widths = {k: [] for k in hits}
    for i in range(sims):
        fa, fb = draw(p, runs, rng, sc)
        both = stats.patient_level_estimate(fa, fb, "psnr")
        one = stats.patient_level_estimate(fa[:1], fb[:1], "psnr")
        for key, est in (("runs + patients", both), ("patients only", one)):
            lo, hi = est["ci"]
            hits[key] += lo <= sc["truth"] <= hi
            widths[key].append(hi - lo)
        if bootstrap:
            boot = stats.paired_patient_test(fa[0], fb[0], "psnr", resamples=400, seed=i)["ci95_patient_bootstrap"]
            hits["image cluster bootstrap"] += boot[0] <= sc["truth"] <= boot[1]
            widths["image cluster bootstrap"].append(boot[1] - boot[0])
    return {k: {"coverage": hits[k] / sims, "median_width": float(np.median(widths[k])) if widths[k] else None}
            for k in hits if widths[k]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000, help="simulated data sets per setting")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    t0 = time.time()
    out: dict = {"scenario": SCENARIO, "sims": args.sims, "runs": 3, "settings": {}, "by_patients": {}}
    print(f"scenario {SCENARIO}; {args.sims} simulated data sets per setting; nominal 95 %")
    print(f"{'setting':<34} {'interval':<26} {'coverage':>9} {'median width':>13}")
    for name, p in (("demo (20 test patients)", 20), ("study-size (1,200 test patients)", 1200)):
        res = coverage(p, 3, args.sims if p < 500 else max(200, args.sims // 5), args.seed, bootstrap=p < 500)
        out["settings"][name] = res
        for k, v in res.items():
            print(f"{name:<34} {k:<26} {v['coverage']:>9.3f} {v['median_width']:>13.3f}")
    ps = (3, 4, 5, 6, 8, 10, 15, 20)
    for name, sc in (("runs dominate", SCENARIO), ("patients dominate, heavy tails", PATIENT_HEAVY)):
        print(f"\ncoverage of the claims' interval (3 runs a side) against test patients, {name}:")
        out["by_patients"][name] = {}
        for p in ps:
            res = coverage(p, 3, args.sims, args.seed + p, sc, bootstrap=False)["runs + patients"]
            out["by_patients"][name][p] = res
            print(f"  P = {p:>3}: coverage {res['coverage']:.3f}, median width {res['median_width']:.2f} dB")
    good = [p for p in ps if all(out["by_patients"][n][q]["coverage"] >= 0.935
                                 for n in out["by_patients"] for q in ps if q >= p)]
    first = good[0] if good else None
    out["min_patients"] = first
    print(f"\nsmallest P from which coverage stays >= 93.5 % in both scenarios: {first}")
    out["seconds"] = round(time.time() - t0, 1)
    print(f"\nsmallest P from which coverage stays >= 93.5 %: {first}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
