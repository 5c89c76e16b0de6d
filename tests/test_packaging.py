"""The environment files agree with pyproject.toml, and the repository keeps third-party data out."""

import subprocess
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_conda_env_pins_match_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "cxrdenoise.yaml").read_text())
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(d for d in pip_deps if not d.startswith("-e")) == sorted(deps)


def test_no_radiographs_are_tracked():
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "*.png"], capture_output=True, text=True)
    if tracked.returncode != 0:
        import pytest
        pytest.skip("not a git checkout")
    pngs = [p for p in tracked.stdout.split() if not p.startswith("docs/")]
    assert pngs == []
