"""Multi-node DDP (train.nodes > 1) and GPU requests per job: the exact srun/torchrun argv, where the rendezvous
host comes from, what a training job asks SLURM for, and the dry-run plan of `--profile profiles/slurm`.

No cluster is needed here; tests/test_slurm_workflow.py runs the launcher inside a real (single-node) SLURM job,
tests/test_slurm_twonode.py a 2-node job on a SLURM whose nodes are network namespaces.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from config_files import load_config
from cxrdenoise.errors import CxrError
from cxrdenoise.train import launch as launch_mod
from cxrdenoise.train import multinode
from cxrdenoise.train.settings import TrainSettings, rule_settings_json
from cxrdenoise.train.setups import SETUPS, job_gpus, job_nodes, job_processes_per_node
from snakemake_run import REPO, snakemake

PY = sys.executable


def test_srun_torchrun_argv_two_nodes_two_gpus():
    argv = multinode.srun_torchrun_command(
        2, 2, "/shared/out/.launch-x/job.json", "gpu07", 29533, "4242", cpus_per_task=10, gpus_per_node=2, python=PY
    )
    assert argv == [
        "srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=10", "--gpus-per-node=2",
        "--kill-on-bad-exit=1",
        PY, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "gpu07:29533", "--rdzv-id", "4242",
        "-m", "cxrdenoise.train.worker", "/shared/out/.launch-x/job.json",
    ]


def test_srun_torchrun_argv_on_the_cpu_binds_no_gpus():
    argv = multinode.srun_torchrun_command(3, 2, "job.json", "n1", 1234, "7", python=PY)
    assert not any(a.startswith(("--gpus", "--cpus-per-task")) for a in argv)
    assert argv[:4] == ["srun", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1"]
    assert argv[argv.index("--nnodes") + 1] == "3" and argv[argv.index("--nproc_per_node") + 1] == "2"
    with pytest.raises(CxrError, match="at least 1 node"):
        multinode.srun_torchrun_command(0, 2, "job.json", "n1", 1234, "7")


def test_first_host_is_the_head_of_the_expanded_node_list():
    seen = []

    def expand(nodelist):
        seen.append(nodelist)
        return ["gpu07", "gpu08"]

    assert multinode.first_host("gpu[07-08]", expand) == "gpu07" and seen == ["gpu[07-08]"]
    with pytest.raises(CxrError, match="names no host"):
        multinode.first_host("", lambda _: [])


def test_node_list_from_the_environment_or_from_scontrol_by_job_id():
    assert multinode.job_nodelist({"SLURM_JOB_NODELIST": "a[1-2]", "SLURM_JOB_ID": "9"}) == "a[1-2]"
    assert multinode.job_nodelist({"SLURM_NODELIST": "b1"}) == "b1"
    # the SLURM executor's jobstep keeps only SLURM_JOB_ID (and a few ids) in the job's environment
    assert multinode.job_nodelist({"SLURM_JOB_ID": "77"}, lookup=lambda job: f"n[{job}-78]") == "n[77-78]"
    with pytest.raises(CxrError, match="needs a SLURM allocation"):
        multinode.job_nodelist({})


def test_scontrol_job_nodelist_parses_the_record(monkeypatch):
    out = "JobId=77 JobName=x NodeList=gpu[07-08] BatchHost=gpu07 NumNodes=2\n"
    monkeypatch.setattr(multinode.subprocess, "run", lambda *a, **k: SimpleNamespace(stdout=out))
    assert multinode.scontrol_job_nodelist("77") == "gpu[07-08]"


def test_rendezvous_port_from_the_environment_or_free():
    assert multinode.rdzv_port({multinode.PORT_ENV: "29511"}) == 29511
    assert 0 < multinode.rdzv_port({}) < 65536
    with pytest.raises(CxrError, match="is not a TCP port"):
        multinode.rdzv_port({multinode.PORT_ENV: "http"})


def test_nodes_apply_to_ddp_setups_only_and_count_in_batch_and_gpus():
    config = {"train": {"nodes": 3, "device": "cuda"}}
    assert [job_nodes(config, s) for s in SETUPS] == [1, 1, 3, 3, 1, 3]
    assert [job_gpus(config, s) for s in SETUPS] == [1, 2, 6, 6, 1, 6]
    assert SETUPS["ddp2"].global_batch(16, nodes=3) == 96 and SETUPS["ddp2"].batch_per_process(16) == 16
    cpu = {"train": {"device": "cpu"}}
    assert [job_gpus(cpu, s) for s in SETUPS] == [0, 0, 0, 0, 0, 0]
    asked = {"train": {"device": "cpu", "request_gpus_on_cpu": True}}
    assert [job_gpus(asked, s) for s in SETUPS] == [1, 2, 2, 2, 1, 2]


def test_nodes_change_the_resume_fingerprint_and_the_params_of_ddp_jobs_only():
    one = TrainSettings(model="unet", setup="ddp2", sigma="0.1")
    assert one.fingerprint("d") == TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=1).fingerprint("d")
    assert one.fingerprint("d") != TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=2).fingerprint("d")
    with pytest.raises(CxrError, match="train.nodes must be at least 1"):
        TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=0)

    config = load_config(REPO / "config" / "config.yaml")
    before = {s: rule_settings_json(config, "unet", s) for s in SETUPS}
    assert all("nodes" not in json.loads(v)["train"] for v in before.values())
    assert all("request_gpus_on_cpu" not in json.loads(v)["train"] for v in before.values())
    config["train"]["nodes"] = 2
    config["train"]["request_gpus_on_cpu"] = True
    after = {s: rule_settings_json(config, "unet", s) for s in SETUPS}
    assert after["gpu1"] == before["gpu1"] and after["dp2"] == before["dp2"]  # no retraining for these
    assert json.loads(after["ddp2_amp"])["train"]["nodes"] == 2
    settings = TrainSettings.from_config(json.loads(after["ddp2_amp"]), "unet", "0.1", "ddp2_amp")
    assert settings.nodes == 2  # what train.py rebuilds from --settings


def test_launch_with_nodes_starts_srun_and_claims_no_gpu(tiny_data_dir, tmp_path, monkeypatch):
    started = []

    class FakePopen:
        def __init__(self, argv, env):
            started.append((argv, env))

        def wait(self):
            return 0

        def send_signal(self, sig):
            pass

    def no_claim(*a, **k):
        raise AssertionError("a multi-node job must not claim GPUs: SLURM binds them per node")

    monkeypatch.setattr(launch_mod.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(launch_mod, "claim_gpus", no_claim)
    monkeypatch.setattr(multinode, "scontrol_hostnames", lambda nodelist: ["gpu07", "gpu08"])
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv(multinode.PORT_ENV, "29533")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    settings = TrainSettings(model="unet", setup="ddp2_amp", sigma="0.1", nodes=2, threads=10, device="cuda")
    assert launch_mod.launch(settings, tiny_data_dir, tmp_path / "out", "cafe") is None
    (argv, env), = started
    job_file = argv[-1]
    assert argv == multinode.srun_torchrun_command(2, 2, job_file, "gpu07", 29533, "4242", cpus_per_task=10,
                                                   gpus_per_node=2)
    assert Path(job_file).parent.parent == (tmp_path / "out").resolve()  # on the shared file system
    assert "CUDA_VISIBLE_DEVICES" not in env and env["OMP_NUM_THREADS"] == "5"
    assert not list((tmp_path / "out").glob(".launch-*"))  # cleaned up


def planned_train_jobs(stdout: str) -> dict[str, dict]:
    """setup -> {rule, resources dict, shell} for the unet / sigma 0.1 training jobs of a dry run."""
    jobs = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", stdout):
        m = re.search(r"^(?:local)?rule (train\w*):", block, re.M)
        w = re.search(r"wildcards: model=unet, sigma=0\.1, setup=(\w+)", block)
        if not (m and w):
            continue
        res = re.search(r"resources: (.*)", block).group(1)
        resources = dict(item.split("=", 1) for item in res.split(", "))
        shell = re.search(r"(cxrdenoise train .*)", block).group(1)
        jobs[w.group(1)] = {"rule": m.group(1), "resources": resources, "shell": shell}
    return jobs


def dry_run_slurm_profile(tmp_path, *configfiles) -> dict[str, dict]:
    args = ["--profile", str(REPO / "profiles" / "slurm"), "-n", "--printshellcmds"]
    if configfiles:
        args += ["--configfile", *map(str, configfiles)]
    result = snakemake(tmp_path, *args, "--", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_train_jobs(result.stdout)


def test_slurm_profile_dry_run_shows_the_gpu_requests_per_setup(tmp_path):
    """`snakemake --profile profiles/slurm -n all` with config/config.yaml: what each setup's job asks SLURM for."""
    jobs = dry_run_slurm_profile(tmp_path)
    assert set(jobs) == {"gpu1", "dp2", "ddp2_amp"}
    gpus = {setup: job["resources"]["gpu"] for setup, job in jobs.items()}
    assert gpus == {"gpu1": "1", "dp2": "2", "ddp2_amp": "2"}
    for job in jobs.values():
        res = job["resources"]
        assert job["rule"] == "train" and res["nodes"] == "1"
        assert "gres" not in res and "tasks" not in res and "mpi" not in res  # GPUs asked once, one launch
        assert res["tasks_per_gpu"] == "0"  # even a `tasks` from some profile would not add --ntasks-per-gpu
        assert res["runtime"] == "1440" and res["mem_mb"] == "32000"  # the profile's set-resources for train


