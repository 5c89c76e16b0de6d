"""The privacy stage (workflow/rules/privacy.smk); see cxrdenoise.privacy.

  attacker: train the learned attacker on the train split's clean (and, with noise_augment, noisy) images
  score:    score clean, obfuscated and denoised test queries with one attacker, and with the trivial baseline
            (its own rows, attacker "trivial", on the same pairs and resamples) -> metrics.csv, summary.json
  table:    results/tables/privacy.{csv,md,tex,html}
  figure:   results/figures/privacy.{png,pdf}
"""

from __future__ import annotations

import argparse
import sys

from cxrdenoise.commands import add_data_fact_args
from cxrdenoise.errors import CxrError, cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise privacy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", required=True, help="results/data")
    common.add_argument("--sigmas", nargs="+", required=True)
    common.add_argument("--seed", type=int, required=True)
    common.add_argument("--image-size", type=int, required=True)
    a = sub.add_parser("attacker", parents=[common])
    a.add_argument("--out-dir", required=True)
    a.add_argument("--epochs", type=int, required=True)
    a.add_argument("--lr", type=float, required=True)
    a.add_argument("--margin", type=float, required=True)
    a.add_argument("--batch-size", type=int, required=True)
    a.add_argument("--channels", type=int, required=True)
    a.add_argument("--embedding", type=int, required=True)
    a.add_argument("--no-noise-augment", action="store_true")
    s = sub.add_parser("score", parents=[common])
    s.add_argument("--attacker", required=True, choices=("ncc", "learned"))
    s.add_argument("--attacker-checkpoint", help="attacker.pt (learned)")
    s.add_argument("--checkpoints", nargs="*", default=[], help="denoisers' best.pt")
    s.add_argument("--setup", required=True, help="training setup of the checkpoints, for the label")
    s.add_argument("--negatives", type=int, required=True)
    s.add_argument("--bootstrap", type=int, required=True)
    s.add_argument("--top-k", type=int, nargs="+", required=True)
    s.add_argument("--device", required=True, choices=("cpu", "cuda"))
    s.add_argument("--batch-size", type=int, required=True)
    s.add_argument("--out-dir", required=True)
    for name in ("table", "figure"):
        t = sub.add_parser(name)
        t.add_argument("--metrics", nargs="+", required=True)
        t.add_argument("--summaries", nargs="+", required=True)
        t.add_argument("--out-prefix", required=True)
        t.add_argument("--data-source")
        if name == "table":
            t.add_argument("--max-auc", type=float, required=True, help="privacy.claim_max_auc")
            add_data_fact_args(t)
    return parser.parse_args(argv)


def train_split_patients(data_dir: str, sigma: str) -> list[int]:
    from cxrdenoise.data import PairDataset

    return PairDataset(data_dir, "train", sigma).patient_ids


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.command == "attacker":
        import numpy as np

        from cxrdenoise.privacy.images import load_query_sets, preprocess, views
        from cxrdenoise.privacy.learned import AttackerSettings, train_attacker

        sets = load_query_sets(a.data_dir, "train", a.sigmas, [], size=a.image_size, device="cpu")
        names, stack = views(sets)
        stack = np.stack([preprocess(v, a.image_size) for v in stack])
        settings = AttackerSettings(seed=a.seed, epochs=a.epochs, lr=a.lr, margin=a.margin, batch_size=a.batch_size,
                                    channels=a.channels, embedding=a.embedding, noise_augment=not a.no_noise_augment)
        record = train_attacker(stack, names, sets.image_ids, sets.patient_ids, settings, a.out_dir,
                                data_note={"split": "train", "source_size": list(sets.image_shape)},
                                log=lambda m: print(m, flush=True))
        print(f"attacker: triplet loss {record['first_loss']:.4f} -> {record['final_loss']:.4f}")
    elif a.command == "score":
        run_score(a)
    elif a.command == "table":
        from cxrdenoise.tables.cells import data_facts, load_data_facts
        from cxrdenoise.tables.privacy import make_privacy

        with data_facts(load_data_facts(a.split_csv, a.nih_metadata)):
            for path in make_privacy(a.metrics, a.summaries, a.out_prefix, a.data_source, a.max_auc):
                print(f"wrote {path}")
    else:
        from cxrdenoise.privacy.figure import privacy_figure

        for path in privacy_figure(a.metrics, a.summaries, a.out_prefix, a.data_source):
            print(f"wrote {path}")
    return 0


def run_score(a: argparse.Namespace) -> None:
    import pandas as pd

    from cxrdenoise.privacy import learned, ncc, trivial
    from cxrdenoise.privacy.images import load_query_sets
    from cxrdenoise.privacy.pairs import make_pairing
    from cxrdenoise.privacy.stage import score_queries, write_results

    sets = load_query_sets(a.data_dir, "test", a.sigmas, a.checkpoints, size=a.image_size, device=a.device,
                           batch_size=a.batch_size)
    attacker_patients = train_split_patients(a.data_dir, a.sigmas[0])
    pairing = make_pairing(sets.image_ids, sets.patient_ids, seed=a.seed, negatives_per_query=a.negatives,
                           attacker_patients=attacker_patients)
    if a.attacker == "ncc":
        similarity = lambda q, g: ncc.similarity(q, g, a.image_size, pairing.query_index)  # noqa: E731
        label, note, record = ncc.LABEL, ncc.NOTE, None
    else:
        if not a.attacker_checkpoint:
            raise CxrError("privacy score --attacker learned needs --attacker-checkpoint")
        net = learned.load_attacker(a.attacker_checkpoint)
        similarity = lambda q, g: learned.similarity(net, q, g, a.image_size)  # noqa: E731
        label = learned.LABEL
        note = ("embedding CNN trained with a triplet loss on train-split patients "
                f"({len(set(attacker_patients))} patients, disjoint from the test patients)")
        record = a.attacker_checkpoint
    score = dict(sets=sets, pairing=pairing, seed=a.seed, n_boot=a.bootstrap, top_k=a.top_k)
    source = sets.image_shape[-1]
    frame = pd.concat([score_queries(similarity, attacker=a.attacker, **score),
                       score_queries(lambda q, g: trivial.similarity(q, g, source), attacker=trivial.NAME, **score)],
                      ignore_index=True)
    summary = {"attacker": a.attacker, "attacker_label": label, "attacker_note": note, "attacker_checkpoint": record,
               "baseline": trivial.NAME, "baseline_label": trivial.LABEL, "baseline_note": trivial.NOTE,
               "baseline_size": trivial.working_size(source),
               "bootstrap_method": "two-way percentile bootstrap over patients (queries and gallery resampled together)",
               "image_size": a.image_size, "source_size": sets.image_shape[-1], "setup": a.setup,
               "n_boot": a.bootstrap, "top_k": a.top_k, "negatives_per_query": a.negatives, "seed": a.seed,
               "split": "test", **pairing.counts(),
               "checkpoints": {f"{m} sigma{s}": v for (m, s), v in sets.checkpoints.items()},
               "rows": frame.to_dict(orient="records")}
    write_results(frame, a.out_dir, summary, device=a.device)
    for _, r in frame.iterrows():
        print(f"{r['attacker']} {r['query']} {r['model']} {r['sigma']}: AUC {r['auc']:.3f} top{a.top_k[0]} {r[f'top{a.top_k[0]}']:.3f}",
              file=sys.stdout)
