"""Fast-DDPM: the documented time steps, a training step that helps, seeded deterministic sampling, training
through the project's Trainer (gpu1, ddp2 over gloo), bfloat16 autocast, EMA and clipping, and `denoise`."""

from __future__ import annotations

import json
import math
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from cxrdenoise.cli import main
from cxrdenoise.denoise import load_denoiser
from cxrdenoise.imaging import load_grey
from cxrdenoise.errors import CxrError
from cxrdenoise.models import build_model, check_model_config, count_parameters
from cxrdenoise.models.blocks import KeywordError
from cxrdenoise.models import fastddpm as fastddpm_module
from cxrdenoise.models.diffusion import alphas_cumprod, time_steps
from cxrdenoise.train.distributed import single_process
from cxrdenoise.train.engine import run_training
from cxrdenoise.train.settings import TrainSettings
from test_train_helpers import TinyPairs, ddp_rank, free_port, settings

TINY = {"base_channels": 4, "levels": 2}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def batch(n=4, size=32, seed=0):
    data = TinyPairs(n, size=size, seed=seed)
    return data.noisy, data.clean


def test_schedules_are_the_documented_ten_steps():
    assert time_steps("non-uniform") == [0, 199, 399, 599, 699, 799, 849, 899, 949, 999]
    assert time_steps("uniform") == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    # the reference's rule for other counts: ceil(linspace(0, 699, 3)[:-1]) + ceil(linspace(699, 999, 3))
    assert time_steps("non-uniform", 5) == [0, 350, 699, 849, 999]
    assert build_model("fastddpm", **TINY, schedule="uniform").seq == time_steps("uniform")
    abar = alphas_cumprod()
    assert abar.shape == (1000,) and abar[0] == pytest.approx(1 - 1e-4) and float(abar[-1]) < 1e-4
    assert count_parameters(build_model("fastddpm"), trainable_only=True) == 9_389_825  # the documented default
    with pytest.raises(CxrError, match="schedule must be one of uniform, non-uniform"):
        build_model("fastddpm", schedule="cosine")
    with pytest.raises(CxrError, match="ema must be a decay"):
        build_model("fastddpm", ema=1.0)


def test_config_check_levels_against_the_image_size():
    """levels L halves the image L - 1 times: the start-up check (no network built) names the keyword and the
    deepest levels that fit, where the forward pass would name only the input's shape."""
    check_model_config("fastddpm", {"levels": 7}, 64)
    with pytest.raises(KeywordError) as err:
        check_model_config("fastddpm", {"levels": 7}, 32)
    assert err.value.keyword == "levels"
    assert err.value.problem == ("7 needs image sizes divisible by 2^6 = 64, and resize.size is 32; use levels 6 or "
                                 "fewer, or a resize.size divisible by 64")
    model = build_model("fastddpm", base_channels=4, levels=7)
    with pytest.raises(CxrError, match=r"input of shape \(1, 1, 32, 32\); expected .* divisible by 64"):
        model(torch.rand(1, 1, 32, 32))
    check_model_config("fastddpm", {"schedule": "uniform", "steps": 7}, 64)  # any count 2..1000 under uniform


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("fastddpm", **TINY)
    noisy, clean = batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss():  # the same t and noise each time: the draws come from the (reseeded) global RNG
        torch.manual_seed(123)
        return model(noisy, clean)

    before = loss()
    assert before.shape == (4,) and torch.isfinite(before).all()
    before.mean().backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after.mean() < before.mean()


def test_sampling_is_deterministic_for_a_seed_and_independent_of_the_batch():
    torch.manual_seed(0)
    model = build_model("fastddpm", **TINY).eval()
    noisy, _ = batch()
    torch.manual_seed(1)  # the global RNG plays no part in sampling
    first = model(noisy)
    torch.manual_seed(2)
    assert torch.equal(first, model(noisy))
    assert first.shape == noisy.shape and torch.isfinite(first).all()
    assert torch.allclose(first[1:2], model(noisy[1:2]), atol=1e-3)  # same image alone: same estimate
    other = build_model("fastddpm", **TINY, sample_seed=5).eval()
    other.load_state_dict(model.state_dict())
    assert not torch.allclose(other(noisy), first)


