"""Build the claims table (rule claims: a verdict for every claim of the study, cxrdenoise.tables.claims) or the
paired comparisons between models and between set-ups (rule comparisons, cxrdenoise.tables.comparisons).

Writes <out-prefix>.csv (numbers), .md (README), .tex (paper) and .html (Snakemake report).
"""

from __future__ import annotations

import argparse

from cxrdenoise.errors import cli_entry
from cxrdenoise.tables.claims import make_claims
from cxrdenoise.tables.comparisons import make_comparisons
from cxrdenoise.tables.privacy import privacy_claim_from_files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise claims", description=__doc__)
    parser.add_argument("table", choices=("claims", "comparisons"))
    parser.add_argument("--out-prefix", required=True, help="e.g. results/tables/claims")
    parser.add_argument("--records", nargs="*", default=[],
                        help="results/train/{model}/sigma{s}/{setup}/rep{k}/record.json")
    parser.add_argument("--summaries", nargs="*", default=[],
                        help="results/eval/{model}/sigma{s}/{setup}/rep{k}/summary.json")
    parser.add_argument("--per-image", nargs="*", default=[], help="per_image.csv of the same runs")
    parser.add_argument("--noisy", nargs="*", default=[], help="results/eval/noisy/sigma{s}/summary.json")
    parser.add_argument("--data-source", default=None, help="config data.source, named in the caption")
    parser.add_argument("--image-size", type=int, default=None, help="config resize.size, named in the caption")
    parser.add_argument("--bootstrap-resamples", type=int, required=True, help="evaluate.bootstrap_resamples")
    parser.add_argument("--seed", type=int, required=True, help="config seed (bootstrap seeds derive from it)")
    parser.add_argument("--privacy-metrics", nargs="*", default=[], help="results/privacy/{attacker}/metrics.csv")
    parser.add_argument("--privacy-summaries", nargs="*", default=[], help="results/privacy/{attacker}/summary.json")
    parser.add_argument("--privacy-max-auc", type=float, help="privacy.claim_max_auc (with --privacy-metrics)")
    parser.add_argument("--federated", nargs="*", default=[],
                        help="per_image.csv of the federated global model, then of each site alone (federated.smk)")
    args = parser.parse_args(argv)
    if args.privacy_metrics and args.privacy_max_auc is None:
        parser.error("--privacy-metrics needs --privacy-max-auc (config privacy.claim_max_auc)")
    return args


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    args = (a.records, a.summaries, a.per_image, a.noisy, a.out_prefix, a.data_source, a.image_size,
            a.bootstrap_resamples, a.seed)
    if a.table == "claims":
        privacy = (privacy_claim_from_files(a.privacy_metrics, a.privacy_summaries, a.data_source, a.privacy_max_auc)
                   if a.privacy_metrics else None)
        written = make_claims(*args, privacy=privacy, federated=a.federated)
    else:
        written = make_comparisons(*args)
    for path in written:
        print(f"wrote {path}")
    return 0
