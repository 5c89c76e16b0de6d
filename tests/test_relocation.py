"""A finished results tree moves: `results/` and `.snakemake/metadata` copied into a second clone plan 0 jobs
(no absolute path in any param or command, so Snakemake sees nothing changed)."""

import shutil

import pytest
import yaml

from snakemake_run import REPO, snakemake

# the whole `all` DAG (data, training, evaluation, tables, figures, privacy, report pages) at toy sizes
TINY = {
    "seed": 3,
    "data": {"source": "synthetic", "raw_dir": "resources/tiny",
             "synthetic": {"patients": 8, "max_follow_ups": 2, "size": 32}},
    "sample": {"n_images": 12}, "resize": {"size": 32}, "shards": {"images_per_shard": 12},
    "noise": {"sigmas": [0.1]},
    "models": {"unet": {"base_channels": 4}},
    "train": {"models": ["unet"], "setups": ["gpu1"], "device": "cpu", "epochs": 1, "batch_per_gpu": 2,
              "workers": 0, "preload": True, "timing_exclusive": False},
    "evaluate": {"lpips": False, "batch_size": 4, "figure_images": 1},
    "privacy": {"negatives_per_query": 2, "bootstrap": 50,
                "learned": {"epochs": 1, "batch_size": 4, "channels": 4, "embedding": 8}},
    "federated": {"enabled": False},
}


def _clone(root):
    """The files a clone has that Snakemake reads (the package itself is installed once, from REPO)."""
    root.mkdir()
    shutil.copy2(REPO / "requirements.lock", root / "requirements.lock")
    for folder in ("workflow", "config"):  # workflow/Snakefile, rules, envs, schemas, report; config/config.yaml
        shutil.copytree(REPO / folder, root / folder)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return root


def _run(clone, *args):
    return snakemake(clone, "--cores", "2", *args, "--configfile", str(clone / "tiny.yaml"), "--", "all",
                     snakefile=clone / "workflow" / "Snakefile")


@pytest.mark.slow
def test_a_finished_results_tree_moves_to_another_clone(tmp_path):
    first, second = _clone(tmp_path / "first"), _clone(tmp_path / "second")
    done = _run(first)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (first / "results" / "tables" / "table3.csv").exists()
    shutil.copytree(first / "results", second / "results")  # copy2: modification times kept, as `cp -a` does
    shutil.copytree(first / ".snakemake" / "metadata", second / ".snakemake" / "metadata")
    shutil.copytree(first / "resources", second / "resources")
    plan = _run(second, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]
    # the control: a param that does change (the seed) is seen, so the empty plan above is not vacuous
    changed = _run(second, "-n", "--config", "seed=4")
    assert "sample" in changed.stdout and "Nothing to be done" not in changed.stdout + changed.stderr
