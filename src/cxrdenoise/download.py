"""Download and unpack the twelve NIH ChestX-ray14 archives, robustly enough for 42 GB over flaky links.

Each archive is several GB and the NIH Box links drop connections, so a download resumes from `{dest}.part`
with an HTTP Range request instead of starting again, and only appears under its final name once complete.
Nothing wrong may ever be installed or locked:

* a resume is only asked for when the server reported a length and a validator (ETag or Last-Modified) when
  the `.part` began (kept in `{dest}.part.json`); the request carries If-Range, and an answer whose length or
  validator differs discards the `.part` and starts again from zero, so two versions of a file are never
  spliced;
* a transfer is complete only at its natural end: the announced length, or the final chunk of a chunked body.
  Without either (a body that ends when the connection closes) a cut connection looks like the end of the
  file, so every .gz download is also decompressed end to end (gzip CRC and length) before it is installed,
  and a download that is neither delimited nor checkable is refused;
* NIH publishes no checksums, so a sha256 lock file holds each archive's hash, checked by every later download
  and extraction. A hash enters it only after extraction found every member safe and the image count right;
  a refused archive is never locked.

Only the standard library is used for HTTP so the stage has no extra dependency.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import http.client
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tqdm import tqdm

from .atomic import write_json
from .errors import CxrError
from .hashing import file_sha256
from .provenance import provenance

USER_AGENT = "cxrdenoise-download/0.1 (+urllib)"
CHUNK = 1 << 20
# 4xx other than these will not get better by asking again; 5xx and these are worth retrying.
_RETRYABLE_4XX = {408, 425, 429}
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes\s+\*/(\d+)$")


class _Retry(Exception):
    """A failure of one attempt (cut connection, short body, 5xx) that another attempt may fix."""


# --------------------------------------------------------------------------------------------- lock file


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock while twelve parallel jobs read-modify-write the same lock file.

    The lock is taken on a sidecar file, not the JSON itself: the JSON is replaced by rename, so a process
    blocked on the old inode would otherwise wake up holding a lock on a file nobody reads any more.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    guard = lock_path.with_name(f".{lock_path.name}.flock")
    with open(guard, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_lock(lock_path: Path) -> dict[str, Any]:
    if not lock_path.exists():
        return {}
    try:
        entries = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CxrError(f"{lock_path}: unreadable checksum lock file ({err}); fix or delete it") from None
    if not isinstance(entries, dict):
        raise CxrError(f"{lock_path}: checksum lock file must hold a JSON object of file name -> entry")
    return entries


def verify_or_record(
    lock_path: str | os.PathLike,
    path: str | os.PathLike,
    sha256: str,
    size: int,
    url: str | None = None,
    hint: str = "delete the file to download it again, or remove its lock entry to accept the new file",
    record: bool = True,
) -> str:
    """Check `path`'s hash against its lock entry, or record it if it has none (only when `record`); return
    'verified', 'recorded' or 'not locked yet'.

    The entry is keyed by file name so a lock file copied to another machine (or another raw_dir) still applies.
    """
    lock_path, path = Path(lock_path), Path(path)
    with _locked(lock_path):
        entries = _read_lock(lock_path)
        entry = entries.get(path.name)
        if entry is not None:
            expected = entry.get("sha256") if isinstance(entry, dict) else None
            if expected != sha256:
                raise CxrError(
                    f"{path}: sha256 {sha256} does not match {expected} recorded in {lock_path} "
                    f"(corrupt download or the server's file changed; {hint})"
                )
            return "verified"
        if not record:
            return "not locked yet"
        entries[path.name] = {
            "sha256": sha256,
            "size": size,
            "url": url,
            "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(lock_path, entries)
        return "recorded"


# --------------------------------------------------------------------------------------------- download


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _state_path(part).unlink(missing_ok=True)


def _validators(response) -> dict[str, str | None]:
    return {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}


def _resume_state(part: Path, url: str, name: str) -> dict[str, Any] | None:
    """What the server said when `part` began, if the `.part` may be resumed; otherwise discard it.

    A resume needs the length and a validator: without them a changed file on the server cannot be told apart,
    and appending its tail to the old head would make a file that never existed.
    """
    if not part.exists():
        _state_path(part).unlink(missing_ok=True)
        return None
    try:
        state = json.loads(_state_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    usable = (isinstance(state, dict) and state.get("url") == url and isinstance(state.get("length"), int)
              and (state.get("etag") or state.get("last_modified")))
    if not usable:
        _log(f"{name}: {part.name} has no record of the server's length and ETag/Last-Modified; restarting from byte 0")
        _discard(part)
        return None
    return state


def _parse_total(response: http.client.HTTPResponse, offset: int, part: Path) -> tuple[int, int | None]:
    """Return (offset the body starts at, total size or None) from a 200 or 206 answer."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            # A range we did not ask for: appending it would corrupt the file, so start over.
            _discard(part)
            raise _Retry(f"unexpected Content-Range {response.headers.get('Content-Range')!r} for offset {offset}")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _check_same_file(response, state: dict[str, Any], total: int | None, part: Path) -> None:
    """A 206 must describe the file the `.part` began with: same length, same ETag / Last-Modified."""
    now = _validators(response)
    changed = [f"length {state['length']} -> {total}"] if total != state["length"] else []
    for key in ("etag", "last_modified"):
        if state.get(key) and now[key] != state[key]:
            changed.append(f"{key} {state[key]!r} -> {now[key]!r}")
    if changed:
        _discard(part)
        raise _Retry(f"the server's file changed since {part.name} began ({', '.join(changed)}); "
                     "discarded it, the next attempt starts from byte 0")


