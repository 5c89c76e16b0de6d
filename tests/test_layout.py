"""cxrdenoise.layout owns the results layout: every builder's path parses back into the parts it was built from,
the paths are the ones docs/results-layout.md names, wildcard patterns pass through for the rules, and a path
that is not a run's is refused with a message naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cxrdenoise import layout
from cxrdenoise.errors import CxrError
from cxrdenoise.layout import RunPath, parse_run_path

RUN_FILES = ("best.pt", "record.json", "epochs.csv", "last.pt")
EVAL_FILES = ("summary.json", "per_image.csv", "examples.npz")


@pytest.mark.parametrize("results", ["results", "/tmp/moved tree/results", "relocated/run one/results",
                                     Path("/srv/sigma0.5/results")])
@pytest.mark.parametrize("sigma, label", [(0.1, "0.1"), ("0.10", "0.1"), (25 / 255, "0.0980392"), ("0.2", "0.2")])
def test_run_paths_round_trip(results, sigma, label):
    for name in RUN_FILES:
        path = layout.train_file("unet_pp", sigma, "ddp2_amp", 3, name, results=results)
        assert parse_run_path(path) == ("unet_pp", label, "ddp2_amp", 3)
        assert parse_run_path(Path(path)) == RunPath("unet_pp", label, "ddp2_amp", 3)
    for name in EVAL_FILES:
        path = layout.eval_file("dncnn", sigma, "gpu1", 12, name, results=results)
        assert parse_run_path(path) == ("dncnn", label, "gpu1", 12)
        assert parse_run_path(layout.noisy_eval_file(sigma, name, results=results)) == (layout.NOISY, label, "", None)
        assert parse_run_path(layout.classical_file("bm3d", sigma, name, results=results)) == ("bm3d", label, "", None)
    # a run's folder itself, and a file below one of its folders (TensorBoard)
    tb = Path(layout.train_dir("unet", sigma, "gpu1", 1, results=results)) / "tensorboard" / "events.out"
    assert parse_run_path(tb) == ("unet", label, "gpu1", 1)


def test_the_paths_are_those_of_docs_results_layout():
    assert layout.train_file("unet", 0.1, "gpu1", 1, "record.json") == \
        "results/train/unet/sigma0.1/gpu1/rep1/record.json"
    assert layout.eval_dir("unet", "0.3", "dp2", 2) == "results/eval/unet/sigma0.3/dp2/rep2"
    assert layout.noisy_eval_file(0.2, "summary.json") == "results/eval/noisy/sigma0.2/summary.json"
    assert layout.classical_file("nlm", 0.2, "summary.json") == "results/classical/nlm/sigma0.2/summary.json"
    assert layout.classical_file("nlm", 0.2, "summary.json", shard=3) == \
        "results/classical/nlm/sigma0.2/shard_00003/summary.json"
    assert layout.clean_manifest() == "results/data/clean/manifest.json"
    assert layout.clean_shard(1, "json") == "results/data/clean/shard_00001.json"
    assert layout.noisy_manifest(0.1) == "results/data/noisy/sigma0.1/manifest.json"
    assert layout.noisy_shard("0.3", "00002", "npy") == "results/data/noisy/sigma0.3/shard_00002.npy"
    assert layout.noisy_manifest(0.1, "/data dir") == "/data dir/noisy/sigma0.1/manifest.json"
    assert layout.data_file("split.csv") == "results/data/split.csv"
    assert layout.privacy_file("ncc", "metrics.csv") == "results/privacy/ncc/metrics.csv"
    assert layout.federated_file("unet", 0.1, layout.site_name(2), "eval", "per_image.csv") == \
        "results/federated/unet/sigma0.1/site2/eval/per_image.csv"
    assert layout.federated_sites_file("sites.csv") == "results/federated/sites/sites.csv"
    assert layout.table_file("table3", "csv") == "results/tables/table3.csv"
    assert layout.figure_file("figure4", "png") == "results/figures/figure4.png"
    assert layout.log_file("train", layout.run_stem("unet", 0.1, "gpu1", 2)) == \
        "results/logs/train/unet_sigma0.1_gpu1_rep2.log"
    assert layout.benchmark_file("evaluate", layout.run_stem("unet", 0.1, "gpu1", "1-3")) == \
        "results/benchmarks/evaluate/unet_sigma0.1_gpu1_rep1-3.tsv"


def test_wildcard_patterns_pass_through_for_the_rules():
    assert layout.train_file("{model}", "{sigma}", "{setup}", "{rep}", "best.pt") == \
        "results/train/{model}/sigma{sigma}/{setup}/rep{rep}/best.pt"
    assert layout.noisy_shard("{{sigma}}", "{shard}", "json") == "results/data/noisy/sigma{{sigma}}/shard_{shard}.json"
    assert layout.classical_file("{method}", "{sigma}", "summary.json", shard="{shard}") == \
        "results/classical/{method}/sigma{sigma}/shard_{shard}/summary.json"


def test_the_layout_before_replicates_reads_as_replicate_one():
    assert parse_run_path("results/train/unet/sigma0.1/gpu1/record.json") == ("unet", "0.1", "gpu1", 1)


@pytest.mark.parametrize("path", [
    "results/eval/unet/gpu1/rep1/summary.json",  # no sigma level
    "results/eval/unet/sigmaX/gpu1/rep1/summary.json",  # a sigma level that is no number
    "sigma0.1/summary.json",  # no model above it
    "results/eval/unet/sigma0.1/gpu1/replicate1/summary.json",  # not rep{k}
    "results/eval/unet/sigma0.1/gpu1/rep0/summary.json",  # replicates count from 1
    "results/classical/nlm/sigma0.1/shard_00000/summary.json",  # a shard, not a run
    "/tmp/a dir/results/eval/summary.json",
])
def test_a_malformed_path_is_refused_naming_it(path):
    with pytest.raises(CxrError, match="not a result path|not a run's") as err:
        parse_run_path(path)
    assert str(err.value).startswith(f"{path}: ")


def test_the_tables_parse_with_the_layout():
    from cxrdenoise import tables

    path = layout.eval_file("unet", 0.1, "gpu1", 2, "summary.json", results="/x y/results")
    assert tables.parse_replicate_path(path) == parse_run_path(path)
    assert tables.parse_run_path(path) == ("unet", "0.1", "gpu1")


def test_the_layout_imports_the_standard_library_only():
    code = ("import sys, cxrdenoise.layout; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pandas', 'yaml')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
