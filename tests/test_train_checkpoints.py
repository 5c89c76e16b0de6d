"""Checkpoints of every set-up: last.pt holds what resuming needs and nothing twice (no copy of best), writes happen
in the background thread, a failed write stops the job in the training thread, and best.pt is the best file."""

import threading

import pytest
import torch

from cxrdenoise.errors import CxrError
from cxrdenoise.train import state
from cxrdenoise.train.distributed import single_process
from cxrdenoise.train.engine import run_training
from cxrdenoise.train.state import BEST_PATTERN, CheckpointWriter
from test_train_helpers import TinyPairs, settings, tiny_factory


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def train(out, setup="gpu1", **over):
    return run_training(settings(setup, **over), TinyPairs(12), TinyPairs(6, seed=1), out, single_process("cpu"),
                        model_factory=tiny_factory, config_hash="abc123")


def tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


@pytest.mark.parametrize("setup", ["gpu1", "dp2"])  # the study's in-process set-ups (DDP: test_train_ddp.py)
def test_last_pt_holds_no_copy_of_best(tmp_path, setup):
    record = train(tmp_path, setup=setup, epochs=3)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert "state_dict" not in last["best"] and last["best"]["epoch"] == record["best_epoch"] == best["epoch"]
    weights = sum(t.numel() for t in last["model"].values())
    adam = sum(t.numel() for t in tensors(last["optimizer"]["state"]))
    assert adam == 2 * weights + len(last["optimizer"]["state"])  # two moments and a step count per parameter
    rng = sum(t.numel() for t in tensors(last["rng"]))
    assert sum(t.numel() for t in tensors(last)) == weights + adam + rng  # nothing else, best's weights least
    named = tmp_path / last["best_file"]
    assert [p.name for p in tmp_path.glob(BEST_PATTERN)] == [named.name]
    kept = torch.load(named, weights_only=True)
    assert all(torch.equal(kept["state_dict"][k], v) for k, v in best["state_dict"].items())
    assert record["checkpoints"]["writes"] == 3 and record["checkpoints"]["background"] is True


def test_study_setup_writes_off_the_training_thread(tmp_path, monkeypatch):
    threads = []
    real = state.save

    def spy(obj, path):
        threads.append((threading.current_thread().name, path.name))
        real(obj, path)

    monkeypatch.setattr(state, "save", spy)
    train(tmp_path, epochs=2)
    assert {name for name, _ in threads} == {"checkpoint"} and len(threads) >= 3  # last.pt x2 and the best file
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    # best.pt is not serialised again: a hard link to the best file already written in the background
    assert (tmp_path / "best.pt").stat().st_ino == (tmp_path / last["best_file"]).stat().st_ino


def test_a_failed_background_write_stops_the_job(tmp_path, monkeypatch):
    real = state.save

    def failing(obj, path):
        if path.name == "last.pt" and obj["epoch"] == 2:
            raise OSError(28, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(state, "save", failing)
    with pytest.raises(CxrError, match="writing a checkpoint in .* failed: .*No space left"):
        train(tmp_path, epochs=3)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1  # the previous one stands


def test_writer_raises_its_error_in_the_caller_and_only_once(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "save", lambda obj, path: (_ for _ in ()).throw(RuntimeError("disk gone")))
    writer = CheckpointWriter(tmp_path, background=True)
    writer.save_last({"epoch": 1, "model": {"w": torch.ones(2)}}, None)
    with pytest.raises(CxrError, match="disk gone"):
        writer.wait()
    writer.wait()  # raised once; the writer is usable again


def test_best_pt_is_the_best_file_and_survives_removing_the_resume_files(tmp_path):
    train(tmp_path, epochs=2, keep_last=False)
    assert not (tmp_path / "last.pt").exists() and not list(tmp_path.glob(BEST_PATTERN))
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] in (1, 2) and best["state_dict"]


@pytest.mark.parametrize("background", [True, False])
def test_the_epochs_records_are_written_after_its_resume_point(tmp_path, monkeypatch, background):
    """record.json must never count an epoch whose last.pt is not on disk yet: a job killed in between would
    resume from an earlier epoch than its record shows (the SLURM resume test caught that)."""
    order = []
    monkeypatch.setattr(state, "save", lambda obj, path: order.append(path.name))
    writer = CheckpointWriter(tmp_path, background=background)
    best = {"epoch": 1, "val_loss": 0.5, "state_dict": {}}
    writer.save_last({"epoch": 1, "model": {"w": torch.zeros(2)}}, best, then=lambda: order.append("records"))
    writer.wait()
    assert order == ["resume_best_e1.pt", "last.pt", "records"]
    failing = CheckpointWriter(tmp_path, background=background)
    monkeypatch.setattr(state, "save", lambda obj, path: (_ for _ in ()).throw(OSError("disk gone")))
    written = []
    with pytest.raises(CxrError, match="disk gone"):
        failing.save_last({"epoch": 2}, None, then=lambda: written.append("records"))
        failing.wait()
    assert written == []  # no records for an epoch whose checkpoint failed