def slurm_plugin_submit_flags(resources: dict, threads: int = 1) -> str:
    """The sbatch command line snakemake-executor-plugin-slurm builds from a job's resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    def value(v):
        return int(v) if re.fullmatch(r"-?\d+", v) else v

    class Resources(dict):
        __getattr__ = dict.get

    keep = ("gpu", "nodes", "mpi", "tasks", "tasks_per_gpu", "slurm_extra", "runtime", "mem_mb", "cpus_per_task")
    job = SimpleNamespace(resources=Resources({k: value(v) for k, v in resources.items() if k in keep}),
                          threads=threads)
    params = dict(run_uuid="RUN", slurm_logfile="log", comment_str="rule_x", account="", partition="", workdir="")
    settings = SimpleNamespace(requeue=True, no_requeue=False, qos=None, reservation=None)
    return get_submit_command(job, params, settings) + set_gres_string(job)


def test_multinode_ddp_plan_and_sbatch_flags(tmp_path):
    """train.nodes: 2 -> the DDP setups become `train_multinode` jobs asking for 2 nodes with 2 GPUs each."""
    nodes2 = tmp_path / "nodes2.yaml"
    nodes2.write_text(yaml.safe_dump({"train": {"nodes": 2}}))
    jobs = dry_run_slurm_profile(tmp_path, REPO / "config" / "config.yaml", nodes2)
    assert jobs["gpu1"]["rule"] == "train" and jobs["gpu1"]["resources"]["nodes"] == "1"
    assert jobs["dp2"]["rule"] == "train" and jobs["dp2"]["resources"]["gpu"] == "2"
    multi = jobs["ddp2_amp"]
    assert multi["rule"] == "train_multinode"
    res = multi["resources"]
    assert (res["nodes"], res["gpu"], res["slurm_extra"]) == ("2", "4", "--gpus-per-node=2")
    assert (res["mpi"], res["tasks"], res["tasks_per_gpu"]) == ("srun", "2", "0")
    assert '"nodes": 2' in multi["shell"] and '"nodes"' not in jobs["gpu1"]["shell"]

    flags = slurm_plugin_submit_flags(res).split()
    for flag in ("--nodes=2", "--ntasks=2", "--gpus=4", "--gpus-per-node=2", "--requeue"):
        assert flag in flags, flags
    assert not any(f.startswith("--ntasks-per-gpu") for f in flags), flags

    single = slurm_plugin_submit_flags(jobs["dp2"]["resources"]).split()
    assert "--gpus=2" in single and "--nodes=1" in single and not any(f.startswith("--ntasks") for f in single)
    inherited = slurm_plugin_submit_flags({**jobs["dp2"]["resources"], "tasks": "1"}).split()
    assert not any(f.startswith("--ntasks") for f in inherited), inherited


def test_processes_per_node_spreads_a_ddp_setup_over_nodes():
    """train.processes_per_node: 1 with nodes: 2 runs ddp2 as one process per node: world size, global batch and
    GPU requests of the one-node ddp2 job, a different resume fingerprint."""
    config = {"train": {"nodes": 2, "processes_per_node": 1, "device": "cuda"}}
    assert {s: job_processes_per_node(config, s) for s in SETUPS} == dict.fromkeys(SETUPS, 1)
    # gpu1/dp2 keep their GPUs on one node; a DDP setup gets one GPU on each of its 2 nodes
    assert {s: job_gpus(config, s) for s in SETUPS} == {"gpu1": 1, "dp2": 2, "ddp2": 2, "ddp2_amp": 2,
                                                        "gpu1_fast": 1, "ddp2_fast": 2}
    assert job_processes_per_node({"train": {"nodes": 1, "processes_per_node": 1}}, "ddp2") == 2  # one node: ignored
    spread = TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=2, processes_per_node=1, batch_per_gpu=16)
    one_node = TrainSettings(model="unet", setup="ddp2", sigma="0.1", batch_per_gpu=16)
    full = TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=2, batch_per_gpu=16)
    assert (spread.per_node(), spread.world_size(), spread.global_batch()) == (1, 2, 32)
    assert (one_node.per_node(), one_node.world_size(), one_node.global_batch()) == (2, 2, 32)
    assert (full.per_node(), full.world_size(), full.global_batch()) == (2, 4, 64)
    assert len({spread.fingerprint("d"), one_node.fingerprint("d"), full.fingerprint("d")}) == 3
    explicit = TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=2, processes_per_node=2, batch_per_gpu=16)
    assert explicit.fingerprint("d") == full.fingerprint("d")  # the setup's own count, spelled out
    gpu1 = TrainSettings(model="unet", setup="gpu1", sigma="0.1", batch_per_gpu=16)
    assert (gpu1.world_size(), gpu1.global_batch()) == (1, 16)
    with pytest.raises(CxrError, match="processes_per_node must be between 1 and 2"):
        TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=2, processes_per_node=3)

    cfg = load_config(REPO / "config" / "config.yaml")
    before = rule_settings_json(cfg, "unet", "ddp2_amp")
    cfg["train"]["processes_per_node"] = 1
    assert rule_settings_json(cfg, "unet", "ddp2_amp") == before  # one node: not passed, no retraining
    cfg["train"]["nodes"] = 2
    settings = TrainSettings.from_config(json.loads(rule_settings_json(cfg, "unet", "ddp2_amp")), "unet", "0.1",
                                         "ddp2_amp")
    assert (settings.nodes, settings.processes_per_node, settings.world_size()) == (2, 1, 2)


def test_multinode_plan_with_one_process_per_node(tmp_path):
    nodes2 = tmp_path / "nodes2.yaml"
    nodes2.write_text(yaml.safe_dump({"train": {"nodes": 2, "processes_per_node": 1, "workers": 3}}))
    result = snakemake(tmp_path, "--profile", str(REPO / "profiles" / "slurm"), "-n", "--printshellcmds",
                       "--cores", "64", "--configfile", str(REPO / "config" / "config.yaml"), str(nodes2),
                       "--", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_train_jobs(result.stdout)
    res = jobs["ddp2_amp"]["resources"]
    assert jobs["ddp2_amp"]["rule"] == "train_multinode"
    assert (res["nodes"], res["gpu"], res["slurm_extra"], res["tasks"]) == ("2", "2", "--gpus-per-node=1", "2")
    # threads per node: (3 workers + 1) x 1 process
    assert re.search(r"--threads 4\b", jobs["ddp2_amp"]["shell"]), jobs["ddp2_amp"]["shell"]
    assert jobs["dp2"]["resources"]["gpu"] == "2" and jobs["dp2"]["rule"] == "train"


def test_route_source_and_interface_of_loopback():
    assert multinode.route_source("127.0.0.1") is None  # loopback is never a route to another node
    assert multinode.route_source("no-such-host.invalid") is None
    assert multinode.interface_of("127.0.0.1") == "lo"
    assert multinode.interface_of("203.0.113.77") is None  # TEST-NET-3: held by no interface here


def test_gloo_interface_routes_to_another_node_not_to_this_one(monkeypatch):
    asked = []

    def route(host):
        asked.append(host)
        return {"n2": "127.0.0.1"}.get(host)

    monkeypatch.setattr(multinode, "route_source", route)
    monkeypatch.setattr(multinode.socket, "gethostname", lambda: "n1")
    # this node (n1) is skipped: its own name may resolve to 127.0.1.1; n2 is what the peers connect from
    assert multinode.gloo_interface(["n1", "n2"], env={}) == ("lo", "127.0.0.1", "n2")
    assert asked == ["n2"]
    asked.clear()
    assert multinode.gloo_interface(["n1", "n3"], env={}) is None and asked == ["n3"]
    assert multinode.gloo_interface(["n1"], env={"MASTER_ADDR": "n2"}) == ("lo", "127.0.0.1", "n2")


def test_multinode_failure_says_what_failed_and_where_a_rerun_starts(tmp_path):
    settings = TrainSettings(model="unet", setup="ddp2", sigma="0.1", nodes=2)
    message = launch_mod.multinode_failure(1, settings, tmp_path)
    assert message == ("a process or node of the 2-node training job failed (srun exited with status 1; the lines "
                       "from srun above name it); no epoch was saved (no last.pt), so a re-run starts from epoch 1")
    (tmp_path / "last.pt").write_bytes(b"x")
    resumes = launch_mod.multinode_failure(137, settings, tmp_path)
    assert resumes.endswith(f"a re-run resumes from {tmp_path / 'last.pt'}")
