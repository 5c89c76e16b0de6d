"""The fast set-ups on the CPU: gpu1_fast trains under bfloat16 autocast + channels_last + the split in device
memory, sees gpu1's batches in gpu1's order for a seed, resumes exactly (also with checkpoints every N epochs),
records every switch, and stops on a bad switch or a NaN loss with one line."""

import json

import numpy as np
import pytest
import torch

from cxrdenoise.errors import CxrError
from cxrdenoise.shards import decode
from cxrdenoise.train import fastpath
from cxrdenoise.train.distributed import DeviceLoader, make_loader, single_process
from cxrdenoise.train.engine import run_training
from cxrdenoise.train.state import BEST_PATTERN, cpu_snapshot
from cxrdenoise.train.setups import get_setup
from test_train_helpers import TinyNet, TinyPairs, settings, tiny_factory

SEEN: list[torch.Tensor] = []


class RecordingNet(TinyNet):
    """Remembers a fingerprint of every training batch it is given, to compare data orders between set-ups."""

    def forward(self, x):
        if self.training:
            SEEN.append(x.detach().float().flatten(1)[:, :64].clone())
        return super().forward(x)


def recording_factory(name, **kwargs):
    return RecordingNet(**kwargs) if name == "tiny" else tiny_factory(name, **kwargs)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def train(out, setup="gpu1_fast", n_train=12, n_val=6, factory=tiny_factory, **over):
    return run_training(settings(setup, **over), TinyPairs(n_train), TinyPairs(n_val, seed=1), out,
                        single_process("cpu"), model_factory=factory, config_hash="abc123")


def test_gpu1_fast_trains_on_cpu_and_records_every_switch(tmp_path):
    record = train(tmp_path, epochs=2)
    fast = record["fast_paths"]
    assert fast["enabled"] is True and set(fast["requested"]) == set(fastpath.FAST_DEFAULTS)
    assert set(fastpath.FAST_DEFAULTS) <= set(fast["used"])
    used = fast["used"]
    assert (used["amp_dtype"], used["grad_scaler"], used["channels_last"]) == ("bfloat16", False, True)
    assert (used["device_data"], used["sync_free"], used["compile"], used["cudnn_benchmark"]) == (
        True, True, False, False)
    assert "auto: off on the CPU" in fast["reasons"]["compile"] and "CUDA only" in fast["reasons"]["cudnn_benchmark"]
    assert record["precision"] == "autocast bfloat16" and record["amp"] is True
    assert record["data_path"].startswith("split in device memory")
    assert "inference_mode" in record["validation"] and "bfloat16" in record["validation"]
    assert fast["checkpoint_writes"]["writes"] == 2 and fast["checkpoint_writes"]["background"] is True
    assert record["sampler_check"]["covers_train_split"] and record["sampler_check"]["epochs_checked"] == 2
    assert record["totals"]["train_images"] == 24 and all(np.isfinite(e["train_loss"]) for e in record["epochs"])
    assert json.loads((tmp_path / "record.json").read_text())["fast_paths"]["used"] == used
    last = torch.load(tmp_path / "last.pt", weights_only=False)  # keep_last: kept with the best file it names
    assert "state_dict" not in last["best"]  # no copy of best inside last.pt
    assert [p.name for p in tmp_path.glob(BEST_PATTERN)] == [last["best_file"]]


def test_study_setups_keep_the_study_loop(tmp_path):
    record = train(tmp_path, setup="gpu1")
    assert record["fast_paths"]["enabled"] is False and record["fast_paths"]["used"]["device_data"] is False
    assert record["data_path"] == "DataLoader" and record["precision"] == "float32" and record["optimizer"] == "Adam"
    last = torch.load(tmp_path / "last.pt", weights_only=False)  # the study's set-ups: the same checkpoint layout
    assert "state_dict" not in last["best"] and [p.name for p in tmp_path.glob(BEST_PATTERN)] == [last["best_file"]]
    assert record["checkpoints"]["background"] is True and "algorithm" in record["checkpoints"]["note"]
    plan = fastpath.plan_for(get_setup("ddp2_amp"), {"amp_dtype": "float32"}, torch.device("cuda"))
    assert (plan.enabled, plan.amp_dtype, plan.grad_scaler) == (False, torch.float16, True)  # train.fast ignored


