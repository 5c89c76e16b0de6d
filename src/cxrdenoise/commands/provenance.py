"""Write the report's provenance item (rule provenance); see cxrdenoise.provenance_page."""

from __future__ import annotations

import argparse

from cxrdenoise.errors import cli_entry
from cxrdenoise.provenance_page import write_provenance_page


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise provenance", description=__doc__)
    parser.add_argument("--config-hash", required=True, help="the workflow's config hash")
    parser.add_argument("--records", nargs="*", default=[], help="results/train/.../record.json")
    parser.add_argument("--summaries", nargs="*", default=[], help="results/eval/.../summary.json")
    parser.add_argument("--out", required=True, help="results/provenance.html")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    info = write_provenance_page(a.records, a.summaries, a.config_hash, a.out)
    print(f"{a.out}: commit {info['git_commit']}, config {a.config_hash[:12]}, "
          f"{sum(info['train_devices'].values())} training record(s), {sum(info['eval_devices'].values())} summaries")
    return 0
