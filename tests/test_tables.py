"""Tables III-VI from a fake results tree: cells, differences, labels, footnotes, LPIPS honesty, file formats."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sps

from cxrdenoise import tables
from cxrdenoise.errors import CxrError
from cxrdenoise.reference import literature_rows, paper_numbers, paper_row
from cxrdenoise.render import TABLE_SUFFIXES, write_table
from fixtures.results_tree import (CPU_NAME, GPU_NAME, RANDOM_LPIPS_SENTINEL, STUDY_PROTOCOL, noisy_paths, paths,
                                   write_results_tree)

REPO = Path(__file__).resolve().parents[1]
ALL_SETUPS = ("gpu1", "dp2", "ddp2", "ddp2_amp")


def _all_tables(results: Path, out: Path, dncnn: bool = False) -> dict[str, tables.Table]:
    """Build and write all four tables from a fixture tree, with the inputs each Snakemake rule gives it."""
    gpu1 = dict(setups=("gpu1",))
    t6_sigmas = dict(sigmas=("0.2", "0.3"), setups=("gpu1",))
    dncnn_summaries = paths(results, "summary", models=("dncnn",), **t6_sigmas) if dncnn else []
    built = {
        "table3": tables.build_table3(paths(results, "summary", **gpu1),
                                      paths(results, "per_image", **gpu1) + noisy_paths(results, "per_image"),
                                      noisy_paths(results), paths(results, "record", **gpu1), data_source="nih",
                                      resamples=500, seed=1),
        "table4": tables.build_table4(paths(results, "record"), paths(results, "summary"), data_source="nih"),
        "table5": tables.build_table5(paths(results, "record", sigmas=("0.1",)),
                                      paths(results, "summary", sigmas=("0.1",))),
        "table6": tables.build_table6(paths(results, "summary", **t6_sigmas) + dncnn_summaries,
                                      paths(results, "record", **t6_sigmas)),
    }
    for name, table in built.items():
        write_table(table, out / name)
    return built


def _summary(results: Path, model: str, sigma: str, setup: str) -> dict:
    import json

    return json.loads((results / "eval" / model / f"sigma{sigma}" / setup / "rep1" / "summary.json").read_text())


def _row(frame: pd.DataFrame, **match) -> pd.Series:
    hit = frame
    for key, value in match.items():
        hit = hit[hit[key] == value]
    assert len(hit) == 1, f"expected one row for {match}, got {len(hit)}"
    return hit.iloc[0]


def _texts(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def cpu_tree(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("cpu")
    results = write_results_tree(root, lpips="unavailable", device="cpu", dncnn=True)
    out = root / "tables"
    return results, out, _all_tables(results, out, dncnn=True)


# ------------------------------------------------------------------------------------------- cells

@pytest.fixture(scope="module")
def study_tree(tmp_path_factory) -> tuple[Path, Path]:
    """A GPU tree that follows the study's protocol in every checked item, so Δ vs the study is computed."""
    root = tmp_path_factory.mktemp("study")
    results = write_results_tree(root, lpips="ok", sigmas=("0.1", "0.2"), setups=("gpu1", "dp2", "ddp2"),
                                 **STUDY_PROTOCOL)
    out = root / "tables"
    kw = dict(sigmas=("0.1", "0.2"), setups=("gpu1", "dp2", "ddp2"))
    write_table(tables.build_table4(paths(results, "record", **kw), paths(results, "summary", **kw),
                                    data_source="nih", image_size=256), out / "table4")
    return results, out