def test_ranks_sharing_a_seed_draw_different_noise(monkeypatch):
    draws = {}
    for rank in (0, 1):
        monkeypatch.setattr(fastddpm_module.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(fastddpm_module.dist, "get_rank", lambda rank=rank: rank)
        torch.manual_seed(7)
        draws[rank] = torch.randn(8, generator=fastddpm_module._draw_generator(torch.device("cpu")))
    assert not torch.allclose(draws[0], draws[1])


def test_bfloat16_autocast_keeps_the_loss_finite_and_falling():
    torch.manual_seed(0)
    model = build_model("fastddpm", **TINY)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    noisy, clean = batch(8)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(noisy, clean).float().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_ema_tracks_the_weights_and_is_what_samples():
    torch.manual_seed(0)
    model = build_model("fastddpm", **TINY, ema=0.9)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        p.numel() for p in model.net.parameters())  # the EMA copy is not trained
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(1.0)
    model.after_optimizer_step()  # warm-up: decay min(0.9, 1/10) = 0.1, so the copy moves 90 % of the way
    moved = [(e - p).abs().max().item() for e, p in zip(model.ema_net.parameters(), model.net.parameters())]
    assert max(moved) == pytest.approx(0.1, abs=1e-5) and int(model.ema_updates) == 1
    model.eval()
    noisy, _ = batch(2)
    plain = build_model("fastddpm", **TINY).eval()
    plain.net.load_state_dict(model.ema_net.state_dict())
    assert torch.equal(model(noisy), plain(noisy))


def train(tmp_path, setup="gpu1", **over):
    s = settings(setup, model="fastddpm", model_kwargs=dict(TINY), epochs=2, **over)
    return run_training(s, TinyPairs(16), TinyPairs(8, seed=1), tmp_path, single_process("cpu"),
                        config_hash="abc")


