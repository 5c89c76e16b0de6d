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
    (tmp_path / "results" / "data").mkdir(parents=True)
    (tmp_path / "results" / "data" / "split.csv").write_text("")  # the split stated in every table's caption
    for attacker in ("ncc", "learned"):  # the privacy stage's results, which the claims table reads
        for name in ("metrics.csv", "summary.json"):
            (tmp_path / "results" / "privacy" / attacker).mkdir(parents=True, exist_ok=True)
            (tmp_path / "results" / "privacy" / attacker / name).write_text("")
    literature = ("0.0588235", "0.0980392")  # noise.literature: zero mean, 15/255 and 25/255
    for sigma in literature:  # the noisy input at the literature's noise (Table VI's "did not denoise" flag)
        (tmp_path / "results" / "eval" / "noisy" / f"sigma{sigma}").mkdir(parents=True)
        for name in ("summary.json", "per_image.csv"):
            (tmp_path / "results" / "eval" / "noisy" / f"sigma{sigma}" / name).write_text("")
    for method in ("bm3d", "nlm", "tv", "wavelet", "gaussian"):  # the classical stage's results (Table VI)
        for sigma in ("0.1", "0.2", "0.3", *literature):
            for name in ("summary.json", "per_image.csv"):
                (tmp_path / "results" / "classical" / method / f"sigma{sigma}").mkdir(parents=True, exist_ok=True)
                (tmp_path / "results" / "classical" / method / f"sigma{sigma}" / name).write_text("")
    (tmp_path / "models.yaml").write_text("train: {models: [unet, unetpp]}\n")  # the tree holds the study's two
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "{REPO / 'config' / 'config.yaml'}"
        configfile: "models.yaml"
        include: "{REPO / 'workflow' / 'rules' / 'common.smk'}"
        include: "{REPO / 'workflow' / 'rules' / 'report.smk'}"
        rule all:
            input: REPORT_TARGETS
        """))
    done = subprocess.run([snakemake, "-n", "-p", "-F", "--cores", "1", "-s", "Snakefile"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("--split-csv results/data/split.csv") == 6  # tables III-VI, claims, comparisons
    jobs = {}
    for block in done.stdout.split("\nrule ")[1:]:
        name = block.split(":", 1)[0].strip()
        inputs = next((ln.split(":", 1)[1] for ln in block.splitlines() if ln.strip().startswith("input:")), "")
        jobs.setdefault(name, []).append([p.strip() for p in inputs.split(",") if p.strip()])
    (t5,), (f4,), (t3,) = jobs["table5"], jobs["figure4"], jobs["table3"]
    split = "results/data/split.csv"  # every table's caption: images and patients per split
    for name in ("table3", "table4", "table5", "table6", "claims", "comparisons"):
        assert split in jobs[name][0], name
    assert all(split not in inputs for name in ("figure4", "figures_examples", "training_curves")
               for inputs in jobs[name])
    t5 = [p for p in t5 if p != split]
    t3 = [p for p in t3 if p != split]
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


# ------------------------------------------------------------------------ Figures 5-7: patients and the zoom

def test_pick_examples_takes_one_image_per_patient_first():
    ids = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000001_002.png", "00000003_000.png"]
    patients = ["1", "1", "2", "1", "3"]
    assert figures.pick_examples(ids, patients, 3) == [0, 2, 4]
    assert figures.pick_examples(ids, patients, 4) == [0, 2, 4, 1]  # only then a second image of a patient
    assert figures.pick_examples(ids, patients, None) == [0, 2, 4, 1, 3]


def test_example_figure_shows_distinct_patients(tmp_path, monkeypatch):
    """examples.npz holding 3 images of patient 1 first: the figure shows patients 1, 2 and 3, one row each."""
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1",), k_examples=5, n_images=6)
    ids = ["00000001_000.png", "00000001_001.png", "00000001_002.png", "00000002_000.png", "00000003_000.png"]
    for path in paths(results, "examples", sigmas=("0.1",), setups=("gpu1",)):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        np.savez(path, **{**arrays, "image_ids": np.array(ids)})
    shown = {}

    def capture(fig, out_prefix, dpi=150):
        shown["rows"] = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
        shown["title"] = fig._suptitle.get_text()
        return []

    monkeypatch.setattr(figures, "save_figure", capture)
    kw = dict(sigmas=("0.1",), setups=("gpu1",))
    figures.examples_figure(paths(results, "examples", **kw), paths(results, "per_image", **kw), None,
                            tmp_path / "figure5", number=5, max_images=3)
    assert [r.split("\n")[0] for r in shown["rows"]] == ["00000001_000.png", "00000002_000.png", "00000003_000.png"]
    assert "3 images of 3 patients, one per patient" in shown["title"]
    figures.examples_figure(paths(results, "examples", **kw), paths(results, "per_image", **kw), None,
                            tmp_path / "figure5", number=5, max_images=5)
    assert "5 images of only 3 patient(s)" in shown["title"]  # said, not hidden, when there are too few patients


def _radiograph(size: int = 96) -> np.ndarray:
    """Dark background with a bright, high-variance marker in the upper-left corner (a collimation edge or
    an "L" marker), and a body whose lungs carry fine texture in the middle."""
    rng = np.random.default_rng(0)
    img = np.full((size, size), 0.02)
    y, x = np.mgrid[0:size, 0:size] / size
    body = ((x - 0.55) ** 2 / 0.16 + (y - 0.58) ** 2 / 0.2) < 1
    img[body] = 0.45 + 0.08 * np.sin(40 * x[body]) * np.sin(40 * y[body]) + rng.normal(0, 0.03, body.sum())
    img[2:14, 2:14] = rng.choice([0.0, 1.0], (12, 12))  # the corner marker: the largest variance anywhere
    return np.clip(img, 0, 1)


def test_zoom_box_sits_on_anatomy_not_on_a_dark_corner():
    img = _radiograph()
    r, c, size = figures._zoom_box(img)
    window = img[r:r + size, c:c + size]
    assert (window < 0.1).mean() <= figures.DARK_FRACTION  # no background in the zoom
    assert r >= 14 or c >= 14  # not on the corner marker, though it has the highest variance
    y, x = r + size / 2, c + size / 2
    assert (x / 96 - 0.55) ** 2 / 0.16 + (y / 96 - 0.58) ** 2 / 0.2 < 1  # centred in the body
    flat = np.full((40, 40), 0.5)  # nothing qualifies as anatomy-with-detail: still a valid box
    assert figures._zoom_box(flat)[2] == int(40 * 0.22)


@pytest.mark.parametrize("box, corner", [((70, 70, 20), (0.02, 0.58)), ((5, 5, 20), (0.58, 0.02)),
                                         ((5, 70, 20), (0.02, 0.02))])
def test_inset_avoids_the_zoomed_region(box, corner):
    """The inset goes to the panel corner that does not cover the zoom box (axes y runs up, image rows down)."""
    x0, y0, w, h = figures._inset_corner(box, (96, 96))
    assert (round(x0, 2), round(y0, 2)) == corner and w == h == 0.4