def test_gpu1_fast_sees_gpu1s_batches_in_gpu1s_order(tmp_path):
    SEEN.clear()
    train(tmp_path / "gpu1", setup="gpu1", n_train=10, epochs=2, factory=recording_factory)
    plain = list(SEEN)
    SEEN.clear()
    train(tmp_path / "fast", setup="gpu1_fast", n_train=10, epochs=2, factory=recording_factory)
    fast = list(SEEN)
    assert len(plain) == len(fast) == 6  # 10 images in batches of 4, two epochs
    assert [b.shape for b in plain] == [b.shape for b in fast]
    assert all(torch.equal(a, b) for a, b in zip(plain, fast))  # the very same images, bit for bit
    assert not torch.equal(plain[0], plain[3])  # and epoch 2 is reshuffled


def test_device_loader_matches_the_dataloader_and_decodes_like_numpy():
    ctx = single_process("cpu")
    data = TinyPairs(11)
    ref = make_loader(data, ctx, 4, shuffle=True, seed=5, workers=0, pin=False)
    dev = DeviceLoader(data, ctx, 4, shuffle=True, seed=5, channels_last=True)
    for epoch in (0, 3):
        ref.sampler.set_epoch(epoch)
        dev.sampler.set_epoch(epoch)
        batches = list(zip(ref, dev))
        assert len(batches) == len(ref) == len(dev) == 3
        for (i1, n1, c1), (i2, n2, c2) in batches:
            assert i1.tolist() == i2.tolist() and torch.equal(n1, n2) and torch.equal(c1, c2)
            assert n2.is_contiguous(memory_format=torch.channels_last)

    class Stored:  # a PairDataset's undecoded shards, uint8 storage
        def __init__(self):
            rng = np.random.default_rng(0)
            self.a, self.b = (rng.integers(0, 256, (5, 8, 8), dtype=np.uint8) for _ in range(2))

        def __len__(self):
            return 5

        def stored_arrays(self):
            return self.a, self.b

    stored = Stored()
    loader = DeviceLoader(stored, ctx, 5, shuffle=False, seed=0)
    idx, noisy, clean = next(iter(loader))
    assert loader.storage_dtype == "uint8" and noisy.dtype == torch.float32
    assert torch.equal(noisy[:, 0], torch.from_numpy(decode(stored.a)))  # torch on the device == numpy's decode


class Killed(Exception):
    pass


@pytest.mark.parametrize("every,kill_at", [(1, 1), (2, 3)])
def test_gpu1_fast_resumes_exactly_after_a_kill(tmp_path, every, kill_at):
    s = settings("gpu1_fast", epochs=4, fast={"checkpoint_every": every})
    data = lambda: (TinyPairs(12), TinyPairs(6, seed=1))  # noqa: E731
    run_training(s, *data(), tmp_path / "straight", single_process("cpu"), model_factory=tiny_factory)

    def kill(epoch, info):
        if epoch == kill_at:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_training(s, *data(), out, single_process("cpu"), model_factory=tiny_factory, on_epoch_end=kill)
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["epoch"] == kill_at - (kill_at % every)  # every N epochs: the epoch after the last write redoes
    assert (out / last["best_file"]).exists() and len(list(out.glob(BEST_PATTERN))) == 1
    for name in ("best.pt", "record.json", "epochs.csv"):  # Snakemake deletes a failed job's outputs
        (out / name).unlink(missing_ok=True)
    record = run_training(s, *data(), out, single_process("cpu"), model_factory=tiny_factory)
    assert record["resumed_after_epochs"] == [last["epoch"]] and record["totals"]["epochs_done"] == 4
    for name, key in (("best.pt", "state_dict"), ("last.pt", "model")):
        a = torch.load(tmp_path / "straight" / name, weights_only=False)
        b = torch.load(out / name, weights_only=False)
        assert a["epoch"] == b["epoch"] and a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])  # bitwise
    straight = json.loads((tmp_path / "straight" / "record.json").read_text())
    losses = lambda r: [(e["train_loss"], e["val_loss"]) for e in r["epochs"]]  # noqa: E731
    assert losses(straight) == losses(record)


def test_keep_last_false_removes_every_resume_file(tmp_path):
    train(tmp_path, epochs=2, keep_last=False)
    assert not (tmp_path / "last.pt").exists() and not list(tmp_path.glob(BEST_PATTERN))
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] in (1, 2)


def test_nan_loss_is_caught_once_per_epoch_on_the_fast_path(tmp_path):
    with pytest.raises(CxrError, match=r"training loss is nan .*checked once per epoch.* epoch 1"):
        train(tmp_path, model="nan")


