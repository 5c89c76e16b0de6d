"""The locks and the conda environment agree with pyproject.toml, and the repository keeps third-party data out."""

import subprocess
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _satisfied(requirements: list[str], pins: dict[str, str]) -> list[str]:
    """The requirements that no pin of the lock satisfies."""
    missing = []
    for text in requirements:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name == "cxrdenoise":
            continue
        if name not in pins or not req.specifier.contains(pins[name], prereleases=True):
            missing.append(text)
    return missing


def test_the_job_lock_pins_every_dependency():
    assert _satisfied(PROJECT["dependencies"], _pins("requirements.lock")) == []
    assert "snakemake" not in _pins("requirements.lock")  # the jobs' environment does not carry the engine


def test_the_dev_lock_pins_everything_make_install_needs():
    extras = PROJECT["optional-dependencies"]
    wanted = PROJECT["dependencies"] + [r for extra in ("workflow", "dev") for r in extras[extra]]
    assert _satisfied(wanted, _pins("requirements-dev.lock")) == []


def test_conda_env_installs_the_job_lock_and_the_project():
    env = yaml.safe_load((REPO / "envs" / "cxrdenoise.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-r ../requirements.lock", ".."]
    assert (REPO / "envs" / pip[0].split()[1]).resolve() == REPO / "requirements.lock"


def test_python_3_11_to_3_13_are_allowed():
    spec = Requirement(f"python{PROJECT['requires-python']}").specifier
    assert all(spec.contains(v) for v in ("3.11.9", "3.12.4", "3.13.1")) and not spec.contains("3.10.14")


def test_no_radiographs_are_tracked():
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "*.png"], capture_output=True, text=True)
    if tracked.returncode != 0:
        import pytest
        pytest.skip("not a git checkout")
    pngs = [p for p in tracked.stdout.split() if not p.startswith("docs/")]
    assert pngs == []
