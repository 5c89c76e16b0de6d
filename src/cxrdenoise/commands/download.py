"""Download one NIH archive with resume and retries (rule download_archive); see cxrdenoise.download."""

from __future__ import annotations

import argparse

from cxrdenoise.download import download
from cxrdenoise.errors import cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise download", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--dest", required=True, help="final archive path; partial data goes to DEST.part")
    parser.add_argument("--lock", required=True, help="sha256 lock file shared by all archives")
    parser.add_argument("--retries", type=int, required=True, help="attempts in all (data.nih.retries)")
    parser.add_argument("--backoff", type=float, required=True,
                        help="first back-off delay in seconds, doubled per retry (data.nih.backoff_s)")
    parser.add_argument("--timeout", type=float, required=True, help="socket timeout in seconds (data.nih.timeout_s)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    digest = download(
        args.url, args.dest, lock_path=args.lock, retries=args.retries, backoff=args.backoff,
        timeout=args.timeout, progress=not args.no_progress,
    )
    print(f"{args.dest}: sha256 {digest}")
    return 0
