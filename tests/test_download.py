"""NIH download stage against a local HTTP server that can cut, refuse or ignore ranges like a flaky CDN."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import random
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cxrdenoise import download as dl
from cxrdenoise.errors import CxrError
from cxrdenoise.hashing import file_sha256

REPO = Path(__file__).resolve().parents[1]


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_RNG = random.Random(7)
# a real .tar.gz of ~100 kB (random bytes do not compress): no two offsets alike, checkable end to end
PAYLOAD = _tar_bytes({"images/00000001_000.png": _RNG.randbytes(50_000),
                      "images/00000002_000.png": _RNG.randbytes(50_000)})
# the server's "new version": same length, different bytes, two images as well
PAYLOAD_V2 = _tar_bytes({"images/00000001_000.png": _RNG.randbytes(50_000),
                         "images/00000002_000.png": _RNG.randbytes(50_000)})


class FlakyHandler(BaseHTTPRequestHandler):
    """Serves `server.payload`, honouring Range unless told not to; misbehaves as configured on the server."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        srv = self.server
        with srv.guard:
            srv.requests.append(dict(self.headers))
            n = len(srv.requests)
            if srv.change_after is not None and n > srv.change_after:  # the file is replaced on the server
                srv.payload, srv.etag = PAYLOAD_V2, '"v2"'
        if srv.status and n <= srv.status_requests:
            self.send_error(srv.status)
            return
        data, start = srv.payload, 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if srv.honour_if_range and if_range is not None and if_range != srv.etag:
            match = None  # RFC 9110: a changed validator means "send the whole new file"
        if match and not srv.ignore_range:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if srv.etag:
            self.send_header("ETag", srv.etag)
        if srv.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None and (n == 1 or srv.cut_always):
            body = body[: srv.cut_after]  # announce the full length, send less, hang up
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # never route 127.0.0.1 through a proxy
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    srv.daemon_threads = True
    srv.payload, srv.requests, srv.guard = PAYLOAD, [], threading.Lock()
    srv.status, srv.status_requests = None, 10**9  # answer `status` to the first `status_requests` requests
    srv.cut_after, srv.cut_always, srv.ignore_range = None, False, False
    srv.etag, srv.send_length, srv.honour_if_range, srv.change_after = '"v1"', True, True, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/images_001.gz"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _fetch(srv, tmp_path, **kw):
    dest = tmp_path / "nih" / "archives" / "images_001.tar.gz"
    lock = tmp_path / "nih" / "sha256.lock.json"
    kw = {"retries": 3, "backoff": 0, "timeout": 10, "progress": False, **kw}
    return dest, lock, dl.download(srv.url, dest, lock_path=lock, **kw)


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_installs_and_extraction_locks(server, tmp_path, fast_provenance):
    dest, lock, digest = _fetch(server, tmp_path)
    assert dest.read_bytes() == PAYLOAD and digest == SHA
    assert not dest.with_name(dest.name + ".part").exists()
    assert not dest.with_name(dest.name + ".part.json").exists()
    assert "Range" not in server.requests[0]
    assert not lock.exists()  # the download alone never locks: its members are not checked yet
    _extract(tmp_path, dest, 2, lock)
    entry = json.loads(lock.read_text())["images_001.tar.gz"]
    assert entry["sha256"] == SHA and entry["size"] == len(PAYLOAD)


def test_resume_after_cut_sends_range(server, tmp_path):
    server.cut_after = 30_000
    dest, _, digest = _fetch(server, tmp_path)
    assert len(server.requests) == 2
    assert server.requests[1]["Range"] == "bytes=30000-"
    assert digest == SHA and hashlib.sha256(dest.read_bytes()).hexdigest() == SHA


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.cut_after, server.ignore_range = 30_000, True
    dest, _, _ = _fetch(server, tmp_path)
    assert "Range" in server.requests[1]
    assert dest.read_bytes() == PAYLOAD  # not the first 30,000 bytes twice


