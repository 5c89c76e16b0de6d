"""Advice that works as printed (issue 22, fault 3 and "What to build" 2).

A corrupt or missing shard used to print "delete it and re-run snakemake, which rebuilds it" (a plain re-run
does not) and `snakemake --cores 2 results/data/...` without the run's config file (with the study defaults: 12
NIH downloads, and results/data rewritten). The fix is now one command that names the run's own -s/-d/
--configfile/--profile (the main snakemake process exports them to its jobs, workflow/rules/common.smk) and
rebuilds that one file alone: `--allowed-rules <rule> --forcerun <rule> -- <file>`. The slow test runs the
printed command on a toy pipeline and checks the shard comes back byte-identical and nothing else changed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cxrdenoise.errors import CxrError
from cxrdenoise.shard_integrity import RUN_OPTIONS_ENV, fix_hint, rebuild_command, verify_shard
from cxrdenoise.summary import run_options
from snakemake_run import REPO, snakemake

SHARD = "results/data/noisy/sigma0.1/shard_00000.npy"


def _parse(command: str):
    """The command as Snakemake's own argument parser reads it."""
    from snakemake.cli import get_argument_parser

    tokens = shlex.split(command)
    assert tokens[0] == "snakemake", command
    return get_argument_parser().parse_args(tokens[1:])


