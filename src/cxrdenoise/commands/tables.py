"""Build one of the study's tables (III-VI) from result files (rules table3..table6); see cxrdenoise.tables.

Writes <out-prefix>.csv (numbers), .md (README), .tex (paper) and .html (Snakemake report).
"""

from __future__ import annotations

import argparse

from cxrdenoise import tables
from cxrdenoise.commands import add_data_fact_args
from cxrdenoise.errors import cli_entry
from cxrdenoise.tables.cells import data_facts, load_data_facts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise tables", description=__doc__)
    parser.add_argument("table", choices=("table3", "table4", "table5", "table6"))
    parser.add_argument("--out-prefix", required=True, help="e.g. results/tables/table3")
    parser.add_argument("--records", nargs="*", default=[],
                        help="results/train/{model}/sigma{s}/{setup}/rep{k}/record.json")
    parser.add_argument("--summaries", nargs="*", default=[],
                        help="results/eval/{model}/sigma{s}/{setup}/rep{k}/summary.json")
    parser.add_argument("--per-image", nargs="*", default=[], help="per_image.csv of the runs (table3: paired tests)")
    parser.add_argument("--noisy", nargs="*", default=[],
                        help="results/eval/noisy/sigma{s}/summary.json: the no-denoising rows (table3) and the "
                             "\"did not denoise\" flag (tables 4-6)")
    parser.add_argument("--classical", nargs="*", default=[],
                        help="table6: results/classical/{method}/sigma{s}/summary.json of the configured methods")
    parser.add_argument("--classical-per-image", nargs="*", default=[],
                        help="table6: the classical results' per_image.csv (patient-level intervals)")
    parser.add_argument("--data-source", default=None, help="config data.source, named in the caption")
    parser.add_argument("--image-size", type=int, default=None, help="config resize.size, named in the caption")
    add_data_fact_args(parser)
    parser.add_argument("--bootstrap-resamples", type=int, help="evaluate.bootstrap_resamples (table3, table6)")
    parser.add_argument("--seed", type=int, help="config seed, from which the bootstrap seeds derive (table3, table6)")
    args = parser.parse_args(argv)
    if args.table in ("table3", "table6") and (args.bootstrap_resamples is None or args.seed is None):
        parser.error(f"{args.table} needs --bootstrap-resamples and --seed (config evaluate.bootstrap_resamples, seed)")
    return args


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    common = dict(out_prefix=a.out_prefix, summaries=a.summaries, records=a.records, noisy=a.noisy,
                  data_source=a.data_source, image_size=a.image_size)
    with data_facts(load_data_facts(a.split_csv, a.nih_metadata)):  # the split and data name in every caption
        if a.table == "table3":
            written = tables.make_table3(**common, per_image=a.per_image, resamples=a.bootstrap_resamples,
                                         seed=a.seed)
        elif a.table == "table6":
            written = tables.make_table6(
                **common, per_image=a.per_image, classical=a.classical, classical_per_image=a.classical_per_image,
                resamples=a.bootstrap_resamples, seed=a.seed)
        else:
            written = {"table4": tables.make_table4, "table5": tables.make_table5}[a.table](**common)
    for path in written:
        print(f"wrote {path}")
    return 0