def test_trainer_gpu1_records_both_losses_and_the_checkpoint_round_trips_through_denoise(
        tmp_path, nih_sample_dir, capsys):
    record = train(tmp_path / "run")
    assert record["loss"].startswith("diffusion: MSE") and "DDIM steps" in record["model_note"]
    assert record["grad_clip"] is None
    rows = record["epochs"]
    assert len(rows) == 2 and all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["model"] == "fastddpm" and best["model_kwargs"]["schedule"] == "non-uniform"

    folder = tmp_path / "in"
    folder.mkdir()
    png = sorted(nih_sample_dir.glob("*.png"))[0]
    with Image.open(png) as im:
        im.convert("L").resize((96, 80)).save(folder / "cxr.png")
    out = tmp_path / "out"
    rc = main(["denoise", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--input", str(folder),
               "--output", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    denoiser = load_denoiser(tmp_path / "run" / "best.pt", "cpu")
    expected = denoiser(torch.from_numpy(load_grey(folder / "cxr.png")[0] / 255.0)[None, None])[0, 0].numpy()
    with Image.open(out / "cxr.png") as im:
        written = np.asarray(im, dtype=np.float64) / 255.0
    assert written.shape == (80, 96) and np.abs(written - expected).max() <= 1 / 255 + 1e-6


def test_grad_clip_is_recorded_and_validated(tmp_path):
    record = train(tmp_path, grad_clip=1.0)
    assert record["grad_clip"] == 1.0 and all(math.isfinite(r["train_loss"]) for r in record["epochs"])
    with pytest.raises(CxrError, match="train.grad_clip must be >= 0"):
        settings(grad_clip=-1.0)
    config = {"models": {"fastddpm": {}}, "train": {"grad_clip": 0.5}}
    assert TrainSettings.from_config(config, "fastddpm", "0.1", "gpu1").grad_clip == 0.5
    assert settings().fingerprint() != settings(grad_clip=0.5).fingerprint()


@pytest.mark.slow
@pytest.mark.parametrize("setup, precision", [("ddp2", "float32"), ("ddp2_amp", "autocast bfloat16")])
def test_trainer_ddp2_over_gloo(tmp_path, setup, precision):
    over = {"model": "fastddpm", "model_kwargs": dict(TINY, ema=0.99), "epochs": 1}
    mp.spawn(ddp_rank, args=(2, free_port(), str(tmp_path), setup, 16, 8, over), nprocs=2, join=True)
    record = json.loads((tmp_path / "record.json").read_text())
    assert (record["world_size"], record["precision"]) == (2, precision)
    assert "EMA (decay 0.99)" in record["model_note"] and math.isfinite(record["epochs"][0]["train_loss"])
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert int(best["state_dict"]["ema_updates"]) == record["epochs"][0]["steps"] == 2


def test_tables_iii_and_iv_carry_fastddpm_as_a_third_model(tmp_path, monkeypatch):
    import pandas as pd

    from cxrdenoise import tables
    from cxrdenoise.render import write_table
    from fixtures import results_tree
    from fixtures.results_tree import noisy_paths, paths, write_results_tree

    monkeypatch.setitem(results_tree.MODEL_OFFSET, "fastddpm", -0.6)
    three = ("unet", "unetpp", "fastddpm")
    results = write_results_tree(tmp_path, models=three)
    gpu1 = dict(models=three, setups=("gpu1",))
    write_table(tables.build_table3(paths(results, "summary", **gpu1), paths(results, "per_image", **gpu1),
                                    noisy_paths(results), paths(results, "record", **gpu1)), tmp_path / "t3")
    write_table(tables.build_table4(paths(results, "record", models=three), paths(results, "summary", models=three)),
                tmp_path / "t4")
    t3, t4 = pd.read_csv(tmp_path / "t3.csv"), pd.read_csv(tmp_path / "t4.csv")
    assert (t3["model"] == "fastddpm").sum() == 3 and (t4["model"] == "fastddpm").sum() == 12
    md = (tmp_path / "t3.md").read_text()
    assert "| Fast-DDPM |" in md and "U-Net − U-Net++" in md  # the paired tests stay the study's pair


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_each_prediction_target_maps_back_to_the_clean_image(prediction):
    """What the network is trained to output at x_t, turned back into x0 by the sampler, is x0 itself."""
    from cxrdenoise.models.diffusion import clean_estimate

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1, torch.randn(2, 1, 8, 8, generator=g)
    abar = alphas_cumprod()
    for t in (0, 199, 699, 999):
        a = float(abar[t])
        x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
        target = {"eps": eps, "x0": x0, "v": math.sqrt(a) * eps - math.sqrt(1 - a) * x0}[prediction]
        assert torch.allclose(clean_estimate(prediction, target, x_t.double(), a).float(), x0, atol=1e-3)
    model = build_model("fastddpm", **TINY, prediction=prediction)
    assert prediction in model.record_note and model.loss_name.startswith("diffusion: MSE")
    with pytest.raises(CxrError, match="prediction must be one of eps, x0, v"):
        build_model("fastddpm", prediction="noise")


def test_x0_prediction_trained_briefly_beats_no_denoising():
    """The demo's configuration in miniature (x0-prediction, base 8, lr 5e-3, batch 2): a short budget on a few
    images already samples test images closer to the clean ones than the noisy input is (PSNR)."""
    from cxrdenoise.metrics import psnr

    torch.manual_seed(0)
    model = build_model("fastddpm", base_channels=8, levels=3, prediction="x0")
    train_set, test_set = TinyPairs(8, seed=0), TinyPairs(4, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(15):
        for idx in torch.randperm(8, generator=order).view(-1, 2):
            opt.zero_grad()
            model(train_set.noisy[idx], train_set.clean[idx]).mean().backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        out = model(test_set.noisy)
    gain = [psnr(out[i, 0], test_set.clean[i, 0]) - psnr(test_set.noisy[i, 0], test_set.clean[i, 0])
            for i in range(4)]
    assert min(gain) > 1.0, gain


def test_tables_take_fastddpm_trained_under_gpu1_only(tmp_path, monkeypatch):
    """train.setups_by_model {fastddpm: [gpu1]} (the demo): the rules pass Fast-DDPM's gpu1 runs only, and Tables
    IV and V, the comparisons and the claims still build, with one Fast-DDPM row per noise level in Table IV."""
    import pandas as pd

    from cxrdenoise import tables
    from cxrdenoise.render import write_table
    from cxrdenoise.tables.claims import build_claims
    from cxrdenoise.tables.comparisons import build_comparisons
    from fixtures import results_tree
    from fixtures.results_tree import noisy_paths, paths, write_results_tree

    monkeypatch.setitem(results_tree.MODEL_OFFSET, "fastddpm", -0.6)
    results = write_results_tree(tmp_path, models=("unet", "unetpp", "fastddpm"), block=None)
    for record in (results / "train" / "fastddpm").rglob("record.json"):  # what the demo's config records
        data = json.loads(record.read_text())
        data["model_kwargs"]["prediction"] = "x0"
        record.write_text(json.dumps(data))

    def files(kind, sigmas=("0.1", "0.2", "0.3")):  # as common.smk's train_records/eval_files expand them
        return paths(results, kind, sigmas=sigmas) + paths(results, kind, models=("fastddpm",), sigmas=sigmas,
                                                            setups=("gpu1",))

    write_table(tables.build_table4(files("record"), files("summary")), tmp_path / "t4")
    write_table(tables.build_table5(files("record", ("0.1",)), files("summary", ("0.1",))), tmp_path / "t5")
    t4, t5 = pd.read_csv(tmp_path / "t4.csv"), pd.read_csv(tmp_path / "t5.csv")
    assert sorted(t4.loc[t4["model"] == "fastddpm", "setup"]) == ["gpu1"] * 3
    assert list(t5.loc[t5["model"] == "fastddpm", "setup"]) == ["gpu1"] and (t5["model"] == "unet").sum() == 4
    assert "Fast-DDPM base width 8, predicts x0" in (tmp_path / "t4.md").read_text()
    args = (files("record"), files("summary"), files("per_image"), noisy_paths(results))
    write_table(build_comparisons(*args), tmp_path / "cmp")
    assert "Fast-DDPM gpu1" in (tmp_path / "cmp.md").read_text()
    write_table(build_claims(*args), tmp_path / "claims")
    assert (tmp_path / "claims.csv").stat().st_size > 0


def test_demo_trains_fastddpm_under_gpu1_only(tmp_path):
    """config/demo.yaml: Fast-DDPM (and DnCNN) beside U-Net and U-Net++ (train.setups_by_model), 3 jobs more each; its
    checkpoints reach evaluation, the tables and the privacy stage."""
    import re

    from snakemake_run import REPO, snakemake
    from test_workflow import planned_jobs

    result = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(REPO / "config" / "demo.yaml"), "--", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    # U-Net, U-Net++: 3 sigmas x (3 runs at gpu1, 1 at dp2) + ddp2_amp 3 runs at 0.1 and 1 at 0.2, 0.3
    # (train.replicates_by_model); + DnCNN and Fast-DDPM at gpu1
    assert jobs["train"] == 2 * (3 * (3 + 1) + 3 + 1 + 1) + 3 + 3
    # one evaluate job per trained run scores all its replicates: 8 runs of 3, the other 22 runs of 1
    assert jobs["evaluate_3reps"] == 2 * (3 + 1) and jobs["evaluate"] + 3 * jobs["evaluate_3reps"] == jobs["train"]
    trained = set(re.findall(r"wildcards: model=(\w+), sigma=([\d.]+), setup=(\w+)", result.stdout))
    assert {(s, u) for m, s, u in trained if m == "fastddpm"} == {(s, "gpu1") for s in ("0.1", "0.2", "0.3")}
    def inputs(rule):
        return re.search(rf"rule {rule}:\n\s+input: ([^\n]+)", result.stdout).group(1).split(", ")

    table4 = [p for p in inputs("table4") if "/fastddpm/" in p]
    assert "results/eval/fastddpm/sigma0.3/gpu1/rep1/summary.json" in table4 and len(table4) == 6  # + records
    assert "results/train/fastddpm/sigma0.2/gpu1/rep1/best.pt" in inputs("privacy_scores")