def test_404_is_one_line_naming_url_and_not_retried(server, tmp_path):
    server.status = 404
    with pytest.raises(CxrError, match="404") as err:
        _fetch(server, tmp_path)
    assert server.url in str(err.value) and "\n" not in str(err.value)
    assert len(server.requests) == 1


def test_server_error_is_retried(server, tmp_path):
    server.status, server.status_requests = 503, 1
    dest, _, digest = _fetch(server, tmp_path)
    assert len(server.requests) == 2 and digest == SHA


def test_too_many_failures_names_url_and_attempts_and_keeps_part(server, tmp_path):
    server.cut_after, server.cut_always = 1_000, True
    with pytest.raises(CxrError, match="after 2 attempts") as err:
        _fetch(server, tmp_path, retries=2)
    assert server.url in str(err.value)
    dest = tmp_path / "nih" / "archives" / "images_001.tar.gz"
    assert not dest.exists()
    assert dest.with_name(dest.name + ".part").stat().st_size == 2_000  # second attempt resumed the first
    assert server.requests[1]["If-Range"] == '"v1"'


def test_checksum_mismatch_against_lock_names_file_and_hashes(server, tmp_path):
    lock = tmp_path / "nih" / "sha256.lock.json"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"images_001.tar.gz": {"sha256": "0" * 64, "size": 1}}))
    with pytest.raises(CxrError) as err:
        _fetch(server, tmp_path)
    msg = str(err.value)
    assert "images_001.tar.gz" in msg and SHA in msg and "0" * 64 in msg
    assert not (tmp_path / "nih" / "archives" / "images_001.tar.gz").exists()


def test_existing_archive_is_verified_without_traffic(server, tmp_path, fast_provenance):
    dest, lock, _ = _fetch(server, tmp_path)
    _extract(tmp_path, dest, 2, lock)
    dest, _, digest = _fetch(server, tmp_path)
    assert digest == SHA and len(server.requests) == 1
    dest.write_bytes(b"tampered")
    with pytest.raises(CxrError, match="does not match"):
        _fetch(server, tmp_path)


