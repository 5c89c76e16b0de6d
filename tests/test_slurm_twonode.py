"""Multi-node DDP across a real network: the demo's training with `train.nodes: 2` through `--profile profiles/slurm`
on a two-node SLURM whose nodes are network namespaces (tests/slurm_netns.py).

* `train.nodes: 2`, `train.processes_per_node: 1`: setup ddp2 as one gloo process on each node. The rule
  `train_multinode` job runs the launcher on the first node, which starts `srun ... torchrun --nnodes 2 --rdzv-backend
  c10d`; the ranks talk over the namespaces' veth/bridge network. Each node's /etc/hosts maps its own name to
  127.0.1.1 first (Debian's default), the trap that makes gloo bind to loopback on real clusters;
* record.json names two hosts (the node names) at two different addresses of the test network, world size 2, and
  the sampler checks of a one-node run; the per-epoch losses, the sampler's index split and the weights equal a
  one-node, two-process run of the same config (local `torchrun --standalone`, same global batch and data order);
* fault: the training process on the second node is killed (SIGKILL) after an epoch was saved; the job fails with
  a message naming what happened, Snakemake submits it again (the profile's `retries: 1`), and the new job
  resumes from last.pt and ends with the uninterrupted run's losses and weights.

Data preparation runs locally (it is not what is tested; through SLURM each tiny job would cost a status-poll
interval). Tiny sizes: 24 images at 32x32, U-Net width 4, 8 epochs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from slurm_netns import NetnsSlurm
from snakemake_run import REPO, start_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

EPOCHS = 8
TRAIN_DIR = Path("results", "train", "unet", "sigma0.1", "ddp2", "rep1")
RECORD = TRAIN_DIR / "record.json"
DATA_TARGETS = ("results/data/clean/manifest.json", "results/data/noisy/sigma0.1/manifest.json")
BASE = {
    "data": {"synthetic": {"patients": 12, "max_follow_ups": 3, "size": 64}},
    "sample": {"n_images": 24},
    "resize": {"size": 32},
    "shards": {"images_per_shard": 12},
    "models": {"unet": {"base_channels": 4}},
    "noise": {"sigmas": [0.1]},
    "train": {"models": ["unet"], "setups": ["ddp2"], "epochs": EPOCHS, "batch_per_gpu": 2, "workers": 0},
    "evaluate": {"lpips": False},
    "privacy": {"setup": "ddp2"},  # privacy.setup must be one of train.setups (checked at start-up)
}
TWO_NODES = {"train": {"nodes": 2, "processes_per_node": 1}}
SLURM_ARGS = (
    "--slurm-status-command", "squeue",  # no accounting on the test cluster (see tests/slurm_cluster.py)
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--set-resources", "train_multinode:mem_mb=1000", "train_multinode:runtime=15",
    "--verbose",  # the plugin logs each "sbatch call: ..."
)


@pytest.fixture(scope="module")
def cluster():
    reason = NetnsSlurm.skip_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm not installed")
    slurm = NetnsSlurm(own_name_loopback=True).start()
    try:
        yield slurm
    finally:
        slurm.stop()


def _env(slurm: NetnsSlurm | None) -> dict[str, str]:
    env = slurm.env() if slurm is not None else dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("GLOO_SOCKET_IFNAME", None)  # the package must find the interface itself
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _configs(workdir: Path, *overrides: dict) -> list[Path]:
    paths = [REPO / "config" / "demo.yaml"]
    for i, override in enumerate((BASE, *overrides)):
        path = workdir.parent / f"{workdir.name}-config{i}.yaml"
        path.write_text(yaml.safe_dump(override))
        paths.append(path)
    return paths


def _snakemake(workdir: Path, configs: list[Path], *args: str, targets=(str(RECORD),),
               slurm: NetnsSlurm | None = None, nice: int = 0, log: str = "snakemake.out") -> subprocess.Popen:
    return start_snakemake(workdir, configs, *args, env=_env(slurm), targets=targets, nice=nice, log=log)


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    workdir = Path(proc.args[proc.args.index("--directory") + 1])
    return "\n".join(p.read_text() for p in sorted(workdir.glob("*.out")))


def _diagnostics(slurm: NetnsSlurm, workdir: Path, output: str) -> str:
    logs = "\n".join(f"==> {p.relative_to(workdir)} <==\n{p.read_text(errors='replace')[-4000:]}"
                     for p in sorted(workdir.rglob("*.log")) if "slurm_logs" in p.parts or "train" in p.parts)
    return (f"--- snakemake (tail) ---\n{output[-6000:]}\n--- logs ---\n{logs}\n--- daemons ---\n{slurm.logs()}\n"
            f"--- squeue ---\n{slurm.run('squeue', '--states=all', check=False).stdout}")


def _prepare_data(workdir: Path, configs: list[Path]) -> None:
    proc = _snakemake(workdir, configs, "--cores", "1", targets=DATA_TARGETS, log="data.out")
    out = _finish(proc, 300)
    assert proc.returncode == 0, out[-3000:]


def _epochs(workdir: Path) -> list[dict]:
    return json.loads((workdir / RECORD).read_text())["epochs"]


def _jobcomp_train(slurm: NetnsSlurm, since: int) -> list[dict]:
    return [r for r in slurm.jobcomp_log()[since:] if r.get("Comment", "").startswith("rule_train_multinode")]


def _assert_same_training(ours: Path, theirs: Path) -> None:
    """Same losses every epoch (float tolerance) and the same weights as the reference run."""
    mine, ref = _epochs(ours), _epochs(theirs)
    assert [e["epoch"] for e in mine] == [e["epoch"] for e in ref] == list(range(1, EPOCHS + 1))
    for a, b in zip(mine, ref):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-7), (a, b)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5, abs=1e-7), (a, b)
    best, best_ref = (torch.load(d / TRAIN_DIR / "best.pt", weights_only=True) for d in (ours, theirs))
    assert best["epoch"] == best_ref["epoch"]
    assert best["val_loss"] == pytest.approx(best_ref["val_loss"], rel=1e-5)
    for name, tensor in best["state_dict"].items():
        torch.testing.assert_close(tensor, best_ref["state_dict"][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def uninterrupted(cluster: NetnsSlurm, tmp_path_factory) -> dict:
    """A 2-node run through the SLURM profile and a 1-node, 2-process local run of the same config."""
    root = tmp_path_factory.mktemp("twonode")
    local_dir, slurm_dir = root / "local", root / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()
    local = _snakemake(local_dir, _configs(local_dir), "--cores", "2", nice=19)
    configs = _configs(slurm_dir, TWO_NODES)
    _prepare_data(slurm_dir, configs)
    n_before = len(cluster.jobcomp_log())
    t0 = time.monotonic()
    on_slurm = _snakemake(slurm_dir, configs, "--profile", str(REPO / "profiles" / "slurm"), *SLURM_ARGS,
                          slurm=cluster)
    slurm_out = _finish(on_slurm, 600)
    slurm_s = time.monotonic() - t0
    local_out = _finish(local, 600)
    assert on_slurm.returncode == 0, _diagnostics(cluster, slurm_dir, slurm_out)
    assert local.returncode == 0, local_out[-3000:]
    print(f"two-node SLURM run (training job only): {slurm_s:.0f} s")
    return {"local": local_dir, "slurm": slurm_dir, "configs": configs, "slurm_out": slurm_out,
            "jobs": _jobcomp_train(cluster, n_before)}


def test_two_node_ddp_records_two_hosts_and_matches_one_node_run(cluster: NetnsSlurm, uninterrupted: dict):
    slurm_dir, local_dir = uninterrupted["slurm"], uninterrupted["local"]
    nodes = cluster.nodenames

    # the scheduler ran one 2-node job of rule train_multinode, one task per node
    (job,) = uninterrupted["jobs"]
    assert (job["JobState"], job["NodeCnt"], job["NodeList"]) == ("COMPLETED", "2", "cxr-n[1-2]"), job
    calls = [line for line in uninterrupted["slurm_out"].splitlines()
             if "sbatch call: " in line and "rule_train_multinode" in line]
    assert len(calls) == 1 and "--nodes=2" in calls[0] and "--ntasks=2" in calls[0], calls

    # what took part: two hosts (the node names) at their two test-network addresses, one rank each
    record = json.loads((slurm_dir / RECORD).read_text())
    assert record["hosts"] == nodes, record["hosts"]
    assert record["host_addresses"] == [cluster.addresses[n] for n in nodes], record["host_addresses"]
    assert len(set(record["host_addresses"])) == 2
    assert (record["nodes"], record["nodes_requested"], record["processes_per_node_requested"]) == (2, 2, 1)
    assert (record["world_size"], record["ranks_per_host"], record["backend"]) == (2, [1, 1], "gloo")
    assert record["slurm_job_id"] == job["JobId"] and record["status"] == "finished"
    log = (slurm_dir / "results" / "logs" / "train" / "unet_sigma0.1_ddp2_rep1.log").read_text()
    assert re.search(r"torch\.distributed\.run --nnodes 2 --nproc_per_node 1 --rdzv-backend c10d "
                     r"--rdzv-endpoint cxr-n1:\d+", log), log
    for node in nodes:  # gloo was moved off 127.0.1.1 (what each node's own name resolves to) onto the network
        assert f"[train] {node}: gloo binds to eth0 ({cluster.addresses[node]})" in log, log

    # the same run as on one node with two processes: global batch, data order, sampler checks, losses, weights
    ref = json.loads((local_dir / RECORD).read_text())
    assert (ref["nodes"], ref["world_size"], ref["hosts"]) == (1, 2, ref["hosts"][:1])
    assert ref["host_addresses"] != record["host_addresses"]
    for key in ("global_batch", "batch_per_process", "train_indices_per_rank", "val_indices_per_rank",
                "sampler_check", "train_images", "val_images"):
        assert record[key] == ref[key], key
    assert record["sampler_check"]["covers_train_split"] and record["sampler_check"]["epochs_checked"] == EPOCHS
    assert record["sampler_check"]["repeated_per_epoch"] == record["sampler_check"]["expected_padding"]
    _assert_same_training(slurm_dir, local_dir)


def _training_pids(cluster: NetnsSlurm, node: str) -> list[int]:
    """The DDP worker processes on `node` (not the torchrun agent, whose command line names the worker too)."""
    return [pid for pid in cluster.pids_on(node, b"cxrdenoise.train.worker")
            if b"torch.distributed.run" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_killed_process_on_second_node_fails_the_job_and_the_rerun_resumes(
        cluster: NetnsSlurm, uninterrupted: dict, tmp_path: Path):
    fault_dir = tmp_path / "fault"
    shutil.copytree(uninterrupted["slurm"], fault_dir, symlinks=True)
    shutil.rmtree(fault_dir / TRAIN_DIR)
    for old in list(fault_dir.glob("*.out")) + [fault_dir / ".snakemake" / "slurm_logs"]:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    n_before = len(cluster.jobcomp_log())
    proc = _snakemake(fault_dir, uninterrupted["configs"], "--profile", str(REPO / "profiles" / "slurm"),
                      *SLURM_ARGS, slurm=cluster)
    killed: dict = {}
    failed_attempt_log = ""  # the rule log of the killed attempt (the re-run writes the same file again)
    rule_log = fault_dir / "results" / "logs" / "train" / "unet_sigma0.1_ddp2_rep1.log"
    deadline = time.monotonic() + 600
    victim = cluster.nodenames[1]
    while proc.poll() is None and time.monotonic() < deadline:
        if killed and not failed_attempt_log:
            text = rule_log.read_text(errors="replace") if rule_log.exists() else ""
            if "\nerror: " in text:
                failed_attempt_log = text
        if not killed and (fault_dir / RECORD).exists():
            try:
                saved = len(_epochs(fault_dir))
            except (ValueError, KeyError):
                saved = 0  # being replaced
            pids = _training_pids(cluster, victim)
            if 1 <= saved <= EPOCHS - 2 and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed = {"epochs_saved": saved, "pids": pids}
        time.sleep(0.05)
    out = _finish(proc, max(1, deadline - time.monotonic()))
    assert proc.returncode == 0, _diagnostics(cluster, fault_dir, out)
    assert killed, f"the training never ran between epochs 1 and {EPOCHS - 2}\n{_diagnostics(cluster, fault_dir, out)}"

    # the first job failed (both nodes released), Snakemake submitted it again and that one completed
    jobs = _jobcomp_train(cluster, n_before)
    assert [j["JobState"] for j in jobs] == ["FAILED", "COMPLETED"], jobs
    assert all(j["NodeCnt"] == "2" for j in jobs), jobs
    cluster.wait_idle(30)
    # ... with a message saying what happened: srun names the node and task, the launcher's one line the rest
    text = failed_attempt_log
    print("".join(line + "\n" for line in text.splitlines() if line.startswith(("srun: error", "error:"))))
    assert re.search(rf"srun: error: {victim}: task 1: (Exited with exit code|Killed|Terminated)", text), text[-4000:]
    assert re.search(r"\nerror: a process or node of the 2-node training job failed \(srun exited with status \d+; "
                     rf"the lines from srun above name it\); a re-run resumes from \S*{TRAIN_DIR / 'last.pt'}\n",
                     text), text[-4000:]

    # the re-run resumed from last.pt and ended as the uninterrupted run did
    record = json.loads((fault_dir / RECORD).read_text())
    (resumed,) = record["resumed_after_epochs"]
    assert killed["epochs_saved"] <= resumed < EPOCHS, (killed, record["resumed_after_epochs"])
    log = (fault_dir / "results" / "logs" / "train" / "unet_sigma0.1_ddp2_rep1.log").read_text()
    assert f"resuming from {TRAIN_DIR / 'last.pt'} after epoch {resumed}" in log, log
    assert record["hosts"] == cluster.nodenames and record["slurm_job_id"] == jobs[1]["JobId"]
    assert record["status"] == "finished" and record["totals"]["epochs_done"] == EPOCHS
    _assert_same_training(fault_dir, uninterrupted["slurm"])


def test_namespaces_of_a_crashed_run_are_removed_by_the_next(tmp_path: Path):
    """A test process killed with SIGKILL cannot stop its cluster: its daemons die with it (PR_SET_PDEATHSIG) and
    its namespaces, named after its dead pid, are deleted by the next start (here: remove_stale_namespaces)."""
    from slurm_netns import netns_names, remove_stale_namespaces

    reason = NetnsSlurm.skip_reason()
    if reason:
        pytest.skip(reason)
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from slurm_netns import NetnsSlurm; "
            "c = NetnsSlurm().start(); print(c.tag, c.root, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                            text=True, env=_env(None))
    try:
        tag, root = proc.stdout.readline().split()
    finally:
        proc.kill()
        proc.wait()
    left = [n for n in netns_names() if n.startswith(tag + "-")]
    assert sorted(left) == [f"{tag}-n1", f"{tag}-n2", f"{tag}-sw"]
    assert set(left) <= set(remove_stale_namespaces())
    assert not [n for n in netns_names() if n.startswith(tag + "-")]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # slurmd/slurmctld/munged got SIGTERM when their parent died
        alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, root.encode())]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, alive
    shutil.rmtree(root, ignore_errors=True)


def _cmdline_has(pid_dir: Path, text: bytes) -> bool:
    try:
        return text in (pid_dir / "cmdline").read_bytes()
    except OSError:
        return False
