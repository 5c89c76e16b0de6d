"""The training loop in one process on the CPU: records, dp2's honest note, best-checkpoint choice, NaN and OOM
messages, and exact resume after a kill."""

import csv
import json

import pytest
import torch

from cxrdenoise.errors import CxrError
from cxrdenoise.train import engine
from cxrdenoise.train.distributed import DP_CPU_NOTE, single_process
from cxrdenoise.train.engine import Trainer, l1_loss, run_training
from cxrdenoise.train.state import EPOCH_COLUMNS, TIMING_COLUMNS
from test_train_helpers import TinyNet, TinyPairs, settings, tiny_factory

RECORD_FIELDS = {
    "setup", "device", "device_name", "device_count", "nodes", "world_size", "global_batch", "lr", "totals",
    "best_epoch", "best_val_loss", "epochs", "provenance", "torch_version", "git_commit", "config_hash",
    "peak_mem_kind", "precision", "backend", "train_indices_per_rank", "note", "data_parallel_effective",
}
EPOCH_FIELDS = set(EPOCH_COLUMNS) | {"train_images", "steps", "val_images"}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def train(tmp_path, setup="gpu1", n_train=16, n_val=8, **over):
    return run_training(settings(setup, **over), TinyPairs(n_train), TinyPairs(n_val, seed=1), tmp_path,
                        single_process("cpu"), model_factory=tiny_factory, config_hash="abc123")


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_gpu1_epoch_writes_every_file_with_the_fields(tmp_path):
    record = train(tmp_path, epochs=2)
    assert RECORD_FIELDS <= set(record)
    on_disk = json.loads((tmp_path / "record.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["best_epoch"] == record["best_epoch"]
    assert (record["setup"], record["device"], record["world_size"], record["nodes"]) == ("gpu1", "cpu", 1, 1)
    assert (record["global_batch"], record["lr"], record["config_hash"]) == (4, 1e-3, "abc123")
    assert record["peak_mem_kind"] == "process_peak_rss" and record["precision"] == "float32"
    assert record["totals"]["epochs_done"] == 2 and record["totals"]["train_images"] == 32
    for row in record["epochs"]:
        assert EPOCH_FIELDS <= set(row)
        assert row["train_s"] > 0 and row["val_s"] > 0 and row["images_per_s"] > 0 and row["peak_mem_mb"] > 0
        assert row["steps"] == 4 and row["amp_skipped_steps"] == 0
    rows = read_csv(tmp_path / "epochs.csv")
    assert tuple(rows[0]) == EPOCH_COLUMNS and len(rows) == 2
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    best = torch.load(tmp_path / "best.pt", weights_only=True)  # loadable the safe way, as evaluation does
    layout_keys = {"model", "model_kwargs", "state_dict", "epoch", "val_loss", "sigma", "noise_mean", "config_hash"}
    assert layout_keys <= set(best)
    assert (best["model"], best["model_kwargs"]) == ("tiny", {"channels": 4})
    assert (best["sigma"], best["noise_mean"], best["config_hash"]) == (0.1, 0.1, "abc123")
    net = TinyNet(**best["model_kwargs"])
    net.load_state_dict(best["state_dict"])  # unwrapped keys


def test_dp2_on_cpu_runs_as_one_process_and_says_so(tmp_path):
    record = train(tmp_path, setup="dp2")
    assert record["note"] == DP_CPU_NOTE == "DataParallel needs CUDA devices; ran as a single CPU process"
    assert record["data_parallel_effective"] is False
    assert (record["global_batch"], record["batch_per_process"], record["world_size"]) == (8, 8, 1)
    assert record["epochs"][0]["steps"] == 2
    assert not any(k.startswith("module.") for k in torch.load(tmp_path / "best.pt")["state_dict"])


def test_best_checkpoint_is_the_argmin_of_the_validation_losses(tmp_path, monkeypatch):
    fake_val = iter([0.5, 0.3, 0.4, 0.35])
    real_validate = Trainer.validate
    weights = {}

    def validate(self):
        _loss, n, seconds = real_validate(self)
        weights[len(self.progress.epochs) + 1] = {k: v.clone() for k, v in self.bare.state_dict().items()}
        return next(fake_val), n, seconds

    monkeypatch.setattr(Trainer, "validate", validate)
    record = train(tmp_path, epochs=4)
    best = torch.load(tmp_path / "best.pt")
    assert record["best_epoch"] == best["epoch"] == 2 and best["val_loss"] == 0.3
    assert all(torch.equal(best["state_dict"][k], weights[2][k]) for k in weights[2])
    assert [r["val_loss"] for r in read_csv(tmp_path / "epochs.csv")] == ["0.5", "0.3", "0.4", "0.35"]


def test_nan_loss_names_model_setup_epoch_and_step(tmp_path):
    with pytest.raises(CxrError, match=r"training loss is nan at model nan, setup dp2, sigma 0.1, epoch 1, step 1"):
        train(tmp_path, setup="dp2", model="nan")


def test_steps_skipped_by_the_grad_scaler_are_counted_not_errors(tmp_path):
    """What ddp2_amp does on CUDA, with a CPU GradScaler standing in for the CUDA one."""
    trainer = Trainer(settings("gpu1", model="overflow"), TinyPairs(8), TinyPairs(4, seed=1), tmp_path,
                      single_process("cpu"), model_factory=tiny_factory)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = [p.detach().clone() for p in trainer.bare.parameters()]
    record = trainer.run()
    assert record["epochs"][0]["amp_skipped_steps"] == 2 == record["totals"]["amp_skipped_steps"]
    assert record["epochs"][0]["amp_scale"] == 2.0**14
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.bare.parameters()))  # skipped: weights unchanged