def test_parallel_lock_updates_keep_every_entry(tmp_path):
    lock = tmp_path / "sha256.lock.json"
    names = [f"images_{i:03d}.tar.gz" for i in range(1, 13)]
    threads = [
        threading.Thread(target=dl.verify_or_record, args=(lock, tmp_path / n, f"{i:064x}", i))
        for i, n in enumerate(names)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = json.loads(lock.read_text())
    assert sorted(entries) == names
    assert entries["images_003.tar.gz"]["sha256"] == f"{2:064x}"


def _assert_nothing_installed(tmp_path, dest_name="images_001.tar.gz"):
    archives = tmp_path / "nih" / "archives"
    assert not (archives / dest_name).exists()
    lock = tmp_path / "nih" / "sha256.lock.json"
    assert not lock.exists() or dest_name not in json.loads(lock.read_text())


def test_no_length_and_cut_halfway_is_a_failed_attempt(server, tmp_path):
    """Without Content-Length a closed connection looks like the end of the file: the gzip check catches it."""
    server.send_length, server.cut_after, server.cut_always = False, len(PAYLOAD) // 2, True
    with pytest.raises(CxrError, match="no length.*truncated") as err:
        _fetch(server, tmp_path, retries=2)
    assert "\n" not in str(err.value)
    _assert_nothing_installed(tmp_path)
    part = tmp_path / "nih" / "archives" / "images_001.tar.gz.part"
    assert not part.exists()  # nothing to resume: an unbounded transfer has no length to resume against
    assert all("Range" not in r for r in server.requests)


def test_no_length_cut_once_then_complete_installs_the_right_file(server, tmp_path):
    server.send_length, server.cut_after = False, len(PAYLOAD) // 2
    dest, _, digest = _fetch(server, tmp_path)
    assert digest == SHA and dest.read_bytes() == PAYLOAD and len(server.requests) == 2


def test_chunked_transfer_cut_is_not_installed(tmp_path, monkeypatch):
    """A chunked body that stops before its final chunk is an IncompleteRead, i.e. a failed attempt."""

    class Chunked(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("ETag", '"c"')
            self.end_headers()
            half = PAYLOAD[: len(PAYLOAD) // 2]
            self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")  # no terminating 0-chunk
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Chunked)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        dest = tmp_path / "nih" / "archives" / "images_001.tar.gz"
        with pytest.raises(CxrError, match="IncompleteRead|truncated"):
            dl.download(f"http://127.0.0.1:{srv.server_address[1]}/x.tar.gz", dest,
                        lock_path=tmp_path / "nih" / "sha256.lock.json", retries=2, backoff=0, progress=False)
    finally:
        srv.shutdown()
        srv.server_close()
    _assert_nothing_installed(tmp_path)


@pytest.mark.parametrize("honour_if_range", [True, False], ids=["server-honours-if-range", "server-ignores-if-range"])
def test_part_resumed_after_server_file_changed_restarts(server, tmp_path, fast_provenance, honour_if_range):
    """The .part began on version 1; the server now has version 2 of the same length: never splice the two."""
    server.cut_after, server.change_after, server.honour_if_range = 30_000, 1, honour_if_range
    dest, lock, digest = _fetch(server, tmp_path)
    assert server.requests[1]["Range"] == "bytes=30000-" and server.requests[1]["If-Range"] == '"v1"'
    v2 = hashlib.sha256(PAYLOAD_V2).hexdigest()
    assert dest.read_bytes() == PAYLOAD_V2 and digest == v2
    if not honour_if_range:  # a 206 with a new ETag was refused and the next attempt started from zero
        assert len(server.requests) == 3 and "Range" not in server.requests[2]
    _extract(tmp_path, dest, 2, lock)
    assert json.loads(lock.read_text())["images_001.tar.gz"]["sha256"] == v2


def test_part_without_validators_is_not_resumed(server, tmp_path):
    """A server that sent no ETag / Last-Modified cannot prove its file is unchanged: restart from zero."""
    server.etag, server.cut_after = None, 30_000
    dest, _, digest = _fetch(server, tmp_path)
    assert "Range" not in server.requests[1] and digest == SHA


def test_stale_part_without_record_restarts(server, tmp_path):
    archives = tmp_path / "nih" / "archives"
    archives.mkdir(parents=True)
    (archives / "images_001.tar.gz.part").write_bytes(PAYLOAD_V2[:40_000])  # left by an older version
    dest, _, digest = _fetch(server, tmp_path)
    assert "Range" not in server.requests[0] and digest == SHA


def test_unsafe_archive_downloaded_is_refused_and_not_locked(server, tmp_path, fast_provenance):
    server.payload = _tar_bytes({"images/00000001_000.png": b"ok", "../evil.png": b"x"})
    dest, lock, _ = _fetch(server, tmp_path)
    with pytest.raises(CxrError, match="refusing to extract member '../evil.png'.*not locked"):
        _extract(tmp_path, dest, 1, lock)
    assert not lock.exists() or "images_001.tar.gz" not in json.loads(lock.read_text())


def test_wrong_image_count_is_not_locked(tmp_path, fast_provenance):
    archive = tmp_path / "images_001.tar.gz"
    archive.write_bytes(PAYLOAD)
    lock = tmp_path / "nih" / "sha256.lock.json"
    with pytest.raises(CxrError, match="holds 2 PNG images, expected 3"):
        _extract(tmp_path, archive, 3, lock)
    assert not lock.exists() or "images_001.tar.gz" not in json.loads(lock.read_text())


# ------------------------------------------------------------------------------------------- extraction


@pytest.fixture
def fast_provenance(monkeypatch):
    """Provenance imports torch and runs git; the extraction logic under test needs neither."""
    monkeypatch.setattr(dl, "provenance", lambda: {"git_commit": "test"})


def _tar(path: Path, members: list[tuple[str, bytes | None, bytes]]) -> Path:
    """members: (name, type or None for a regular file, content or link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind is None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = kind
                if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = data.decode()
                tar.addfile(info)
    return path


def _extract(tmp_path, archive, expected, lock=None):
    out = tmp_path / "nih" / "images" / "images_001"
    done = tmp_path / "nih" / "images" / "images_001.done.json"
    return out, done, dl.extract_archive(archive, out, done, expected, lock_path=lock)


def test_extract_flattens_images_prefix_and_writes_done(tmp_path, fast_provenance):
    archive = _tar(tmp_path / "images_001.tar.gz", [
        ("images", tarfile.DIRTYPE, b""),
        ("images/00000001_000.png", None, b"png-a"),
        ("./images/00000002_001.png", None, b"png-b"),
        ("images/README.txt", None, b"not an image"),
        ("images/link.png", tarfile.SYMTYPE, b"00000001_000.png"),  # inside the archive: skipped, not fatal
    ])
    lock = tmp_path / "nih" / "sha256.lock.json"
    out, done, found = _extract(tmp_path, archive, 2, lock)
    assert found == 2
    assert sorted(p.name for p in out.iterdir()) == ["00000001_000.png", "00000002_001.png"]
    assert (out / "00000002_001.png").read_bytes() == b"png-b"
    record = json.loads(done.read_text())
    assert record["images"] == 2 and record["archive_sha256"] == file_sha256(archive)
    assert record["provenance"] == {"git_commit": "test"}
    assert json.loads(lock.read_text())["images_001.tar.gz"]["sha256"] == record["archive_sha256"]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp dir left


@pytest.mark.parametrize(
    "member",
    [
        ("../evil.png", None, b"x"),
        ("images/../../evil.png", None, b"x"),
        ("/tmp/cxrdenoise-abs-evil.png", None, b"x"),
        ("images/escape.png", tarfile.SYMTYPE, b"../../evil.png"),
        ("images/hard.png", tarfile.LNKTYPE, b"/etc/passwd"),
        ("images/dev", tarfile.CHRTYPE, b""),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "hardlink-abs", "device"],
)
def test_extract_rejects_unsafe_member(tmp_path, fast_provenance, member):
    archive = _tar(tmp_path / "images_001.tar.gz", [("images/00000001_000.png", None, b"ok"), member])
    with pytest.raises(CxrError, match="refusing to extract") as err:
        _extract(tmp_path, archive, 2)
    assert member[0] in str(err.value)
    assert not (tmp_path / "nih" / "images" / "images_001").exists()
    assert not (tmp_path / "nih" / "images" / "images_001.done.json").exists()
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "nih" / "evil.png").exists()
    assert list((tmp_path / "nih" / "images").iterdir()) == []  # temp dir cleaned up


def test_extract_count_mismatch_names_archive_expected_found(tmp_path, fast_provenance):
    archive = _tar(tmp_path / "images_001.tar.gz", [
        ("images/00000001_000.png", None, b"a"),
        ("images/00000001_001.png", None, b"b"),
    ])
    with pytest.raises(CxrError, match=r"images_001 holds 2 PNG images, expected 3"):
        _extract(tmp_path, archive, 3)
    assert not (tmp_path / "nih" / "images" / "images_001").exists()


def test_extract_checks_archive_against_lock(tmp_path, fast_provenance):
    archive = _tar(tmp_path / "images_001.tar.gz", [("images/00000001_000.png", None, b"a")])
    lock = tmp_path / "sha256.lock.json"
    lock.write_text(json.dumps({"images_001.tar.gz": {"sha256": "f" * 64}}))
    with pytest.raises(CxrError, match="f" * 64):
        _extract(tmp_path, archive, 1, lock)


def _load_script(name):
    return importlib.import_module(f"cxrdenoise.commands.{name}")


def test_cli_reports_corrupt_archive_in_one_line(tmp_path, capsys):
    bad = tmp_path / "images_001.tar.gz"
    bad.write_bytes(b"\x1f\x8b this is not gzip data")
    script = _load_script("extract")
    rc = script.main(["--archive", str(bad), "--out-dir", str(tmp_path / "out"),
                      "--done", str(tmp_path / "out.done.json"), "--expected", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "not a readable .tar.gz" in err
