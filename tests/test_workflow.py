"""The workflow itself: lint, the study's dry-run plan, config errors, and the demo's data half through Snakemake."""

import json
import re

import pytest
import yaml

from snakemake_run import REPO, snakemake


def planned_jobs(stdout: str) -> dict[str, int]:
    """Job counts per rule from Snakemake's dry-run 'Job stats' table."""
    counts = {}
    table = stdout.split("Job stats:")[-1]
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", "--configfile", str(REPO / "config" / "demo.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_study_dry_run_plans_downloads_and_shards(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "2", "all")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    assert jobs["download_archive"] == 12 and jobs["extract_archive"] == 12
    # 3 study sigmas + the literature's 2 zero-mean ones (noise.literature), 15 shards each
    assert jobs["resize_shard"] == 15 and jobs["noise_shard"] == 75 and jobs["noisy_manifest"] == 5


def test_bad_config_value_stops_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"noise": {"sigmas": [0.1, -0.2]}}))
    result = snakemake(tmp_path, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "error: config key noise.sigmas.1: -0.2 is less than the minimum of 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_data_half_runs_and_is_reproducible(tmp_path):
    overrides = tmp_path / "small.yaml"
    overrides.write_text(yaml.safe_dump({"noise": {"sigmas": [0.1, 0.3]}}))
    args = ["--cores", "2", "--configfile", str(REPO / "config" / "demo.yaml"), str(overrides), "--"]
    targets = ["results/data/clean/manifest.json", "results/data/noisy/sigma0.1/manifest.json",
               "results/data/noisy/sigma0.3/manifest.json"]
    digests = []
    for run in ("a", "b"):
        workdir = tmp_path / run
        workdir.mkdir()
        result = snakemake(workdir, *args, *targets)
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = json.loads((workdir / "results/data/noisy/sigma0.3/manifest.json").read_text())
        demo_images = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["sample"]["n_images"]
        assert manifest["n_images"] == demo_images
        digests.append([s["sha256"] for s in manifest["shards"]])
        assert (workdir / "results/logs/split.log").read_text().startswith("split (images / patients)")
    assert digests[0] == digests[1]


def test_table5_builds_only_the_sigma_01_runs(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "2", "results/tables/table5.csv")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    assert jobs["train"] == 7 and jobs["evaluate"] == 7  # 2 models x 3 setups + DnCNN at gpu1, sigma 0.1 only
    assert "table3" not in jobs and "table4" not in jobs
    assert jobs["evaluate_noisy"] == 1  # sigma 0.1's no-denoising row, for the "did not denoise" flag
    assert jobs["noisy_manifest"] == 1 and jobs["noise_shard"] == 15
    trained = set(re.findall(r"wildcards: model=(\w+), sigma=([\d.]+), setup=(\w+)", result.stdout))
    assert {sigma for _, sigma, _ in trained} == {"0.1"}
    study = {(m, u) for m in ("unet", "unetpp") for u in ("gpu1", "dp2", "ddp2_amp")}
    assert {(m, u) for m, _, u in trained} == study | {("dncnn", "gpu1")}  # train.setups_by_model
