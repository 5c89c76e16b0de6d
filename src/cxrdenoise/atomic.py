"""Write files so that a reader (or Snakemake) never sees a half-written output, and no temp file outlives it.

Everything goes to a temporary name in the destination folder and is renamed into place, which is atomic on
POSIX file systems. The temporary file is removed when the write fails: on any exception, on Ctrl-C
(KeyboardInterrupt), and on SIGTERM (what Snakemake, SLURM and `kill` send), which is turned into SystemExit
for the duration of the write so the clean-up runs. Only SIGKILL cannot be caught: the temp name carries host
and process id, and the next write to the same file removes temps whose process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the `finally` that removes the temp file


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Make SIGTERM raise SystemExit while the block runs, if nothing else handles SIGTERM already."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _remove_orphans(dest: Path, suffix: str) -> None:
    """Remove temps of earlier writes to `dest` whose process was killed (SIGKILL, OOM killer) on this host."""
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.{re.escape(_HOST)}\.(\d+)\.[A-Za-z0-9_]+{re.escape(suffix)}$")
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and _process_gone(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(dest.parent / name)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds, else remove it."""
    dest = Path(dest)
    suffix = suffix or ".tmp"
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(dest, suffix)
    with _sigterm_unwinds():
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{_HOST}.{os.getpid()}.", suffix=suffix, dir=dest.parent)
        tmp_path = Path(tmp)
        try:
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; results should read like any other file
            yield tmp_path
            os.replace(tmp_path, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike, text: str) -> None:
    write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
