"""Build one of the study's tables (III-VI) from result files (rules table3..table6); see cxrdenoise.tables.

Writes <out-prefix>.csv (numbers), .md (README), .tex (paper) and .html (Snakemake report).
"""

from __future__ import annotations

import argparse

from cxrdenoise import tables
from cxrdenoise.errors import cli_entry


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
    parser.add_argument("--bootstrap-resamples", type=int, default=2000, help="evaluate.bootstrap_resamples")
    parser.add_argument("--seed", type=int, default=0, help="config seed (bootstrap seeds derive from it)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.table == "table3":
        written = tables.make_table3(a.summaries, a.per_image, a.noisy, a.out_prefix, a.records, a.data_source,
                                     a.image_size, a.bootstrap_resamples, a.seed)
    elif a.table == "table4":
        written = tables.make_table4(a.records, a.summaries, a.out_prefix, a.data_source, a.image_size,
                                     noisy=a.noisy)
    elif a.table == "table5":
        written = tables.make_table5(a.records, a.summaries, a.out_prefix, a.data_source, a.image_size,
                                     noisy=a.noisy)
    else:
        written = tables.make_table6(a.summaries, a.out_prefix, a.records, a.data_source, a.image_size,
                                     noisy=a.noisy, per_image=a.per_image, classical=a.classical,
                                     classical_per_image=a.classical_per_image, resamples=a.bootstrap_resamples,
                                     seed=a.seed)
    for path in written:
        print(f"wrote {path}")
    return 0
