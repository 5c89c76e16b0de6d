"""Full disks, quotas and file-size limits (issue 22, fault 6): one line naming the file, the space it needed and
the fix, never numpy's "N requested and M written" or torch's `[enforce fail at inline_container.cc]`; the
previous file is left as it was and no temp file is left behind.

The file-size limit is real (RLIMIT_FSIZE in a child process, the kernel's EFBIG); a full disk is simulated
(ENOSPC raised where the bytes are written), as no test can fill a real disk.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrdenoise import atomic
from cxrdenoise.atomic import atomic_path, write_json
from cxrdenoise.errors import CxrError, DiskSpaceError, cli_entry
from cxrdenoise.shards import save_shard
from cxrdenoise.train import state

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 * 1024  # bytes: `ulimit -f` of the child processes

# A child that writes a small previous file, then sets `ulimit -f` and writes a larger one through the real code
# (save_shard or the checkpoint save), inside cli_entry, as every cxrdenoise command is. SIGXFSZ as Python leaves
# it (ignored, so the write fails with EFBIG), or ignored explicitly as in the fault's report.
CHILD = """
import resource, signal, sys
import numpy as np, torch
from cxrdenoise.errors import cli_entry
from cxrdenoise.shards import save_shard
from cxrdenoise.train.state import save

kind, dest, limit, sigxfsz = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == "shard":
    write = lambda n: save_shard(np.full(n, n % 251, dtype=np.uint8), dest, {"shard": 0})
