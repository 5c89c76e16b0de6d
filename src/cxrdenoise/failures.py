"""What failed, on the terminal: the `error:` line of every failed job's log, with the log's path.

Jobs write their one-line errors (`error: sample.n_images is 1001 but only 1000 images are available`) into
`results/logs/*.log`, where Snakemake's CalledProcessError on the terminal does not show them. The workflow's
`onerror:` handler calls :func:`failure_report` with Snakemake's own log, which names each failed rule and its
log files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_FAILED_RULE = re.compile(r"^Error in rule (\S+?):\s*$")
_LOG_LINE = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?\s*$")


def _log_lines(snakemake_log: Any) -> list[str]:
    """Lines of Snakemake's log: given as a path, or (Snakemake 9) a list of paths; [] when unreadable."""
    paths = snakemake_log if isinstance(snakemake_log, (list, tuple)) else [snakemake_log]
    lines: list[str] = []
    for path in paths:
        try:
            lines += Path(path).read_text(errors="replace").splitlines() if path else []
        except (OSError, TypeError):
            continue
    return lines


def failed_jobs(snakemake_log: Any) -> list[tuple[str, list[str]]]:
    """(rule, [log paths]) for each 'Error in rule' block of Snakemake's log, in order, without repeats."""
    found: list[tuple[str, list[str]]] = []
    rule = None
    for line in _log_lines(snakemake_log):
        match = _FAILED_RULE.match(line)
        if match:
            rule = match.group(1)
            continue
        if rule is not None:
            match = _LOG_LINE.match(line)
            if match:
                entry = (rule, [p.strip() for p in match.group(1).split(",") if p.strip()])
                if entry not in found:
                    found.append(entry)
                rule = None
            elif not line.startswith(" "):  # the block ended without a log line
                if (rule, []) not in found:
                    found.append((rule, []))
                rule = None
    return found


def error_line(log_path: str | os.PathLike) -> str | None:
    """The last line of a job log that starts with `error:`; else its last non-empty line; None if unreadable."""
    try:
        lines = [ln.rstrip() for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else None


def failure_report(snakemake_log: Any) -> str:
    """Lines for the terminal: per failed job, its error line and where the full log is."""
    out: list[str] = []
    for rule, logs in failed_jobs(snakemake_log):
        if not logs:
            out.append(f"rule {rule} failed (it has no log file; see Snakemake's messages above)")
        for log in logs:
            line = error_line(log)
            if line is None:
                out.append(f"rule {rule} failed; its log {log} is missing or empty")
            elif line.startswith("error:"):
                out.append(f"{line}\n    (rule {rule}; log: {log})")
            else:
                out.append(f"rule {rule} failed; last line of its log {log}:\n    {line}")
    if not out:
        return ""
    return "\n".join(["", "=" * 30 + " what failed " + "=" * 30, *out, ""])
