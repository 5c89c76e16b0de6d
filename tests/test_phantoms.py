"""Synthetic chest-radiograph phantoms: determinism, NIH naming and metadata, anatomy, CLI and Snakemake rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from cxrdenoise.errors import CxrError
from cxrdenoise.naming import parse_image_name
from cxrdenoise.phantoms import (
    IMAGES_DIR,
    METADATA_COLUMNS,
    METADATA_NAME,
    follow_up_count,
    generate_phantoms,
    metadata_row,
    phantom,
)

REPO = Path(__file__).resolve().parents[1]
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]"]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("phantoms") / "synthetic"
    table = generate_phantoms(out, patients=8, max_follow_ups=3, size=64, seed=11, progress=False)
    return out, table


def _region(img: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> float:
    """Mean of the pixels in the normalised box [x0, x1] x [y0, y1] (x right, y down, both in [-1, 1])."""
    n = img.shape[0]

    def px(v: float) -> int:
        return int(round((v + 1) / 2 * n))

    return float(img[px(y0):px(y1), px(x0):px(x1)].mean())


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_bytes(small_set, tmp_path):
    out, table = small_set
    again = generate_phantoms(tmp_path / "again", patients=8, max_follow_ups=3, size=64, seed=11, progress=False)
    pd.testing.assert_frame_equal(table, again)
    assert (out / METADATA_NAME).read_bytes() == (tmp_path / "again" / METADATA_NAME).read_bytes()
    names = sorted(p.name for p in (out / IMAGES_DIR).iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again" / IMAGES_DIR).iterdir())
    for name in names:
        assert (out / IMAGES_DIR / name).read_bytes() == (tmp_path / "again" / IMAGES_DIR / name).read_bytes(), name


def test_different_seed_gives_different_images(small_set, tmp_path):
    out, _ = small_set
    generate_phantoms(tmp_path / "other", patients=2, max_follow_ups=1, size=64, seed=12, progress=False)
    for name in ("00000001_000.png", "00000002_000.png"):
        assert (out / IMAGES_DIR / name).read_bytes() != (tmp_path / "other" / IMAGES_DIR / name).read_bytes()
    assert not np.array_equal(phantom(1, 0, 64, 11), phantom(1, 0, 64, 12))


def test_phantom_matches_written_png(small_set):
    out, table = small_set
    for name in table["Image Index"][:4]:
        patient, follow_up = parse_image_name(name)
        written = np.asarray(Image.open(out / IMAGES_DIR / name))
        np.testing.assert_array_equal(written, phantom(patient, follow_up, 64, 11))


# ------------------------------------------------------------------------------------- names and metadata
def test_names_and_follow_up_counts(small_set):
    out, table = small_set
    files = sorted(p.name for p in (out / IMAGES_DIR).iterdir())
    parsed = [parse_image_name(name) for name in files]
    patients = sorted({p for p, _ in parsed})
    assert patients == list(range(1, 9))
    counts = {}
    for patient in patients:
        follow_ups = sorted(f for p, f in parsed if p == patient)
        assert follow_ups == list(range(len(follow_ups))), f"patient {patient}: follow-ups {follow_ups}"
        assert 1 <= len(follow_ups) <= 3
        assert len(follow_ups) == follow_up_count(patient, 3, 11)
        counts[patient] = len(follow_ups)
    assert max(counts.values()) > 1, "no patient has more than one follow-up"
    assert len(table) == len(files)


def test_metadata_matches_files(small_set):
    out, table = small_set
    header = (out / METADATA_NAME).read_text().splitlines()[0]
    assert header == ",".join(NIH_COLUMNS)
    assert list(table.columns) == NIH_COLUMNS == METADATA_COLUMNS
    meta = pd.read_csv(out / METADATA_NAME)
    assert list(meta.columns) == NIH_COLUMNS
    assert sorted(meta["Image Index"]) == sorted(p.name for p in (out / IMAGES_DIR).iterdir())
    for row in meta.itertuples(index=False):
        patient, follow_up = parse_image_name(row[0])
        assert (row[2], row[3]) == (follow_up, patient)
        assert row[5] in ("M", "F") and 18 <= row[4] <= 120
    assert set(meta["View Position"]) == {"PA"}
    assert set(meta["Finding Labels"]) <= {"No Finding", "Nodule"}
    assert (meta["OriginalImage[Width"] == 64).all() and (meta["Height]"] == 64).all()
    # one gender per patient; age never decreases over follow-ups
    for _, rows in meta.groupby("Patient ID"):
        assert rows["Patient Gender"].nunique() == 1
        assert rows.sort_values("Follow-up #")["Patient Age"].is_monotonic_increasing
    for name in meta["Image Index"]:
        with Image.open(out / IMAGES_DIR / name) as img:
            assert img.mode == "L" and img.size == (64, 64)
    assert metadata_row(1, 0, 64, 11) == table.iloc[0].to_dict()


def test_nodule_label_follows_the_image():
    """Patients drawn with a nodule show it (a bright spot in a lung) only on the images labelled "Nodule"."""
    from dataclasses import replace

    from cxrdenoise.phantoms import _anatomy, _render, _visit

    seed, size = 11, 128
    patient = next(p for p in range(1, 40) if metadata_row(p, 3, size, seed)["Finding Labels"] == "Nodule")
    labels = [metadata_row(patient, f, size, seed)["Finding Labels"] for f in range(4)]
    assert labels[0] == "No Finding"
    onset = labels.index("Nodule")
    assert set(labels[onset:]) == {"Nodule"}
    anatomy = _anatomy(patient, seed)
    nx, ny, _, _ = anatomy.nodule
    for follow_up in range(4):
        visit = _visit(patient, follow_up, seed)
        diff = (_render(anatomy, visit, follow_up, size).astype(float)
                - _render(replace(anatomy, nodule=None), visit, follow_up, size))
        if follow_up < onset:
            assert not diff.any()
        else:
            rows, cols = np.nonzero(diff > 10)
            assert len(rows), f"nodule invisible at follow-up {follow_up}"
            centre = ((cols.mean() + 0.5) / size * 2 - 1, (rows.mean() + 0.5) / size * 2 - 1)
            assert abs(centre[0] - nx) < 0.06 and abs(centre[1] - ny) < 0.06, (centre, (nx, ny))


def test_writes_into_place_and_replaces_old_images(tmp_path):
    out = tmp_path / "synthetic"
    generate_phantoms(out, patients=5, max_follow_ups=2, size=32, seed=1, progress=False)
    generate_phantoms(out, patients=2, max_follow_ups=1, size=32, seed=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [METADATA_NAME, IMAGES_DIR]   # no staging left over
    assert sorted(p.name for p in (out / IMAGES_DIR).iterdir()) == ["00000001_000.png", "00000002_000.png"]


# ---------------------------------------------------------------------------------------------- anatomy
@pytest.mark.parametrize("seed", [0, 11, 2025])
def test_anatomy_is_plausible(seed):
    for patient in range(1, 7):
        img = phantom(patient, 0, 128, seed).astype(float)
        lungs = (_region(img, -0.55, -0.35, -0.3, 0.0), _region(img, 0.35, 0.55, -0.3, 0.0))
        mediastinum = _region(img, -0.05, 0.05, -0.5, 0.0)           # spine and mediastinum
        heart = _region(img, 0.25, 0.35, 0.05, 0.15)                  # heart shadow, viewer's right
        mirror = _region(img, -0.35, -0.25, 0.05, 0.15)               # lung at the same level, viewer's left
        abdomen = _region(img, -0.3, 0.3, 0.8, 0.95)
        outside = _region(img, 0.55, 0.75, -1.0, -0.94)               # air beside the neck
        where = f"seed {seed} patient {patient}"
        assert max(lungs) + 60 < mediastinum, f"{where}: lungs {lungs} not darker than mediastinum {mediastinum}"
        assert mirror + 40 < heart, f"{where}: no heart shadow left of centre ({heart} vs {mirror})"
        assert max(lungs) + 60 < abdomen, f"{where}: abdomen {abdomen} not brighter than lungs {lungs}"
        assert outside < 20, f"{where}: background beside the neck is {outside}, not dark"
        lo, hi = np.percentile(img, [1, 99])
        assert hi - lo > 150 and img.std() > 30, f"{where}: range {lo}..{hi}, std {img.std():.1f}"
        assert hi < 255 or (img == 255).mean() < 0.02, f"{where}: saturated"


def test_ribs_cross_the_lungs():
    """Bright bands along a vertical line through a lung: the profile must alternate (ribs / spaces)."""
    img = phantom(3, 0, 256, 11).astype(float)
    column = img[int(0.3 * 128):int(0.95 * 128), int((1 - 0.45) * 128)]      # x = -0.45, y = -0.7 .. -0.05
    smooth = np.convolve(column, np.ones(3) / 3, mode="valid")
    peaks = np.sum((smooth[1:-1] > smooth[:-2]) & (smooth[1:-1] >= smooth[2:]) & (smooth[1:-1] > np.median(smooth)))
    assert peaks >= 3, f"only {peaks} rib crossings"


def test_follow_ups_resemble_their_own_patient():
    """Each follow-up's nearest baseline image (mean squared difference) is its own patient's."""
    seed, size = 11, 64
    baselines = {p: phantom(p, 0, size, seed).astype(float) for p in range(1, 13)}
    for patient in range(1, 13):
        for follow_up in (1, 2):
            img = phantom(patient, follow_up, size, seed).astype(float)
            assert not np.array_equal(img, baselines[patient])
            distance = {q: np.mean((img - b) ** 2) for q, b in baselines.items()}
            assert min(distance, key=distance.get) == patient, f"patient {patient} follow-up {follow_up}"


@pytest.mark.parametrize("size", [32, 100, 256])
def test_sizes(size):
    img = phantom(1, 1, size, 5)
    assert img.shape == (size, size) and img.dtype == np.uint8


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"patients": 0}, "data.synthetic.patients"),
        ({"max_follow_ups": 0}, "data.synthetic.max_follow_ups"),
        ({"size": 16}, "data.synthetic.size"),
        ({"size": 64.0}, "data.synthetic.size"),
        ({"seed": -1}, "seed"),
        ({"patients": True}, "data.synthetic.patients"),
    ],
)
def test_bad_arguments_raise_one_line_errors(tmp_path, kwargs, key):
    args = {"patients": 2, "max_follow_ups": 2, "size": 32, "seed": 1, **kwargs}
    with pytest.raises(CxrError) as err:
        generate_phantoms(tmp_path / "out", progress=False, **args)
    assert str(err.value).startswith(f"{key}:") and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [(0, 0, 64, 1), (1, -1, 64, 1), (1, 0, 31, 1), (1, 0, 64, -5)])
def test_phantom_rejects_bad_arguments(args):
    with pytest.raises(CxrError):
        phantom(*args)


# -------------------------------------------------------------------------------------- CLI and rule
def _load_script():
    from cxrdenoise.commands import phantoms

    return phantoms


def test_cli(tmp_path, capsys):
    script = _load_script()
    out = tmp_path / "synthetic"
    assert script.main(["--out-dir", str(out), "--patients", "3", "--max-follow-ups", "2", "--size", "32",
                        "--seed", "4", "--no-progress"]) == 0
    assert (out / METADATA_NAME).is_file() and any((out / IMAGES_DIR).iterdir())
    assert "3 patients" in capsys.readouterr().out

    assert script.main(["--out-dir", str(tmp_path / "bad"), "--patients", "0", "--max-follow-ups", "2",
                        "--size", "32", "--seed", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data.synthetic.patients:") and "\n" not in err


@pytest.mark.slow
def test_snakemake_rule(tmp_path):
    """The rule through the repository's Snakefile (demo config, smaller): outputs in place, log, benchmark."""
    from snakemake_run import snakemake

    overrides = tmp_path / "small.yaml"
    overrides.write_text(yaml.safe_dump({"data": {"synthetic": {"patients": 3, "max_follow_ups": 2, "size": 32}}}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["data"]["raw_dir"]
    target = f"{raw}/synthetic/Data_Entry_synthetic.csv"
    result = snakemake(workdir, "--cores", "1", "--configfile", str(REPO / "config" / "demo.yaml"), str(overrides),
                       "--", target)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = pd.read_csv(workdir / target)
    images = sorted(p.name for p in (workdir / raw / "synthetic" / "images").glob("*.png"))
    assert images == sorted(meta["Image Index"]) and set(meta["Patient ID"]) == {1, 2, 3}
    with Image.open(workdir / raw / "synthetic" / "images" / images[0]) as img:
        assert img.size == (32, 32)
    assert sorted(p.name for p in (workdir / raw / "synthetic").iterdir()) == [METADATA_NAME, IMAGES_DIR]
    assert "wrote" in (workdir / "results" / "logs" / "synthesize_phantoms.log").read_text()
    assert (workdir / "results" / "benchmarks" / "synthesize_phantoms.tsv").is_file()
