"""Every table's caption states the learning rate, images and patients per split and the largest test patient's
share (flagged above 10 %), names NIH read from a local folder as NIH; a default full run (patient-level split,
2,550 test images) gets Δ against the study, and real protocol differences (learning rate, data source) do not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cxrdenoise import tables
from cxrdenoise.render import write_table
from cxrdenoise.tables.cells import DataFacts, data_caption, data_facts, load_data_facts, read_split_facts
from cxrdenoise.tables.claims import build_claims
from cxrdenoise.tables.comparisons import build_comparisons
from fixtures.results_tree import STUDY_PROTOCOL, noisy_paths, paths, write_results_tree

REPO = Path(__file__).resolve().parents[1]
KW = dict(sigmas=("0.1",), setups=("gpu1", "dp2"))


def _split_csv(path: Path, test_sizes: list[int], train: int = 20, val: int = 10) -> Path:
    """A split.csv with one patient per train/val image and test patients of the given image counts."""
    rows = [("train", p) for p in range(train)] + [("val", 1000 + p) for p in range(val)]
    rows += [("test", 2000 + k) for k, n in enumerate(test_sizes) for _ in range(n)]
    frame = pd.DataFrame({"image_id": [f"{p:08d}_{i:03d}.png" for i, (_, p) in enumerate(rows)],
                          "patient_id": [p for _, p in rows], "split": [s for s, _ in rows]})
    frame.to_csv(path, index=False)
    return path


def test_split_facts_count_images_patients_and_the_largest_test_patient(tmp_path):
    facts = read_split_facts(_split_csv(tmp_path / "split.csv", [2, 7] + [1] * 22))  # 31 images, 24 patients
    assert facts.images == {"train": 20, "val": 10, "test": 31}
    assert facts.patients == {"train": 20, "val": 10, "test": 24}
    assert facts.largest_test_images == 7 and facts.largest_test_share == pytest.approx(7 / 31)


@pytest.mark.parametrize("sizes, flagged", [([28] + [1] * 72, True), ([10] + [1] * 90, False), ([1] * 50, False)])
def test_largest_test_patient_is_flagged_above_ten_percent(tmp_path, sizes, flagged):
    lines = data_caption("nih", load_data_facts(_split_csv(tmp_path / "split.csv", sizes)))
    largest = next(ln for ln in lines if ln.startswith("Largest test patient"))
    share = 100 * max(sizes) / sum(sizes)
    assert f"{max(sizes)} of the {sum(sizes)} test images" in largest
    assert (f"({share:.1f} %)" if share >= 1 else "%") in largest
    assert ("above 10 %" in largest) == flagged
    split = next(ln for ln in lines if ln.startswith("Split"))
    assert f"test {sum(sizes)} images of {len(sizes)} patients" in split and "train 20 images of 20 patients" in split
    assert "7,499 / 4,949 / 2,551" in split  # the study's image-level split, beside ours


def test_local_folder_with_nih_metadata_is_named_nih():
    assert data_caption("local") == ["Data: chest X-ray test images (local folder)."]
    assert data_caption("local", DataFacts(nih_metadata=True)) == ["Data: NIH ChestX-ray14 (local folder)."]
    with data_facts(DataFacts(nih_metadata=True)):  # what the table commands set from --nih-metadata
        assert data_caption("local") == ["Data: NIH ChestX-ray14 (local folder)."]
        assert data_caption("nih") == ["Data: NIH ChestX-ray14 test images."]
    assert data_caption("local") == ["Data: chest X-ray test images (local folder)."]  # the context ends


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The study's protocol in every checked item except the test set: 2,550 test images of a patient-level
    split of 15,000 (a default full run), with one patient holding 28 % of the test images in split.csv."""
    root = tmp_path_factory.mktemp("default")
    results = write_results_tree(root, lpips="ok", **KW, **{**STUDY_PROTOCOL, "n_images": 2550})
    split = _split_csv(root / "split.csv", [714] + [1] * 1836, train=7500, val=4950)
    return results, split


def _every_table(results: Path, data_source: str = "nih") -> dict[str, tables.Table]:
    labels = dict(data_source=data_source, image_size=256)
    gpu1 = dict(sigmas=("0.1",), setups=("gpu1",))
    rec, summ, per = (paths(results, k, **KW) for k in ("record", "summary", "per_image"))
    noisy = noisy_paths(results, sigmas=("0.1",))
    return {
        "table3": tables.build_table3(paths(results, "summary", **gpu1),
                                      paths(results, "per_image", **gpu1) + noisy_paths(results, "per_image",
                                                                                          sigmas=("0.1",)),
                                      noisy, paths(results, "record", **gpu1), resamples=200, seed=1, **labels),
        "table4": tables.build_table4(rec, summ, noisy=noisy, **labels),
        "table5": tables.build_table5(rec, summ, noisy=noisy, **labels),
        "table6": tables.build_table6(paths(results, "summary", **gpu1), paths(results, "record", **gpu1),
                                      noisy=noisy, per_image=paths(results, "per_image", **gpu1), resamples=200,
                                      seed=1, **labels),
        "comparisons": build_comparisons(rec, summ, per, noisy, resamples=200, seed=1, **labels),
        "claims": build_claims(rec, summ, per, noisy, resamples=200, seed=1, **labels),
    }


