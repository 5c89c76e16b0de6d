"""data.source: local through Snakemake: a folder the user fixes is re-read, so removing a bad image and
re-running just works (the folder's listing digest is a parameter of rule inventory)."""

from __future__ import annotations

import json

import pytest
import yaml

from cxrdenoise.inventory import build_inventory, listing_digest
from cxrdenoise.phantoms import generate_phantoms
from cxrdenoise.sampling import sample_images
from snakemake_run import REPO, snakemake

BAD = "00000777_000.png"


def test_listing_digest_follows_names_sizes_and_mtimes(tmp_path):
    (tmp_path / "a").mkdir()
    img = tmp_path / "a" / "00000001_000.png"
    img.write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    first = listing_digest([tmp_path / "a"])
    assert listing_digest([tmp_path / "a"]) == first
    (tmp_path / "a" / "notes.txt").write_text("still ignored: not an image")
    assert listing_digest([tmp_path / "a"]) == first
    img.write_bytes(b"xy")
    assert listing_digest([tmp_path / "a"]) != first
    second = listing_digest([tmp_path / "a"])
    img.rename(tmp_path / "a" / "00000001_001.png")
    assert listing_digest([tmp_path / "a"]) != second
    meta = tmp_path / "meta.csv"
    assert listing_digest([], [meta]) != listing_digest([], [])  # absent counts as a state too
    meta.write_text("Image Index,Patient ID\n")
    assert listing_digest([], [meta]) != listing_digest([], [tmp_path / "other.csv"])


@pytest.mark.slow
def test_local_folder_fixed_and_rerun_succeeds(tmp_path):
    images = tmp_path / "raw" / "images"
    generate_phantoms(tmp_path / "raw", patients=6, max_follow_ups=2, size=64, seed=1, progress=False)
    (images / BAD).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a truncated PNG with a valid NIH name
    inventory = build_inventory([images])
    n = len(inventory) - 1  # every image is sampled once the bad one is gone
    seed = next(s for s in range(200) if BAD in set(sample_images(inventory, n, s, progress=False)["image_id"]))
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({
        "seed": seed,
        "data": {"source": "local", "raw_dir": "resources", "local": {"image_dir": str(images)}},
        "sample": {"n_images": n}, "resize": {"size": 32}, "shards": {"images_per_shard": 8},
        "noise": {"sigmas": [0.1]},
    }))
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = ["--cores", "2", "--configfile", str(REPO / "config" / "demo.yaml"), str(config), "--",
            "results/data/clean/manifest.json"]

    first = snakemake(workdir, *args)
    assert first.returncode != 0
    logs = "".join(p.read_text() for p in (workdir / "results" / "logs" / "resize_shard").glob("*.log"))
    assert f"{BAD}: not a readable image" in logs

    (images / BAD).unlink()
    second = snakemake(workdir, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    manifest = json.loads((workdir / "results" / "data" / "clean" / "manifest.json").read_text())
    assert manifest["n_images"] == n
    assert BAD not in (workdir / "results" / "data" / "inventory.csv").read_text()
