"""Draw the study's Figure 4, Figures 5-7 (examples), the training curves or PSNR against sigma (rules figure4,
figures_examples, training_curves, psnr_sigma); see cxrdenoise.figures. Writes <out-prefix>.png and .pdf.
"""

from __future__ import annotations

import argparse

from cxrdenoise import figures
from cxrdenoise.errors import cli_entry
from cxrdenoise.tables.cells import DataFacts, data_facts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise figures", description=__doc__)
    parser.add_argument("figure", choices=("figure4", "examples", "curves", "psnr_sigma"))
    parser.add_argument("--out-prefix", required=True, help="e.g. results/figures/figure4")
    parser.add_argument("--records", nargs="*", default=[],
                        help="record.json files (figure4, curves; examples: for the label only)")
    parser.add_argument("--examples", nargs="*", default=[], help="examples.npz, one per model (examples)")
    parser.add_argument("--per-image", nargs="*", default=[], help="per_image.csv, one per model (examples)")
    parser.add_argument("--noisy-per-image", default=None, help="results/eval/noisy/sigma{s}/per_image.csv")
    parser.add_argument("--summaries", nargs="*", default=[],
                        help="summary.json of the runs shown, with --noisy: marks runs that did not denoise")
    parser.add_argument("--noisy", nargs="*", default=[], help="results/eval/noisy/sigma{s}/summary.json")
    parser.add_argument("--classical", nargs="*", default=[],
                        help="results/classical/{method}/sigma{s}/summary.json (psnr_sigma)")
    parser.add_argument("--number", type=int, default=None, help="figure number in the title (examples)")
    parser.add_argument("--max-images", type=int, default=None, help="rows to show (examples; default all)")
    parser.add_argument("--data-source", default=None, help="config data.source, printed under the figure")
    parser.add_argument("--image-size", type=int, default=None, help="config resize.size, printed under the figure")
    parser.add_argument("--nih-metadata", action="store_true",
                        help="data.local.metadata_csv is set: a local folder is named NIH ChestX-ray14 (local folder)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    with data_facts(DataFacts(nih_metadata=a.nih_metadata)):  # the data's name under the figure
        if a.figure == "figure4":
            written = figures.figure4(a.records, a.out_prefix, a.data_source, a.image_size, summaries=a.summaries,
                                      noisy=a.noisy)
        elif a.figure == "examples":
            written = figures.examples_figure(a.examples, a.per_image, a.noisy_per_image, a.out_prefix,
                                              number=a.number, max_images=a.max_images, data_source=a.data_source,
                                              image_size=a.image_size, records=a.records, summaries=a.summaries,
                                              noisy=a.noisy)
        elif a.figure == "psnr_sigma":
            written = figures.psnr_vs_sigma(a.classical, a.out_prefix, summaries=a.summaries, noisy=a.noisy,
                                            records=a.records, data_source=a.data_source, image_size=a.image_size)
        else:
            written = figures.training_curves(a.records, a.out_prefix, a.data_source, a.image_size,
                                              summaries=a.summaries, noisy=a.noisy)
    for path in written:
        print(f"wrote {path}")
    return 0
