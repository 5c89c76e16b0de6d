"""Paths with spaces and non-ASCII characters work in every rule (issue 22, fault 8): every path in every shell
command is quoted, including the inventory's `--roots` list and `--metadata-csv`, which used to break into
"unrecognized arguments" at the first space."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cxrdenoise.phantoms import generate_phantoms
from snakemake_run import REPO, snakemake
from test_relocation import TINY as RELOCATION_TINY

ODD = "my data ü"  # a space and a non-ASCII letter

# the toy `all` DAG of test_relocation (data, training, evaluation, tables, figures, privacy), raw_dir set per test
TINY = {key: value for key, value in RELOCATION_TINY.items() if key != "data"} | {
    "data": {key: value for key, value in RELOCATION_TINY["data"].items() if key != "raw_dir"}}


def shell_commands() -> list[tuple[str, str]]:
    """(file, text of a `shell:` command) for every rule file."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for match in re.finditer(r"^\s+shell:\n((?:\s+\".*\"\n?)+)", smk.read_text(), re.M):
            found.append((smk.name, match.group(1)))
    return found


def test_every_path_in_every_shell_command_is_quoted():
    commands = shell_commands()
    assert len(commands) >= 30
    unquoted = []
    for name, command in commands:
        for field in re.findall(r"\{([^{}]+)\}", command):
            if field.startswith(("input", "output", "log")) and not field.endswith(":q"):
                unquoted.append(f"{name}: {{{field}}}")
            if re.search(r"(dir|dirs|path|csv|json|checkpoint|out|file|files)s?$", field) and not field.endswith(":q"):
                unquoted.append(f"{name}: {{{field}}}")
    assert unquoted == []


def test_inventory_of_a_local_folder_with_a_space_in_its_path(tmp_path):
    """The fault as reported: data.local.image_dir (and its metadata CSV) with a space -> the inventory runs."""
    raw = tmp_path / ODD / "raw files"
    generate_phantoms(raw, patients=4, max_follow_ups=2, size=32, seed=1, progress=False)
    meta = raw / "Data Entry ü.csv"
    (raw / "Data_Entry_synthetic.csv").rename(meta)
    config = tmp_path / ODD / "local config.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"source": "local", "raw_dir": str(tmp_path / ODD / "resources"),
                 "local": {"image_dir": str(raw / "images"), "metadata_csv": str(meta)}},
        "sample": {"n_images": 4}, "resize": {"size": 32}, "shards": {"images_per_shard": 4},
        "noise": {"sigmas": [0.1]},
    }, allow_unicode=True), encoding="utf-8")
    workdir = tmp_path / ODD / "work dir"
    workdir.mkdir()
    done = snakemake(workdir, "--cores", "1", "--configfile", str(REPO / "config" / "demo.yaml"), str(config),
                     "--", "results/data/sample.csv", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    inventory = (workdir / "results" / "data" / "inventory.csv").read_text(encoding="utf-8")
    assert inventory.count("\n") > 4 and str(raw / "images") in inventory
    assert "unrecognized arguments" not in (workdir / "results" / "logs" / "inventory.log").read_text()


@pytest.mark.slow
def test_toy_dag_under_a_path_with_a_space_and_non_ascii(tmp_path):
    """Every rule of `all` (but the NIH download and federated training), run with the working directory and
    data.raw_dir both under "my data ü"."""
    root = tmp_path / ODD
    workdir = root / "work dir"
    workdir.mkdir(parents=True)
    config = root / "tiny ü.yaml"
    config.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "raw_dir": str(root / "raw ü")}},
                                     allow_unicode=True), encoding="utf-8")
    done = snakemake(workdir, "--cores", "2", "--configfile", str(config), "--", "all", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "raw ü" / "synthetic" / "Data_Entry_synthetic.csv").exists()
    assert (workdir / "results" / "tables" / "table3.csv").exists()
    assert (workdir / "results" / "train" / "unet" / "sigma0.1" / "gpu1" / "rep1" / "best.pt").exists()
