"""The federated stage (workflow/rules/federated.smk); see cxrdenoise.federated.

  sites:    partition the train split into patient-disjoint sites -> sites.csv, site_counts.json
  run:      SuperLink + one SuperNode per site (Flower Deployment Engine, TLS) -> rounds/, rounds.json, best.pt
  alone:    one site trained alone with the same settings -> best.pt, record.json
  evaluate: score a best.pt on the test split with the project's evaluation
  table:    results/tables/federated.{csv,md,tex,html}
  figure:   results/figures/federated.{png,pdf} (global validation loss per round)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrdenoise.commands import add_data_fact_args
from cxrdenoise.errors import CxrError, cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise federated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    spec = argparse.ArgumentParser(add_help=False)
    spec.add_argument("--data-dir", required=True)
    spec.add_argument("--sigma", type=float, required=True)
    spec.add_argument("--seed", type=int, required=True)
    spec.add_argument("--sites", type=float, nargs="+", required=True)
    spec.add_argument("--partition-mode", required=True, help="federated.partition.mode")
    spec.add_argument("--partition-column", default="")
    spec.add_argument("--out-dir", required=True)
    train = argparse.ArgumentParser(add_help=False)
    train.add_argument("--sites-csv", required=True)
    train.add_argument("--model", required=True)
    train.add_argument("--model-kwargs", default="{}", help="JSON")
    train.add_argument("--rounds", type=int, required=True)
    train.add_argument("--local-epochs", type=int, required=True)
    train.add_argument("--lr", type=float, required=True)
    train.add_argument("--batch-size", type=int, required=True)
    train.add_argument("--strategy", required=True, help="federated.strategy")
    train.add_argument("--mu", type=float, required=True, help="federated.mu (FedProx)")
    train.add_argument("--dp", default="{}", help="JSON: enabled, clipping_norm, noise_multiplier")
    train.add_argument("--device", required=True, choices=("cpu", "cuda"))
    train.add_argument("--insecure", action="store_true")
    train.add_argument("--timeout-s", type=int, required=True, help="federated.timeout_s")
    sub.add_parser("sites", parents=[spec])
    sub.add_parser("run", parents=[spec, train])
    a = sub.add_parser("alone", parents=[spec, train])
    a.add_argument("--site", type=int, required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data-dir", required=True)
    e.add_argument("--out-dir", required=True)
    e.add_argument("--device", required=True, choices=("cpu", "cuda"))
    e.add_argument("--batch-size", type=int, required=True, help="evaluate.batch_size")
    e.add_argument("--figure-images", type=int, default=0)
    e.add_argument("--no-lpips", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--run-dir", required=True)
    t.add_argument("--global-eval", required=True)
    t.add_argument("--site-evals", nargs="+", required=True)
    t.add_argument("--site-records", nargs="+", required=True)
    t.add_argument("--noisy-eval", required=True)
    t.add_argument("--centralized-eval", default="")
    t.add_argument("--centralized-record", default="")
    t.add_argument("--data-source", default=None)
    t.add_argument("--seed", type=int, required=True, help="config seed")
    add_data_fact_args(t)
    t.add_argument("--out-prefix", required=True)
    f = sub.add_parser("figure")
    f.add_argument("--run-dir", required=True)
    f.add_argument("--data-source", default=None)
    f.add_argument("--out-prefix", required=True)
    return parser.parse_args(argv)


# What the workflow's federated_run rule declares, copied from the run folder (<out>/run) into <out>.
RUN_OUTPUTS = ("rounds.json", "sessions.json", "spec.json", "site_counts.json", "summary.json")


def _spec(a: argparse.Namespace, run_dir: str) -> dict:
    from cxrdenoise.provenance import CONFIG_HASH_ENV
    import os

    return {"run_dir": run_dir, "data_dir": a.data_dir, "sigma": a.sigma, "seed": a.seed, "sites": a.sites,
            "partition": {"mode": a.partition_mode, "column": a.partition_column or None},
            "sites_csv": getattr(a, "sites_csv", None), "model": a.model, "model_kwargs": json.loads(a.model_kwargs),
            "rounds": a.rounds, "local_epochs": a.local_epochs, "lr": a.lr, "batch_size": a.batch_size,
            "strategy": a.strategy, "mu": a.mu, "dp": json.loads(a.dp), "device": a.device,
            "insecure": a.insecure, "config_hash": os.environ.get(CONFIG_HASH_ENV, "")}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.command == "sites":
        from cxrdenoise.federated.runner import write_sites

        spec = {"run_dir": a.out_dir, "data_dir": a.data_dir, "sigma": a.sigma, "seed": a.seed, "sites": a.sites,
                "partition": {"mode": a.partition_mode, "column": a.partition_column or None}}
        Path(a.out_dir).mkdir(parents=True, exist_ok=True)
        frame = write_sites(spec)
        print(frame.groupby("site").agg(images=("image_id", "size"), patients=("patient_id", "nunique")))
    elif a.command == "run":
        from cxrdenoise import atomic
        from cxrdenoise.federated.runner import run, stop_on_sigterm
        from cxrdenoise.federated.server import round_path

        # Flower's state and the round checkpoints live in <out>/run, which Snakemake does not own, so a
        # killed job's re-run finds them (Snakemake deletes a failed job's declared outputs, not this folder).
        out = Path(a.out_dir)
        run_dir = out / "run"
        stop_on_sigterm()
        summary = run(_spec(a, str(run_dir)), timeout_s=a.timeout_s)
        files = {name: run_dir / name for name in RUN_OUTPUTS}
        files["best.pt"] = round_path(run_dir.resolve(), summary["best_round"])
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:  # e.g. rounds finished by an earlier session that was killed before recording them
            raise CxrError(f"federated: the run ended without {', '.join(missing)}; delete {run_dir} and re-run "
                           "to start the federated run again")
        for name, path in files.items():
            atomic.write_bytes(out / name, path.read_bytes())
        print(json.dumps(summary))
    elif a.command == "alone":
        from cxrdenoise.federated.alone import train_alone

        print(json.dumps(train_alone(_spec(a, a.out_dir), a.site, a.out_dir)))
    elif a.command == "evaluate":
        from cxrdenoise.evaluate import evaluate_checkpoint

        s = evaluate_checkpoint(a.checkpoint, a.out_dir, data_dir=a.data_dir, device=a.device,
                                batch_size=a.batch_size, figure_images=a.figure_images,
                                lpips_enabled=not a.no_lpips, progress=False)
        print(f"{a.checkpoint}: test PSNR {s['metrics']['psnr']['mean']:.2f} dB")
    elif a.command == "table":
        from cxrdenoise.tables.federated import make_federated

        if len(a.site_evals) != len(a.site_records):
            raise CxrError("federated table: one --site-records per --site-evals")
        from cxrdenoise.tables.cells import data_facts, load_data_facts

        with data_facts(load_data_facts(a.split_csv, a.nih_metadata)):
            make_federated(a.out_prefix, run_dir=a.run_dir, global_eval=a.global_eval, site_evals=a.site_evals,
                           site_records=a.site_records, noisy_eval=a.noisy_eval,
                           centralized_eval=a.centralized_eval or None,
                           centralized_record=a.centralized_record or None, data_source=a.data_source, seed=a.seed)
    elif a.command == "figure":
        from cxrdenoise.federated.figure import plot_rounds

        plot_rounds(a.run_dir, a.out_prefix, a.data_source)
    return 0
