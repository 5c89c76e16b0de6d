import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from datadir import NIH_SAMPLE, build_data_dir  # noqa: E402
from slurm_cluster import LocalSlurm  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """24 phantom images at 32x32, sigmas 0.1 and 0.2, 3 shards: a complete `results/data` folder."""
    return build_data_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def nih_sample_dir() -> Path:
    """The 14 real NIH radiographs kept outside the repository (../shared/data/nih-sample)."""
    if not NIH_SAMPLE.is_dir():
        pytest.skip(f"real NIH sample images not found at {NIH_SAMPLE} (../shared is not beside the checkout)")
    return NIH_SAMPLE


@pytest.fixture(scope="module")
def slurm() -> LocalSlurm:
    """A real single-node SLURM (slurmctld, slurmd, munged on loopback, 2 fake GPUs) for one test module."""
    reason = LocalSlurm.skip_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm not installed")
    cluster = LocalSlurm(gpus=2).start()
    try:
        yield cluster
    finally:
        cluster.stop()
