"""The privacy stage in the workflow: planned by `all`, attackers from the config, checkpoints of the configured
setup (dry runs only; the stage itself runs in tests/test_privacy.py)."""

import re

import yaml

from snakemake_run import REPO, snakemake
from test_workflow import planned_jobs


def _dry_run(tmp_path, overrides=None, *targets):
    args = ["-n", "--cores", "2", "--configfile", str(REPO / "config" / "demo.yaml")]
    if overrides is not None:
        path = tmp_path / "overrides.yaml"
        path.write_text(yaml.safe_dump(overrides))
        args.append(str(path))
    result = snakemake(tmp_path, *args, "--", *(targets or ["all"]))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_all_plans_the_privacy_stage(tmp_path):
    jobs = planned_jobs(_dry_run(tmp_path).stdout)
    assert jobs["privacy_attacker"] == 1 and jobs["privacy_scores"] == 2
    assert jobs["privacy_table"] == 1 and jobs["privacy_figure"] == 1


def test_ncc_only_trains_no_attacker_and_uses_the_configured_setup(tmp_path):
    result = _dry_run(tmp_path, {"privacy": {"attackers": ["ncc"], "setup": "dp2"}}, "results/tables/privacy.csv")
    jobs = planned_jobs(result.stdout)
    assert "privacy_attacker" not in jobs and jobs["privacy_scores"] == 1
    score_inputs = re.search(r"rule privacy_scores:\n\s+input: ([^\n]+)", result.stdout).group(1)
    assert "results/train/unet/sigma0.2/dp2/rep1/best.pt" in score_inputs and "/gpu1/" not in score_inputs


def test_bad_privacy_key_stops_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"privacy": {"attackers": ["ssim"]}}))
    result = snakemake(tmp_path, "-n", "--configfile", str(bad))
    assert result.returncode != 0 and "config key privacy.attackers.0" in result.stderr
