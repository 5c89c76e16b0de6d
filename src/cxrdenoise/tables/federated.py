"""The federated table: the global model beside centralized 1-GPU training and each site trained alone.

Every row is scored by the same evaluation on the same patient-disjoint test split; intervals are the
patient-level bootstrap of `cxrdenoise.stats.patient_mean_ci`. Communication is the serialized weights the
SuperLink sent and received over all rounds; time is wall time of training (rounds for the federated row,
train + validation epochs for the others) on the device the record names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..denoised import NOT_DENOISED, did_not_denoise
from ..metric_registry import METRICS
from ..render import Footnotes, Table, write_table
from ..stats import bootstrap_seed, patient_mean_ci
from .cells import data_caption
from .rows import finish_table
from .runs import model_name

SHOWN = ("psnr", "ssim", "lpips")  # the standard SSIM here: the study has no federated numbers to compare with


def _read_eval(eval_dir: Path) -> tuple[dict, pd.DataFrame]:
    return (json.loads((eval_dir / "summary.json").read_text()),
            pd.read_csv(eval_dir / "per_image.csv", dtype={"image_id": str}))


def _cell(stat: dict, dp: int) -> str:
    mean = stat.get("mean")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    lo, hi = stat.get("ci95_patient_bootstrap") or (None, None)
    return f"{mean:.{dp}f} [{lo:.{dp}f}, {hi:.{dp}f}]" if lo is not None else f"{mean:.{dp}f}"


def _scores(eval_dir: Path, seed: int, resamples: int) -> tuple[dict, dict]:
    summary, frame = _read_eval(eval_dir)
    stats = {}
    for metric in SHOWN:
        if metric in frame and frame[metric].notna().any():
            stats[metric] = patient_mean_ci(frame, metric, resamples, bootstrap_seed(seed, "federated", metric))
        else:
            stats[metric] = {"mean": None}
    return summary, stats


def build_federated(run_dir: str | Path, global_eval: str | Path, site_evals: list[str | Path],
                    site_records: list[str | Path], noisy_eval: str | Path, centralized_eval: str | Path | None = None,
                    centralized_record: str | Path | None = None, data_source: str | None = None, seed: int = 0,
                    resamples: int = 1000) -> Table:
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "spec.json").read_text())
    rounds = json.loads((run_dir / "rounds.json").read_text())
    sessions = json.loads((run_dir / "sessions.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    counts = json.loads((run_dir / "site_counts.json").read_text())
    noisy_summary, noisy_stats = _scores(Path(noisy_eval), seed, resamples)
    noisy_psnr = noisy_stats["psnr"]["mean"]
    foot = Footnotes()
    rows, shown = [], []
    budget = f"{spec['rounds']} × {spec['local_epochs']}"
    n_train = sum(c["images"] for c in counts.values())

    def add(method: str, sites: str, images: int | None, epochs: str, stats: dict, comm: float | None,
            time_s: float | None, notes: list[str], kind: str):
        label = method
        flag = did_not_denoise(stats["psnr"]["mean"], noisy_psnr) if kind != "noisy" else False
        if flag:
            label += foot.mark(f"{NOT_DENOISED}: mean test PSNR not above the noisy input's; not a result.")
        for note in notes:
            label += foot.mark(note)
        row = {"method": method, "kind": kind, "sites": sites, "train_images": images, "epochs": epochs,
               "communication_mb": comm, "time_s": time_s, "did_not_denoise": flag}
        for metric in SHOWN:
            s = stats[metric]
            lo, hi = s.get("ci95_patient_bootstrap") or (None, None)
            row.update({metric: s.get("mean"), f"{metric}_lo": lo, f"{metric}_hi": hi})
        rows.append(row)
        cell = {"method": label, "sites": sites, "train images": "" if images is None else str(images),
                "epochs": epochs}
        for metric in SHOWN:
            info = METRICS[metric]
            cell[f"{info.heading} [95 % CI]"] = _cell(stats[metric], info.brief_decimals)
        cell["communication (MB)"] = "" if comm is None else ("0" if comm == 0 else f"{comm:.3g}")
        cell["time (s)"] = "" if time_s is None else f"{time_s:.1f}"
        shown.append(cell)

    _, gstats = _scores(Path(global_eval), seed, resamples)
    insecure = any(s.get("insecure") for s in sessions)
    notes = [f"Flower Deployment Engine: one SuperLink and {len(spec['sites'])} SuperNodes as separate processes on "
             f"127.0.0.1, {'WITHOUT TLS (federated.insecure: true)' if insecure else 'TLS with a CA made for the run'}; "
             + (f"{sessions[-1]['clientapp']}, {sessions[-1]['threads']['per_site']} thread(s) per site; "
                if sessions[-1].get("clientapp") else "")
             + f"{len(sessions)} session(s), resumed after round {sessions[-1].get('resumed_after_round', 0)} in "
             "the last."]
    if (spec.get("dp") or {}).get("enabled"):
        notes.append(f"Central DP on the updates: clipping norm {spec['dp']['clipping_norm']}, noise multiplier "
                     f"{spec['dp']['noise_multiplier']} (no privacy budget is claimed).")
    add(f"federated {spec['strategy']} (global, round {summary['best_round']})", str(len(spec["sites"])), n_train,
        f"{budget} per site", gstats, summary["bytes_total"] / 1e6, summary["wall_s_rounds"], notes, "federated")
    if centralized_eval is not None:
        _, cstats = _scores(Path(centralized_eval), seed, resamples)
        rec = json.loads(Path(centralized_record).read_text()) if centralized_record else {}
        tot = rec.get("totals") or {}
        add("centralized, 1 GPU setup (gpu1)", "all pooled", None, str(tot.get("epochs_done", "")), cstats, None, tot.get("train_plus_val_s"),
            [f"Trained by the train stage with train.* settings (device {rec.get('device', spec['device'])}); "
             "its epochs differ from the federated budget."], "centralized")
    for k, (ev, rec_path) in enumerate(zip(site_evals, site_records)):
        _, sstats = _scores(Path(ev), seed, resamples)
        rec = json.loads(Path(rec_path).read_text())
        add(f"site {k} alone", f"{k}", counts[str(k)]["images"], f"{rec['epochs']}", sstats, 0.0,
            rec["wall_s"], [], "site")
    add("no denoising (noisy input)", "", None, "", noisy_stats, None, None, [], "noisy")
    caption = [
        f"Federated denoising ({model_name(spec['model'])}, σ = {spec['sigma']:g}) on {len(spec['sites'])} "
        f"patient-disjoint sites of the train split (shares {':'.join(f'{s:g}' for s in spec['sites'])}, "
        f"partition {spec['partition']['mode']}"
        + (f" by {spec['partition']['column']}" if spec['partition']['mode'] == 'column' else "")
        + f"; site images {', '.join(str(counts[str(k)]['images']) for k in range(len(spec['sites'])))}). "
        f"FedAvg weights each site by its train images (w = Σ n_k/n · w_k); {spec['rounds']} rounds × "
        f"{spec['local_epochs']} local epochs, Adam lr {spec['lr']:g}, batch {spec['batch_size']}, on "
        f"{spec['device']}. The global model of the round with the lowest validation L1 is scored.",
        "Each site alone trains the same network with the same settings for rounds × local epochs on its own "
        "images only (no communication). All rows: the same test split "
        f"({noisy_summary.get('n_images', '?')} images of {noisy_summary.get('n_patients', '?')} patients) and "
        "evaluation; intervals: 95 % patient-level bootstrap.",
        "Communication: serialized weights sent by and returned to the SuperLink over all rounds. Time: wall "
        "time of training rounds (federated) or epochs (others), on a shared machine; a CPU time is not a GPU "
        "time.",
    ] + _round_caption(rounds) + data_caption(data_source)
    title = "Federated. FedAvg over hospital sites vs centralized and single-site training"
    return finish_table("federated", title, rows, [("", shown)], caption, foot)


def _round_caption(rounds: list[dict]) -> list[str]:
    """Where a round's wall time went (means over rounds and sites), from the runner's per-round timeline."""
    sites = [x for r in rounds for x in r["sites"] if "startup_s" in x]
    if not sites:
        return []
    mean = lambda key, rows: sum(x[key] for x in rows) / len(rows)  # noqa: E731
    return [f"A round took {mean('wall_s', rounds):.1f} s on average: per site {mean('deliver_s', sites):.1f} s until "
            f"its ClientApp process started, {mean('startup_s', sites):.1f} s of process start-up (imports, "
            f"fetching the weights), {mean('train_s', sites):.1f} s of local training, {mean('return_s', sites):.1f} s "
            f"until the server held the reply; then {mean('validate_s', rounds):.1f} s of validation."]


def make_federated(out_prefix: str | Path, **kwargs) -> list[Path]:
    return write_table(build_federated(**kwargs), out_prefix)


def round_frame(run_dir: str | Path) -> pd.DataFrame:
    """Per-round rows (val loss, bytes, wall time) for the figure and for readers."""
    rounds = json.loads((Path(run_dir) / "rounds.json").read_text())
    return pd.DataFrame([{"round": r["round"], "val_loss": r["val_loss"], "wall_s": r["wall_s"],
                          "bytes_sent": r["bytes_sent"], "bytes_received": r["bytes_received"],
                          "session": r.get("session", 1)} for r in rounds])
