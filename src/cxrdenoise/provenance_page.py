"""The report's provenance item (results/provenance.html): which code, packages, config and devices made the
results shown in the report, read from the result files themselves.

The result files each carry their own provenance; this page gathers it, so a reader of the report sees at once
whether every result came from this commit and config, and on which devices training and evaluation ran.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from .atomic import write_text
from .errors import CxrError
from .provenance import git_commit, package_versions


def _load(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CxrError(f"{path}: cannot read result file ({err})") from None


def gather(records: Iterable[str | Path], summaries: Iterable[str | Path], config_hash: str) -> dict[str, Any]:
    """Counts of the devices, commits and config hashes found in the training records and evaluation summaries."""
    train_devices: Counter = Counter()
    eval_devices: Counter = Counter()
    commits: Counter = Counter()
    hashes: Counter = Counter()
    for path in records:
        rec = _load(path)
        prov = rec.get("provenance") or {}
        count = f" (x{rec.get('device_count')} visible)" if rec.get("device") == "cuda" else ""
        train_devices[f"{rec.get('device')}: {rec.get('device_name')}{count}"] += 1
        commits[str(prov.get("git_commit"))] += 1
        hashes[str(prov.get("config_hash"))] += 1
    for path in summaries:
        summ = _load(path)
        inference = summ.get("inference") or {}
        prov = summ.get("provenance") or {}
        eval_devices[f"{inference.get('device', prov.get('device'))}: "
                     f"{inference.get('device_name', prov.get('device_name'))}"] += 1
        commits[str(prov.get("git_commit"))] += 1
        hashes[str(prov.get("config_hash"))] += 1
    return {
        "config_hash": config_hash,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "train_devices": dict(sorted(train_devices.items())),
        "eval_devices": dict(sorted(eval_devices.items())),
        "result_commits": dict(sorted(commits.items())),
        "result_config_hashes": dict(sorted(hashes.items())),
    }


def _rows(items: dict[str, Any]) -> str:
    return "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items.items())


def render(info: dict[str, Any]) -> str:
    """A small self-contained HTML page (the report shows it inline)."""
    other_hashes = [h for h in info["result_config_hashes"] if h != info["config_hash"]]
    warn = ""
    if other_hashes:
        warn = (f"<p><b>Warning:</b> {sum(info['result_config_hashes'][h] for h in other_hashes)} result file(s) "
                f"record another config hash ({html.escape(', '.join(h[:12] for h in other_hashes))}): they were "
                "made with a different configuration.</p>")
    sections = [
        ("Run", {"config hash (results/config.resolved.yaml)": info["config_hash"],
                 "git commit of the code building this report": info["git_commit"]}),
        ("Package versions", info["packages"]),
        ("Training devices (runs)", info["train_devices"] or {"none": ""}),
        ("Evaluation devices (summaries)", info["eval_devices"] or {"none": ""}),
        ("Git commits recorded in the result files (files)", info["result_commits"]),
        ("Config hashes recorded in the result files (files)", info["result_config_hashes"]),
    ]
    body = "".join(f"<h3>{html.escape(title)}</h3><table>{_rows(items)}</table>" for title, items in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Provenance</title></head><body>"
            f"<h2>Provenance</h2>{warn}{body}</body></html>\n")


def write_provenance_page(records: Iterable[str | Path], summaries: Iterable[str | Path], config_hash: str,
                          out: str | Path) -> dict[str, Any]:
    info = gather(records, summaries, config_hash)
    write_text(out, render(info))
    return info
