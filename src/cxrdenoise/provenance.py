"""What every result file records about how it was made: config hash, versions, device, git commit."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pillow", "scikit-image", "lpips", "snakemake")


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON form of a config, so equal configs hash equal whatever their key order."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: str | Path | None = None) -> str:
    """The checkout's commit, with '+dirty' when it has uncommitted changes; 'unknown' outside git."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def device_info() -> dict[str, Any]:
    """Device label for results: CUDA name and count when present, else 'cpu' with the processor name."""
    try:
        import torch

        if torch.cuda.is_available():
            return {
                "device": "cuda",
                "device_name": torch.cuda.get_device_name(0),
                "device_count": torch.cuda.device_count(),
            }
    except ImportError:
        pass
    return {"device": "cpu", "device_name": cpu_name(), "device_count": 0}


def cpu_name() -> str:
    """The processor's model name (platform.processor() often says only 'x86_64')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CONFIG_HASH_ENV = "CXRDENOISE_CONFIG_HASH"


def provenance(config: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Provenance for a result file. Inside a Snakemake job the workflow's config hash comes from the
    environment (set by workflow/rules/common.smk), so rule commands need not carry it."""
    record = {
        "config_hash": config_hash(config) if config is not None else os.environ.get(CONFIG_HASH_ENV),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **device_info(),
    }
    record.update(extra)
    return record