else:
    write = lambda n: save({"weights": torch.full((n // 4,), float(n)), "epoch": n}, dest)
write(1000)  # the previous file, well under the limit
if sigxfsz == "ignored":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(cli_entry(lambda: write(4 * limit))())
"""


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and "requested and" not in stderr and "inline_container" not in stderr
    return lines[0]


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def run_child(kind: str, dest: Path, sigxfsz: str = "python-default") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, kind, str(dest), str(LIMIT), sigxfsz],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("sigxfsz", ["python-default", "ignored"])
def test_shard_over_the_file_size_limit_is_one_line(tmp_path, sigxfsz):
    dest = tmp_path / "shard_00000.npy"
    done = run_child("shard", dest, sigxfsz)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: {dest}: file-size limit reached while writing it")
    assert "about 256.1 KiB needed" in line and "allows is 64.0 KiB" in line and "ulimit -f unlimited" in line
    assert "the previous shard_00000.npy is unchanged" in line
    previous = np.load(dest)
    assert previous.shape == (1000,) and previous[0] == 1000 % 251
    assert temps(tmp_path) == []


@pytest.mark.parametrize("sigxfsz", ["python-default", "ignored"])
def test_checkpoint_over_the_file_size_limit_is_one_line(tmp_path, sigxfsz):
    dest = tmp_path / "last.pt"
    done = run_child("checkpoint", dest, sigxfsz)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: {dest}: file-size limit reached while writing it")
    assert "the previous last.pt is unchanged" in line
    assert torch.load(dest)["epoch"] == 1000
    assert temps(tmp_path) == []


class _FullDisk:
    """`os` as atomic.py sees it, but with a disk that is full: os.write fails with ENOSPC."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def write(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _torch_save_on_a_full_disk(obj, path):
    """What torch.save does when the disk fills up: part of the file, then its own error without the errno."""
    Path(path).write_bytes(b"PK\x03\x04" + bytes(5000))
    raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                       "data/3: file write failed")


def test_checkpoint_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    dest = tmp_path / "best.pt"
    state.save({"w": torch.zeros(10), "epoch": 1}, dest)
    monkeypatch.setattr(state.torch, "save", _torch_save_on_a_full_disk)
    monkeypatch.setattr(atomic, "os", _FullDisk())  # the errno torch dropped is found again by repeating the write
    payload = {"w": torch.zeros(1000, 1000), "epoch": 2}
    assert cli_entry(lambda: state.save(payload, dest))() == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {dest}: disk full while writing it (about 3.9 MiB needed, ")
    assert " free on /" in line and "free up space there or move the output to a larger disk" in line
    assert "the previous best.pt is unchanged" in line
    monkeypatch.undo()
    assert torch.load(dest)["epoch"] == 1 and temps(tmp_path) == []


def test_background_checkpoint_writer_passes_the_line_on(tmp_path, monkeypatch):
    monkeypatch.setattr(state.torch, "save", _torch_save_on_a_full_disk)
    monkeypatch.setattr(atomic, "os", _FullDisk())
    writer = state.CheckpointWriter(tmp_path, background=True)
    writer.save_last({"epoch": 1, "model": {"w": torch.zeros(4)}}, None)
    with pytest.raises(DiskSpaceError) as caught:
        writer.wait()
    assert str(caught.value).startswith(f"{tmp_path / 'last.pt'}: disk full while writing it")
    assert "nothing was written to last.pt" in str(caught.value)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk quota exceeded"),
                                         (errno.EFBIG, "file")])
def test_shard_write_errors_with_errno(tmp_path, monkeypatch, code, words):
    dest = tmp_path / "shard_00000.npy"
    save_shard(np.zeros(10, dtype=np.uint8), dest, {"shard": 0})
    before = dest.read_bytes()

    def failing_save(fh, array, allow_pickle):
        fh.write(b"\x93NUMPY" + bytes(100))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(DiskSpaceError) as caught:
        save_shard(np.zeros((4, 256, 256), dtype=np.float16), dest, {"shard": 0})
    message = str(caught.value)
    assert message.startswith(f"{dest}: {words}") and "\n" not in message
    assert "about 512.1 KiB needed" in message and "the previous shard_00000.npy is unchanged" in message
    assert isinstance(caught.value, OSError) and caught.value.errno == code  # `except OSError` still sees it
    assert dest.read_bytes() == before and temps(tmp_path) == []


def test_numpy_short_write_on_a_full_disk(tmp_path, monkeypatch, capsys):
    """numpy's fwrite drops the errno ("N requested and M written"); repeating the write finds ENOSPC."""
    dest = tmp_path / "shard_00003.npy"

    def short_save(fh, array, allow_pickle):
        fh.write(b"\x93NUMPY" + bytes(5000))
        raise OSError("10240 requested and 5056 written")

    monkeypatch.setattr(np, "save", short_save)
    monkeypatch.setattr(atomic, "os", _FullDisk())
    assert cli_entry(lambda: save_shard(np.zeros(10240, dtype=np.uint8), dest, {"shard": 3}))() == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {dest}: disk full while writing it (about 10.1 KiB needed, ")
    assert line.endswith("(nothing was written to shard_00003.npy)")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_unexplained_short_write_is_still_one_line(tmp_path, monkeypatch):
    """A short write whose cause cannot be found (space came back, no limit): the line says what to check."""
    monkeypatch.setattr(state.torch, "save", _torch_save_on_a_full_disk)
    with pytest.raises(DiskSpaceError) as caught:
        state.save({"w": torch.zeros(4)}, tmp_path / "last.pt")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'last.pt'}: the write stopped after 4.9 KiB ([enforce fail at ")
    assert "check free space (`df -h" in message and "quota -s" in message and "ulimit -f" in message


def test_json_write_on_a_full_disk(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(CxrError, match=r"record\.json: disk full while writing it \(about 1\d B needed"):
        write_json(tmp_path / "record.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(OSError) as caught:
        with atomic_path(tmp_path / "x.bin") as tmp:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    assert not isinstance(caught.value, DiskSpaceError)
    with pytest.raises(RuntimeError, match="^something else$"):
        with atomic_path(tmp_path / "x.bin"):
            raise RuntimeError("something else")
    assert list(tmp_path.iterdir()) == []


def test_payload_bytes_counts_shared_storage_once():
    w = torch.zeros(1000)
    assert state.payload_bytes({"a": w, "b": [w, w[:10]], "c": "text"}) == 64 * 1024 + 4000