def test_bad_switches_stop_with_one_line():
    with pytest.raises(CxrError, match="train.fast.chanels_last is not a fast-path switch"):
        settings("gpu1_fast", fast={"chanels_last": True})
    with pytest.raises(CxrError, match="train.fast.amp_dtype must be one of"):
        settings("gpu1_fast", fast={"amp_dtype": "fp8"})
    with pytest.raises(CxrError, match="train.fast.checkpoint_every must be an integer >= 1"):
        settings("gpu1_fast", fast={"checkpoint_every": 0})


def test_fingerprint_covers_the_fast_math_switches_of_fast_setups_only():
    fp = lambda setup, **fast: settings(setup, fast=fast).fingerprint()  # noqa: E731
    assert fp("gpu1_fast") != fp("gpu1_fast", amp_dtype="float32")
    assert fp("gpu1_fast") == fp("gpu1_fast", checkpoint_every=5)  # scheduling of writes, not the math
    assert fp("gpu1") == fp("gpu1", amp_dtype="float32")  # the study's set-ups ignore train.fast


def test_plan_falls_back_with_a_reason():
    cpu = torch.device("cpu")
    plan = fastpath.FastPlan.fast({"amp_dtype": "float16", "compile": True}, cpu,
                                  check_compile=lambda device: "no compiler here")
    assert plan.amp_dtype == torch.bfloat16 and not plan.grad_scaler and "bfloat16 on the CPU" in \
        plan.reasons["amp_dtype"]
    assert plan.compile is False and plan.reasons["compile"] == "no compiler here"
    plain = fastpath.FastPlan.fast({"amp_dtype": "float32", "channels_last": False}, cpu)
    assert plain.amp_dtype is None and plain.precision_label() == "float32" and not plain.channels_last


def test_cpu_snapshot_is_detached_from_the_live_optimizer():
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.rand(2, 1, 8, 8)).sum().backward()
    opt.step()
    snap = cpu_snapshot(opt.state_dict())
    before = snap["state"][0]["exp_avg"].clone()
    net(torch.rand(2, 1, 8, 8)).sum().backward()
    opt.step()
    assert torch.equal(snap["state"][0]["exp_avg"], before)
    assert not torch.equal(opt.state_dict()["state"][0]["exp_avg"], before)


@pytest.mark.slow
def test_ddp2_fast_on_two_gloo_ranks_uses_the_samplers_split_and_validates_every_image_once(tmp_path):
    import torch.multiprocessing as mp
    from torch.utils.data import DistributedSampler

    from test_train_helpers import ddp_rank, free_port

    mp.spawn(ddp_rank, args=(2, free_port(), str(tmp_path), "ddp2_fast", 15, 7, {}), nprocs=2, join=True)
    record = json.loads((tmp_path / "record.json").read_text())
    assert (record["world_size"], record["backend"], record["precision"]) == (2, "gloo", "autocast bfloat16")
    assert record["fast_paths"]["used"]["device_data"] and record["fast_paths"]["used"]["sync_free"]
    assert record["sampler_check"]["covers_train_split"] and record["sampler_check"]["repeated_per_epoch"] == 1
    assert record["val_indices_per_rank"] == [4, 3]  # the padded repeat is not counted
    ranks = json.loads((tmp_path / "indices_epoch1.json").read_text())
    expected = []
    for rank in range(2):
        sampler = DistributedSampler(range(15), num_replicas=2, rank=rank, shuffle=True, seed=11)
        sampler.set_epoch(1)
        expected.append(list(sampler))
    assert ranks == expected  # what the DataLoader path of ddp2 draws for this seed
    assert torch.load(tmp_path / "best.pt", weights_only=True)["setup"] == "ddp2_fast"


def test_train_fast_is_a_param_of_the_fast_setups_jobs_only():
    from cxrdenoise.train.settings import rule_settings_json

    config = {"seed": 1, "models": {"unet": {}}, "noise": {"mean": 0.1},
              "train": {"epochs": 2, "fast": {"channels_last": True}}}
    edited = {**config, "train": {"epochs": 2, "fast": {"channels_last": False}}}
    for setup in ("gpu1", "dp2", "ddp2", "ddp2_amp"):  # the study's jobs are not re-run for a fast switch
        assert rule_settings_json(config, "unet", setup) == rule_settings_json(edited, "unet", setup)
        assert "fast" not in json.loads(rule_settings_json(config, "unet", setup))["train"]
    for setup in ("gpu1_fast", "ddp2_fast"):
        assert rule_settings_json(config, "unet", setup) != rule_settings_json(edited, "unet", setup)
