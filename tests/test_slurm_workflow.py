"""The demo workflow through `--profile profiles/slurm` on a real (local, single-node) SLURM, with CPU training.

* every job goes through sbatch, and the scheduler's job-completion log shows the GPU counts each training setup
  asked for (`train.request_gpus_on_cpu: true`: SLURM hands out its two fake GPUs, training runs on the CPU);
* the outputs equal those of a local run of the same config (run at the same time, on the same 2 cores):
  shard hashes, best.pt weights, per-epoch losses, per-image scores;
* a training job cancelled with `scancel` mid-run is resubmitted by Snakemake (the profile's `retries: 1`), and one
  requeued by SLURM (`scontrol requeue`, what preemption with requeue does) runs again under the same job id: both
  resume from last.pt and end with the same weights as the uninterrupted local run.

Plus the multi-node launcher (`srun ... torchrun --rdzv-backend c10d`) inside a real allocation, on the one node
this cluster has, and SLURM's verdict on the sbatch flags of a 2-node training job. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from slurm_cluster import LocalSlurm
from snakemake_run import REPO, start_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

EPOCHS = 8  # gpu1 epochs take ~0.5 s here: room to interrupt a job after 1..EPOCHS-2 saved epochs
OVERRIDES = {
    "noise": {"sigmas": [0.1]},
    "train": {"models": ["unet"], "setups": ["gpu1", "ddp2_amp"], "epochs": EPOCHS, "batch_per_gpu": 2,
              "request_gpus_on_cpu": True,
              "replicates_by_model": {"unet": {"gpu1": 1, "ddp2_amp": 1}}},  # one run each (the demo has three)
    "evaluate": {"lpips": False},
    "federated": {"enabled": False},  # on in the demo; its Flower processes are tested in test_federated_run.py
}
SETUP_GPUS = {"gpu1": 1, "ddp2_amp": 2}
# the flags a cluster without accounting needs (see tests/slurm_cluster.py), and memory this node has
SLURM_ARGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--set-resources", "train:mem_mb=1000", "evaluate:mem_mb=1000", "evaluate_noisy:mem_mb=1000",
    "--verbose",  # the plugin logs each "sbatch call: ..."
)


def _env(slurm: LocalSlurm | None) -> dict[str, str]:
    env = slurm.env() if slurm is not None else dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _snakemake(workdir: Path, configs: list[Path], *args: str, slurm: LocalSlurm | None = None,
               nice: int = 0) -> subprocess.Popen:
    return start_snakemake(workdir, configs, *args, env=_env(slurm), nice=nice)


def _wait(proc: subprocess.Popen, timeout: float) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return Path(proc.args[proc.args.index("--directory") + 1], "snakemake.out").read_text()


def _diagnostics(slurm: LocalSlurm, workdir: Path, output: str) -> str:
    logs = "\n".join(f"==> {p.relative_to(workdir)} <==\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((workdir / "results" / "logs" / "train").glob("*.log")))
    return (f"--- snakemake (tail) ---\n{output[-6000:]}\n--- train logs ---\n{logs}\n--- daemons ---\n{slurm.logs()}\n"
            f"--- squeue ---\n{slurm.run('squeue', '--states=all', check=False).stdout}")


def _planned_jobs(workdir: Path, configs: list[Path]) -> Counter:
    """Job counts per rule of the dry run (`all` is a local target rule, never submitted)."""
    proc = _snakemake(workdir, configs, "-n", "--cores", "1")
    stdout = _wait(proc, 120)
    assert proc.returncode == 0, stdout[-3000:]
    counts = Counter()
    for line in stdout.split("Job stats:")[-1].splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m.group(1) not in ("all", "total"):
            counts[m.group(1)] = int(m.group(2))
    return counts


def _rule_of(comment: str) -> str:
    return re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", comment).group(1)


class Interrupter:
    """Watches the SLURM run; once a training job has saved 1..EPOCHS-2 epochs, cancels it (gpu1) or requeues it
    (ddp2_amp, released at once instead of after SLURM's 2-minute requeue delay)."""

    def __init__(self, slurm: LocalSlurm, workdir: Path):
        self.slurm, self.workdir = slurm, workdir
        self.todo = {"gpu1": "scancel", "ddp2_amp": "requeue"}
        self.done: dict[str, dict] = {}
        self.released: set[str] = set()

    def poll(self) -> None:
        jobs = [j for j in self.slurm.jobs() if j.get("WorkDir") == str(self.workdir)]
        for setup, action in list(self.todo.items()):
            comment = f"rule_train_wildcards_unet_0.1_{setup}_1"  # wildcards model, sigma, setup, rep
            running = [j for j in jobs if j.get("Comment") == comment and j.get("JobState") == "RUNNING"]
            record = self.workdir / "results" / "train" / "unet" / "sigma0.1" / setup / "rep1" / "record.json"
            if not running or not record.exists():
                continue
            try:
                saved = len(json.loads(record.read_text())["epochs"])
            except (ValueError, KeyError):
                continue  # being replaced
            if not 1 <= saved <= EPOCHS - 2:
                continue
            job_id = running[0]["JobId"]
            if action == "scancel":
                self.slurm.run("scancel", job_id)
            else:
                self.slurm.run("scontrol", "requeue", job_id)
            self.done[setup] = {"job_id": job_id, "epochs_saved": saved, "action": action}
            del self.todo[setup]
        for setup, info in self.done.items():  # skip the BeginTime delay SLURM gives a requeued job
            if info["action"] == "requeue" and setup not in self.released:
                state = [j for j in jobs if j["JobId"] == info["job_id"]]
                if state and state[0]["JobState"] == "PENDING":
                    self.slurm.run("scontrol", "update", f"jobid={info['job_id']}", "StartTime=now", check=False)
                elif state and state[0]["JobState"] == "RUNNING" and state[0].get("Restarts", "0") != "0":
                    self.released.add(setup)


def _sbatch_calls(output: str) -> dict[str, list[str]]:
    """comment -> the plugin's sbatch command lines (without the --wrap payload)."""
    calls: dict[str, list[str]] = {}
    for line in output.splitlines():
        if "sbatch call: " in line:
            call = line.split("sbatch call: ", 1)[1].split(" --wrap=", 1)[0]
            comment = re.search(r"--comment '?(rule_\S+?)'?(\s|$)", call).group(1)
            calls.setdefault(comment, []).append(call)
    return calls


def _manifest_hashes(workdir: Path) -> dict[str, list[str]]:
    data = workdir / "results" / "data"
    return {str(m.relative_to(data)): [s["sha256"] for s in json.loads(m.read_text())["shards"]]
            for m in sorted(data.rglob("manifest.json"))}


def _epoch_losses(path: Path) -> list[tuple[str, str, str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    head = rows[0]
    return [(r[head.index("epoch")], r[head.index("train_loss")], r[head.index("val_loss")]) for r in rows[1:]]


def _scores(path: Path) -> list[tuple[str, ...]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    cols = [rows[0].index(c) for c in ("image_id", "psnr", "ssim", "ssim_w3")]
    return [tuple(r[c] for c in cols) for r in rows[1:]]


def test_demo_through_slurm_profile_matches_local_run_and_resumes(slurm: LocalSlurm, tmp_path: Path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(OVERRIDES))
    configs = [REPO / "config" / "demo.yaml", overrides]
    planned = _planned_jobs(tmp_path / "plan", configs)
    assert planned["train"] == 2 and planned["evaluate"] == 2, planned
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    n_before = len(slurm.jobcomp_log())

    # the local reference run shares the 2 cores at low priority: SLURM jobs that run slower than ~12 s cost 33 s,
    # since the executor's status checks back off (1 s after submission, then 11 s, 21 s, ... later)
    local = _snakemake(local_dir, configs, "--cores", "2", nice=19)
    on_slurm = _snakemake(slurm_dir, configs, "--profile", str(REPO / "profiles" / "slurm"), *SLURM_ARGS,
                          slurm=slurm)
    interrupter = Interrupter(slurm, slurm_dir)
    deadline = time.monotonic() + 900
    while on_slurm.poll() is None and time.monotonic() < deadline:
        interrupter.poll()
        time.sleep(0.2)
    slurm_out = _wait(on_slurm, max(1, deadline - time.monotonic()))
    local_out = _wait(local, 600)
    assert on_slurm.returncode == 0, _diagnostics(slurm, slurm_dir, slurm_out)
    assert local.returncode == 0, local_out[-3000:]
    assert set(interrupter.done) == {"gpu1", "ddp2_amp"}, (
        f"could not interrupt a training job mid-run: {interrupter.done}\n{_diagnostics(slurm, slurm_dir, slurm_out)}"
    )

    # --- every job went through sbatch: the job-completion log, one COMPLETED record per planned job
    records = slurm.wait_jobcomp(n_before + sum(planned.values()) + 2, timeout=30)[n_before:]
    completed = [r for r in records if r["JobState"] == "COMPLETED"]
    assert Counter(_rule_of(r["Comment"]) for r in completed) == planned, records
    assert len({r["Comment"] for r in completed}) == len(completed)  # each job completed once
    for r in completed:
        if _rule_of(r["Comment"]) == "train":
            setup = "gpu1" if r["Comment"].endswith("_gpu1_1") else "ddp2_amp"
            assert r["gpus"] == SETUP_GPUS[setup] and r["GresUsed"] == f"gpu:{SETUP_GPUS[setup]}", r
        else:
            assert r["gpus"] == 0, r

    # what the plugin asked for: the setup's GPUs on one node, no task geometry (one launch per job)
    calls = _sbatch_calls(slurm_out)
    for setup, gpus in SETUP_GPUS.items():
        for call in calls[f"rule_train_wildcards_unet_0.1_{setup}_1"]:
            flags = call.split()
            assert f"--gpus={gpus}" in flags and "--nodes=1" in flags and "--requeue" in flags, call
            assert not any(f.startswith("--ntasks") for f in flags), call
    jobs = {j["JobId"]: j for j in slurm.jobs()}
    for r in completed:
        if _rule_of(r["Comment"]) == "train":
            assert jobs[r["JobId"]]["NumTasks"] == "1", jobs[r["JobId"]]

    # --- the interrupted jobs: cancelled -> resubmitted (new job id); requeued -> same job id, run twice
    cancelled = interrupter.done["gpu1"]
    gpu1_records = [r for r in records if r["Comment"].endswith("_gpu1_1") and _rule_of(r["Comment"]) == "train"]
    assert [r["JobState"] for r in gpu1_records] == ["CANCELLED", "COMPLETED"], gpu1_records
    assert gpu1_records[0]["JobId"] == cancelled["job_id"] != gpu1_records[1]["JobId"]
    assert len(calls["rule_train_wildcards_unet_0.1_gpu1_1"]) == 2  # Snakemake submitted it again
    requeued = interrupter.done["ddp2_amp"]
    ddp_records = [r for r in records if r["Comment"].endswith("_ddp2_amp_1") and _rule_of(r["Comment"]) == "train"]
    assert {r["JobId"] for r in ddp_records} == {requeued["job_id"]} and ddp_records[-1]["JobState"] == "COMPLETED"
    assert len(calls["rule_train_wildcards_unet_0.1_ddp2_amp_1"]) == 1  # SLURM ran it again, not Snakemake
    assert jobs[requeued["job_id"]]["Restarts"] == "1"

    train = Path("results", "train", "unet", "sigma0.1")
    for setup, info in interrupter.done.items():
        record = json.loads((slurm_dir / train / setup / "rep1" / "record.json").read_text())
        (resumed,) = record["resumed_after_epochs"]
        assert info["epochs_saved"] <= resumed < EPOCHS, (info, record["resumed_after_epochs"])
        log = (slurm_dir / "results" / "logs" / "train" / f"unet_sigma0.1_{setup}_rep1.log").read_text()
        assert f"resuming from {train / setup / 'rep1' / 'last.pt'} after epoch {resumed}" in log, log
        assert (record["device"], record["status"], record["totals"]["epochs_done"]) == ("cpu", "finished", EPOCHS)
        assert (record["nodes"], record["gpus_total"], record["world_size"]) == (1, 0, SETUP_GPUS[setup])
        assert record["cuda_visible_devices"] == ",".join(map(str, range(SETUP_GPUS[setup])))  # SLURM's GPUs
        assert record["slurm_job_id"] in {r["JobId"] for r in records}
    # one torchrun launcher started both DDP workers (the log holds the last attempt)
    ddp_log = (slurm_dir / "results" / "logs" / "train" / "unet_sigma0.1_ddp2_amp_rep1.log").read_text()
    assert ddp_log.count("torch.distributed.run --standalone --nproc_per_node=2") == 1, ddp_log

    # --- the outputs equal the local run's
    assert _manifest_hashes(slurm_dir) == _manifest_hashes(local_dir) and _manifest_hashes(local_dir)
    for setup in SETUP_GPUS:
        ours = torch.load(slurm_dir / train / setup / "rep1" / "best.pt", weights_only=True)
        theirs = torch.load(local_dir / train / setup / "rep1" / "best.pt", weights_only=True)
        assert (ours["epoch"], ours["val_loss"], ours["config_hash"]) == (
            theirs["epoch"], theirs["val_loss"], theirs["config_hash"])
        assert ours["state_dict"].keys() == theirs["state_dict"].keys()
        for name, tensor in ours["state_dict"].items():
            assert torch.equal(tensor, theirs["state_dict"][name]), (setup, name)
        assert _epoch_losses(slurm_dir / train / setup / "rep1" / "epochs.csv") == _epoch_losses(
            local_dir / train / setup / "rep1" / "epochs.csv")
        per_image = Path("results", "eval", "unet", "sigma0.1", setup, "rep1", "per_image.csv")
        assert _scores(slurm_dir / per_image) == _scores(local_dir / per_image)
    for table in ("table3", "table4", "table5", "table6"):
        assert (slurm_dir / "results" / "tables" / f"{table}.csv").exists()


DRIVER = """\
import os, sys
# what snakemake-executor-plugin-slurm-jobstep 0.6 leaves of SLURM's variables (SLURM_CONF: LocalSlurm's config)
KEEP = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_DIR", "SLURM_SUBMIT_HOST", "SLURM_CONF"}
for key in [k for k in os.environ if k.startswith(("SLURM_", "SRUN_", "SBATCH_")) and k not in KEEP]:
    del os.environ[key]
from cxrdenoise.train.launch import srun_torchrun
from cxrdenoise.train.settings import TrainSettings
settings = TrainSettings(model="unet", setup="ddp2", sigma="0.1", model_kwargs={"base_channels": 4}, epochs=1,
                         batch_per_gpu=4, workers=0, device="cpu", preload=True, threads=2, seed=3)
srun_torchrun({"settings": settings.to_dict(), "data_dir": sys.argv[1], "out_dir": sys.argv[2],
               "config_hash": "cafe"}, settings)
"""


def test_multinode_launcher_inside_an_allocation(slurm: LocalSlurm, tiny_data_dir: Path, tmp_path: Path):
    """The srun + torchrun c10d launch of a multi-node job, run for real on this cluster's single node, in the
    environment the SLURM executor leaves (SLURM_* stripped but SLURM_JOB_ID): node list from scontrol."""
    (tmp_path / "driver.py").write_text(DRIVER)
    wrap = f"{sys.executable} driver.py {tiny_data_dir} out"
    proc = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "-o", "job.log",
                           "-D", str(tmp_path), "--wrap", wrap],
                          env=_env(slurm), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id, state = proc.stdout.strip(), ""
    deadline = time.monotonic() + 300
    while state not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") and time.monotonic() < deadline:
        time.sleep(0.5)  # (sbatch --wait polls far less often)
        state = next((j["JobState"] for j in slurm.jobs() if j["JobId"] == job_id), "")
    log = (tmp_path / "job.log").read_text() if (tmp_path / "job.log").exists() else ""
    assert state == "COMPLETED", f"{state}\n{log[-4000:]}\n{slurm.logs()}"
    command = next(line for line in log.splitlines() if line.startswith("[train] srun "))
    host = slurm.nodename
    assert re.search(rf"--nnodes 1 --nproc_per_node 2 --rdzv-backend c10d --rdzv-endpoint {host}:\d+ --rdzv-id \d+",
                     command), command
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert (record["nodes"], record["hosts"], record["world_size"], record["backend"]) == (1, [host], 2, "gloo")
    assert record["status"] == "finished" and not list((tmp_path / "out").glob(".launch-*"))


def test_sbatch_flags_of_a_two_node_job_are_valid_slurm(slurm: LocalSlurm, tmp_path: Path):
    """The flags the plugin builds for a 2-node ddp2_amp job (see test_train_multinode.py) pass SLURM's own
    checks; the only objection of this one-node cluster is that it has one node."""
    from test_train_multinode import slurm_plugin_submit_flags

    resources = {"gpu": "4", "nodes": "2", "mpi": "srun", "tasks": "2", "tasks_per_gpu": "0",
                 "slurm_extra": "--gpus-per-node=2", "runtime": "10", "mem_mb": "100"}
    flags = slurm_plugin_submit_flags(resources, threads=2).split()[1:]
    flags = [f for f in flags if f not in ("--parsable", "--export=ALL")]
    flags = flags[flags.index("-t"):]  # drop the job name / log / comment the helper fills with placeholders

    def test_only(*extra: str) -> str:
        r = subprocess.run(["sbatch", "--test-only", *extra, "--wrap", "true"], env=_env(slurm),
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
        return r.stdout + r.stderr

    two_nodes = test_only(*flags)
    assert "Requested node configuration is not available" in two_nodes, two_nodes
    assert "Invalid generic resource" not in two_nodes and "gres" not in two_nodes.lower(), two_nodes
    uneven = test_only(*[f.replace("--gpus=4", "--gpus=3") for f in flags])  # a real gres check happens
    assert "Invalid generic resource" in uneven or "not multiple" in uneven, uneven
    one_node = test_only(*[{"--nodes=2": "--nodes=1", "--ntasks=2": "--ntasks=1", "--gpus=4": "--gpus=2"}.get(f, f)
                           for f in flags])
    assert "to start at" in one_node, one_node  # the same request shape fits on one node with 2 GPUs
