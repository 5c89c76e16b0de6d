"""GPU-id claiming with a faked device count: disjoint claims, waiting, timeouts, CUDA_VISIBLE_DEVICES, exclusivity."""

import os
import subprocess
import sys
import threading
import time

import pytest

from cxrdenoise.errors import CxrError
from cxrdenoise.train import gpus
from cxrdenoise.train.gpus import candidate_ids, claim_gpus


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """Two fake GPUs and a private lock folder."""
    monkeypatch.setenv(gpus.COUNT_ENV, "2")
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(gpus.WAIT_ENV, raising=False)
    return tmp_path / "locks"


def claim(n, **kw):
    kw.setdefault("poll_s", 0.05)
    return claim_gpus(n, log=lambda _m: None, **kw)


def test_two_claimers_get_disjoint_ids_and_a_third_times_out(fake_gpus):
    a, b = claim(1), claim(1)
    assert {tuple(a.use), tuple(b.use)} == {("0",), ("1",)}
    t0 = time.monotonic()
    with pytest.raises(CxrError, match="gave up after 0.3s waiting for 1 free GPU"):
        claim(1, timeout_s=0.3)
    assert time.monotonic() - t0 < 5
    a.release()
    c = claim(1, timeout_s=2)
    assert c.use == a.use
    b.release(), c.release()


def test_a_waiting_claimer_proceeds_when_a_gpu_is_released(fake_gpus):
    held = claim(2)
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("claim", claim(1, timeout_s=20)))
    waiter.start()
    time.sleep(0.3)
    assert "claim" not in got  # still waiting
    held.release()
    waiter.join(20)
    assert got["claim"].use == ["0"]
    got["claim"].release()


def test_claims_are_held_across_processes(fake_gpus):
    code = ("from cxrdenoise.train.gpus import claim_gpus; import sys, time; c = claim_gpus(1); "
            "print(','.join(c.use), flush=True); sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        theirs = other.stdout.readline().strip()
        mine = claim(1, timeout_s=5)
        assert {theirs, mine.use[0]} == {"0", "1"}
        with pytest.raises(CxrError, match="gave up"):
            claim(1, timeout_s=0.2)
        mine.release()
    finally:
        other.stdin.close()
        other.wait(10)
    claim(2, timeout_s=5).release()  # the other process's lock died with it


def test_cuda_visible_devices_restricts_the_candidates(fake_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert candidate_ids() == ["3", "5"]
    a = claim(1)
    assert a.use == ["3"]
    b = claim(1)
    assert b.use == ["5"]
    with pytest.raises(CxrError, match="among 3, 5"):
        claim(1, timeout_s=0.2)
    a.release(), b.release()
    with pytest.raises(CxrError, match="needs 3 GPU.*CUDA_VISIBLE_DEVICES=3,5 has 2"):
        claim(3)


def test_uuid_ids_and_invalid_entries(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ab/cd,-1,2")
    assert candidate_ids() == ["GPU-ab/cd"]  # CUDA ignores everything from an invalid entry on
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert candidate_ids() == []


def test_timing_exclusive_claims_every_gpu(fake_gpus, monkeypatch):
    monkeypatch.setenv(gpus.COUNT_ENV, "3")
    excl = claim(1, exclusive=True)
    assert excl.use == ["0"] and excl.held == ["0", "1", "2"]
    with pytest.raises(CxrError, match="gave up"):
        claim(1, timeout_s=0.2)
    excl.release()
    one = claim(1)
    with pytest.raises(CxrError, match="3 free GPU"):  # an exclusive job waits for all of them
        claim(1, exclusive=True, timeout_s=0.2)
    one.release()


def test_more_gpus_than_exist_fails_at_once(fake_gpus):
    with pytest.raises(CxrError, match="needs 4 GPU\\(s\\) but this machine has 2"):
        claim(4, timeout_s=60)


def test_slurm_jobs_get_their_own_lock_folder(monkeypatch):
    monkeypatch.delenv(gpus.LOCK_DIR_ENV, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert str(gpus.default_lock_dir()) == "/tmp/cxrdenoise-gpu-locks/slurm-4242"


def test_launcher_exports_the_claimed_ids_before_cuda_starts(fake_gpus, monkeypatch, tmp_path, tiny_data_dir):
    """gpu1 with device cuda on a machine without CUDA: the claim and the export happen, the worker then fails
    in one line, and the locks are released."""
    from cxrdenoise.train.launch import launch
    from test_train_helpers import settings

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # restored by monkeypatch afterwards
    with pytest.raises(CxrError, match="train.device is 'cuda' but no CUDA device is usable"):
        launch(settings("gpu1", device="cuda", timing_exclusive=False), tiny_data_dir, tmp_path / "out")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    claim(2, timeout_s=1).release()  # released again


def test_dp2_with_one_visible_gpu_claims_one_and_says_so(monkeypatch):
    from cxrdenoise.train.gpus import candidate_ids
    from cxrdenoise.train.setups import gpus_to_claim
    from cxrdenoise.train.distributed import DP_ONE_GPU_NOTE

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert gpus_to_claim("dp2", lambda: len(candidate_ids())) == 1
    assert gpus_to_claim("ddp2", lambda: len(candidate_ids())) == 2  # DDP cannot share one GPU: the claim fails
    assert "only 1 is visible" in DP_ONE_GPU_NOTE
