"""The locks and the conda environment agree with pyproject.toml, and the repository keeps third-party data out."""

import hashlib
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
    env = (REPO / "workflow" / "envs" / "cxrdenoise.yaml").read_text()
    digest = hashlib.sha256((REPO / "requirements.lock").read_bytes()).hexdigest()
    assert f"# requirements.lock sha256: {digest}\n" in env  # a new lock changes the file: a new environment
    assert yaml.safe_load(env)["dependencies"] == ["python=3.11", "pip"]
    deploy = (REPO / "workflow" / "envs" / "cxrdenoise.post-deploy.sh").read_text()
    assert '-r "$root/requirements.lock"' in deploy and '--no-deps "$root"' in deploy


def test_post_deploy_installs_from_this_clone_whatever_the_working_directory(tmp_path):
    """Snakemake runs the script from the workflow's own folder (workflow/envs/); a stand-in `python` records the
    calls."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    done = subprocess.run(["bash", str(REPO / "workflow" / "envs" / "cxrdenoise.post-deploy.sh")], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"-m pip install --no-cache-dir -r {REPO}/requirements.lock",
                     f"-m pip install --no-cache-dir --no-deps {REPO}"]


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
