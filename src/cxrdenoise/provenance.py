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


def hash_config(config: Mapping[str, Any]) -> str:
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


def device_info(device: Any = None) -> dict[str, Any]:
    """Device label for results: the device a job actually used (default: CUDA when present, else the CPU).

    A CPU job on a machine with GPUs is labelled with the processor, never with a GPU's name. A job that says
    "cpu" does not import torch (a job that writes only a note, cxrdenoise.baselines, stays cheap).
    """
    if device is not None and str(device) == "cpu":
        return {"device": "cpu", "device_name": cpu_name(), "device_count": 0}
    import torch

    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return {
            "device": "cuda",
            "device_name": torch.cuda.get_device_name(device),
            "device_count": torch.cuda.device_count(),
        }
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


def provenance(config: Mapping[str, Any] | None = None, *, config_hash: str | None = None, device: Any = None,
               **extra: Any) -> dict[str, Any]:
    """Provenance for a result file: the hash of `config`, else `config_hash`, else (inside a Snakemake job)
    the workflow's hash from the environment (set by workflow/rules/common.smk), so commands need not carry it.
    `device` is the device the job used (see device_info)."""
    if config is not None:
        config_hash = hash_config(config)
    record = {
        "config_hash": config_hash or os.environ.get(CONFIG_HASH_ENV),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **device_info(device),
    }
    record.update(extra)
    return record
