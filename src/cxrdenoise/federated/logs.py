"""The line of a Flower process's log that says why it failed, for the one-line error on the terminal.

Why: the runner only sees that a SuperLink or SuperNode exited (or that the run stopped); the cause, e.g.
"certificate verify failed: certificate has expired", is in that process's own log among tracebacks, colour
codes and INFO lines of a logger called "uvicorn.error". The logs are appended to by every session of a run,
so only the part written since this session started a process (its offset) is read.
"""

from __future__ import annotations

import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Most telling first: a verdict (TLS, a missing file), a Python exception's last line, any line about
# certificates or TLS, then an ERROR/CRITICAL record or "failed".
RANKED = (
    re.compile(r"expired|verify failed|not yet valid|unknown ca|bad certificate|no such file|permission denied",
               re.IGNORECASE),
    re.compile(r"^[\w.]*(Error|Exception)\b.*:|^[\w.]*(Error|Exception)$"),
    re.compile(r"certificate|\bssl\b|\btls\b", re.IGNORECASE),
    re.compile(r"\b(ERROR|CRITICAL|FATAL)\b|\bfailed\b", re.IGNORECASE),
)
NOISE = re.compile(r"INFO.*\[uvicorn\.error\]|^\s*(File \"|Traceback)|^\s*$|Signal \d+ ignored due to race")
WARNING = re.compile(r"^WARNING\b")
MAX_CHARS = 300


def size(path: Path) -> int:
    """Where a process's output begins in its (appended) log."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def error_line(path: Path, offset: int = 0) -> str | None:
    """The most telling error line written to `path` after `offset` (the last of its rank), or None."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    lines = [ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if not NOISE.search(line)]
    for rank, pattern in enumerate(RANKED):
        # A warning counts only as a verdict: "Connection attempt failed, retrying" is what an orphaned
        # SuperExec writes after its SuperNode died, not why it died.
        hits = [line for line in lines if pattern.search(line) and not (rank and WARNING.match(line))]
        if hits:
            line = re.sub(r"^(ERROR|CRITICAL)\s*:\s*", "", hits[-1])
            return line if len(line) <= MAX_CHARS else line[:MAX_CHARS - 3] + "..."
    return None


def label(name: str) -> str:
    """A process's name as the terminal shows it: supernode_1 -> "SuperNode 1 (site 1)"."""
    if name.startswith("supernode_"):
        k = name.split("_", 1)[1]
        return f"SuperNode {k} (site {k})"
    return {"superlink": "SuperLink", "flwr_run": "`flwr run`"}.get(name, name)


def exit_text(code: int | None) -> str:
    """'exited with code 1' or 'exited (killed by signal 9, SIGKILL)'."""
    if code is not None and code < 0:
        import signal

        try:
            return f"exited (killed by signal {-code}, {signal.Signals(-code).name})"
        except ValueError:
            return f"exited (killed by signal {-code})"
    return f"exited with code {code}"
