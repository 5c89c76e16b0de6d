"""What failed, on the terminal: the `error:` line of every failed job's log, with the log's path.

Jobs write their one-line errors (`error: sample.n_images is 1001 but only 1000 images are available`) into
`results/logs/*.log`, where Snakemake's CalledProcessError on the terminal does not show them. The workflow's
`onerror:` handler calls :func:`failure_report` with Snakemake's own log, which names each failed rule and its
log files, and with the job logs as they were when the run started (:func:`log_snapshot`): a job log this run did
not write (a job that failed before it started, e.g. an `sbatch` that could not be run) is an earlier run's and is
not quoted ("no log for this run").
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

_FAILED_RULE = re.compile(r"^Error in rule (\S+?):\s*$")
_LOG_LINE = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?\s*$")
# Unindented lines that start Snakemake's next block. Other unindented lines inside an 'Error in rule' block
# continue its message (an executor's message may hold a newline: "Job submission failed ...\nFor further
# error details ..."), so the block's `log:` line below them is still found.
_BLOCK_END = re.compile(r"^(\[.*\]\s*$|Error in rule |(local)?(rule|checkpoint) \S+:|Shutting down"
                        r"|Exiting because|Complete log|Removing output files|Will exit after|Trying to restart"
                        r"|\w*(Error|Exception)\b)")


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


_MESSAGE_LINE = re.compile(r"^\s+message: (.+?)\s*$")


def _error_blocks(snakemake_log: Any) -> list[tuple[str, list[str], str | None]]:
    """(rule, [log paths], message or None) of each 'Error in rule' block of Snakemake's log, in order."""
    blocks: list[tuple[str, list[str], str | None]] = []
    rule, message = None, None
    for line in _log_lines(snakemake_log):
        match = _FAILED_RULE.match(line)
        if match:
            if rule is not None:  # the previous block had no log line
                blocks.append((rule, [], message))
            rule, message = match.group(1), None
            continue
        if rule is None:
            continue
        match = _MESSAGE_LINE.match(line)
        if match and match.group(1) != "None" and message is None:
            # an executor's message may run into Snakemake's own sentence without a space
            message = match.group(1).split("For further error details")[0].strip()
            continue
        match = _LOG_LINE.match(line)
        if match:
            blocks.append((rule, [p.strip() for p in match.group(1).split(",") if p.strip()], message))
            rule = None
        elif not line.startswith((" ", "\t")) and _BLOCK_END.match(line):  # the block ended without a log line
            blocks.append((rule, [], message))
            rule = None
    if rule is not None:
        blocks.append((rule, [], message))
    return blocks


def failed_jobs(snakemake_log: Any) -> list[tuple[str, list[str]]]:
    """(rule, [log paths]) for each 'Error in rule' block of Snakemake's log, in order, without repeats."""
    found: list[tuple[str, list[str]]] = []
    for rule, logs, _message in _error_blocks(snakemake_log):
        if (rule, logs) not in found:
            found.append((rule, logs))
    return found


def failure_messages(snakemake_log: Any) -> dict[tuple[str, tuple[str, ...]], str]:
    """(rule, log paths) -> the `message:` of its first 'Error in rule' block that has one (e.g. "Job submission
    failed with exception: ..."), for a job that failed before it wrote its log."""
    messages: dict[tuple[str, tuple[str, ...]], str] = {}
    for rule, logs, message in _error_blocks(snakemake_log):
        if message:
            messages.setdefault((rule, tuple(logs)), message)
    return messages


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


LogState = tuple[int, int, int]  # (mtime_ns, size, inode)


def _state(path: str | os.PathLike) -> LogState | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def log_snapshot(folder: str | os.PathLike = "results/logs") -> dict[str, LogState]:
    """(mtime_ns, size, inode) of every file below `folder`, by absolute path: the job logs as they were when
    the run started. No clock is compared, so a shared file system whose clock differs from this host's is no
    matter; a few milliseconds for thousands of logs."""
    states: dict[str, LogState] = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.abspath(os.path.join(root, name))
            state = _state(path)
            if state is not None:
                states[path] = state
    return states


def written_by_this_run(log: str | os.PathLike, before: Mapping[str, LogState] | None) -> bool:
    """Whether this run wrote `log`: it is new or changed since `before` (log_snapshot at the run's start);
    True when no snapshot is given."""
    if before is None:
        return True
    path = os.path.abspath(log)
    return path not in before or _state(path) != before[path]


def _when(log: str | os.PathLike) -> str:
    state = _state(log)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state[0] / 1e9)) if state else "?"


def failure_report(snakemake_log: Any, before: Mapping[str, LogState] | None = None) -> str:
    """Lines for the terminal: per failed job, its error line and where the full log is. With `before` (the
    job logs at the run's start, log_snapshot), a log this run did not write is not read: it is an earlier run's."""
    out: list[str] = []
    messages = failure_messages(snakemake_log) if before is not None else {}
    for rule, logs in failed_jobs(snakemake_log):
        message = messages.get((rule, tuple(logs)))
        if not logs:
            out.append(f"rule {rule} failed (it has no log file; see Snakemake's messages above)")
        for log in logs:
            if not written_by_this_run(log, before):
                why = (f"Snakemake: {message}" if message
                       else "see Snakemake's messages above (e.g. 'Job submission failed')")
                out.append(f"rule {rule} failed before writing its log: no log for this run ({log} is from an "
                           f"earlier run, last written {_when(log)}, and is not quoted)\n    {why}")
                continue
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
