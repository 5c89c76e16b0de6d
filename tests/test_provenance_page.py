"""The report's provenance item: commit, package versions, config hash and devices, from the result files."""

import subprocess
import sys

from cxrdenoise.provenance import git_commit
from fixtures.results_tree import CPU_NAME, noisy_paths, paths, write_results_tree
from snakemake_run import REPO, snakemake

SCRIPT = ["-m", "cxrdenoise", "provenance"]


def test_provenance_page_from_a_results_tree(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1", "dp2"))
    records = paths(results, "record", sigmas=("0.1",), setups=("gpu1", "dp2"))
    summaries = paths(results, "summary", sigmas=("0.1",), setups=("gpu1", "dp2")) + noisy_paths(results,
                                                                                                 sigmas=("0.1",))
    out = tmp_path / "results" / "provenance.html"
    config_hash = "f" * 64
    result = subprocess.run([sys.executable, *SCRIPT, "--config-hash", config_hash, "--records", *map(str, records),
                             "--summaries", *map(str, summaries), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert f"<td>config hash (results/config.resolved.yaml)</td><td>{config_hash}</td>" in page
    assert f"<td>{git_commit()}</td>" in page
    for package in ("torch", "numpy", "snakemake"):
        assert f"<tr><td>{package}</td>" in page
    assert f"<td>cpu: {CPU_NAME}</td><td>4</td>" in page  # 2 models x 2 setups trained on the CPU
    assert "<td>cpu: cpu</td><td>5</td>" in page  # 4 model summaries + the noisy one
    assert "record another config hash (000000000000)" in page  # the fixture's files carry a zero hash
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_unreadable_result_file_is_one_line(tmp_path):
    bad = tmp_path / "record.json"
    bad.write_text("{not json")
    result = subprocess.run([sys.executable, *SCRIPT, "--config-hash", "x", "--records", str(bad),
                             "--out", str(tmp_path / "p.html")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bad}: cannot read result file") and "Traceback" not in result.stderr


def test_provenance_is_a_report_item_of_all(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config" / "demo.yaml"), "--", "all")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rule provenance:" in result.stdout and "output: results/provenance.html" in result.stdout
    smk = (REPO / "workflow" / "rules" / "report.smk").read_text()
    assert 'report("results/provenance.html", caption="../report/provenance.rst", category="Provenance"' in smk
    assert (REPO / "workflow" / "report" / "provenance.rst").read_text().startswith("**Provenance.**")
