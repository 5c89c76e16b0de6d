"""Figures 4-7 and the training curves are written as real, non-empty PNG and PDF files from a fake tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cxrdenoise import figures
from cxrdenoise.errors import CxrError
from fixtures.results_tree import noisy_paths, paths, write_results_tree

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_results_tree(tmp_path_factory.mktemp("fig"), setups=("gpu1", "dp2", "ddp2_amp"), k_examples=2)


def _check(written: list[Path]) -> None:
    assert [p.suffix for p in written] == [".png", ".pdf"]
    png, pdf = written
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == PNG_MAGIC
    assert pdf.stat().st_size > 1000 and pdf.read_bytes()[:4] == PDF_MAGIC
    assert not [p for p in png.parent.iterdir() if p.name.startswith(".")]  # atomic: no temp files left


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_figure4(tmp_path, device):
    results = write_results_tree(tmp_path, device=device, sigmas=("0.1",), setups=("gpu1", "dp2", "ddp2_amp"))
    _check(figures.figure4(paths(results, "record", sigmas=("0.1",), setups=("gpu1", "dp2", "ddp2_amp")),
                           tmp_path / "out" / "figure4"))


def test_figure4_needs_one_noise_level(tree, tmp_path):
    with pytest.raises(CxrError, match="one noise level"):
        figures.figure4(paths(tree, "record", setups=("gpu1",)), tmp_path / "figure4")


@pytest.mark.parametrize("sigma,number", [("0.1", 5), ("0.2", 6), ("0.3", 7)])
def test_example_figures(tree, tmp_path, sigma, number):
    kw = dict(sigmas=(sigma,), setups=("gpu1",))
    written = figures.examples_figure(paths(tree, "examples", **kw), paths(tree, "per_image", **kw),
                                      noisy_paths(tree, "per_image", sigmas=(sigma,))[0],
                                      tmp_path / f"figure{number}", number=number)
    _check(written)


def test_example_figure_refuses_different_images(tree, tmp_path):
    kw = dict(sigmas=("0.1",), setups=("gpu1",))
    examples = paths(tree, "examples", **kw)
    other = tmp_path / "eval" / "unetpp" / "sigma0.1" / "gpu1" / "rep1" / "examples.npz"
    other.parent.mkdir(parents=True)
    with np.load(examples[1]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["image_ids"] = np.array(["99999999_000.png", "99999998_000.png"])
    np.savez(other, **arrays)
    with pytest.raises(CxrError, match="same images for every model"):
        figures.examples_figure([examples[0], other], [], None, tmp_path / "figure5")


def test_training_curves(tree, tmp_path):
    _check(figures.training_curves(paths(tree, "record", setups=("gpu1", "dp2", "ddp2_amp")),
                                   tmp_path / "training_curves"))


def test_make_figures_cli(tree, tmp_path):
    cmd = [sys.executable, "-m", "cxrdenoise", "figures", "curves",
           "--out-prefix", str(tmp_path / "curves"), "--records",
           *map(str, paths(tree, "record", setups=("gpu1",)))]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_report_rules_have_minimal_inputs(tmp_path):
    """Dry-run report.smk: table5 and figure4 read only sigma 0.1; table3 only gpu1 runs and the noisy input."""
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    if not Path(snakemake).exists():
        pytest.skip("snakemake not installed")
    write_results_tree(tmp_path, setups=("gpu1", "dp2", "ddp2_amp"))
    for attacker in ("ncc", "learned"):  # the privacy stage's results, which the claims table reads
        for name in ("metrics.csv", "summary.json"):
            (tmp_path / "results" / "privacy" / attacker).mkdir(parents=True, exist_ok=True)
            (tmp_path / "results" / "privacy" / attacker / name).write_text("")
    literature = ("0.0588235", "0.0980392")  # noise.literature: zero mean, 15/255 and 25/255
    for sigma in literature:  # the noisy input at the literature's noise (Table VI's "did not denoise" flag)
        (tmp_path / "results" / "eval" / "noisy" / f"sigma{sigma}").mkdir(parents=True)
        (tmp_path / "results" / "eval" / "noisy" / f"sigma{sigma}" / "summary.json").write_text("")
    for method in ("bm3d", "nlm", "tv", "wavelet", "gaussian"):  # the classical stage's results (Table VI)
        for sigma in ("0.1", "0.2", "0.3", *literature):
            for name in ("summary.json", "per_image.csv"):
                (tmp_path / "results" / "classical" / method / f"sigma{sigma}").mkdir(parents=True, exist_ok=True)
                (tmp_path / "results" / "classical" / method / f"sigma{sigma}" / name).write_text("")
    (tmp_path / "models.yaml").write_text("train: {models: [unet, unetpp]}\n")  # the tree holds the study's two
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "{REPO / 'config.yaml'}"
        configfile: "models.yaml"
        include: "{REPO / 'workflow' / 'rules' / 'common.smk'}"
        include: "{REPO / 'workflow' / 'rules' / 'report.smk'}"
        rule all:
            input: REPORT_TARGETS
        """))
    done = subprocess.run([snakemake, "-n", "-F", "--cores", "1", "-s", "Snakefile"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {}
    for block in done.stdout.split("\nrule ")[1:]:
        name = block.split(":", 1)[0].strip()
        inputs = next((ln.split(":", 1)[1] for ln in block.splitlines() if ln.strip().startswith("input:")), "")
        jobs.setdefault(name, []).append([p.strip() for p in inputs.split(",") if p.strip()])
    (t5,), (f4,), (t3,) = jobs["table5"], jobs["figure4"], jobs["table3"]
    # 6 records + 6 summaries (rep1 of each run) + the noisy summary for the "did not denoise" flag
    assert len(t5) == 13 and all("/sigma0.1/" in p for p in t5)
    assert all("/rep1/" in p for p in t5 if "/noisy/" not in p)
    assert len(f4) == 13 and all("/sigma0.1/" in p for p in f4) and sum(p.endswith("record.json") for p in f4) == 6
    # the noisy input's summary and per-image scores (its patient-bootstrap interval) at each of 3 sigmas
    assert all("/gpu1/" in p or "/noisy/" in p for p in t3) and sum("/noisy/" in p for p in t3) == 6
    assert len(jobs["figures_examples"]) == 3
    (t6,) = jobs["table6"]  # the configured classical methods at Table VI's and the literature's sigmas
    assert sum("/classical/" in p for p in t6) == 5 * 4 * 2 and all("sigma0.1/" not in p for p in t6)
    assert sum("/classical/" in p and "sigma0.0588235/" in p for p in t6) == 5 * 2
    (ps,) = jobs["psnr_sigma"]  # the study's sigmas only: one noise mean per line
    assert sum("/classical/" in p for p in ps) == 5 * 3
    (claims,) = jobs["claims"]  # every run's record, summary and per-image scores, and the noisy summaries
    assert sum(p.endswith("per_image.csv") for p in claims) == 18 and sum("/noisy/" in p for p in claims) == 3
