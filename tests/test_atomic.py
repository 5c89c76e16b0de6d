"""Atomic writes leave no temp file behind: not on an exception, Ctrl-C, SIGTERM, nor (on the next write) SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrdenoise.atomic import _HOST, atomic_path, write_json
from cxrdenoise.shards import save_shard

REPO = Path(__file__).resolve().parents[1]

# A child that starts an np.save through atomic_path, says so, and is then stopped half-way through the write.
CHILD = """
import sys, time
import numpy as np
from cxrdenoise.atomic import atomic_path

class SlowFile:
    def __init__(self, fh): self.fh = fh
    def write(self, data):
        self.fh.write(bytes(data)[:100]); self.fh.flush()
        print("writing", flush=True)
        time.sleep(60)

with atomic_path(sys.argv[1], suffix=".npy") as tmp:
    with open(tmp, "wb") as fh:
        np.save(SlowFile(fh), np.zeros((64, 64), dtype=np.float16), allow_pickle=False)
"""


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_failed_write_removes_temp_and_keeps_old_file(tmp_path, error):
    dest = tmp_path / "out.json"
    write_json(dest, {"old": True})
    with pytest.raises(type(error)):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise error
    assert dest.read_text().strip().startswith("{") and '"old": true' in dest.read_text()
    assert leftovers(tmp_path) == []


def test_failed_np_save_removes_temp(tmp_path):
    with pytest.raises(ValueError):  # object arrays cannot be saved without pickle
        save_shard(np.array([{"a": 1}], dtype=object), tmp_path / "shard_00000.npy", {"shard": 0})
    assert list(tmp_path.iterdir()) == []


def _start_child(dest: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(dest)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "writing"
    assert len(leftovers(dest.parent)) == 1  # the half-written temp exists while the write runs
    return child


def test_sigterm_during_np_save_removes_temp(tmp_path):
    dest = tmp_path / "shard_00000.npy"
    child = _start_child(dest)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 128 + signal.SIGTERM
    assert leftovers(tmp_path) == [] and not dest.exists()


def test_sigkill_leftover_removed_by_next_write(tmp_path):
    dest = tmp_path / "shard_00000.npy"
    child = _start_child(dest)
    child.kill()
    child.wait(timeout=60)
    assert len(leftovers(tmp_path)) == 1  # SIGKILL cannot be caught
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, np.ones(3))
    assert leftovers(tmp_path) == [] and dest.exists()


def test_temps_of_live_processes_and_other_files_are_kept(tmp_path):
    dest = tmp_path / "a.npy"
    live = tmp_path / f".a.npy.{_HOST}.{os.getppid()}.abcd1234.npy"
    other = tmp_path / f".a.npy.json.{_HOST}.999999999.abcd1234.npy"
    live.write_bytes(b"")
    other.write_bytes(b"")
    with atomic_path(dest, suffix=".npy") as tmp:
        tmp.write_bytes(b"x")
    assert live.exists() and other.exists()
