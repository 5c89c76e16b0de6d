"""Snakemake's SLURM executor against a real (local, single-node) SLURM.

The cluster comes from ``tests/slurm_cluster.py`` (Debian ``slurm-wlm`` 22.05,
installed by ``.ci/install-slurm.sh``; two fake GPUs, no accounting).  Every
test here is skipped with the reason when the binaries are missing or we are
not root.  About 25-40 s in all on 2 cores (cluster start ~1 s, each Snakemake
run ~15 s: the jobs take a few seconds, the rest is the executor's polling).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_cluster import LocalSlurm

pytestmark = pytest.mark.slurm

# Snakemake flags for a cluster without slurmdbd (see slurm_cluster.py):
SLURM_FLAGS = (
    "--executor", "slurm",
    # no accounting, so no `sacct`; MinJobAge=600 keeps finished jobs in `squeue`
    "--slurm-status-command", "squeue",
    # default 40 s before the first status check; the jobs here take ~3 s
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    # `slurm_account` must stay unset: the plugin validates a given account with
    # sacctmgr/sshare, both of which fail without slurmdbd
    "--default-resources", "runtime=5", "mem_mb=256",
    "--latency-wait", "10",
    "--jobs", "2",
    # --verbose makes the plugin log each "sbatch call: sbatch ..." line
    "--verbose",
)


def _run_snakemake(slurm: LocalSlurm, workdir: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = slurm.env()
    env.pop("CUDA_VISIBLE_DEVICES", None)  # --export=ALL would hand ours to the jobs
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir), *SLURM_FLAGS, *extra]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def _diagnostics(slurm: LocalSlurm, workdir: Path, proc: subprocess.CompletedProcess) -> str:
    job_logs = "\n".join(
        f"==> {p.relative_to(workdir)} <==\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    )
    return (
        f"snakemake exit {proc.returncode}\n--- stderr (tail) ---\n{proc.stderr[-6000:]}\n"
        f"--- slurm job logs ---\n{job_logs}\n--- daemons ---\n{slurm.logs()}\n"
        f"--- squeue ---\n{slurm.run('squeue', '--states=all', check=False).stdout}"
    )


def _sbatch_calls(stderr: str) -> dict[str, str]:
    """rule name -> the plugin's sbatch command line (without the --wrap payload)."""
    calls = {}
    for line in stderr.splitlines():
        if "sbatch call: " in line:
            call = line.split("sbatch call: ", 1)[1].split(" --wrap=", 1)[0]
            m = re.search(r"--comment '?rule_(\w+?)'?(\s|$)", call)
            assert m, call
            calls[m.group(1)] = call
    return calls