def test_every_table_states_split_largest_patient_and_learning_rate(default_run):
    results, split = default_run
    with data_facts(load_data_facts(split)):
        built = _every_table(results)
    for name, table in built.items():
        text = "\n".join(table.caption)
        assert ("Split (patient-level: no patient in two splits; 15,000 images): train 7,500 images of 7,500 "
                "patients, validation 4,950 images of 4,950 patients, test 2,550 images of 1,837 patients"
                ) in text, name
        assert "Largest test patient: 714 of the 2,550 test images (28.0 %) — above 10 %" in text, name
        assert "learning rate 0.001" in text, name
        assert "Test set: 2,550 images" in text and "the study's 2,551 images" in text, name


def test_default_full_run_gets_differences_against_the_study(default_run):
    """2,550 test images (patient-level split) vs the study's 2,551: stated, and Δ is computed."""
    results, _ = default_run
    built = _every_table(results)
    for name in ("table3", "table4", "table5"):
        data = built[name].data
        assert data.loc[data["model"] != "noisy", "diff_psnr"].notna().any(), name
        assert "Protocol as the study's in every item checked" in "\n".join(built[name].caption), name
        assert not any("no Δ computed" in text for _, text in built[name].footnotes), name


def _set_lr(results: Path, lr: float) -> None:
    for path in (results / "train").rglob("record.json"):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "lr": lr}))


def test_learning_rate_and_data_source_still_withhold_differences(tmp_path):
    results = write_results_tree(tmp_path, lpips="ok", **KW, **STUDY_PROTOCOL)
    assert tables.build_table4(paths(results, "record", **KW), paths(results, "summary", **KW), data_source="nih",
                               image_size=256).data["diff_psnr"].notna().any()
    local = tables.build_table4(paths(results, "record", **KW), paths(results, "summary", **KW),
                                data_source="local", image_size=256)
    assert local.data["diff_psnr"].isna().all()
    with data_facts(DataFacts(nih_metadata=True)):  # NIH ChestX-ray14 from a local folder: the study's data
        nih_local = tables.build_table4(paths(results, "record", **KW), paths(results, "summary", **KW),
                                        data_source="local", image_size=256)
    assert nih_local.data["diff_psnr"].notna().any()
    assert "Measured: NIH ChestX-ray14 (local folder)" in "\n".join(nih_local.caption)
    _set_lr(results, 5e-3)  # the demo's learning rate
    table = tables.build_table4(paths(results, "record", **KW), paths(results, "summary", **KW), data_source="nih",
                                image_size=256)
    assert table.data["diff_psnr"].isna().all()
    assert any("learning rate 0.005 (study: 0.001)" in text for _, text in table.footnotes)
    assert "learning rate 0.005" in "\n".join(table.caption)


def test_table_and_claims_commands_pass_the_split_and_nih_metadata(default_run, tmp_path):
    results, split = default_run
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    common = ["--data-source", "local", "--image-size", "256", "--split-csv", str(split), "--nih-metadata",
              "--records", *map(str, paths(results, "record", **KW)),
              "--summaries", *map(str, paths(results, "summary", **KW))]
    for cmd, name in (([sys.executable, "-m", "cxrdenoise", "tables", "table4"], "table4"),
                      ([sys.executable, "-m", "cxrdenoise", "claims", "comparisons", "--bootstrap-resamples", "100",
                        "--seed", "1", "--per-image", *map(str, paths(results, "per_image", **KW)),
                        "--noisy", *map(str, noisy_paths(results, sigmas=("0.1",)))], "comparisons")):
        done = subprocess.run([*cmd, "--out-prefix", str(tmp_path / name), *common], capture_output=True, text=True,
                              env=env)
        assert done.returncode == 0, done.stderr
        md = (tmp_path / f"{name}.md").read_text()
        assert "Data: NIH ChestX-ray14 (local folder)." in md, name
        assert "test 2,550 images of 1,837 patients" in md and "(28.0 %) — above 10 %" in md, name


def test_written_caption_reaches_every_format(default_run, tmp_path):
    results, split = default_run
    with data_facts(load_data_facts(split)):
        table = tables.build_table4(paths(results, "record", **KW), paths(results, "summary", **KW),
                                    data_source="nih", image_size=256)
    write_table(table, tmp_path / "table4")
    for ext in ("md", "html", "tex"):
        assert "Largest test patient" in (tmp_path / f"table4.{ext}").read_text(), ext