def test_out_of_memory_names_batch_and_setup(tmp_path, monkeypatch):
    def oom(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TinyNet, "forward", oom)
    expected = r"CUDA out of memory with 8 images per process \(global batch 8\) for model tiny, setup dp2"
    with pytest.raises(CxrError, match=expected):
        train(tmp_path, setup="dp2")


def test_deep_supervision_averages_the_heads():
    target = torch.zeros(2, 1, 4, 4)
    heads = [torch.full_like(target, v) for v in (1.0, 2.0, 3.0, 6.0)]
    assert l1_loss(heads, target).item() == pytest.approx(3.0)
    net = TinyNet(deep_supervision=True)
    x = torch.rand(2, 1, 8, 8)
    assert isinstance(net(x), list) and len(net(x)) == 4
    assert torch.is_tensor(net.eval()(x))


def test_real_models_train_one_epoch(tmp_path):
    pytest.importorskip("cxrdenoise.models")
    for name, kwargs in (("unet", {"base_channels": 4}), ("unetpp", {"base_channels": 4, "deep_supervision": True})):
        record = train(tmp_path / name, model=name, model_kwargs=kwargs, n_train=8, n_val=4)
        assert record["model"] == name and record["model_kwargs"]["base_channels"] == 4
        assert torch.isfinite(torch.tensor(record["best_val_loss"]))


class Killed(Exception):
    pass


def kill_after_first_epoch(epoch, info):
    if epoch == 1:
        raise Killed


def test_resume_after_a_kill_gives_the_same_weights_and_metrics(tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        s = settings("gpu1", epochs=3, workers=0)
        data = lambda: (TinyPairs(12), TinyPairs(6, seed=1))  # noqa: E731

        run_training(s, *data(), tmp_path / "straight", single_process("cpu"), model_factory=tiny_factory)

        out = tmp_path / "killed"
        with pytest.raises(Killed):
            run_training(s, *data(), out, single_process("cpu"), model_factory=tiny_factory,
                         on_epoch_end=kill_after_first_epoch)
        assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 1
        for name in ("best.pt", "record.json", "epochs.csv"):  # Snakemake deletes a failed job's outputs
            (out / name).unlink(missing_ok=True)
        record = run_training(s, *data(), out, single_process("cpu"), model_factory=tiny_factory)
    finally:
        torch.use_deterministic_algorithms(False)

    assert record["resumed_after_epochs"] == [1] and record["totals"]["epochs_done"] == 3
    for name in ("best.pt", "last.pt"):
        a = torch.load(tmp_path / "straight" / name, weights_only=False)
        b = torch.load(out / name, weights_only=False)
        key = "state_dict" if name == "best.pt" else "model"
        assert a["epoch"] == b["epoch"]
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])  # bitwise
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(read_csv(tmp_path / "straight" / "epochs.csv")) == strip(read_csv(out / "epochs.csv"))