def _run_id(stderr: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", stderr)
    assert m, "no 'SLURM run ID' in snakemake's output"
    return m.group(1)


SMOKE_SNAKEFILE = """\
rule all:
    input:
        "gpu.txt",
        "cpu.txt",


rule gpu_job:
    output:
        "gpu.txt",
    resources:
        gpu=2,
    shell:
        "echo ${{CUDA_VISIBLE_DEVICES:-unset}} > {output}; echo $$ >> gpu_job.launches"


rule cpu_job:
    output:
        "cpu.txt",
    resources:
        gpu=0,
    shell:
        "echo ${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"
"""


def test_snakemake_gpu_workflow_through_sbatch(slurm: LocalSlurm, tmp_path: Path):
    (tmp_path / "Snakefile").write_text(SMOKE_SNAKEFILE)
    n_before = len(slurm.jobcomp_log())

    proc = _run_snakemake(slurm, tmp_path)
    assert proc.returncode == 0, _diagnostics(slurm, tmp_path, proc)

    # outputs, the GPUs SLURM handed out, and exactly one launch of the gpu=2 job
    assert (tmp_path / "gpu.txt").read_text().strip() == "0,1"
    assert (tmp_path / "cpu.txt").read_text().strip() == "unset"
    assert len((tmp_path / "gpu_job.launches").read_text().split()) == 1

    # what the plugin asked sbatch for
    calls = _sbatch_calls(proc.stderr)
    assert set(calls) == {"gpu_job", "cpu_job"}, calls
    assert "--gpus=2" in calls["gpu_job"]
    assert "--ntasks-per-gpu" not in calls["gpu_job"], calls["gpu_job"]
    assert "--gpus" not in calls["cpu_job"] and "--ntasks=1" in calls["cpu_job"], calls["cpu_job"]

    # what SLURM ran: both jobs in the job-completion log, with the GPU counts
    run_id = _run_id(proc.stderr)
    records = slurm.wait_jobcomp(n_before + 2)
    ours = {r["Comment"]: r for r in records if r.get("Name") == run_id}
    assert set(ours) == {"rule_gpu_job", "rule_cpu_job"}, records
    assert all(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in ours.values()), ours
    assert ours["rule_gpu_job"]["gpus"] == 2
    assert ours["rule_gpu_job"]["GresUsed"] == "gpu:2"
    assert ours["rule_cpu_job"]["gpus"] == 0

    # and slurmctld's own view (kept for MinJobAge): one task for the gpu=2 job
    jobs = {j["Comment"]: j for j in slurm.jobs() if j.get("JobName") == run_id}
    assert jobs["rule_gpu_job"]["NumTasks"] == "1"
    assert jobs["rule_gpu_job"]["gpus"] == 2


GPU_TASKS_SNAKEFILE = """\
rule all:
    input:
        "tasks1.txt",
        "tasks1_per_gpu0.txt",


# `tasks=1` on a GPU rule becomes `sbatch --ntasks-per-gpu=1`: 2 tasks (2 CPUs)
# for gpu=2.  The job still runs once: the jobstep executor strips SLURM_* before
# its own `srun -n1`.
rule tasks1:
    output:
        "tasks1.txt",
    resources:
        gpu=2,
        tasks=1,
    shell:
        "echo ${{CUDA_VISIBLE_DEVICES:-unset}} > {output}; echo $$ >> tasks1.launches"


# tasks_per_gpu=0 overrides `tasks` for --ntasks-per-gpu: no flag, one task
rule tasks1_per_gpu0:
    output:
        "tasks1_per_gpu0.txt",
    resources:
        gpu=2,
        tasks=1,
        tasks_per_gpu=0,
    shell:
        "echo ${{CUDA_VISIBLE_DEVICES:-unset}} > {output}; echo $$ >> tasks1_per_gpu0.launches"
"""


def test_gpu_rule_task_settings(slurm: LocalSlurm, tmp_path: Path):
    """Pins the plugin's handling of `tasks` on GPU rules (the --ntasks-per-gpu pitfall)."""
    (tmp_path / "Snakefile").write_text(GPU_TASKS_SNAKEFILE)
    proc = _run_snakemake(slurm, tmp_path)
    assert proc.returncode == 0, _diagnostics(slurm, tmp_path, proc)

    calls = _sbatch_calls(proc.stderr)
    assert "--ntasks-per-gpu=1" in calls["tasks1"], calls["tasks1"]
    assert "--ntasks-per-gpu" not in calls["tasks1_per_gpu0"], calls["tasks1_per_gpu0"]

    run_id = _run_id(proc.stderr)
    jobs = {j["Comment"]: j for j in slurm.jobs() if j.get("JobName") == run_id}
    assert jobs["rule_tasks1"]["NumTasks"] == "2"
    assert jobs["rule_tasks1_per_gpu0"]["NumTasks"] == "1"
    for rule in ("tasks1", "tasks1_per_gpu0"):
        assert (tmp_path / f"{rule}.txt").read_text().strip() == "0,1"
        assert len((tmp_path / f"{rule}.launches").read_text().split()) == 1, rule


def test_stop_leaves_nothing_running():
    """A second cluster next to the module's one; stop() kills every daemon and removes its dir."""
    reason = LocalSlurm.skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(gpus=0).start()
    root = cluster.root
    pids = [p.pid for p in cluster._procs.values()]
    assert cluster.node_state() == "idle"
    assert cluster.startup_seconds < 30
    cluster.stop()
    assert not root.exists()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except FileNotFoundError:
            continue
        assert state == "Z", f"pid {pid} still alive after stop()"  # a zombie awaiting init is fine
