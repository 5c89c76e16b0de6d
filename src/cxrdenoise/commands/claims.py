"""Build the claims table (rule claims: a verdict for every claim of the study, cxrdenoise.tables.claims) or the
paired comparisons between models and between set-ups (rule comparisons, cxrdenoise.tables.comparisons).

Writes <out-prefix>.csv (numbers), .md (README), .tex (paper) and .html (Snakemake report).
"""

from __future__ import annotations

import argparse

from cxrdenoise.commands import add_data_fact_args
from cxrdenoise.errors import cli_entry
from cxrdenoise.tables.cells import data_facts, load_data_facts
from cxrdenoise.tables.claims import ClaimSettings, make_claims
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
    add_data_fact_args(parser)
    parser.add_argument("--bootstrap-resamples", type=int, required=True, help="evaluate.bootstrap_resamples")
    parser.add_argument("--seed", type=int, required=True, help="config seed (bootstrap seeds derive from it)")
    parser.add_argument("--privacy-metrics", nargs="*", default=[], help="results/privacy/{attacker}/metrics.csv")
    parser.add_argument("--privacy-summaries", nargs="*", default=[], help="results/privacy/{attacker}/summary.json")
    parser.add_argument("--privacy-max-auc", type=float, help="privacy.claim_max_auc (with --privacy-metrics)")
    parser.add_argument("--alpha", type=float, help="claims.alpha (claims table)")
    parser.add_argument("--negligible", nargs="+", type=_margin, help="claims.negligible as metric=value ...")
    parser.add_argument("--minor-drop", nargs="+", type=_margin, help="claims.minor_drop as metric=value ...")
    parser.add_argument("--min-patients", type=int, help="claims.min_patients (claims table)")
    parser.add_argument("--federated", nargs="*", default=[],
                        help="per_image.csv of the federated global model, then of each site alone (federated.smk)")
    args = parser.parse_args(argv)
    needed = ("alpha", "negligible", "minor_drop", "min_patients")
    if args.table == "claims" and any(getattr(args, k) is None for k in needed):
        parser.error("the claims table needs --alpha, --negligible, --minor-drop and --min-patients (config claims)")
    if args.privacy_metrics and args.privacy_max_auc is None:
        parser.error("--privacy-metrics needs --privacy-max-auc (config privacy.claim_max_auc)")
    return args


def _margin(text: str) -> tuple[str, float]:
    """metric=value (a margin of config claims.negligible / claims.minor_drop)."""
    name, _, value = text.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected metric=value, got {text!r}") from None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    args = (a.records, a.summaries, a.per_image, a.noisy, a.out_prefix, a.data_source, a.image_size,
            a.bootstrap_resamples, a.seed)
    with data_facts(load_data_facts(a.split_csv, a.nih_metadata)):  # the split and data name in the caption
        if a.table == "claims":
            privacy = (privacy_claim_from_files(a.privacy_metrics, a.privacy_summaries, a.data_source,
                                                a.privacy_max_auc) if a.privacy_metrics else None)
            settings = ClaimSettings(alpha=a.alpha, negligible=dict(a.negligible), minor_drop=dict(a.minor_drop),
                                     min_patients=a.min_patients)
            written = make_claims(*args, privacy=privacy, federated=a.federated, settings=settings)
        else:
            written = make_comparisons(*args)
    for path in written:
        print(f"wrote {path}")
    return 0