def test_values_land_in_the_right_cells_and_difference_is_ours_minus_paper(study_tree):
    results, out = study_tree
    t4 = pd.read_csv(out / "table4.csv")
    for sigma, model, setup in [("0.1", "unet", "gpu1"), ("0.2", "unetpp", "dp2"), ("0.1", "unet", "ddp2")]:
        row = _row(t4, sigma=float(sigma), model=model, setup=setup)
        m = _summary(results, model, sigma, setup)["metrics"]
        assert row["psnr"] == pytest.approx(m["psnr"]["mean"])
        assert row["ssim"] == pytest.approx(m["ssim"]["mean"])
        assert row["ssim_w3"] == pytest.approx(m["ssim_w3"]["mean"])
        assert row["n"] == 2551 and row["n_patients"] == 2551
        paper = paper_row(sigma, model, setup)
        if paper is None:  # ddp2 is ours only: paper cells blank, no difference
            assert math.isnan(row["paper_psnr"]) and math.isnan(row["diff_psnr"])
            continue
        assert row["paper_psnr"] == paper["psnr"]
        assert row["diff_psnr"] == pytest.approx(m["psnr"]["mean"] - paper["psnr"])
        # the study's SSIM is compared with our 3x3-window SSIM
        assert row["diff_ssim_w3"] == pytest.approx(m["ssim_w3"]["mean"] - paper["ssim"])
    md = (out / "table4.md").read_text()
    row = _row(t4, sigma=0.1, model="unet", setup="gpu1")
    line = next(ln for ln in md.splitlines() if ln.startswith("| 0.1 | U-Net | gpu1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [c.strip() for c in next(ln for ln in md.splitlines() if ln.startswith("| σ |")).strip("|").split("|")]
    cell = dict(zip(header, cells))
    assert cell["PSNR dB"] == f"{row['psnr']:.3f}"
    assert cell["paper PSNR"] == "34.952"  # no mark on the study's columns: nothing differs
    assert cell["Δ PSNR"] == f"{row['psnr'] - 34.952:+.3f}"
    assert cell["Δ SSIM (w3)"] == f"{row['ssim_w3'] - 0.9168:+.4f}"
    assert header.index("paper PSNR") == header.index("PSNR dB") + 1  # the study's figure beside ours
    assert "Protocol as the study's in every item checked" in md and "no Δ computed" not in md
    assert "NIH ChestX-ray14, 2551 test images from 2551 patients, 256x256" in md


def test_protocol_differences_suppress_every_difference(cpu_tree):
    """The CPU tree (12 test images, width 8, 3 epochs, CPU) differs from the study: its values, no Δ."""
    results, out, _ = cpu_tree
    for name in ("table3", "table4", "table5", "table6"):
        frame = pd.read_csv(out / f"{name}.csv")
        for col in ("diff_psnr", "diff_ssim_w3"):
            assert frame[col].isna().all(), (name, col)
        md = (out / f"{name}.md").read_text()
        assert "no Δ computed" in md and "base width 8 (study: 64)" in md and "epochs 3 (study: 50)" in md
        assert "| paper PSNR |" not in md  # the study's columns carry the mark of what differs
    t4 = pd.read_csv(out / "table4.csv")
    assert _row(t4, sigma=0.1, model="unet", setup="gpu1")["paper_psnr"] == 34.952  # still shown, for reference
    assert "n/c" in (out / "table4.md").read_text()


def test_table3_ci_noisy_rows_and_paired_tests(cpu_tree):
    results, out, _ = cpu_tree
    t3 = pd.read_csv(out / "table3.csv")
    assert set(t3["setup"]) == {"gpu1", "none"}
    for sigma in ("0.1", "0.2", "0.3"):
        noisy = _row(t3, sigma=float(sigma), model="noisy")
        assert math.isnan(noisy["paper_psnr"])  # the study has no "no denoising" row
        unet = _row(t3, sigma=float(sigma), model="unet")
        m = _summary(results, "unet", sigma, "gpu1")["metrics"]["psnr"]
        assert unet["psnr_ci95"] == pytest.approx(m["ci95_t_halfwidth"])
        a = pd.read_csv(results / "eval" / "unet" / f"sigma{sigma}" / "gpu1" / "rep1" / "per_image.csv")
        b = pd.read_csv(results / "eval" / "unetpp" / f"sigma{sigma}" / "gpu1" / "rep1" / "per_image.csv")
        assert unet["p_t_psnr"] == pytest.approx(sps.ttest_rel(a["psnr"], b["psnr"]).pvalue)
        assert unet["p_wilcoxon_ssim"] == pytest.approx(sps.wilcoxon(a["ssim"], b["ssim"]).pvalue)
        assert _row(t3, sigma=float(sigma), model="unetpp")["p_t_psnr"] == unet["p_t_psnr"]
        assert math.isnan(noisy["p_t_psnr"])
        # patient level: one image per patient in this fixture, so the per-patient test is the paired t-test
        # (one run a side: no run-to-run term, so the estimand's t is the one-sample t of the per-patient differences)
        assert unet["p_patient_psnr"] == pytest.approx(sps.ttest_1samp(a["psnr"] - b["psnr"], 0).pvalue)
        assert unet["p_holm_psnr"] >= unet["p_patient_psnr"] and unet["n_patients"] == 12
        assert unet["paired_ci_lo_psnr"] < unet["paired_mean_psnr"] < unet["paired_ci_hi_psnr"]
        assert unet["psnr_ci95_patient_lo"] < unet["psnr"] < unet["psnr_ci95_patient_hi"]
        assert noisy["psnr_ci95_patient_lo"] < noisy["psnr"] < noisy["psnr_ci95_patient_hi"]
    md = (out / "table3.md").read_text()
    assert "95 % t-interval" in md and "patient-level mean" in md and "Satterthwaite" in md
    assert "patient-cluster percentile bootstrap" in md and "Holm" in md and "12 test images from 12 patients" in md
    assert "| 0.1 | no denoising |" in md
    assert "34.952 ± 0.04" in md  # the study's value with its ±


def test_table5_time_saving(cpu_tree):
    _, out, _ = cpu_tree
    t5 = pd.read_csv(out / "table5.csv")
    assert set(t5["sigma"]) == {0.1}
    for model in ("unet", "unetpp"):
        base = _row(t5, model=model, setup="gpu1")
        assert base["time_saving_pct"] == 0
        for setup in ("dp2", "ddp2", "ddp2_amp"):
            row = _row(t5, model=model, setup=setup)
            want = (base["train_val_s"] - row["train_val_s"]) / base["train_val_s"] * 100
            assert row["time_saving_pct"] == pytest.approx(want)
            want_train = (base["train_s"] - row["train_s"]) / base["train_s"] * 100
            assert row["time_saving_train_pct"] == pytest.approx(want_train)
    # the study's time savings, recomputed from its printed times, match its printed Table V to 0.02 points
    # (U-Net++ DDP+AMP: (22717.1 - 8025) / 22717.1 = 64.67 %, printed as 64.69 %)
    printed = {("unet", "dp2"): 36.34, ("unet", "ddp2_amp"): 62.65, ("unetpp", "dp2"): 47.16,
               ("unetpp", "ddp2_amp"): 64.69}
    for (model, setup), pct in printed.items():
        assert _row(t5, model=model, setup=setup)["paper_time_saving_pct"] == pytest.approx(pct, abs=0.025)
    assert math.isnan(_row(t5, model="unet", setup="ddp2")["paper_time_saving_pct"])


def test_table5_needs_one_noise_level(cpu_tree):
    results, _, _ = cpu_tree
    with pytest.raises(CxrError, match="one noise level"):
        tables.build_table5(paths(results, "record"), paths(results, "summary"))


def test_table6_quoted_rows_are_labelled_and_measured_rows_are_ours(cpu_tree):
    _, out, built = cpu_tree
    t6 = pd.read_csv(out / "table6.csv")
    quoted = t6[t6["source"].str.startswith("quoted")]
    assert len(quoted) == len(literature_rows()) == 6
    for _, row in quoted.iterrows():
        assert row["source"].startswith("quoted (Adebayo & Khan 2025 Table VI, citing ")
        assert "natural images, σ=15/25 of 255" in row["source"]
    measured = t6[~t6["source"].str.startswith("quoted")]
    assert set(measured["method"]) == {"U-Net", "U-Net++", "DnCNN"}
    assert all(s.startswith("measured (this pipeline") for s in measured["source"])
    assert _row(t6, method="BM3D", noise="σ=15/255")["psnr"] == 31.08
    md = (out / "table6.md").read_text()
    assert md.count("quoted (Adebayo & Khan 2025 Table VI, citing") == 6
    assert "LPIPS" not in md.split("\n\n")[1]  # no LPIPS column in Table VI


# ------------------------------------------------------------------------------------------- honesty

def test_cpu_device_label_and_timing_footnotes(cpu_tree):
    _, out, _ = cpu_tree
    texts = _texts(out)
    for name in ("table3", "table4", "table5", "table6"):
        assert f"cpu ({CPU_NAME})" in texts[f"{name}.md"]
    for name in ("table4", "table5"):
        md = texts[f"{name}.md"]
        assert "CPU timing — not comparable to the paper's GPU times" in md
        assert "DataParallel ran as one CPU process" in md
    assert "CPU timing" not in texts["table3.md"]  # no timings there
    t4 = pd.read_csv(out / "table4.csv")
    assert t4["diff_train_val_s"].isna().all()  # CPU seconds are never differenced with GPU seconds
    assert "n/c" in texts["table4.md"]
    assert (t4["device"] == f"cpu ({CPU_NAME})").sum() + t4["device"].str.endswith("2 processes").sum() == len(t4)


def test_gpu_device_labels_and_time_difference(tmp_path):
    results = write_results_tree(tmp_path, lpips="ok", sigmas=("0.1",), **STUDY_PROTOCOL)
    t4 = tables.build_table4(paths(results, "record", sigmas=("0.1",)), paths(results, "summary", sigmas=("0.1",)),
                             data_source="nih", image_size=256)
    write_table(t4, tmp_path / "table4")
    frame = pd.read_csv(tmp_path / "table4.csv")
    assert _row(frame, model="unet", setup="gpu1")["device"] == f"cuda: 1x {GPU_NAME}"
    assert _row(frame, model="unet", setup="dp2")["device"] == f"cuda: 2x {GPU_NAME}"
    row = _row(frame, model="unet", setup="dp2")
    assert row["diff_train_val_s"] == pytest.approx(row["train_val_s"] - 4665.2)
    md = (tmp_path / "table4.md").read_text()
    assert "CPU timing" not in md and "DataParallel ran as one CPU process" not in md
    # real LPIPS is shown, with its difference
    assert row["lpips"] == pytest.approx(_summary(results, "unet", "0.1", "dp2")["metrics"]["lpips"]["mean"])
    assert row["diff_lpips"] == pytest.approx(row["lpips"] - 0.1582)
    assert f"{row['lpips']:.4f}" in md
    assert frame["notes"].isna().any()  # gpu1 on a GPU needs no footnote: an empty cell, read back as missing
    pd.testing.assert_frame_equal(frame, t4.data, check_dtype=False)


def test_lpips_unavailable_gives_na_and_footnote_with_file(cpu_tree):
    _, out, _ = cpu_tree
    for name in ("table3", "table4", "table5"):
        md = (out / f"{name}.md").read_text()
        assert "n/a†" in md
        assert "LPIPS n/a: " in md and "alexnet-owt-7be5be79.pth" in md
        assert pd.read_csv(out / f"{name}.csv")["lpips"].isna().all()


def test_random_backbone_lpips_never_appears_as_a_number(tmp_path):
    results = write_results_tree(tmp_path, lpips="random", sigmas=("0.1", "0.2", "0.3"))
    out = tmp_path / "tables"
    _all_tables(results, out)
    sentinel = f"{RANDOM_LPIPS_SENTINEL}"[:6]  # "0.7777" however it is rounded
    for name, text in _texts(out).items():
        assert sentinel not in text and "0.7778" not in text, name
    for name in ("table3", "table4", "table5"):
        md = (out / f"{name}.md").read_text()
        assert "n/a (random backbone, not LPIPS)" in md
        frame = pd.read_csv(out / f"{name}.csv")
        assert frame["lpips"].isna().all() and frame["diff_lpips"].isna().all()
    t3 = pd.read_csv(out / "table3.csv")
    assert "p_t_lpips" not in t3.columns  # no paired test on a random backbone either


def test_record_filed_under_the_wrong_path_is_refused(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1", "dp2"))
    src = results / "train" / "unet" / "sigma0.1" / "dp2" / "rep1" / "record.json"
    shutil.copy(src, results / "train" / "unet" / "sigma0.1" / "gpu1" / "rep1" / "record.json")
    with pytest.raises(CxrError, match="path says 'gpu1'"):
        tables.build_table4(paths(results, "record", sigmas=("0.1",), setups=("gpu1",)),
                            paths(results, "summary", sigmas=("0.1",), setups=("gpu1",)))


def test_missing_record_is_named(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1",))
    with pytest.raises(CxrError, match="no training record for unet"):
        tables.build_table4([], paths(results, "summary", sigmas=("0.1",), setups=("gpu1",)))


# ------------------------------------------------------------------------------------------- formats

def test_csv_round_trips_with_pandas(cpu_tree):
    _, out, built = cpu_tree
    for name, table in built.items():
        back = pd.read_csv(out / f"{name}.csv")
        pd.testing.assert_frame_equal(back, table.data, check_dtype=False)


def test_markdown_tables_are_well_formed(cpu_tree):
    _, out, _ = cpu_tree
    for name in ("table3", "table4", "table5", "table6"):
        blocks, current = [], []
        for line in (out / f"{name}.md").read_text().splitlines():
            if line.startswith("|"):
                current.append(line)
            elif current:
                blocks.append(current)
                current = []
        blocks += [current] if current else []
        assert blocks, name
        for block in blocks:
            widths = {len(ln.replace(r"\|", "").split("|")) for ln in block}
            assert len(widths) == 1, f"{name}: ragged Markdown table"
            assert set(block[1].replace("|", "")) <= set(":-")


def test_latex_is_escaped(cpu_tree):
    _, out, _ = cpu_tree
    tex = (out / "table4.tex").read_text()
    assert r"ddp2\_amp" in tex
    assert r"\begin{tabular}" in tex and r"\end{table}" in tex
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        assert "_" not in line.replace(r"\_", ""), line
        assert "σ" not in line and "Δ" not in line and "±" not in line
    assert r"$\pm$" in (out / "table3.tex").read_text()


def test_all_four_formats_written(cpu_tree):
    _, out, _ = cpu_tree
    for name in ("table3", "table4", "table5", "table6"):
        for ext in TABLE_SUFFIXES:
            assert (out / f"{name}{ext}").stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_reference_copy_matches_shared():
    shared = REPO.parent / "shared" / "reference" / "paper-numbers.csv"
    if not shared.is_file():
        pytest.skip(f"{shared} not found")
    pkg = REPO / "src" / "cxrdenoise" / "reference" / "paper-numbers.csv"
    assert pkg.read_bytes() == shared.read_bytes()
    assert len(paper_numbers()) == 14 and paper_row("0.3", "unetpp", "dp2")["train_s"] == 12015.6


def test_make_tables_cli(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1", "dp2"))
    kw = dict(sigmas=("0.1",), setups=("gpu1", "dp2"))
    cmd = [sys.executable, "-m", "cxrdenoise", "tables", "table5",
           "--out-prefix", str(tmp_path / "t" / "table5"), "--data-source", "synthetic",
           "--records", *map(str, paths(results, "record", **kw)),
           "--summaries", *map(str, paths(results, "summary", **kw))]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "synthetic chest-radiograph phantoms (demo)" in (tmp_path / "t" / "table5.md").read_text()
    bad = subprocess.run(cmd[:5] + ["--out-prefix", str(tmp_path / "x"), "--records", "nope/record.json"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ")