def _stream(response, part: Path, start: int, total: int | None, name: str, progress: bool) -> None:
    try:
        fh = open(part, "ab" if start else "wb")
    except OSError as err:
        raise CxrError(f"cannot write {part}: {err}") from None
    bar = tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
        disable=not progress, mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr,
    )
    with fh, bar:
        while True:
            # http.client returns b"" on a cut connection instead of raising, so the size is checked below.
            chunk = response.read(CHUNK)
            if not chunk:
                break
            try:
                fh.write(chunk)
            except OSError as err:  # disk full, quota: retrying cannot help
                raise CxrError(f"cannot write {part}: {err}") from None
            bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _discard(part)
        raise _Retry(f"received {size} bytes but the server announced {total}; discarded the partial file")


def gzip_problem(path: str | os.PathLike) -> str | None:
    """Decompress a .gz file end to end; say why it is not one complete gzip stream (cut, spliced), or None.

    zlib checks every member's CRC-32 and length trailer, so a truncated or spliced file cannot pass.
    """
    decomp = zlib.decompressobj(wbits=31)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                while chunk:
                    decomp.decompress(chunk, CHUNK)  # bounded output: memory stays flat
                    chunk = decomp.unconsumed_tail
                    if decomp.eof:
                        rest = decomp.unused_data + chunk
                        if rest.strip(b"\0"):  # concatenated members are valid gzip; zero padding is harmless
                            decomp, chunk = zlib.decompressobj(wbits=31), rest
                        else:
                            chunk = b""
            if not decomp.eof:
                decomp.flush()  # output zlib still holds back after the last input; sets eof at a stream's end
    except zlib.error as err:
        return f"corrupt gzip data ({err})"
    if not decomp.eof:
        return "the gzip stream ends early (truncated)"
    return None


def _is_gzip_name(name: str) -> bool:
    return name.endswith((".gz", ".tgz"))