def _backticked(text: str) -> list[str]:
    return re.findall(r"`(snakemake [^`]+)`", text)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(RUN_OPTIONS_ENV, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# --- the command ------------------------------------------------------------------------------------------------


def test_run_options_repeat_the_runs_workflow_directory_config_and_profile():
    argv = ["/venv/bin/snakemake", "all", "--cores", "8", "-s", "../wf/Snakefile", "--directory=run one",
            "--profile", "profiles/slurm", "--configfile", "a.yaml", "b.yaml", "--config", "seed=7", "-n"]
    assert run_options(argv) == ["-s", "../wf/Snakefile", "--directory", "run one", "--profile", "profiles/slurm",
                                 "--configfile", "a.yaml", "b.yaml", "--config", "seed=7"]


def test_fix_command_names_the_runs_config_and_rebuilds_that_file_alone(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    options = ["-s", "../wf/Snakefile", "-d", "run one", "--configfile", "a.yaml", "b.yaml", "--config", "seed=7"]
    monkeypatch.setenv(RUN_OPTIONS_ENV, json.dumps(options))
    command = rebuild_command(SHARD, "noise_shard")
    args = _parse(command)
    assert args.snakefile == "../wf/Snakefile" and str(args.directory) == "run one"
    assert [str(f) for f in args.configfile] == ["a.yaml", "b.yaml"] and args.config == ["seed=7"]
    assert args.targets == [SHARD]  # after `--`: no option takes it as a value
    assert args.allowed_rules == ["noise_shard"] and args.forcerun == {"noise_shard"} and args.cores == 1
    hint = fix_hint(SHARD, "noise_shard")
    assert _backticked(hint) == [command] and "delete" not in hint
    # a missing file is built, not forced
    missing = _parse(rebuild_command(SHARD, "resize_shard", force=False))
    assert missing.allowed_rules == ["resize_shard"] and not missing.forcerun and missing.targets == [SHARD]


def test_fix_command_without_the_invocation_uses_the_resolved_config(monkeypatch, tmp_path):
    """A job not started by snakemake (no exported options) falls back to results/config.resolved.yaml; with
    neither, it names the arguments to add rather than a command that would use the study defaults."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUN_OPTIONS_ENV, raising=False)
    hint = fix_hint(SHARD, "noise_shard")
    assert "`--cores 1 --allowed-rules noise_shard --forcerun noise_shard -- " + SHARD + "`" in hint
    assert "to the -s/-d/--configfile options of the run's snakemake command" in hint
    assert not _backticked(hint)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "config.resolved.yaml").write_text("seed: 3\n")
    assert [str(f) for f in _parse(rebuild_command(SHARD, "noise_shard")).configfile] == [
        "results/config.resolved.yaml"]


def test_missing_shard_names_the_command_that_builds_it(monkeypatch, tmp_path):
    monkeypatch.setenv(RUN_OPTIONS_ENV, json.dumps(["--configfile", "my.yaml"]))
    with pytest.raises(CxrError) as err:
        verify_shard(tmp_path / "shard_00000.npy", {"sha256": "0" * 64}, "resize_shard")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'shard_00000.npy'} is missing: build it alone (rule 'resize_shard'")
    (command,) = _backticked(message)
    assert _parse(command).configfile == [Path("my.yaml")]
    assert "snakemake --cores 2" not in message


def test_fix_command_never_plans_downloads(tmp_path):
    """Fault 3's second half: the old advice (`snakemake --cores 2 <shard>`, no config) plans the study's 12 NIH
    downloads in a directory without data; the new command, even run where nothing is built, plans nothing but
    the shard's own rule: it stops naming the missing input."""
    old = snakemake(tmp_path, "-n", "--cores", "2", SHARD)
    assert old.returncode == 0 and re.search(r"download_archive\s+12", old.stdout), old.stdout[-2000:]
    args = shlex.split(rebuild_command(SHARD, "noise_shard", environ={RUN_OPTIONS_ENV: "[]"}))
    new = snakemake(tmp_path, "-n", *args[1:])
    assert new.returncode != 0
    out = new.stdout + new.stderr
    assert "Missing input files for rule noise_shard" in out and "results/data/clean/shard_00000.npy" in out
    assert "download_archive" not in out and "resize_shard" not in new.stdout


# --- the printed command, run on a toy pipeline -------------------------------------------------------------------

# shards of 8 images at 256x256 float16 (1 MB each): over Snakemake's 1 MB checksum limit, so, as in the study, only
# modification times tell it whether a shard changed
TOY = {
    "seed": 3,
    "data": {"source": "synthetic", "raw_dir": "resources/toy",
             "synthetic": {"patients": 16, "max_follow_ups": 2, "size": 256}},
    "sample": {"n_images": 16}, "resize": {"size": 256}, "shards": {"images_per_shard": 8},
    "noise": {"sigmas": [0.1, 0.2], "literature": {"sigmas": []}},
    "models": {"unet": {"base_channels": 4}},
    "train": {"models": ["unet"], "setups": ["gpu1"], "device": "cpu", "epochs": 1, "batch_per_gpu": 2,
              "workers": 0, "preload": True, "timing_exclusive": False},
    "evaluate": {"lpips": False, "batch_size": 4, "figure_images": 1},
    "federated": {"enabled": False},
}
DATA_TARGETS = ["results/data/clean/manifest.json", "results/data/noisy/sigma0.1/manifest.json",
                "results/data/noisy/sigma0.2/manifest.json"]
EVAL = "results/eval/noisy/sigma{}/summary.json"


def _state(root: Path) -> dict[str, tuple[int, str]]:
    """(mtime_ns, sha256) of every file below root/results and root/resources."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for top in ("results", "resources") for p in sorted((root / top).rglob("*")) if p.is_file()}


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for pos in (-1, -7, -300):
        data[pos] ^= 0x5A
    path.write_bytes(bytes(data))


def _job_files(shard: str) -> set[str]:
    """A shard job's outputs, log and benchmark (results/data/<clean|noisy/sigmaS>/shard_N.npy)."""
    number = shard[-len("00000.npy"):-len(".npy")]
    if "/clean/" in shard:
        name = f"resize_shard/{number}"
    else:
        name = f"noise_shard/{shard.split('/')[-2]}_{number}"
    return {shard, shard.replace(".npy", ".json"), f"results/logs/{name}.log", f"results/benchmarks/{name}.tsv"}


@pytest.mark.slow
def test_printed_fix_rebuilds_the_corrupt_shard_byte_identical_and_nothing_else(tmp_path):
    """The run is started from tmp_path with relative -d and --configfile, as a user would; the failing job's
    `error:` line reaches the terminal with the fix, which is run through the shell exactly as printed: first
    for a corrupt noisy shard, then for a corrupt clean shard (rebuilt with the noisy shards made from it)."""
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(TOY))
    run = tmp_path / "run"

    def snakemake_here(*targets: str, dry_run: bool = False) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", "run",
               "--cores", "2", *(["-n"] if dry_run else []), "--configfile", "toy.yaml", "--", *targets]
        return subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)

    built = snakemake_here(*DATA_TARGETS)
    assert built.returncode == 0, built.stderr[-3000:]
    manifest = json.loads((run / "results/data/clean/manifest.json").read_text())
    name = next(m for m in manifest["shards"] if "test" in m["splits"])["file"]  # a shard the evaluation reads
    clean, noisy = f"results/data/clean/{name}", [f"results/data/noisy/sigma{s}/{name}" for s in ("0.1", "0.2")]
    assert (run / clean).stat().st_size > 1_000_000
    original = {p: (run / p).read_bytes() for f in (clean, *noisy) for p in (f, f.replace(".npy", ".json"))}

    def fix(corrupt: str, failing: str, rebuilt: list[str], jobs: str) -> None:
        _flip_bytes(run / corrupt)
        failed = snakemake_here(failing)
        assert failed.returncode != 0
        errors = [ln for ln in failed.stderr.splitlines() if ln.startswith(f"error: {corrupt}: ")]
        assert len(errors) == 1, failed.stderr[-3000:]
        assert "the shard is corrupt or was changed after it was written" in errors[0]
        (command,) = _backticked(errors[0])
        assert command.startswith(f"snakemake -s {REPO / 'workflow' / 'Snakefile'} -d run --configfile toy.yaml"
                                  " --cores 1 --allowed-rules "), command
        assert command.endswith(f" -- {' '.join(rebuilt)}"), command
        before = _state(run)
        fixed = subprocess.run(command, shell=True, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                               timeout=600)
        assert fixed.returncode == 0, fixed.stderr[-3000:]
        assert re.search(jobs, fixed.stderr + fixed.stdout), fixed.stderr[-3000:]
        for path, content in original.items():
            assert (run / path).read_bytes() == content, path  # byte-identical, sidecars too
        after = _state(run)
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        allowed = set().union(*map(_job_files, rebuilt))
        assert changed <= allowed, sorted(changed - allowed)  # nothing else touched
        assert {p for p in changed if p.endswith(".npy")} == set(rebuilt)
        # then the user's own command goes on: only the evaluation that failed is planned (no shard, manifest
        # or earlier evaluation), and it passes
        plan = snakemake_here(*DATA_TARGETS, EVAL.format("0.1"), failing, dry_run=True)
        assert re.search(r"evaluate_noisy\s+1\s+total\s+1", plan.stdout + plan.stderr), plan.stdout[-3000:]
        done = snakemake_here(failing)
        assert done.returncode == 0, done.stderr[-3000:]

    # a noisy shard: that shard alone
    fix(noisy[0], EVAL.format("0.1"), [noisy[0]], r"noise_shard\s+1\s+total\s+1")
    # a clean shard: it and its noisy shard at every sigma, whose modification times would otherwise be older
    fix(clean, EVAL.format("0.2"), [clean, *noisy], r"resize_shard\s+1\s+noise_shard\s+2\s+total\s+3")
