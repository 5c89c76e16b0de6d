"""Telling the user what happened: the resolved config, the failed jobs' error lines on the terminal, and the
end-of-run summary (read from a fixture results tree)."""

import copy
import os
import time
from pathlib import Path

import pytest
import yaml

from cxrdenoise.config import read_resolved_hash, write_resolved_config
from config_files import load_config
from cxrdenoise.failures import error_line, failed_jobs, failure_messages, failure_report, log_snapshot
from cxrdenoise.provenance import hash_config
from cxrdenoise.summary import location_options, report_command, run_summary
from fixtures.results_tree import write_results_tree
from snakemake_run import REPO, snakemake

TINY = {"data": {"synthetic": {"patients": 4, "max_follow_ups": 1, "size": 32}}}
ALL_SETUPS = ["gpu1", "dp2", "ddp2", "ddp2_amp"]


def _config(models=("unet", "unetpp"), sigmas=(0.1, 0.2, 0.3), setups=ALL_SETUPS):
    train = {"models": list(models), "setups": list(setups), "replicates": 1, "setups_by_model": {}}
    return {"noise": {"sigmas": list(sigmas)}, "train": train}


# --- resolved config ----------------------------------------------------------------------------------------


def test_resolved_config_round_trips_to_the_same_hash(tmp_path):
    config = load_config(REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml")
    path = tmp_path / "results" / "config.resolved.yaml"
    assert write_resolved_config(config, path, hash_config(config))
    assert read_resolved_hash(path) == hash_config(config)
    assert hash_config(yaml.safe_load(path.read_text())) == hash_config(config)
    mtime = path.stat().st_mtime_ns
    assert not write_resolved_config(config, path, hash_config(config))  # unchanged: not rewritten
    assert path.stat().st_mtime_ns == mtime
    changed = copy.deepcopy(config)
    changed["train"]["epochs"] = 3
    assert write_resolved_config(changed, path, hash_config(changed))
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["config.resolved.yaml"]  # no temp file left


# --- failed jobs on the terminal ----------------------------------------------------------------------------


SNAKEMAKE_LOG = """\
[Wed Dec  2 21:47:45 2026]
Error in rule sample:
    message: None
    jobid: 0
    input: results/data/inventory.csv
    output: results/data/sample.csv
    log: {log} (check log file(s) for error details)
    shell:
        python data_stage.py sample > {log} 2>&1
        (command exited with non-zero exit code)
Error in rule noise_shard:
    jobid: 4
    log: {other}, {empty} (check log file(s) for error details)
Shutting down, this might take some time.
"""


def test_failure_report_names_error_lines_and_logs(tmp_path):
    log, other, empty = tmp_path / "sample.log", tmp_path / "noise.log", tmp_path / "missing.log"
    log.write_text("note: reading\nerror: sample.n_images is 10 but only 4 images are available\n")
    other.write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    main = tmp_path / "snakemake.log"
    main.write_text(SNAKEMAKE_LOG.format(log=log, other=other, empty=empty))
    assert failed_jobs([str(main)]) == [("sample", [str(log)]), ("noise_shard", [str(other), str(empty)])]
    assert error_line(log) == "error: sample.n_images is 10 but only 4 images are available"
    report = failure_report(str(main))
    assert f"error: sample.n_images is 10 but only 4 images are available\n    (rule sample; log: {log})" in report
    assert f"rule noise_shard failed; last line of its log {other}:\n    ValueError: boom" in report
    assert f"its log {empty} is missing or empty" in report
    assert failure_report(None) == "" and failure_report(tmp_path / "absent.log") == ""


# Snakemake's log when an executor could not submit the job (snakemake-executor-plugin-slurm without sinfo): the
# message holds a newline, so an unindented line comes before the block's `log:` line.
SUBMISSION_FAILED_LOG = """\
[Mon Dec  7 23:36:13 2026]
Error in rule synthesize_phantoms:
    message: Job submission failed with exception: Failed to run sinfo for retrieval of cluster partitions: sinfo: \
not installed on this machine
For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 0
    log: {log} (check log file(s) for error details)
    shell:
        cxrdenoise phantoms --out-dir resources/tiny/synthetic > {log} 2>&1
        (command exited with non-zero exit code)
Shutting down, this might take some time.
"""


def test_failure_report_quotes_only_logs_this_run_wrote(tmp_path):
    """Issue 22 fault 7: a job that failed before it wrote its log (here: its submission) must not be reported
    with the line an earlier run left in that log."""
    logs = tmp_path / "results" / "logs"
    logs.mkdir(parents=True)
    stale, fresh = logs / "synthesize_phantoms.log", logs / "sample.log"
    stale.write_text("error: an earlier run's failure\n")
    fresh.write_text("error: also from the earlier run\n")
    hour_ago = time.time() - 3600
    for path in (stale, fresh):
        os.utime(path, (hour_ago, hour_ago))
    before = log_snapshot(logs)
    assert set(before) == {str(stale), str(fresh)}
    fresh.write_text("error: sample.n_images is 10 but only 4 images are available\n")  # this run's job
    main = tmp_path / "snakemake.log"
    main.write_text(SUBMISSION_FAILED_LOG.format(log=stale) + SNAKEMAKE_LOG.format(log=fresh, other=fresh,
                                                                                   empty=fresh))
    assert failed_jobs(str(main))[0] == ("synthesize_phantoms", [str(stale)])  # found past the message's 2nd line
    assert failure_messages(str(main))[("synthesize_phantoms", (str(stale),))].startswith(
        "Job submission failed with exception")
    report = failure_report(str(main), before=before)
    assert "an earlier run's failure" not in report
    assert (f"rule synthesize_phantoms failed before writing its log: no log for this run ({stale} is from an "
            f"earlier run, last written {time.strftime('%Y-%m-%d %H:%M', time.localtime(hour_ago))}") in report
    assert "\n    Snakemake: Job submission failed with exception: Failed to run sinfo" in report
    assert "error: sample.n_images is 10 but only 4 images are available\n    (rule sample;" in report
    # without a snapshot (as before), the stale line would be quoted: the case the snapshot exists for
    assert "error: an earlier run's failure" in failure_report(str(main))


def _no_slurm_binaries(folder: Path) -> None:
    """Stand-ins for a machine without SLURM: each command says so and exits 127, as a shell does."""
    folder.mkdir()
    for name in ("sbatch", "sacct", "sacctmgr", "sshare", "sinfo", "squeue", "scontrol", "scancel", "srun"):
        script = folder / name
        script.write_text(f"#!/bin/sh\necho '{name}: command not found' >&2\nexit 127\n")
        script.chmod(0o755)


def test_slurm_profile_without_slurm_reports_no_log_for_this_run(tmp_path, monkeypatch):
    """Issue 22 fault 7 through Snakemake: the SLURM profile on a machine without sbatch/sacct. The job's log
    holds an earlier run's error line; the report must say there is no log for this run, and why."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    bin_dir = tmp_path / "bin"
    _no_slurm_binaries(bin_dir)
    workdir = tmp_path / "run"
    stale = workdir / "results" / "logs" / "synthesize_phantoms.log"
    stale.parent.mkdir(parents=True)
    stale.write_text("error: an earlier run's failure\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    override = tmp_path / "tiny.yaml"
    override.write_text(yaml.safe_dump(TINY))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")  # before /usr/bin
    result = snakemake(workdir, "--profile", str(REPO / "profiles" / "slurm"), "--retries", "0", "--latency-wait",
                       "1", "--slurm-init-seconds-before-status-checks", "1", "--configfile",
                       str(REPO / "config" / "demo.yaml"), str(override), "--",
                       "resources/demo/synthetic/Data_Entry_synthetic.csv", timeout=300)
    assert result.returncode != 0
    assert "Job submission failed" in result.stderr, result.stderr[-3000:]
    report = result.stderr.split("what failed")[-1]
    assert "an earlier run's failure" not in report, report
    assert ("rule synthesize_phantoms failed before writing its log: no log for this run "
            "(results/logs/synthesize_phantoms.log is from an earlier run") in report, report
    assert "    Snakemake: Job submission failed with exception" in report


def test_failing_job_error_line_reaches_the_terminal(tmp_path):
    """Through Snakemake: more images asked for than exist -> the job's `error:` line and log path on stderr."""
    override = tmp_path / "tiny.yaml"
    override.write_text(yaml.safe_dump({**TINY, "sample": {"n_images": 10}}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--cores", "1", "--configfile", str(REPO / "config" / "demo.yaml"), str(override),
                       "--", "results/data/sample.csv")
    assert result.returncode != 0
    assert "error: sample.n_images is 10 but only 4 images are available" in result.stderr
    assert "(rule sample; log: results/logs/sample.log)" in result.stderr
    resolved = yaml.safe_load((workdir / "results" / "config.resolved.yaml").read_text())
    assert resolved["sample"]["n_images"] == 10 and resolved["data"]["nih"]["retries"] == 5  # default filled in


def test_successful_run_prints_the_summary(tmp_path):
    override = tmp_path / "tiny.yaml"
    override.write_text(yaml.safe_dump({**TINY, "sample": {"n_images": 4}}))
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(REPO / "config" / "demo.yaml"), str(override),
                       "--", "results/data/sample.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cxrdenoise: run summary" in result.stderr
    resolved = tmp_path / "results" / "config.resolved.yaml"
    assert f"config:  results/config.resolved.yaml (hash {read_resolved_hash(resolved)[:12]})" in result.stderr
    # the run's own -s, --directory and --configfile: the command works as printed from where the run started
    assert (f"build it with `snakemake -s {REPO / 'workflow' / 'Snakefile'} --directory {tmp_path} --configfile "
            f"{REPO / 'config' / 'demo.yaml'} {override} --report results/report.html`") in result.stderr


# --- the summary ----------------------------------------------------------------------------------------------


def test_summary_of_a_complete_tree(tmp_path):
    results = write_results_tree(tmp_path)
    for name in ("table3", "table4"):
        (results / "tables").mkdir(exist_ok=True)
        (results / "tables" / f"{name}.csv").write_text("x\n")
    (results / "figures").mkdir()
    (results / "figures" / "figure4.png").write_bytes(b"png")
    text = run_summary(tmp_path, _config())
    assert "tables:  table3, table4 (results/tables/" in text
    assert "figures: figure4 (results/figures/" in text
    assert "report: results/report.html is not built yet; build it with `snakemake --report" in text
    assert "LPIPS: n/a (LPIPS unavailable: /root/.cache" in text
    assert "did not denoise: none" in text
    assert "24 training run(s) on a CPU" in text
    assert "DataParallel needs CUDA devices; ran as a single CPU process (6 run(s)" in text
    (results / "report.html").write_text("<html/>")
    assert "report: results/report.html\n" in run_summary(tmp_path, _config())


def test_summary_flags_rows_that_did_not_denoise_and_real_lpips(tmp_path):
    import json

    results = write_results_tree(tmp_path, lpips="ok", sigmas=("0.1",))
    summary_path = results / "eval" / "unetpp" / "sigma0.1" / "dp2" / "rep1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    noisy = json.loads((results / "eval" / "noisy" / "sigma0.1" / "summary.json").read_text())
    summary["metrics"]["psnr"]["mean"] = noisy["metrics"]["psnr"]["mean"] - 1.0
    summary_path.write_text(json.dumps(summary))
    text = run_summary(tmp_path, _config(sigmas=(0.1,)))
    assert "LPIPS: real (AlexNet, ImageNet weights)" in text
    assert "did not denoise (1 row(s)" in text
    assert f"  - unetpp sigma 0.1 dp2/rep1: PSNR {summary['metrics']['psnr']['mean']:.2f} dB" in text
    assert text.count("  - unet") == 1


def test_summary_names_missing_records_and_random_lpips(tmp_path):
    results = write_results_tree(tmp_path, lpips="random", sigmas=("0.1",), setups=("gpu1",))
    os.remove(results / "train" / "unet" / "sigma0.1" / "gpu1" / "rep1" / "record.json")
    text = run_summary(tmp_path, _config(sigmas=(0.1,), setups=["gpu1"]))
    assert "LPIPS: n/a (random AlexNet backbone for tests: these values are NOT LPIPS)" in text
    assert "1 training record(s) missing, e.g. unet/sigma0.1/gpu1/rep1" in text


def test_summary_expects_a_model_only_under_its_setups_by_model():
    from cxrdenoise.summary import expected_runs

    config = _config(models=("unet", "fastddpm"), sigmas=(0.1,), setups=("gpu1", "dp2"))
    assert len(expected_runs(config)) == 4
    config["train"]["setups_by_model"] = {"fastddpm": ["gpu1"]}
    assert expected_runs(config) == [("unet", "0.1", "gpu1/rep1"), ("unet", "0.1", "dp2/rep1"),
                                     ("fastddpm", "0.1", "gpu1/rep1")]


def test_summary_expects_every_replicate_of_replicates_by_model():
    """The demo trains 3 runs of U-Net under gpu1 at every sigma and under ddp2_amp at 0.1 only: the summary
    expects exactly those (it used to expect rep1 alone, from train.replicates)."""
    from cxrdenoise.summary import expected_runs

    config = _config(models=("unet",), sigmas=(0.1, 0.2), setups=("gpu1", "ddp2_amp"))
    config["train"]["replicates_by_model"] = {"unet": {"gpu1": 3, "ddp2_amp": {0.1: 3}}}
    runs = expected_runs(config)
    assert [r for r in runs if r[1] == "0.2"] == [("unet", "0.2", f"gpu1/rep{k}") for k in (1, 2, 3)] + [
        ("unet", "0.2", "ddp2_amp/rep1")]
    assert len(runs) == 3 + 3 + 3 + 1


def test_report_command_repeats_the_runs_snakefile_directory_and_configfiles():
    argv = ["/venv/bin/snakemake", "--cores", "2", "-s", "../wf/Snakefile", "--directory=run one",
            "--configfile", "a.yaml", "b.yaml", "--config", "seed=7", "train={epochs: 2}", "-n", "--", "all"]
    assert location_options(argv) == ["-s", "../wf/Snakefile", "--directory", "run one", "--configfile", "a.yaml",
                                      "b.yaml", "--config", "seed=7", "train={epochs: 2}"]
    assert report_command(argv=argv) == ("snakemake -s ../wf/Snakefile --directory 'run one' --configfile a.yaml "
                                         "b.yaml --config seed=7 'train={epochs: 2}' --report results/report.html")
    module = ["/usr/lib/python3/site-packages/snakemake/__main__.py", "-d", "w", "--snakefile", "S", "all"]
    assert report_command(argv=module) == "snakemake -d w --snakefile S --report results/report.html"
    # not a snakemake command line (e.g. a test runner's): the --configfile arguments the workflow gave
    assert report_command(configfiles="--configfile c.yaml", argv=["pytest", "-s", "x"]) == \
        "snakemake --report results/report.html --configfile c.yaml"


def test_summary_prints_the_report_command_of_the_invocation(tmp_path):
    write_results_tree(tmp_path)
    argv = ["snakemake", "-s", "/src/Snakefile", "-d", str(tmp_path), "--configfile", "my.yaml", "--cores", "4",
            "--", "all"]
    text = run_summary(tmp_path, _config(), argv=argv)
    assert (f"build it with `snakemake -s /src/Snakefile -d {tmp_path} --configfile my.yaml --report "
            "results/report.html` (make demo does this)") in text
