"""Honest labels: every table says what it measured and computes no Δ vs the study where the protocol differs —
for real data as much as for the synthetic phantoms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cxrdenoise import tables
from cxrdenoise.render import write_table
from cxrdenoise.tables.protocol import STUDY_PROTOCOL, Protocol
from cxrdenoise.tables.runs import collect_runs
from fixtures.results_tree import noisy_paths, paths, write_results_tree

SIGMAS = ("0.1", "0.3")


def _write_all(results: Path, out: Path, **labels) -> dict[str, str]:
    gpu1 = dict(sigmas=SIGMAS, setups=("gpu1",))
    s01 = dict(sigmas=("0.1",))
    built = {
        "table3": tables.build_table3(paths(results, "summary", **gpu1), paths(results, "per_image", **gpu1),
                                      noisy_paths(results, sigmas=SIGMAS), paths(results, "record", **gpu1),
                                      resamples=200, seed=1, **labels),
        "table4": tables.build_table4(paths(results, "record", sigmas=SIGMAS),
                                      paths(results, "summary", sigmas=SIGMAS), **labels),
        "table5": tables.build_table5(paths(results, "record", **s01), paths(results, "summary", **s01), **labels),
        "table6": tables.build_table6(paths(results, "summary", sigmas=("0.3",), setups=("gpu1",)),
                                      paths(results, "record", sigmas=("0.3",), setups=("gpu1",)), **labels),
    }
    for name, table in built.items():
        write_table(table, out / name)
    return {name: (out / f"{name}.md").read_text(encoding="utf-8") for name in built}


@pytest.fixture(scope="module")
def local_small(tmp_path_factory):
    """Real-data settings except three items: a local folder, 64x64 images, width-8 nets (GPU, 50 epochs,
    batch 16, study block and 2,551 test images as in the study)."""
    root = tmp_path_factory.mktemp("local")
    results = write_results_tree(root, sigmas=SIGMAS, device="cuda", lpips="ok", n_images=2551, epochs=50,
                                 base_channels=8, block="study")
    out = root / "tables"
    return results, out, _write_all(results, out, data_source="local", image_size=64)


def test_local_run_names_each_difference_and_computes_no_difference(local_small):
    _, out, md = local_small
    for name, text in md.items():
        for phrase in ("data chest X-rays from a local folder (study: NIH ChestX-ray14)",
                       "64x64 images (study: 256x256)", "base width 8 (study: 64)", "no Δ computed"):
            assert phrase in text, (name, phrase)
        for same in ("epochs 50", "batch per GPU", "trained on cuda", "test images 2551"):  # not differences
            assert same not in text.split("differs from these runs in")[-1], (name, same)
        assert "Measured: chest X-rays from a local folder, 2551 test images from 2551 patients, 64x64" in text
        assert "U-Net base width 8, block study" in text and "50 epochs, batch 16 per GPU/process" in text
        frame = pd.read_csv(out / f"{name}.csv")
        diffs = [c for c in frame.columns if c.startswith("diff_")]
        assert diffs and frame[diffs].isna().all().all(), name
        assert "n/c" in text, name  # Δ cells where the study has a value say "not computed"
    t4 = pd.read_csv(out / "table4.csv")
    assert t4["paper_psnr"].notna().any()  # the study's values are still shown, for reference


def test_study_protocol_gets_differences_and_one_item_off_does_not(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1",), device="cuda", lpips="ok",
                                 n_images=2551, epochs=50, base_channels=64, block="study")
    kw = dict(sigmas=("0.1",), setups=("gpu1",))
    runs = list(collect_runs(paths(results, "record", **kw), paths(results, "summary", **kw)).values())
    assert Protocol(runs, "nih", 256).all_differences() == []
    assert Protocol(runs, "nih", 128).all_differences() == ["128x128 images (study: 256x256)"]
    assert Protocol(runs, None, 256).all_differences() == ["data source not recorded"]
    assert STUDY_PROTOCOL["test_images"] == 2551 and STUDY_PROTOCOL["block"] == "study"
    t4 = tables.build_table4(paths(results, "record", **kw), paths(results, "summary", **kw), data_source="nih",
                             image_size=256).data
    assert t4["diff_psnr"].notna().all()
    t4 = tables.build_table4(paths(results, "record", **kw), paths(results, "summary", **kw), data_source="local",
                             image_size=256).data
    assert t4["diff_psnr"].isna().all() and t4["paper_psnr"].notna().all()


@pytest.mark.parametrize("block, phrase", [("double_bn", "block double_bn (study: study)"),
                                           (None, "block not recorded")])
def test_block_is_a_protocol_item(tmp_path, block, phrase):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1",), device="cuda", n_images=2551,
                                 epochs=50, base_channels=64, block=block)
    kw = dict(sigmas=("0.1",), setups=("gpu1",))
    table = tables.build_table4(paths(results, "record", **kw), paths(results, "summary", **kw),
                                data_source="nih", image_size=256)
    write_table(table, tmp_path / "t4")
    text = (tmp_path / "t4.md").read_text()
    assert phrase in text and table.data["diff_psnr"].isna().all()


def test_figures_carry_the_label(local_small, monkeypatch):
    from cxrdenoise import figures

    results, _, _ = local_small
    texts = {}

    def capture(fig, out_prefix, dpi=150):
        texts[Path(out_prefix).name] = [t.get_text() for t in fig.texts]
        return []

    monkeypatch.setattr(figures, "save_figure", capture)
    labels = dict(data_source="local", image_size=64)
    figures.figure4(paths(results, "record", sigmas=("0.1",)), "figure4", **labels)
    figures.training_curves(paths(results, "record", sigmas=SIGMAS), "curves", **labels)
    gpu1 = dict(sigmas=("0.1",), setups=("gpu1",))
    figures.examples_figure(paths(results, "examples", **gpu1), paths(results, "per_image", **gpu1), None,
                            "figure5", records=paths(results, "record", **gpu1), **labels)
    for name in ("figure4", "curves", "figure5"):
        label = next(t for t in texts[name] if t.startswith("Measured:"))
        assert "chest X-rays from a local folder" in label and "64x64" in label and "base width 8" in label
        assert "Differs from the study's protocol:" in label and "64x64 images (study: 256x256)" in label
        assert "not recorded" not in label, label  # a figure drawn from records does not know the test set
    assert "2551 test images from 2551 patients" in next(t for t in texts["figure5"] if t.startswith("Measured:"))