def test_last_pt_from_other_settings_is_not_resumed(tmp_path):
    train(tmp_path, epochs=1)
    record = train(tmp_path, epochs=2, lr=5e-3)
    assert record["resumed_after_epochs"] == [] and [e["epoch"] for e in record["epochs"]] == [1, 2]
    record = train(tmp_path, epochs=3, lr=5e-3)  # same settings, longer: continues
    assert record["resumed_after_epochs"] == [2] and [e["epoch"] for e in record["epochs"]] == [1, 2, 3]


def test_keep_last_false_removes_the_resume_state(tmp_path):
    train(tmp_path, keep_last=False)
    assert not (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()


def test_empty_split_is_one_line(tmp_path):
    with pytest.raises(CxrError, match="empty split"):
        run_training(settings(), TinyPairs(4), TinyPairs(0), tmp_path, single_process("cpu"),
                     model_factory=tiny_factory)


def test_default_factory_is_the_model_registry():
    pytest.importorskip("cxrdenoise.models")
    assert engine._default_factory("dncnn", depth=3, channels=4).model_name == "dncnn"


@pytest.mark.parametrize("setup", ["gpu1", "dp2", "ddp2", "ddp2_amp"])
def test_sync_bn_converts_every_batchnorm_of_ddp_setups_only(setup):
    from cxrdenoise.models import build_model
    from cxrdenoise.train.distributed import with_sync_batchnorm
    from cxrdenoise.train.setups import get_setup

    plain = build_model("unet", base_channels=4)
    keys = sorted(plain.state_dict())
    # the device only gates the conversion (torch runs SyncBatchNorm on CUDA alone); converting needs no GPU
    net = with_sync_batchnorm(plain, get_setup(setup), torch.device("cuda", 0), sync_bn=True)
    kinds = [type(m).__name__ for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    ddp = get_setup(setup).ddp
    assert kinds == (["SyncBatchNorm"] if ddp else ["BatchNorm2d"]) * 9
    assert sorted(net.state_dict()) == keys and net.model_kwargs["block"] == "study"  # best.pt loads as before
    off = with_sync_batchnorm(build_model("unet", base_channels=4), get_setup(setup), torch.device("cuda", 0), False)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in off.modules())
    if ddp:
        with pytest.raises(CxrError, match=r"train.sync_bn: .*needs CUDA.*runs on the cpu"):
            with_sync_batchnorm(build_model("unet", base_channels=4), get_setup(setup), torch.device("cpu"), True)


def test_block_and_batchnorm_are_recorded(tmp_path):
    record = train(tmp_path, model="unet", model_kwargs={"base_channels": 4, "block": "double_bn"}, sync_bn=True)
    assert record["block"] == "double_bn" and record["model_kwargs"]["block"] == "double_bn"
    assert record["sync_bn"] is True and record["batchnorm"].endswith("train.sync_bn applies to DDP only")
    best = torch.load(tmp_path / "best.pt")
    assert best["model_kwargs"] == {"base_channels": 4, "block": "double_bn"}
    default = train(tmp_path / "default", model="unet", model_kwargs={"base_channels": 4})
    assert default["block"] == "study" and default["sync_bn"] is False
    assert train(tmp_path / "tiny")["block"] is None  # no block option: recorded as none
