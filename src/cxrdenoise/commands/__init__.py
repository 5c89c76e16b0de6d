"""One module per ``cxrdenoise`` subcommand (see ``cxrdenoise.cli.COMMANDS``): argument parsing only, over the
package's functions."""


def add_data_fact_args(parser) -> None:
    """--split-csv and --nih-metadata: what every table's caption states about the data (tables.cells.DataFacts)."""
    parser.add_argument("--split-csv", default=None,
                        help="results/data/split.csv: images and patients per split and the largest test patient's "
                             "share, stated in the caption")
    parser.add_argument("--nih-metadata", action="store_true",
                        help="data.local.metadata_csv is set: a local folder is named NIH ChestX-ray14 (local folder)")
