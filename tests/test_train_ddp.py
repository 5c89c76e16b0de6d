"""DDP on the CPU: two gloo processes (spawned like torchrun would), one short epoch of ddp2 and ddp2_amp."""

import json

import pytest
import torch
import torch.multiprocessing as mp

from test_train_helpers import TinyNet, TinyPairs, ddp_rank, free_port

pytestmark = pytest.mark.slow


def run_ddp(out_dir, setup, n_train, n_val, **over):
    mp.spawn(ddp_rank, args=(2, free_port(), str(out_dir), setup, n_train, n_val, over), nprocs=2, join=True)
    return json.loads((out_dir / "record.json").read_text())


def single_process_val_loss(state_dict, n_val):
    """The validation loss of the same weights computed in one process, image by image."""
    net = TinyNet(channels=4)
    net.load_state_dict(state_dict)
    net.eval()
    data = TinyPairs(n_val, seed=1)
    with torch.no_grad():
        losses = [(net(data[i][0][None]) - data[i][1][None]).abs().mean().item() for i in range(n_val)]
    return sum(losses) / n_val


def test_ddp2_ranks_split_the_train_set_disjointly(tmp_path):
    record = run_ddp(tmp_path, "ddp2", n_train=16, n_val=8)
    ranks = json.loads((tmp_path / "indices_epoch1.json").read_text())
    assert len(ranks) == 2 and [len(r) for r in ranks] == record["train_indices_per_rank"] == [8, 8]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(16))
    assert (record["world_size"], record["backend"]) == (2, "gloo")
    assert (record["global_batch"], record["batch_per_process"]) == (8, 4)
    assert record["precision"] == "float32" and record["sampler_check"]["covers_train_split"]
    assert record["val_indices_per_rank"] == [4, 4]
    assert (tmp_path / "best.pt").exists() and (tmp_path / "epochs.csv").exists()


def test_ddp2_amp_with_padding_validates_every_image_once(tmp_path):
    record = run_ddp(tmp_path, "ddp2_amp", n_train=15, n_val=7)
    assert record["precision"] == "autocast bfloat16" and record["amp_dtype"] == "bfloat16"
    assert not record["grad_scaler"]
    assert record["train_padding_per_epoch"] == 1 and record["sampler_check"]["repeated_per_epoch"] == 1
    assert record["sampler_check"]["covers_train_split"]
    ranks = json.loads((tmp_path / "indices_epoch1.json").read_text())
    assert set(ranks[0]) | set(ranks[1]) == set(range(15))
    assert record["val_indices_per_rank"] == [4, 3]  # the padded repeat is not counted
    best = torch.load(tmp_path / "best.pt")
    assert best["val_loss"] == pytest.approx(single_process_val_loss(best["state_dict"], 7), rel=1e-5)


def test_ddp2_ranks_validate_one_model_the_one_best_pt_stores(tmp_path):
    """The U-Net's BatchNorm buffers differ between ranks after an epoch; validation broadcasts rank 0's, so the
    recorded best val loss is that of best.pt's weights, validated in one process."""
    from test_train_helpers import buffer_probe_rank

    from cxrdenoise.models import build_model

    n_val = 7  # odd: one padded repeat on rank 1
    mp.spawn(buffer_probe_rank, args=(2, free_port(), str(tmp_path), "ddp2", 16, n_val, {"epochs": 2}),
             nprocs=2, join=True)
    record = json.loads((tmp_path / "record.json").read_text())
    for epoch in (1, 2):
        r0, r1 = (torch.load(tmp_path / f"buffers_rank{r}_epoch{epoch}.pt") for r in (0, 1))
        running = [k for k in r0["before"] if "running_" in k]
        assert len(running) == 2 * 9  # mean and var of the nine blocks' one BatchNorm each
        # each rank updated its statistics from its own batches: different before validation ...
        assert any(not torch.equal(r0["before"][k], r1["before"][k]) for k in running)
        # ... and rank 0's on both ranks while validating
        assert r0["used"].keys() == r1["used"].keys() == r0["before"].keys()
        assert all(torch.equal(r0["used"][k], r1["used"][k]) for k in r0["used"])
        assert all(torch.equal(r0["used"][k], r0["before"][k]) for k in r0["used"])
    best = torch.load(tmp_path / "best.pt")
    assert best["model_kwargs"]["block"] == "study" and record["block"] == "study"
    assert record["sync_bn"] is False and "broadcast" in record["batchnorm"]
    net = build_model(best["model"], **best["model_kwargs"])
    net.load_state_dict(best["state_dict"])
    net.eval()
    data = TinyPairs(n_val, seed=1)
    with torch.no_grad():
        single = sum((net(data[i][0][None]) - data[i][1][None]).abs().mean().item() for i in range(n_val)) / n_val
    assert record["best_val_loss"] == best["val_loss"]
    assert abs(record["best_val_loss"] - single) < 1e-6