def _attempt(opener, url: str, part: Path, timeout: float, name: str, progress: bool) -> None:
    """One request: resume the partial file when that is safe, else start from zero; leave a complete `part`."""
    state = _resume_state(part, url, name)
    offset = part.stat().st_size if state else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if state:
        headers["Range"] = f"bytes={offset}-"
        # If-Range: a server whose file changed answers 200 with the whole new file instead of a splice
        headers["If-Range"] = state.get("etag") or state["last_modified"]
        _log(f"{name}: resuming from byte {offset}")
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            start, total = _parse_total(response, offset, part)
            if start:
                _check_same_file(response, state, total, part)
            else:
                if part.exists():
                    _log(f"{name}: the server sent the whole file; restarting from byte 0")
                _discard(part)
                write_json(_state_path(part), {"url": url, "length": total, **_validators(response)})
            delimited = total is not None or bool(getattr(response, "chunked", False))
            _stream(response, part, start, total, name, progress)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range at or beyond the end: complete only if the .part already has the length the server announced
            match = _UNSATISFIED_RANGE.match((err.headers.get("Content-Range") or "").strip())
            if match and int(match.group(1)) == offset == state["length"]:
                delimited = True
            else:
                _discard(part)
                raise _Retry(f"HTTP 416 for bytes={offset}-; discarded the partial file") from None
        elif 400 <= err.code < 500 and err.code not in _RETRYABLE_4XX:
            raise CxrError(f"download failed: {url} answered HTTP {err.code} {err.reason}") from None
        else:
            raise _Retry(f"HTTP {err.code} {err.reason}") from None
    except (OSError, http.client.HTTPException) as err:  # URLError, resets, timeouts, IncompleteRead
        raise _Retry(f"{type(err).__name__}: {err}") from None
    if _is_gzip_name(name):
        problem = gzip_problem(part)
        if problem:
            _discard(part)
            cause = "" if delimited else "the server sent no length, so the connection was probably cut: "
            raise _Retry(f"{cause}{problem}; discarded the partial file")
    elif not delimited:
        _discard(part)
        raise _Retry("the server sent no length and the file cannot be checked for completeness; discarded it")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    lock_path: str | os.PathLike | None = None,
    retries: int = 5,
    backoff: float = 2.0,
    max_backoff: float = 300.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> str:
    """Fetch `url` to `dest` with resume and retries, check it against the lock file, return its sha256.

    The lock is only read here, never written: extraction records a new archive's hash once its members and
    image count passed (extract_archive). Back-off doubles from `backoff` seconds (capped at `max_backoff`)
    because Box throttles eager clients; `backoff=0` makes tests instant. An existing `dest` is only
    verified, so re-running costs no traffic.
    """
    if retries < 1:
        raise CxrError(f"retries must be at least 1, got {retries}")
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    name = dest.name
    if dest.exists():
        digest = file_sha256(dest)
        if lock_path is not None:
            state = verify_or_record(lock_path, dest, digest, dest.stat().st_size, url, record=False)
            _log(f"{name}: already present, sha256 {state}")
        return digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A fresh opener per call picks up proxy settings from the environment as they are now.
    opener = urllib.request.build_opener()
    last_error = ""
    for attempt in range(1, retries + 1):
        try:
            _attempt(opener, url, part, timeout, name, progress)
            break
        except _Retry as err:
            last_error = str(err)
            if attempt < retries:
                delay = min(backoff * 2 ** (attempt - 1), max_backoff)
                _log(f"{name}: attempt {attempt}/{retries} failed ({last_error}); retrying in {delay:g} s")
                time.sleep(delay)
    else:
        kept = f"; {part} is kept and will be resumed on the next run" if part.exists() else ""
        raise CxrError(
            f"download failed: {url} did not complete after {retries} attempts (last error: {last_error}){kept}"
        )
    digest = file_sha256(part)
    if lock_path is not None:
        try:
            state = verify_or_record(
                lock_path, dest, digest, part.stat().st_size, url,
                hint="the download was discarded; run again to fetch it afresh, "
                "or remove its lock entry to accept the server's new file",
                record=False,
            )
        except CxrError:
            _discard(part)  # a corrupt partial must not be resumed by the next run
            raise
        _log(f"{name}: sha256 {digest} {state} in {lock_path}"
             + (" (recorded once extraction has checked it)" if state != "verified" else ""))
    os.replace(part, dest)
    _state_path(part).unlink(missing_ok=True)
    return digest


