"""The training command line on real shards (the `tiny_data_dir` fixture): in-process gpu1, torchrun ddp2,
one-line errors, and the Snakemake rule."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "seed": 3,
    "models": {"unet": {"base_channels": 4}, "unetpp": {"base_channels": 4, "deep_supervision": True}},
    "noise": {"mean": 0.1},
    "train": {"device": "cpu", "epochs": 1, "batch_per_gpu": 4, "workers": 0, "preload": True, "lr": 1e-3,
              "timing_exclusive": False, "log_every": 2},
}


def script_main():
    from cxrdenoise.commands import train

    return train.main


def args(data_dir, out_dir, model="unet", setup="gpu1", sigma="0.1", settings=SETTINGS):
    return ["--model", model, "--sigma", sigma, "--setup", setup, "--data-dir", str(data_dir), "--out-dir",
            str(out_dir), "--settings", json.dumps(settings), "--threads", "1", "--config-hash", "cafe"]


def test_gpu1_on_real_shards(tiny_data_dir, tmp_path):
    torch.set_num_threads(1)
    assert script_main()(args(tiny_data_dir, tmp_path, model="unetpp")) == 0
    record = json.loads((tmp_path / "record.json").read_text())
    from cxrdenoise.data import PairDataset

    assert record["train_images"] == len(PairDataset(tiny_data_dir, "train", 0.1))
    assert record["config_hash"] == "cafe" and record["model"] == "unetpp"
    from cxrdenoise.denoise import load_denoiser

    denoiser = load_denoiser(tmp_path / "best.pt", "cpu")  # evaluation can rebuild it
    assert denoiser.meta["epoch"] == 1 and denoiser.meta["setup"] == "gpu1"


def test_missing_shards_name_the_rule(tmp_path, capsys):
    assert script_main()(args(tmp_path / "nothing", tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "clean_manifest" in err and err.startswith("error: ")


def test_missing_noise_level_names_the_rule(tiny_data_dir, tmp_path, capsys):
    assert script_main()(args(tiny_data_dir, tmp_path, sigma="0.3")) == 1
    assert "noisy_manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp2_under_torchrun(tiny_data_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cxrdenoise", "train", *args(tiny_data_dir, tmp_path, setup="ddp2")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "record.json").read_text())
    assert (record["world_size"], record["backend"], record["global_batch"]) == (2, "gloo", 8)
    assert sum(record["train_indices_per_rank"]) == record["train_images"] + record["train_padding_per_epoch"]
    assert record["sampler_check"]["covers_train_split"]


@pytest.mark.slow
def test_ddp_worker_error_is_one_line(tiny_data_dir, tmp_path):
    """A CxrError inside the torchrun workers (here: a bad model argument) ends the launcher with that one line."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    bad = {**SETTINGS, "models": {"unet": {"base_channels": 4, "bogus": 1}}}
    proc = subprocess.run([sys.executable, "-m", "cxrdenoise", "train", *args(tiny_data_dir, tmp_path, setup="ddp2", settings=bad)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model 'unet': unknown argument(s) bogus"), proc.stderr[-2000:]


def test_missing_shards_fail_before_torchrun(tmp_path, capsys):
    assert script_main()(args(tmp_path / "nothing", tmp_path / "out", setup="ddp2_amp")) == 1
    assert "clean_manifest" in capsys.readouterr().err


def snakefile(tmp_path):
    """A Snakefile with only common.smk and train.smk (the repository's may not include train.smk yet)."""
    root = tmp_path / "wf"
    root.mkdir()
    (root / "workflow").symlink_to(REPO / "workflow")  # common.smk finds the schema via basedir
    (root / "Snakefile").write_text(
        f'configfile: "{REPO / "config" / "config.yaml"}"\n'
        'wildcard_constraints:\n    sigma=r"\\d+(\\.\\d+)?",\n    model=r"[a-z][a-z0-9_]*",\n'
        '    setup=r"gpu1|dp2|ddp2|ddp2_amp",\n'
        'include: "workflow/rules/common.smk"\n'
        'include: "workflow/rules/train.smk"\n\n'
        "rule all:\n    input: TRAIN_RECORDS\n"
    )
    config = tmp_path / "test.yaml"
    config.write_text(json.dumps({
        "seed": 3, "data": {"source": "synthetic"}, "noise": {"sigmas": [0.1]},
        "models": {"unet": {"base_channels": 4}},
        "train": {"models": ["unet"], "setups": ["gpu1", "ddp2"], "device": "cpu", "epochs": 1,
                  "batch_per_gpu": 4, "workers": 0, "preload": True, "timing_exclusive": False},
    }))
    return root / "Snakefile", config


def snakemake(snake, workdir, *extra):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snake), "--directory", str(workdir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_rule_dry_run_asks_for_the_setups_gpus(tmp_path):
    snake, config = snakefile(tmp_path)
    cuda = tmp_path / "cuda.yaml"
    cuda.write_text(json.dumps({"train": {"device": "cuda", "setups": ["gpu1", "ddp2_amp"], "workers": 3,
                                          "replicates": 2}}))
    work = tmp_path / "work"
    for manifest in ("clean/manifest.json", "noisy/sigma0.1/manifest.json"):  # stand-ins: only planning here
        (work / "results" / "data" / manifest).parent.mkdir(parents=True, exist_ok=True)
        (work / "results" / "data" / manifest).write_text("{}")
    proc = snakemake(snake, work, "-n", "-p", "--cores", "8", "--configfile", str(config), str(cuda))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for rep in (1, 2):  # train.replicates: 2 -> rep1 and rep2 of every setup, each its own job
        assert f"results/train/unet/sigma0.1/gpu1/rep{rep}/record.json" in out
        assert f"results/train/unet/sigma0.1/ddp2_amp/rep{rep}/best.pt" in out
        assert (f"--setup gpu1 --replicate {rep} --data-dir results/data "
                f"--out-dir results/train/unet/sigma0.1/gpu1/rep{rep} --threads 4") in out
        # (workers + 1) threads per process
        assert f"--out-dir results/train/unet/sigma0.1/ddp2_amp/rep{rep} --threads 8" in out
    assert "rep3" not in out
    assert "gpu=1" in out and "gpu=2" in out
    assert "--setup ddp2_amp" in out and "cxrdenoise train" in out


@pytest.mark.slow
def test_rule_trains_gpu1_and_ddp2_on_cpu(tiny_data_dir, tmp_path):
    import shutil

    snake, config = snakefile(tmp_path)
    work = tmp_path / "work"
    shutil.copytree(tiny_data_dir, work / "results" / "data")
    proc = snakemake(snake, work, "--cores", "2", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for setup, world in (("gpu1", 1), ("ddp2", 2)):
        out = work / "results" / "train" / "unet" / "sigma0.1" / setup / "rep1"
        record = json.loads((out / "record.json").read_text())
        assert record["world_size"] == world and record["status"] == "finished"
        assert len(record["config_hash"]) == 64  # the workflow's, via common.smk's environment variable
        assert (out / "best.pt").exists() and (out / "epochs.csv").exists()
        assert record["replicate"] == 1 and record["init_seed"] == record["seed"] == 3
        assert (work / "results" / "logs" / "train" / f"unet_sigma0.1_{setup}_rep1.log").exists()
        assert (work / "results" / "benchmarks" / "train" / f"unet_sigma0.1_{setup}_rep1.tsv").exists()
