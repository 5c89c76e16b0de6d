"""Write files so that a reader (or Snakemake) never sees a half-written output, and no temp file outlives it.

Everything goes to a temporary name in the destination folder and is renamed into place, which is atomic on
POSIX file systems. The temporary file is removed when the write fails: on any exception, on Ctrl-C
(KeyboardInterrupt), and on SIGTERM (what Snakemake, SLURM and `kill` send), which is turned into SystemExit
for the duration of the write so the clean-up runs. Only SIGKILL cannot be caught: the temp name carries host
and process id, and the next write to the same file removes temps whose process is gone.

A write that fails for lack of room (a full disk, ENOSPC; a quota, EDQUOT; a file-size limit, EFBIG, including
numpy's "N requested and M written" and torch's `[enforce fail at inline_container.cc]` that such a short write
turns into: the errno they drop is recovered by repeating the write) becomes one line,
:class:`cxrdenoise.errors.DiskSpaceError`: which file, on which file system, how much it needed and how much is
free, and what to do. The previous file at the destination is left as it was. (Python ignores SIGXFSZ, so a
write past `ulimit -f` fails with EFBIG rather than killing the process.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import DiskSpaceError

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
def atomic_path(dest: str | os.PathLike, suffix: str | None = None, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds, else remove it.

    `needed` (bytes, when the caller knows about how much it writes) only improves the message of a write that
    fails for lack of space; see :func:`space_error`.
    """
    dest = Path(dest)
    suffix = suffix or ".tmp"
    existed = dest.exists()
    tmp_path: Path | None = None
    with _sigterm_unwinds():
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _remove_orphans(dest, suffix)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{_HOST}.{os.getpid()}.", suffix=suffix,
                                       dir=dest.parent)
            tmp_path = Path(tmp)
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; results should read like any other file
            yield tmp_path
            os.replace(tmp_path, dest)
        except (OSError, RuntimeError) as err:
            if isinstance(err, DiskSpaceError):
                raise
            written = _size(tmp_path)
            explained = space_error(err, dest, written, needed, existed, tmp_path)
            if explained is None:
                raise
            raise DiskSpaceError(explained[0], explained[1], str(dest)) from err
        finally:
            if tmp_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    tmp_path.unlink()


# --- writes that fail for lack of room ------------------------------------------------------------------------

SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
# what numpy (a short fwrite) and torch (its zip writer) say when a write came up short, without an errno
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written|PytorchStreamWriter failed writing|file write failed"
                          r"|unexpected pos \d+ vs \d+")


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _space_errno(err: BaseException | None) -> int | None:
    """The errno of `err` or of what caused it, when it is one of SPACE_ERRNOS."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in SPACE_ERRNOS:
            return err.errno
        err = err.__cause__ or err.__context__
    return None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _file_size_limit() -> int | None:
    """The soft RLIMIT_FSIZE (`ulimit -f`) in bytes, None when unlimited or unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _probe_errno(tmp: Path, limit: int | None) -> int | None:
    """Why a write into `tmp` came up short: append up to 1 MiB of zeros to it (it is removed next) and return
    the errno that stops them when it is one of SPACE_ERRNOS, else None.

    numpy's fwrite ("N requested and M written") and torch's zip writer ("[enforce fail at inline_container.cc]")
    drop the errno of a short write; repeating the write where it stopped gets it back.
    """
    probe = 1024 ** 2
    if limit is not None and _size(tmp) + probe >= limit:
        return None  # the probe itself would cross `ulimit -f`: no evidence either way
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return None
    zeros = bytes(64 * 1024)
    try:
        while probe > 0:
            n = os.write(fd, zeros[:probe])
            if n <= 0:
                return None
            probe -= n
    except OSError as err:
        return err.errno if err.errno in SPACE_ERRNOS else None
    finally:
        os.close(fd)
    return None


def space_error(err: BaseException, dest: Path, written: int, needed: int | None = None,
                existed: bool = False, tmp: Path | None = None) -> tuple[str, int | None] | None:
    """(one line, errno) for a write of `dest` that failed for lack of room, None when `err` is something else.

    `written`: bytes in the temp file `tmp` when it failed; `needed`: about how many the whole file takes, if
    known; `existed`: whether `dest` was there before (it is left as it was).
    """
    code = _space_errno(err)
    if code is None and not _SHORT_WRITE.search(str(err)):
        return None
    folder = dest.parent
    limit = _file_size_limit()
    if code is None:  # a short write without errno (numpy's fwrite, torch's writer): find out what stopped it
        if limit is not None and written >= limit:
            code = errno.EFBIG
        elif tmp is not None:
            code = _probe_errno(tmp, limit)
    free = _free_bytes(folder)
    if code is None and free is not None and (free < 1024 ** 2 or (needed is not None and free < needed - written)):
        code = errno.ENOSPC
    free_text = f"{human_bytes(free)} free" if free is not None else "free space unknown"
    size = f"about {human_bytes(needed)} needed" if needed else f"{human_bytes(written)} written when it failed"
    kept = f"the previous {dest.name} is unchanged" if existed else f"nothing was written to {dest.name}"
    return _space_message(code, dest, folder, size, free_text, kept, limit, written, err), code


def _space_message(code: int | None, dest: Path, folder: Path, size: str, free_text: str, kept: str,
                   limit: int | None, written: int, err: BaseException) -> str:
    mount = _mount_point(folder)
    if code == errno.ENOSPC:
        return (f"{dest}: disk full while writing it ({size}, {free_text} on {mount}); "
                f"free up space there or move the output to a larger disk, then re-run ({kept})")
    if code == getattr(errno, "EDQUOT", None):
        return (f"{dest}: disk quota exceeded while writing it ({size}; {free_text} on {mount}, "
                f"but your quota is used up); free space within your quota (see `quota -s`) or write to another "
                f"file system, then re-run ({kept})")
    if code == errno.EFBIG:
        if limit is not None:
            return (f"{dest}: file-size limit reached while writing it ({size}, the limit `ulimit -f` "
                    f"allows is {human_bytes(limit)}); raise it (`ulimit -f unlimited`, or ask for a larger limit "
                    f"from your scheduler or admin), then re-run ({kept})")
        return (f"{dest}: file too large for the file system on {mount} ({size}; FAT32, for one, "
                f"stops at 4 GiB); write to another file system, then re-run ({kept})")
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"{dest}: the write stopped after {human_bytes(written)} ({reason}); {free_text} on {mount}: check "
            f"free space (`df -h {folder}`), quotas (`quota -s`) and `ulimit -f`, then re-run ({kept})")


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike, text: str) -> None:
    write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    write_text(dest, json_text(obj))


def json_text(obj: Any) -> str:
    """What write_json writes (sorted keys, numpy/torch scalars and paths as plain values)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