# --------------------------------------------------------------------------------------------- extraction


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member must not be trusted, or None.

    Any such member rejects the whole archive rather than being skipped: an NIH archive never contains one,
    so its presence means the file is not what the lock file or the URL promised.
    """
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in parts or ".." in name.split("\\"):
        return "path with '..'"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or FIFO"
    if member.issym() or member.islnk():
        link = member.linkname
        # Symlinks resolve against their own folder, hard links against the archive root.
        base = posixpath.dirname(name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, link))
        if link.startswith("/") or target == ".." or target.startswith("../"):
            return f"link to {link!r} outside the archive"
    return None


def _copy_member(source, dest: Path) -> None:
    """Copy one member; write errors (disk full) are reported as such, read errors as a bad archive."""
    try:
        out = open(dest, "wb")
    except OSError as err:
        raise CxrError(f"cannot write {dest}: {err}") from None
    with source, out:
        while chunk := source.read(CHUNK):
            try:
                out.write(chunk)
            except OSError as err:
                raise CxrError(f"cannot write {dest}: {err}") from None


def _extract_pngs(archive: Path, tmp_dir: Path) -> int:
    """Copy every regular *.png into `tmp_dir` under its base name, after checking each member is safe."""
    seen: dict[str, str] = {}
    try:
        # Stream mode reads the multi-GB archive once, front to back, without building a member index.
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                reason = _unsafe_reason(member)
                if reason:
                    raise CxrError(f"{archive}: refusing to extract member {member.name!r} ({reason}); not locked, "
                                   "delete the archive (and check the URL in data.nih.archives)")
                base = PurePosixPath(member.name).name
                # NIH nests everything under images/; flattening by base name also copes with ./images/ or none.
                if not member.isreg() or not base.lower().endswith(".png") or base.startswith("."):
                    continue
                if base in seen:
                    raise CxrError(f"{archive}: members {seen[base]!r} and {member.name!r} share a file name")
                seen[base] = member.name
                _copy_member(tar.extractfile(member), tmp_dir / base)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise CxrError(
            f"{archive}: not a readable .tar.gz ({type(err).__name__}: {err}); delete it to download it again"
        ) from None
    return len(seen)


def extract_archive(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    done_json: str | os.PathLike,
    expected: int,
    *,
    lock_path: str | os.PathLike | None = None,
) -> int:
    """Unpack an NIH archive's PNGs into `out_dir`, check the count, write `done_json`; return the count.

    The archive is checked against the lock file first, so an archive copied in by hand is held to the same
    hash as a downloaded one; an archive not yet in the lock is recorded there only after every member was
    safe and the count right, so a refused archive can never become the reference. Files go to a temporary
    folder beside `out_dir` that is renamed into place only when every check passed, so a failed run leaves
    no half-filled folder.
    """
    archive, out_dir, done_json = Path(archive), Path(out_dir), Path(done_json)
    if not archive.is_file():
        raise CxrError(f"{archive}: archive not found")
    digest = file_sha256(archive)
    size = archive.stat().st_size
    hint = "delete the archive to download it again, or remove its lock entry to accept the new file"
    if lock_path is not None:
        verify_or_record(lock_path, archive, digest, size, hint=hint, record=False)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        found = _extract_pngs(archive, tmp_dir)
        if found != expected:
            raise CxrError(
                f"{archive}: archive {out_dir.name} holds {found} PNG images, expected {expected} "
                "(truncated or wrong archive; check data.nih.archives in the config)"
            )
        if lock_path is not None:  # every check passed: only now may this hash become the reference
            verify_or_record(lock_path, archive, digest, size, hint=hint)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    write_json(
        done_json,
        {
            "archive": out_dir.name,
            "archive_path": str(archive),
            "archive_sha256": digest,
            "archive_size": size,
            "images": found,
            "expected": expected,
            "provenance": provenance(),
        },
    )
    return found
